import { definePlugin } from '@spikeflow/core';
import { alif } from './alif.js';
import pkg from '../package.json' with { type: 'json' };

export { alif, alifSchema } from './alif.js';
export type { AlifConfig, AlifState } from './alif.js';

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, neurons: [alif] });

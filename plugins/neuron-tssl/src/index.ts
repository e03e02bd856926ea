import { definePlugin } from '@spikeflow/core';
import { tssl } from './tssl.js';
import pkg from '../package.json' with { type: 'json' };

export { tssl, tsslSchema } from './tssl.js';
export type { TsslConfig, TsslState } from './tssl.js';

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, neurons: [tssl] });

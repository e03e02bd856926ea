import { definePlugin } from '@spikeflow/core';
import { lif } from './lif.js';
import pkg from '../package.json' with { type: 'json' };

export { lif, lifSchema } from './lif.js';
export type { LifConfig, LifState } from './lif.js';

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, neurons: [lif] });

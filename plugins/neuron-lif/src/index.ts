import { definePlugin } from '@spikeflow/core';
import { lif } from './lif.js';
import { cubaLif } from './cuba-lif.js';
import pkg from '../package.json' with { type: 'json' };

export { lif, lifSchema } from './lif.js';
export type { LifConfig, LifState } from './lif.js';
export { cubaLif, cubaLifSchema } from './cuba-lif.js';
export type { CubaLifConfig, CubaLifState } from './cuba-lif.js';

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, neurons: [lif, cubaLif] });

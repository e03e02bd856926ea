import { definePlugin } from '@spikeflow/core';
import { createRequire } from 'node:module';
import { lif } from './lif.js';

export { lif, lifSchema } from './lif.js';
export type { LifConfig, LifState } from './lif.js';

const pkg = createRequire(import.meta.url)('../package.json') as { name: string; version: string };

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, neurons: [lif] });

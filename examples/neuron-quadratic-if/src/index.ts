import { definePlugin } from '@spikeflow/core';
import { createRequire } from 'node:module';
import { qif } from './qif.js';

export { qif, qifSchema } from './qif.js';
export type { QifConfig, QifState } from './qif.js';

const pkg = createRequire(import.meta.url)('../package.json') as { name: string; version: string };

/** The plugin object: `plugins: ["spikeflow-neuron-qif"]` in a run config, or `loadPlugins(['spikeflow-neuron-qif'])`. */
export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, neurons: [qif] });

import { definePlugin } from '@spikeflow/core';
import { createRequire } from 'node:module';
import { ltc } from './ltc.js';

export { ltc, ltcSchema } from './ltc.js';
export type { LtcConfig, LtcState } from './ltc.js';

const pkg = createRequire(import.meta.url)('../package.json') as { name: string; version: string };

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, neurons: [ltc] });

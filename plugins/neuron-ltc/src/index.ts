import { definePlugin } from '@spikeflow/core';
import { ltc } from './ltc.js';
import { ltcReadout } from './readout.js';
import pkg from '../package.json' with { type: 'json' };

export { ltc, ltcSchema } from './ltc.js';
export type { LtcConfig, LtcState } from './ltc.js';
export { ltcReadout } from './readout.js';

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, neurons: [ltc], readouts: [ltcReadout] });

import { definePlugin, type RuleEntry } from '@spikeflow/core';
import { ottt, type OtttMode } from './ottt.js';
import pkg from '../package.json' with { type: 'json' };

export { ottt, otttDecays } from './ottt.js';
export type { OtttMode, OtttOptions } from './ottt.js';


const otttSchema = {
  mode: { type: 'string', default: 'accumulate', oneOf: ['accumulate', 'online'], doc: 'accumulate (OTTT_A): one update per sequence; online (OTTT_O): an update every step' },
  decay: { type: 'number', min: 0, max: 1, doc: "λ of the presynaptic traces (default: each layer's membrane decay beta)" },
} as const;

/** `{ "name": "ottt" }`, `{ "name": "ottt", "mode": "online" }` */
export const otttEntry: RuleEntry<typeof otttSchema> = {
  name: 'ottt',
  description: 'online training through time: instantaneous losses, spatial backprop, presynaptic traces in the weight gradient (OTTT_A / OTTT_O); memory independent of T',
  optionsSchema: otttSchema,
  create: (o) => ottt({ mode: o.mode as OtttMode, ...(o.decay !== undefined ? { decay: o.decay } : {}) }),
};

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, rules: [otttEntry] });

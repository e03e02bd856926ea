import { definePlugin, type RuleEntry } from '@spikeflow/core';
import { ottt, otttSchema } from './ottt.js';
import pkg from '../package.json' with { type: 'json' };

export { ottt, otttDecays, otttSchema } from './ottt.js';
export type { OtttMode, OtttOptions } from './ottt.js';

/** `{ "name": "ottt" }`, `{ "name": "ottt", "mode": "online" }` */
export const otttEntry: RuleEntry<typeof otttSchema> = {
  name: 'ottt',
  description:
    'online training through time: instantaneous losses, spatial backprop, presynaptic traces in the weight gradient (OTTT_A / OTTT_O); memory independent of T',
  optionsSchema: otttSchema,
  create: ottt,
};

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, rules: [otttEntry] });

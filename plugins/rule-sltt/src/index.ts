import { definePlugin, type RuleEntry } from '@spikeflow/core';
import { sltt, slttSchema } from './sltt.js';
import pkg from '../package.json' with { type: 'json' };

export { sltt, slttSteps, slttSchema } from './sltt.js';
export type { SlttMode, SlttOptions, SlttState } from './sltt.js';

/** `{ "name": "sltt" }`, `{ "name": "sltt", "k": 4 }` */
export const slttEntry: RuleEntry<typeof slttSchema> = {
  name: 'sltt',
  description: "spatial learning through time: backprop through each step's spatial path only (SLTT-K: at K random steps); memory independent of T",
  optionsSchema: slttSchema,
  create: sltt,
};

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, rules: [slttEntry] });

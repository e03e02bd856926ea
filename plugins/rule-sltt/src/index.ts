import { definePlugin, type RuleEntry } from '@spikeflow/core';
import { sltt, type SlttMode } from './sltt.js';
import pkg from '../package.json' with { type: 'json' };

export { sltt, slttSteps } from './sltt.js';
export type { SlttMode, SlttOptions, SlttState } from './sltt.js';


const slttSchema = {
  k: { type: 'number', integer: true, min: 1, doc: 'SLTT-K: steps per sequence that run backward, drawn at random (default: every step)' },
  mode: { type: 'string', default: 'accumulate', oneOf: ['accumulate', 'online'], doc: 'accumulate: one update per sequence; online: an update after every step that runs backward' },
  seed: { type: 'number', integer: true, default: 0, doc: "seed of SLTT-K's draws" },
} as const;

/** `{ "name": "sltt" }`, `{ "name": "sltt", "k": 4 }` */
export const slttEntry: RuleEntry<typeof slttSchema> = {
  name: 'sltt',
  description: "spatial learning through time: backprop through each step's spatial path only (SLTT-K: at K random steps); memory independent of T",
  optionsSchema: slttSchema,
  create: (o) => sltt({ ...(o.k !== undefined ? { k: o.k } : {}), mode: o.mode as SlttMode, seed: o.seed }),
};

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, rules: [slttEntry] });

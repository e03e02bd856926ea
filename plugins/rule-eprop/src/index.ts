import { definePlugin, type RuleEntry } from '@spikeflow/core';
import { eprop, epropSchema } from './eprop.js';
import pkg from '../package.json' with { type: 'json' };

export { eprop, epropSchema } from './eprop.js';
export type { EpropOptions, EpropMode, EpropState, Feedback } from './eprop.js';

/** `{ "name": "eprop", "feedback": "random", "window": 28 }` */
export const epropEntry: RuleEntry<typeof epropSchema> = {
  name: 'eprop',
  description:
    'e-prop: eligibility traces × online learning signal (symmetric, random or adaptive feedback), one hidden LIF/ALIF layer; memory independent of T',
  optionsSchema: epropSchema,
  create: eprop,
};

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, rules: [epropEntry] });

import { definePlugin, type RuleEntry } from '@spikeflow/core';
import { fptt, fpttSchema } from './fptt.js';
import pkg from '../package.json' with { type: 'json' };

export { fptt, fpttSchema } from './fptt.js';
export type { FpttOptions, FpttSchedule } from './fptt.js';
export { initAnchor, objectiveGrads, updateAnchor } from './anchor.js';
export type { FpttForm, FpttHyper, FpttState } from './anchor.js';

/** `{ "name": "fptt", "window": 10, "alpha": 0.5 }` */
export const fpttEntry: RuleEntry<typeof fpttSchema> = {
  name: 'fptt',
  description: 'forward propagation through time: online updates per chunk of K steps, regularised towards a running average; memory independent of T',
  optionsSchema: fpttSchema,
  create: fptt,
};

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, rules: [fpttEntry] });

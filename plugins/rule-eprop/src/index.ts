import { definePlugin, type RuleEntry } from '@spikeflow/core';
import { eprop, type EpropMode, type Feedback } from './eprop.js';
import pkg from '../package.json' with { type: 'json' };

export { eprop } from './eprop.js';
export type { EpropOptions, EpropMode, EpropState, Feedback } from './eprop.js';


const epropSchema = {
  feedback: { type: 'string', default: 'symmetric', oneOf: ['symmetric', 'random', 'adaptive'], doc: 'learning-signal weights B: W_outᵀ, fixed random, or random and updated like W_out' },
  window: { type: 'number', integer: true, default: 32, min: 1, doc: 'steps per window: traces are carried across windows (memory grows with it, not with T)' },
  mode: { type: 'string', default: 'accumulate', oneOf: ['accumulate', 'online'], doc: 'accumulate: one update per sequence; online: one update after every window' },
  feedbackDecay: { type: 'number', default: 0.01, min: 0, max: 1, doc: 'adaptive feedback: B ← (1 − d)·B + ΔW_out after every update' },
  seed: { type: 'number', integer: true, default: 0, doc: 'seed of the random feedback matrix' },
  rateReg: { type: 'number', default: 0, min: 0, doc: 'c_reg, weight of the firing-rate regulariser (0: off)' },
  rateTarget: { type: 'number', default: 0.01, min: 0, max: 1, doc: 'target firing probability per step' },
} as const;

/** `{ "name": "eprop", "feedback": "random", "window": 28 }` */
export const epropEntry: RuleEntry<typeof epropSchema> = {
  name: 'eprop',
  description: 'e-prop: eligibility traces × online learning signal (symmetric, random or adaptive feedback), one hidden LIF/ALIF layer; memory independent of T',
  optionsSchema: epropSchema,
  create: (o) =>
    eprop({
      feedback: o.feedback as Feedback,
      window: o.window,
      mode: o.mode as EpropMode,
      feedbackDecay: o.feedbackDecay,
      seed: o.seed,
      rateReg: o.rateReg,
      rateTarget: o.rateTarget,
    }),
};

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, rules: [epropEntry] });

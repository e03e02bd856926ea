import { definePlugin, type RuleEntry } from '@spikeflow/core';
import { fptt, type FpttSchedule } from './fptt.js';
import type { FpttForm } from './anchor.js';
import pkg from '../package.json' with { type: 'json' };

export { fptt } from './fptt.js';
export type { FpttOptions, FpttSchedule } from './fptt.js';
export { initAnchor, objectiveGrads, updateAnchor } from './anchor.js';
export type { FpttForm, FpttHyper, FpttState } from './anchor.js';


const fpttSchema = {
  window: { type: 'number', integer: true, min: 1, doc: 'K, steps per update (FPTT-K; default 1, an update every step)' },
  parts: { type: 'number', integer: true, min: 1, doc: 'P, updates per sequence (K = ⌈T/P⌉); instead of window' },
  alpha: { type: 'number', default: 0.1, min: 0, exclusiveMin: true, doc: 'α, weight of the pull towards the running average W̄' },
  beta: { type: 'number', default: 0.5, min: 0, exclusiveMin: true, max: 1, doc: 'β, averaging rate of W̄ (dual form)' },
  form: { type: 'string', default: 'dual', oneOf: ['dual', 'textbook'], doc: 'dual: the sFPTT code (λ); textbook: Kag & Saligrama Algorithm 1 (second pass)' },
  schedule: { type: 'string', default: 'terminal', oneOf: ['terminal', 'per-step'], doc: "terminal: chunk p scored on the sequence's target, weight (p+1)/P; per-step: the loss's own terms" },
  evalWith: { type: 'string', default: 'W', oneOf: ['W', 'Wbar'], doc: 'evaluate with the weights W or the running average W̄' },
} as const;

/** `{ "name": "fptt", "window": 10, "alpha": 0.5 }` */
export const fpttEntry: RuleEntry<typeof fpttSchema> = {
  name: 'fptt',
  description: 'forward propagation through time: online updates per chunk of K steps, regularised towards a running average; memory independent of T',
  optionsSchema: fpttSchema,
  create: (o) =>
    fptt({
      ...(o.window !== undefined ? { window: o.window } : {}),
      ...(o.parts !== undefined ? { parts: o.parts } : {}),
      alpha: o.alpha,
      beta: o.beta,
      form: o.form as FpttForm,
      schedule: o.schedule as FpttSchedule,
      evalWith: o.evalWith as 'W' | 'Wbar',
    }),
};

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, rules: [fpttEntry] });

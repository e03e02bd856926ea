import { definePlugin, type RuleEntry } from '@spikeflow/core';
import { bptt, tbptt } from './bptt.js';
import pkg from '../package.json' with { type: 'json' };

export { bptt, tbptt } from './bptt.js';
export type { BpttOptions, TruncationMode } from './bptt.js';


const bpttSchema = {
  truncation: { type: 'number', integer: true, min: 1, doc: 'window k of truncated BPTT; omit for full BPTT' },
  mode: { type: 'string', default: 'accumulate', oneOf: ['accumulate', 'per-window'], doc: 'one update per sequence, or one per window' },
} as const;

/** `{ "name": "bptt" }` for full BPTT, `{ "name": "bptt", "truncation": 50, "mode": "per-window" }` for truncated. */
export const bpttEntry: RuleEntry<typeof bpttSchema> = {
  name: 'bptt',
  description: 'backpropagation through time: exact (full) or truncated to windows of k steps',
  optionsSchema: bpttSchema,
  create: (o) => (o.truncation === undefined ? bptt() : tbptt({ k: o.truncation, mode: o.mode as 'accumulate' | 'per-window' })),
};

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, rules: [bpttEntry] });

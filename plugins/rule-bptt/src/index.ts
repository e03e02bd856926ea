import { definePlugin, type RuleEntry } from '@spikeflow/core';
import { bptt, bpttSchema } from './bptt.js';
import pkg from '../package.json' with { type: 'json' };

export { bptt, tbptt, bpttSchema } from './bptt.js';
export type { BpttOptions, TruncationMode } from './bptt.js';

/** `{ "name": "bptt" }` for full BPTT, `{ "name": "bptt", "truncation": 50, "mode": "per-window" }` for truncated. */
export const bpttEntry: RuleEntry<typeof bpttSchema> = {
  name: 'bptt',
  description: 'backpropagation through time: exact (full) or truncated to windows of k steps',
  optionsSchema: bpttSchema,
  create: bptt,
};

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, rules: [bpttEntry] });

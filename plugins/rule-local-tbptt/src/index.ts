import { definePlugin, type RuleEntry } from '@spikeflow/core';
import { localTbptt, type LocalMode } from './local-tbptt.js';
import pkg from '../package.json' with { type: 'json' };

export { localTbptt, blocksOf } from './local-tbptt.js';
export type { LocalMode, LocalTbpttOptions, LocalTbpttState } from './local-tbptt.js';


const localSchema = {
  truncation: { type: 'number', integer: true, default: 10, min: 1, doc: 'k: steps per window; no gradient crosses a window boundary' },
  blockSize: { type: 'number', integer: true, default: 1, min: 1, doc: 'layers per block; every block but the last trains through an auxiliary classifier' },
  mode: { type: 'string', default: 'accumulate', oneOf: ['accumulate', 'per-window'], doc: 'accumulate: one update per sequence; per-window: an update after every window' },
  seed: { type: 'number', integer: true, default: 0, doc: "seed of the auxiliary heads' initial weights" },
} as const;

/** `{ "name": "local-tbptt", "truncation": 7, "blockSize": 1 }` */
export const localTbpttEntry: RuleEntry<typeof localSchema> = {
  name: 'local-tbptt',
  description: 'temporally-truncated local BPTT: blocks of layers trained by auxiliary classifiers, BPTT in windows of k steps; memory depends on k, not T',
  optionsSchema: localSchema,
  create: (o) => localTbptt({ truncation: o.truncation, blockSize: o.blockSize, mode: o.mode as LocalMode, seed: o.seed }),
};

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, rules: [localTbpttEntry] });

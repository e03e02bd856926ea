import { definePlugin, type RuleEntry } from '@spikeflow/core';
import { localTbptt, localTbpttSchema } from './local-tbptt.js';
import pkg from '../package.json' with { type: 'json' };

export { localTbptt, localTbpttSchema, blocksOf } from './local-tbptt.js';
export type { LocalMode, LocalTbpttOptions, LocalTbpttState } from './local-tbptt.js';

/** `{ "name": "local-tbptt", "truncation": 7, "blockSize": 1 }` */
export const localTbpttEntry: RuleEntry<typeof localTbpttSchema> = {
  name: 'local-tbptt',
  description: 'temporally-truncated local BPTT: blocks of layers trained by auxiliary classifiers, BPTT in windows of k steps; memory depends on k, not T',
  optionsSchema: localTbpttSchema,
  create: localTbptt,
};

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, rules: [localTbpttEntry] });

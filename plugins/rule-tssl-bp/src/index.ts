import { definePlugin, type RuleEntry } from '@spikeflow/core';
import { tsslBp, tsslBpSchema } from './tssl-bp.js';
import { tsslCount, tsslKernel, tsslSoftmax } from './losses.js';
import pkg from '../package.json' with { type: 'json' };

export { tsslBp, tsslBpSchema } from './tssl-bp.js';
export type { TsslBpState } from './tssl-bp.js';
export { desiredSpikes, pspFiltered, tsslCount, tsslKernel, tsslSoftmax } from './losses.js';

/** `{ "name": "tssl-bp" }` */
export const tsslBpEntry: RuleEntry<typeof tsslBpSchema> = {
  name: 'tssl-bp',
  description: "TSSL-BP: backpropagation through spike timing with PSP-passing neurons (the authors' backward pass); one update per sequence",
  optionsSchema: tsslBpSchema,
  create: () => tsslBp(),
};

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, rules: [tsslBpEntry], losses: [tsslKernel(), tsslCount(), tsslSoftmax] });

import {
  defineRule,
  deriveSeed,
  inputShape,
  parseSchema,
  permutation,
  stepwise,
  type LearningRule,
  type RuleContext,
  type SchemaInput,
  type SchemaValues,
  type SequenceBatch,
} from '@spikeflow/core';

/**
 * The rule's options (`{ "name": "sltt", ... }` in a config), the one definition of their types,
 * ranges and defaults: `k`, SLTT-K's number of steps per sequence that run backward, drawn at
 * random without replacement for every sequence (the others run forward only; omitted: every
 * step, SLTT); `mode`, `accumulate` (as the paper: the steps' gradients summed, one update per
 * sequence) or `online` (an update after every step that runs backward); `seed` of SLTT-K's draws;
 * `window`, with accumulated gradients, the steps run together in one pass cut along time.
 */
export const slttSchema = {
  k: { type: 'number', integer: true, min: 1, doc: 'SLTT-K: steps per sequence that run backward, drawn at random (default: every step)' },
  mode: {
    type: 'string',
    default: 'accumulate',
    oneOf: ['accumulate', 'online'],
    doc: 'accumulate: one update per sequence; online: an update after every step that runs backward',
  },
  seed: { type: 'number', integer: true, default: 0, doc: "seed of SLTT-K's draws" },
  window: {
    type: 'number',
    integer: true,
    default: 64,
    min: 1,
    doc: 'accumulate: steps run together, cut along time (the same gradient for any value; memory grows with it, not with T)',
  },
} as const;

export type SlttOptions = SchemaInput<typeof slttSchema>;
export type SlttMode = SchemaValues<typeof slttSchema>['mode'];

/** SLTT-K's state: the number of sequences seen, which positions the draw (exact resume). */
export type SlttState = { readonly sequences: number };

/**
 * The steps SLTT-K runs backward for the `sequence`-th sequence (0-based) of length `steps`: `k`
 * distinct steps, ascending, drawn from `(seed, sequence)` alone. All steps when `k` is absent or
 * at least `steps`.
 */
export function slttSteps(steps: number, k: number | undefined, seed: number, sequence: number): number[] {
  if (k === undefined || k >= steps) return Array.from({ length: steps }, (_, t) => t);
  return Array.from(permutation(steps, deriveSeed(seed, 'sltt', sequence)).subarray(0, k)).sort((a, b) => a - b);
}

/**
 * Spatial Learning Through Time (Meng, Xiao, Yan, Wang, Lin & Luo, "Towards Memory- and
 * Time-Efficient Backpropagation for Training Spiking Neural Networks", ICCV 2023; code
 * qymeng94/SLTT).
 *
 * BPTT's gradient of a loss Σ_t L_t splits, at every layer l and step t, into a spatial part (from
 * L_t through the layers above, at the same step) and a temporal part (from later steps, through
 * the membrane u_{t+1} ← u_t and the reset). The paper observes that the temporal part contributes
 * little for LIF networks and drops it:
 *
 *     ∂L/∂W^l ≈ Σ_t (∂L_t/∂u^l_t)_spatial · ∂u^l_t/∂W^l,   ∂u^l_t/∂W^l = s^{l−1}_t (the input of step t alone)
 *
 * — exactly BPTT's gradient with the whole state carried into each step detached (membranes,
 * adaptation, the previous spikes that feed W_rec and the reset, the readout's trace): each step
 * runs on its own gradient tape and is freed before the next, so **memory does not depend on T**
 * (core's `stepwise`; with accumulated gradients, windows of `window` steps cut along time, one
 * fused pass each where the network runs fused, with the same gradient). SLTT-K runs backward at only K steps per sequence, drawn at random, and
 * forward only at the others: the gradient is the sum of those K steps' terms.
 *
 * Needs a loss that decomposes over time (`ce_every_step`, `mse_every_step`, `mse_last`).
 */
export function sltt(options: SlttOptions = {}): LearningRule<SlttState> {
  const { k, mode, seed, window: steps } = parseSchema(slttSchema, options, 'rule');
  const online = mode === 'online';
  return defineRule({
    name: `sltt${k === undefined ? '' : `-${k}`}(${mode})`,
    memory: 'O(1)',
    gradient: 'approximate',
    requires: { lossDecomposesOverTime: true },
    init: () => ({ sequences: 0 }),
    updatesPerSequence: (T) => (online ? Math.min(k ?? T, T) : 1),
    update(batch: SequenceBatch, state: SlttState, ctx: RuleContext) {
      const T = inputShape(batch.inputs)[0]!;
      const chosen = new Set(slttSteps(T, k, seed, state.sequences));
      // Accumulated: windows of steps without the temporal path (one fused pass each where the network runs fused).
      const window = online ? 1 : steps;
      const report = stepwise(batch, ctx, { online, window, ...(k === undefined ? {} : { backward: (t: number) => chosen.has(t) }) });
      return { state: { sequences: state.sequences + 1 }, report };
    },
  });
}

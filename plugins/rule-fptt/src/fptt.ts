import {
  SpikeflowError,
  defineRule,
  disposeTree,
  inputShape,
  parseSchema,
  trainWindows,
  tf,
  type LearningRule,
  type NamedTensorMap,
  type RuleContext,
  type Scalar,
  type SchemaInput,
  type SchemaValues,
  type SequenceBatch,
  type WindowObjective,
} from '@spikeflow/core';
import { initAnchor, objectiveGrads, updateAnchor, type FpttHyper, type FpttState } from './anchor.js';

/**
 * The rule's options (`{ "name": "fptt", ... }` in a config): the one definition of their types,
 * ranges and defaults.
 *
 * - `window`: K, the steps per update (FPTT-K): BPTT inside each chunk of K steps, state carried
 *   but detached between chunks. Memory O(K), whatever T. Default 1 (an update every step). Give
 *   either `window` or `parts`.
 * - `parts`: P, the number of chunks per sequence (K = ⌈T/P⌉, as the reference code's `--parts`). Memory O(T/P).
 * - `alpha`: α, the weight of the pull towards the anchor; `beta`: β, the anchor's averaging rate (dual form).
 * - `form`: `dual` (the official sFPTT code) or `textbook` (Kag & Saligrama's Algorithm 1).
 * - `schedule`: `terminal`, chunk p of P scored by the loss of its last readout against the
 *   sequence's target, weighted (p+1)/P (the reference code's schedule, for labels or a final
 *   value); `per-step`, by the loss's own per-step terms inside the chunk (needs a loss that
 *   decomposes over time).
 * - `evalWith`: evaluate with the weights W or with the anchor W̄.
 */
export const fpttSchema = {
  window: { type: 'number', integer: true, min: 1, doc: 'K, steps per update (FPTT-K; default 1, an update every step)' },
  parts: { type: 'number', integer: true, min: 1, doc: 'P, updates per sequence (K = ⌈T/P⌉); instead of window' },
  alpha: { type: 'number', default: 0.1, min: 0, exclusiveMin: true, doc: 'α, weight of the pull towards the running average W̄' },
  beta: { type: 'number', default: 0.5, min: 0, exclusiveMin: true, max: 1, doc: 'β, averaging rate of W̄ (dual form)' },
  form: { type: 'string', default: 'dual', oneOf: ['dual', 'textbook'], doc: 'dual: the sFPTT code (λ); textbook: Kag & Saligrama Algorithm 1 (second pass)' },
  schedule: {
    type: 'string',
    default: 'terminal',
    oneOf: ['terminal', 'per-step'],
    doc: "terminal: chunk p scored on the sequence's target, weight (p+1)/P; per-step: the loss's own terms",
  },
  evalWith: { type: 'string', default: 'W', oneOf: ['W', 'Wbar'], doc: 'evaluate with the weights W or the running average W̄' },
} as const;

export type FpttOptions = SchemaInput<typeof fpttSchema>;

/** Which loss each chunk's update minimises. */
export type FpttSchedule = SchemaValues<typeof fpttSchema>['schedule'];

/**
 * Forward Propagation Through Time (Kag & Saligrama, ICML 2021) in the form of the spiking
 * version's code (Yin, Corradi & Bohté 2023, byin-cwi/sFPTT): the sequence is cut into chunks;
 * each chunk is run with BPTT from the (detached) state the previous one left, and its loss,
 * regularised by a pull towards a running average W̄ of the weights, is minimised with one
 * optimizer step. Memory does not grow with T.
 *
 * Differences from the reference code, by design: every chunk is trained (the Add-task script
 * loops over the first P−1 parts only), the terminal weight is (p+1)/P (that script writes
 * `p + 1/PARTS`), and chunks without any loss term (per-step schedule) are run without a tape and
 * make no update.
 */
export function fptt(options: FpttOptions = {}): LearningRule<FpttState> {
  const { window, parts, alpha, beta, form, schedule, evalWith } = parseSchema(fpttSchema, options, 'rule');
  if (window !== undefined && parts !== undefined) {
    throw new SpikeflowError('CONFIG_INVALID', 'rule: give either "window" (steps per update) or "parts" (updates per sequence), not both', {
      path: 'rule.window',
    });
  }
  const hyper: FpttHyper = { alpha, beta, form };
  const k = parts === undefined ? (window ?? 1) : undefined;
  return defineRule({
    name: `fptt(${k !== undefined ? `K=${k}` : `P=${parts}`}, ${form}, ${schedule})`,
    memory: k !== undefined ? 'O(k)' : 'O(T)',
    gradient: 'approximate',
    requires: schedule === 'terminal' ? { lossHasTerminal: true, denseLayers: true } : { lossDecomposesOverTime: true, denseLayers: true },
    init: (network) => initAnchor(network.params),
    updatesPerSequence: (T) => Math.ceil(T / (k ?? Math.ceil(T / parts!))),
    evalParams: evalWith === 'Wbar' ? (state) => state.wbar : undefined,
    update(batch: SequenceBatch, initial: FpttState, ctx: RuleContext) {
      const T = inputShape(batch.inputs)[0]!;
      const params = ctx.network.params;
      const kernels = ctx.network.kernels;
      let anchor = initial;
      const report = trainWindows(batch, ctx, {
        window: k ?? Math.ceil(T / parts!),
        update: 'window',
        objective: schedule === 'per-step' ? 'steps' : terminal,
        // One optimizer step on the chunk's loss pulled towards the anchor, then the anchor moves
        // (the textbook form first re-runs the chunk at the new weights for ∇ℓ there).
        apply(grads, _w, again) {
          // Dual form: where the optimizer is Adam with a learning rate alone, the whole update is one kernel per parameter.
          const fused = hyper.form === 'dual' ? ctx.applyAnchored?.(grads, { wbar: anchor.wbar, lambda: anchor.aux, alpha, beta }) : undefined;
          if (fused) {
            disposeTree(grads);
            if (anchor !== initial) disposeTree(anchor);
            anchor = { wbar: fused.wbar, aux: fused.lambda };
            return;
          }
          const total = objectiveGrads(params, grads, anchor, hyper, kernels);
          // The loss gradients are spent: free them before the optimizer makes its own tensors.
          disposeTree(grads);
          try {
            ctx.apply(total);
          } finally {
            disposeTree(total);
          }
          const atNew: NamedTensorMap | undefined = hyper.form === 'textbook' ? again() : undefined;
          const updated = updateAnchor(params, anchor, hyper, atNew, kernels);
          if (atNew) disposeTree(atNew);
          if (anchor !== initial) disposeTree(anchor);
          anchor = updated;
        },
      });
      // A new anchor replaces the state passed in, which the caller then disposes.
      return { state: anchor, report };
    },
  });
}

/**
 * Chunk p of P scored by the loss of its last readout against the sequence's target, weighted
 * (p+1)/P. The reported loss is the last chunk's terminal loss, at the weights it saw.
 */
const terminal: WindowObjective = (out, w) => {
  const y = out.last();
  const term = out.loss.terminal!(y);
  return { objective: tf.mul((w.index + 1) / w.count, term) as Scalar, report: w.index === w.count - 1 ? term : null };
};

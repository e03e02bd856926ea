import {
  SpikeflowError,
  advanceWindow,
  checkInputs,
  checkRequirements,
  disposeTree,
  keepTree,
  paramGrads,
  stepsOf,
  tf,
  unrollWindow,
  type BoundLoss,
  type LearningRule,
  type NamedTensorMap,
  type NetState,
  type Network,
  type RuleContext,
  type Scalar,
  type SequenceBatch,
  type Steps,
} from '@spikeflow/core';
import { initAnchor, objectiveGrads, updateAnchor, type FpttForm, type FpttHyper, type FpttState } from './anchor.js';

/** Which loss each chunk's update minimises. */
export type FpttSchedule = 'terminal' | 'per-step';

export interface FpttOptions {
  /**
   * K, the steps per update (FPTT-K): BPTT inside each chunk of K steps, state carried but
   * detached between chunks. Memory O(K), whatever T. Default 1 (an update every step). Give
   * either `window` or `parts`.
   */
  readonly window?: number;
  /** P, the number of chunks per sequence (K = ⌈T/P⌉, as the reference code's `--parts`). Memory O(T/P). */
  readonly parts?: number;
  /** α, the weight of the pull towards the anchor (default 0.1). */
  readonly alpha?: number;
  /** β, the anchor's averaging rate in the dual form (default 0.5). */
  readonly beta?: number;
  /** `dual` (default, the official sFPTT code) or `textbook` (Kag & Saligrama's Algorithm 1). */
  readonly form?: FpttForm;
  /**
   * `terminal` (default): chunk p of P is scored by the loss of its last readout against the
   * sequence's target, weighted (p+1)/P (the reference code's schedule, for labels or a final
   * value). `per-step`: by the loss's own per-step terms inside the chunk (needs a loss that
   * decomposes over time).
   */
  readonly schedule?: FpttSchedule;
  /** Evaluate with the weights W (default) or with the anchor W̄. */
  readonly evalWith?: 'W' | 'Wbar';
}

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
  const { window, parts, alpha = 0.1, beta = 0.5, form = 'dual', schedule = 'terminal', evalWith = 'W' } = options;
  if (window !== undefined && parts !== undefined) {
    throw new SpikeflowError('CONFIG_INVALID', 'rule: give either "window" (steps per update) or "parts" (updates per sequence), not both', { path: 'rule.window' });
  }
  const positiveInt = (v: number | undefined, key: string) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw new SpikeflowError('CONFIG_INVALID', `rule.${key}: must be an integer >= 1, got ${v}`, { path: `rule.${key}` });
  };
  positiveInt(window, 'window');
  positiveInt(parts, 'parts');
  if (!(alpha > 0)) throw new SpikeflowError('CONFIG_INVALID', `rule.alpha: must be > 0, got ${alpha}`, { path: 'rule.alpha' });
  if (!(beta > 0 && beta <= 1)) throw new SpikeflowError('CONFIG_INVALID', `rule.beta: must be in (0, 1], got ${beta}`, { path: 'rule.beta' });
  const hyper: FpttHyper = { alpha, beta, form };
  const k = parts === undefined ? (window ?? 1) : undefined;
  return {
    name: `fptt(${k !== undefined ? `K=${k}` : `P=${parts}`}, ${form}, ${schedule})`,
    memory: k !== undefined ? 'O(k)' : 'O(T)',
    gradient: 'approximate',
    requires: schedule === 'terminal' ? { lossHasTerminal: true } : { lossDecomposesOverTime: true },
    init: (network) => initAnchor(network.params),
    updatesPerSequence: (T) => Math.ceil(T / (k ?? Math.ceil(T / parts!))),
    evalParams: evalWith === 'Wbar' ? (state) => state.wbar : undefined,
    update(batch: SequenceBatch, state: FpttState, ctx: RuleContext) {
      checkRequirements(this, ctx.loss);
      const net = ctx.network;
      checkInputs(net, batch.inputs);
      const [T, B] = batch.inputs.shape as [number, number];
      const bound = ctx.loss.bind(batch.targets, { steps: T, batch: B, outputs: net.outputs });
      try {
        const K = k ?? Math.ceil(T / parts!);
        return run(net, bound, stepsOf(batch.inputs), K, schedule, hyper, state, ctx);
      } finally {
        bound.dispose();
      }
    },
  };
}

function run(net: Network, bound: BoundLoss, xs: Steps, K: number, schedule: FpttSchedule, hyper: FpttHyper, initial: FpttState, ctx: RuleContext) {
  const T = xs.length;
  const B = xs.shape[0]!;
  const P = Math.ceil(T / K);
  let anchor = initial;
  let state: NetState = net.init(B);
  let loss = 0;
  let updates = 0;
  for (let p = 0; p < P; p++) {
    const from = p * K;
    const to = Math.min(from + K, T);
    // The chunk's loss on the tape: either its per-step terms, or its last readout against the target.
    const weight = (p + 1) / P;
    let hasTerm = schedule === 'terminal';
    for (let t = from; t < to && !hasTerm; t++) hasTerm = bound.hasTerm?.(t) ?? true;
    if (!hasTerm) {
      const next = advanceWindow(net, state, xs, from, to, (t, y) => {
        ctx.observe?.(t, y);
      });
      disposeTree(state as never, next as never);
      state = next;
      continue;
    }
    const start = state;
    let last = NaN;
    const chunkGrads = (observe: boolean): { grads: NamedTensorMap; end: NetState; value: number } => {
      let end: NetState | undefined;
      let terminal: Scalar | undefined;
      const { value, grads } = paramGrads(net, () => {
        const params = net.prepare();
        const terms: Scalar[] = [];
        // The chunk through the fused kernels where the network runs fused (LIF layers).
        end = unrollWindow(net, params, start, xs, from, to, (t, y) => {
          if (observe) ctx.observe?.(t, y);
          if (schedule === 'per-step') {
            const term = bound.step!(y, t);
            if (term) terms.push(term);
          } else if (t === to - 1) {
            terminal = tf.keep(bound.terminal!(y));
            terms.push(tf.mul(weight, terminal) as Scalar);
          }
        });
        keepTree(end as never);
        return tf.addN(terms) as Scalar;
      });
      const v = value.dataSync()[0]!;
      value.dispose();
      if (terminal) {
        // The reported loss is the one the update was computed from (not the textbook form's second pass).
        if (observe) last = terminal.dataSync()[0]!;
        terminal.dispose();
      }
      return { grads, end: end!, value: v };
    };
    const first = chunkGrads(true);
    loss += first.value;
    let next = first.end;
    const total = objectiveGrads(net.params, first.grads, anchor, hyper);
    disposeTree(first.grads);
    try {
      ctx.apply(total);
    } finally {
      disposeTree(total);
    }
    updates++;
    let atNew: NamedTensorMap | undefined;
    if (hyper.form === 'textbook') {
      // ∇ℓ_t at the updated weights: the same chunk again, from the same start.
      const second = chunkGrads(false);
      atNew = second.grads;
      disposeTree(next as never, second.end as never);
      next = second.end;
    }
    const updated = updateAnchor(net.params, anchor, hyper, atNew);
    if (atNew) disposeTree(atNew);
    if (anchor !== initial) disposeTree(anchor);
    anchor = updated;
    disposeTree(state as never, next as never);
    state = next;
    if (schedule === 'terminal' && p === P - 1) loss = last;
  }
  disposeTree(state as never);
  // A new anchor replaces the state passed in, which the caller then disposes.
  return { state: anchor, report: { loss, updates } };
}

import {
  SpikeflowError,
  accumulateGrads,
  advanceWindow,
  checkInputs,
  checkRequirements,
  disposeTree,
  keepTree,
  paramGrads,
  stepsOf,
  tf,
  unroll,
  unrollWindow,
  unstackSteps,
  type BoundLoss,
  type LearningRule,
  type NamedTensorMap,
  type NetState,
  type Network,
  type RuleContext,
  type Scalar,
  type SequenceBatch,
  type Steps,
  type Tensor,
} from '@spikeflow/core';

export type TruncationMode = 'accumulate' | 'per-window';

export interface BpttOptions {
  /**
   * Window length k. Omitted (or ≥ T): full BPTT through the whole sequence. Otherwise the
   * sequence is cut into windows of k steps; the state (neurons and readout) is carried across
   * windows but detached, so no gradient crosses a window boundary.
   */
  readonly truncation?: number;
  /**
   * With truncation: `accumulate` sums the windows' gradients over the sequence and applies one
   * update per batch; `per-window` applies one update after every window (the weights change
   * mid-sequence; needs a loss that decomposes over time).
   */
  readonly mode?: TruncationMode;
}

type Empty = Record<string, never>;

/**
 * Full backpropagation through time: the exact surrogate gradient of the whole-sequence loss.
 * Keeps every step's activations on the tape: memory O(T).
 */
export function bptt(): LearningRule<Empty> {
  return makeRule(undefined, 'accumulate');
}

/**
 * Truncated BPTT with window `k` (Williams & Peng 1990). The gradient inside each window is exact;
 * paths that cross a window boundary are dropped (state carried, detached).
 *
 * Memory O(k) for losses that decompose over time. A whole-sequence loss (`ce_mean`) in
 * `accumulate` mode needs ∂L/∂y_t for every t before any window's backward pass, so the rule runs
 * the sequence forward once without a tape (keeping the readout `[T, B, O]` and the state at each
 * window start) and then each window again on the tape: O(k) activations plus O(T·O) readout.
 */
export function tbptt({ k, mode = 'accumulate' }: { k: number; mode?: TruncationMode }): LearningRule<Empty> {
  if (!Number.isInteger(k) || k < 1) {
    throw new SpikeflowError('CONFIG_INVALID', `rule.truncation: the window k must be an integer >= 1, got ${k}`, { path: 'rule.truncation' });
  }
  return makeRule(k, mode);
}

function makeRule(k: number | undefined, mode: TruncationMode): LearningRule<Empty> {
  const perWindow = k !== undefined && mode === 'per-window';
  return {
    name: k === undefined ? 'bptt' : `tbptt(k=${k}, ${mode})`,
    memory: k === undefined ? 'O(T)' : 'O(k)',
    gradient: 'exact',
    requires: perWindow ? { lossDecomposesOverTime: true } : {},
    init: () => ({}),
    // Per window: at most one update per window (windows without a loss term make none).
    updatesPerSequence: (T: number) => (perWindow ? Math.ceil(T / k!) : 1),
    update(batch: SequenceBatch, state: Empty, ctx: RuleContext) {
      checkRequirements(this, ctx.loss);
      const net = ctx.network;
      checkInputs(net, batch.inputs);
      const [T, B] = batch.inputs.shape as [number, number];
      const bound = ctx.loss.bind(batch.targets, { steps: T, batch: B, outputs: net.outputs });
      const xs = stepsOf(batch.inputs);
      try {
        const window = k === undefined ? T : Math.min(k, T);
        let report;
        if (window >= T) report = wholeSequence(net, bound, xs, ctx, batch.inputs);
        else if (perWindow) report = windows(net, bound, xs, window, ctx, true);
        else if (bound.step) report = windows(net, bound, xs, window, ctx, false);
        else report = twoPass(net, bound, xs, window, ctx);
        return { state, report };
      } finally {
        bound.dispose();
      }
    },
  };
}

/** Hands every step of a stacked readout `[T, B, O]` to `ctx.observe`, one small tensor at a time. */
function observeSteps(readout: Tensor, ctx: RuleContext): void {
  if (!ctx.observe) return;
  const xs = stepsOf(readout);
  for (let t = 0; t < xs.length; t++) {
    const y = xs.at(t);
    try {
      ctx.observe(t, y);
    } finally {
      y.dispose();
    }
  }
}

function applyAndDispose(ctx: RuleContext, grads: NamedTensorMap): void {
  try {
    ctx.apply(grads);
  } finally {
    disposeTree(grads);
  }
}

function readScalar(x: Scalar): number {
  const v = x.dataSync()[0]!;
  x.dispose();
  return v;
}

/**
 * One tape over all T steps, one update. Where the network runs fused (every layer LIF, fast
 * kernels on the backend) the whole sequence is one window: a handful of kernels on the tape
 * instead of a dozen ops per step.
 */
function wholeSequence(net: Network, bound: BoundLoss, xs: Steps, ctx: RuleContext, inputs: Tensor) {
  const B = xs.shape[0]!;
  let readout: Tensor | undefined;
  const { value, grads } = paramGrads(net, () => {
    const p = net.prepare();
    if (p.fused) {
      const out = net.runWindow(p, net.init(B), inputs);
      if (ctx.observe) readout = tf.keep(out.readout);
      return bound.stacked ? bound.stacked(out.readout) : bound.sequence(unstackSteps(out.readout));
    }
    const ys: Tensor[] = [];
    unroll(net, p, net.init(B), xs, 0, xs.length, (t, out) => {
      ys.push(out.readout);
      ctx.observe?.(t, out.readout);
    });
    return bound.sequence(ys);
  });
  if (readout) {
    observeSteps(readout, ctx);
    readout.dispose();
  }
  applyAndDispose(ctx, grads);
  return { loss: readScalar(value), updates: 1 };
}

/**
 * Windows of k steps for a loss with per-step terms: each window's terms are differentiated on
 * their own tape from the (detached) state the previous window left. Either one update per window,
 * or gradients summed and one update at the end.
 */
function windows(net: Network, bound: BoundLoss, xs: Steps, k: number, ctx: RuleContext, update: boolean) {
  const T = xs.length;
  const B = xs.shape[0]!;
  const step = bound.step!;
  let state: NetState = net.init(B);
  let acc: NamedTensorMap | undefined;
  let loss = 0;
  let updates = 0;
  for (let from = 0; from < T; from += k) {
    const to = Math.min(from + k, T);
    let hasTerm = false;
    for (let t = from; t < to && !hasTerm; t++) hasTerm = bound.hasTerm?.(t) ?? true;
    let next: NetState;
    if (!hasTerm) {
      next = advanceWindow(net, state, xs, from, to, (t, y) => {
        ctx.observe?.(t, y);
      });
    } else {
      let carried: NetState | undefined;
      const start = state;
      const { value, grads } = paramGrads(net, () => {
        const p = net.prepare();
        const terms: Scalar[] = [];
        // Through the fused kernels where the network runs fused: a few nodes on the tape
        // instead of a dozen per step.
        carried = unrollWindow(net, p, start, xs, from, to, (t, y) => {
          ctx.observe?.(t, y);
          const term = step(y, t);
          if (term) terms.push(term);
        });
        keepTree(carried as never);
        return tf.addN(terms) as Scalar;
      });
      next = carried!;
      loss += readScalar(value);
      if (update) {
        applyAndDispose(ctx, grads);
        updates++;
      } else {
        acc = accumulateGrads(acc, grads);
      }
    }
    disposeTree(state as never, next as never);
    state = next;
  }
  disposeTree(state as never);
  if (!update) {
    applyAndDispose(ctx, acc ?? {});
    updates++;
  }
  return { loss, updates };
}

/**
 * Truncated gradient of a whole-sequence loss: a tape-free forward pass gives every y_t and the
 * state at each window start; ∂L/∂y_t comes from the loss alone; then each window is re-run on the
 * tape and seeded with Σ_t ⟨y_t, ∂L/∂y_t⟩, whose parameter gradient is exactly that window's share.
 */
function twoPass(net: Network, bound: BoundLoss, xs: Steps, k: number, ctx: RuleContext) {
  const T = xs.length;
  const B = xs.shape[0]!;
  const starts: NetState[] = [];
  const ys: Tensor[] = [];
  let state: NetState = net.init(B);
  for (let from = 0; from < T; from += k) {
    starts.push(state);
    state = advanceWindow(net, state, xs, from, Math.min(from + k, T), (t, y) => {
      ctx.observe?.(t, y);
      ys.push(y);
      return true;
    });
  }
  disposeTree(state as never, [...starts, ys] as never);
  let acc: NamedTensorMap | undefined;
  let loss = 0;
  try {
    const { value, grads: dy } = tf.valueAndGrads((...y: Tensor[]) => bound.sequence(y))(ys);
    loss = readScalar(value as Scalar);
    try {
      starts.forEach((start, w) => {
        const from = w * k;
        const to = Math.min(from + k, T);
        const { value: seed, grads } = paramGrads(net, () => {
          const p = net.prepare();
          if (p.fused) return tf.sum(tf.mul(net.runWindow(p, start, xs.window(from, to)).readout, tf.stack(dy.slice(from, to)))) as Scalar;
          const terms: Scalar[] = [];
          unroll(net, p, start, xs, from, to, (t, out) => terms.push(tf.sum(tf.mul(out.readout, dy[t]!))));
          return tf.addN(terms) as Scalar;
        });
        seed.dispose();
        acc = accumulateGrads(acc, grads);
      });
    } finally {
      disposeTree(dy);
    }
  } finally {
    disposeTree([...starts, ys] as never);
  }
  applyAndDispose(ctx, acc ?? {});
  return { loss, updates: 1 };
}


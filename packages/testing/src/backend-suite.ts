import { describe, expect, it } from 'vitest';
import {
  detach,
  disposeTree,
  fastSigmoid,
  multiGaussian,
  nonDifferentiableKernels,
  referenceKernels,
  spikeFn,
  tf,
  triangle,
  type Backend,
  type KernelName,
  type KernelRegistration,
  type KernelSignatures,
  type IntegrateFireSequenceParams,
  type IntegrateFireSequenceResult,
  type PresynapticTraces,
  type Tensor,
} from '@spikeflow/core';

/**
 * The largest difference of `a` from `b` relative to `b`'s largest entry. Read asynchronously:
 * a GPU backend may read only so (tfjs-webgpu in Node).
 */
async function maxRelDiff(a: Tensor, b: Tensor): Promise<number> {
  const [x, y] = await Promise.all([a.data(), b.data()]);
  let num = 0;
  let den = 0;
  for (let i = 0; i < y.length; i++) {
    num = Math.max(num, Math.abs(x[i]! - y[i]!));
    den = Math.max(den, Math.abs(y[i]!));
  }
  return den > 0 ? num / den : num;
}

/** 0/1 spikes with probability `p`. */
function spikes(shape: number[], p: number, seed: number): Tensor {
  return tf.tidy(() => tf.cast(tf.less(tf.randomUniform(shape, 0, 1, 'float32', seed), p), 'float32'));
}

/** One comparison of a kernel with its reference: tensor arguments, and how to call the kernel on them. */
export interface KernelCase {
  readonly name: string;
  readonly args: () => Tensor[];
  /** The kernel's output as one tensor (what the gradients are taken of). */
  readonly call: (impl: never, args: Tensor[]) => Tensor;
  /** Relative tolerance, where float32 sums over many terms (a shared β's gradient) need more than the suite's. */
  readonly tolerance?: number;
}

/**
 * An adaptive threshold for a case: ρ shared (`shared`) or one per neuron (`perNeuron`), the
 * adaptation before the window and the strength β_a; absent: none.
 */
type Adaptive = 'shared' | 'perNeuron' | undefined;

/** The adaptation's tensors of a case: a0 `[B, H]` (a few steps into a run: 0 to ~2) and ρ. */
function adaptationArgs(adaptive: Adaptive, B: number, H: number, seed: number): Tensor[] {
  if (!adaptive) return [];
  return [tf.randomUniform([B, H], 0, 2, 'float32', seed), adaptive === 'perNeuron' ? tf.randomUniform([H], 0.6, 0.98, 'float32', seed + 1) : tf.scalar(0.9)];
}

/**
 * Pairs of tensors that must be equal, found while a case's (synchronous) `call` ran, checked
 * afterwards by {@link checkPending} with asynchronous reads. Pairs made inside a tape (`tf.grads`)
 * are disposed by it before they can be checked; the check of the direct call covers them.
 */
const pending: [Tensor, Tensor, string][] = [];

async function checkPending(): Promise<void> {
  for (const [a, b, what] of pending.splice(0)) {
    if (a.isDisposed || b.isDisposed) continue;
    const [x, y] = await Promise.all([a.data(), b.data()]);
    expect(Array.from(x), what).toEqual(Array.from(y));
    disposeTree([a, b]);
  }
}

/**
 * A fused layer's output for comparison: its spikes, then (`withState`) its final state, each
 * checked to be values only (no gradient flows through it) and `s` the last step's spikes.
 */
function layerOutput(r: IntegrateFireSequenceResult, withState: boolean): Tensor {
  // The final state is values only: it must equal the last step of the window.
  const lastS = tf.tidy(() => tf.reshape(tf.slice(r.spikes, [r.spikes.shape[0]! - 1, 0, 0], [1, -1, -1]), r.final.s.shape));
  pending.push([r.final.s, lastS, "the final state's spikes are the last step's"]);
  const state = [r.final.v, ...(r.final.a ? [r.final.a] : [])];
  const out = withState ? tf.tidy(() => tf.concat([r.spikes, ...state.map((x) => tf.expandDims(x, 0))])) : r.spikes;
  disposeTree([r.final.v, r.final.a, ...(withState ? [r.spikes] : [])]);
  return out;
}

const lifCase = (
  name: string,
  o: {
    T?: number;
    B?: number;
    H?: number;
    rec?: boolean;
    recScale?: number;
    resetDetach?: boolean;
    perNeuron?: boolean;
    mean?: number;
    analogS0?: boolean;
    surrogate?: IntegrateFireSequenceParams['surrogate'];
    adaptive?: Adaptive;
    temporal?: false;
    traces?: TraceCase;
    tolerance?: number;
  } = {},
): KernelCase => {
  const {
    T = 7,
    B = 3,
    H = 6,
    rec = true,
    recScale = 0.5,
    resetDetach = false,
    perNeuron = false,
    mean = 0.4,
    analogS0 = false,
    surrogate = fastSigmoid({ slope: 5 }),
    adaptive,
    temporal,
  } = o;
  // The final state is compared too where a case has an adaptive threshold or no temporal path.
  const withState = adaptive !== undefined || temporal === false;
  return {
    name,
    ...(o.tolerance ? { tolerance: o.tolerance } : {}),
    args: () => [
      tf.randomNormal([T, B, H], mean, 0.8, 'float32', 11),
      tf.randomNormal([B, H], 0, 0.5, 'float32', 12),
      analogS0 ? tf.tidy(() => tf.mul(spikes([B, H], 0.3, 13), tf.randomUniform([B, H], -1, 2, 'float32', 16))) : spikes([B, H], 0.3, 13),
      perNeuron ? tf.randomUniform([H], 0.5, 0.95, 'float32', 15) : tf.scalar(0.85),
      ...(rec ? [tf.randomNormal([H, H], 0, recScale, 'float32', 14)] : []),
      ...adaptationArgs(adaptive, B, H, 17),
    ],
    call: (impl: KernelSignatures['spikeflow.integrateFireSequence'], [currents, v, s, beta, ...rest]) => {
      const wRec = rec ? rest[0] : undefined;
      const [a, rho] = rest.slice(rec ? 1 : 0);
      const r = withTraces(o.traces, B, H, H, (traces) =>
        impl(currents!, { v: v!, s: s!, ...(a ? { a } : {}) }, wRec, {
          beta: beta!,
          threshold: 0.7,
          resetDetach,
          surrogate,
          ...(rho ? { adaptation: { rho, strength: 0.4 } } : {}),
          ...(temporal === false ? { temporal } : {}),
          ...(traces ? { traces } : {}),
        }),
      );
      return layerOutput(r, withState);
    },
  } as KernelCase;
};

/**
 * Presynaptic traces of a case (OTTT's weight gradients): the decay λ and whether there are traces
 * before the window (`start`: the input's `[B, I]`, the recurrent input's `[B, H]` and the bias'
 * c, as a few steps into a sequence) or none (a sequence's first window).
 */
interface TraceCase {
  readonly decay: number;
  readonly start: boolean;
}

/**
 * Runs `f` with the traces of `c` for a window of `B` rows, `I` inputs and `H` neurons (no
 * recurrent trace where `H` is absent), made from fixed seeds, so the fast kernel and the
 * reference get the same ones; they are freed after `f` (a kernel keeps what its backward pass reads).
 */
function withTraces<R>(c: TraceCase | undefined, B: number, I: number, H: number | undefined, f: (traces: PresynapticTraces | undefined) => R): R {
  if (!c) return f(undefined);
  const made = c.start ? [tf.randomUniform([B, I], 0, 3, 'float32', 61), ...(H ? [tf.randomUniform([B, H], 0, 2, 'float32', 62)] : [])] : [];
  const [input, recurrent] = made;
  try {
    return f({ decay: c.decay, ...(input ? { input, bias: 2.7 } : {}), ...(recurrent ? { recurrent } : {}) });
  } finally {
    disposeTree(made);
  }
}

/** Input of a window: 0/1 spikes with probability `p`, or (`analog`) some of them scaled by other values. */
function windowInput(shape: number[], p: number, analog: boolean, seed: number): Tensor {
  return analog ? tf.tidy(() => tf.mul(spikes(shape, p, seed), tf.randomUniform(shape, -1, 2, 'float32', seed + 1))) : spikes(shape, p, seed);
}

const lifLayerCase = (
  name: string,
  o: {
    T?: number;
    B?: number;
    I?: number;
    H?: number;
    p?: number;
    analog?: boolean;
    bias?: boolean;
    rec?: boolean;
    resetDetach?: boolean;
    perNeuron?: boolean;
    adaptive?: Adaptive;
    temporal?: false;
    traces?: TraceCase;
    tolerance?: number;
  } = {},
): KernelCase => {
  const { T = 7, B = 3, I = 30, H = 37, p = 0.2, analog = false, bias = true, rec = true, resetDetach = false, perNeuron = false, adaptive, temporal } = o;
  const withState = adaptive !== undefined || temporal === false;
  return {
    name,
    ...(o.tolerance ? { tolerance: o.tolerance } : {}),
    args: () => [
      windowInput([T, B, I], p, analog, 21),
      tf.randomNormal([I, H], 0, 0.5, 'float32', 22),
      tf.randomNormal([B, H], 0, 0.5, 'float32', 23),
      spikes([B, H], 0.3, 24),
      perNeuron ? tf.randomUniform([H], 0.5, 0.95, 'float32', 25) : tf.scalar(0.85),
      ...(bias ? [tf.randomNormal([H], 0.2, 0.3, 'float32', 26)] : []),
      ...(rec ? [tf.randomNormal([H, H], 0, 0.3, 'float32', 27)] : []),
      ...adaptationArgs(adaptive, B, H, 28),
    ],
    call: (impl: KernelSignatures['spikeflow.integrateFireLayer'], [x, w, v, s, beta, ...rest]) => {
      const b = bias ? rest[0] : undefined;
      const wRec = rec ? rest[bias ? 1 : 0] : undefined;
      const [a, rho] = rest.slice((bias ? 1 : 0) + (rec ? 1 : 0));
      const r = withTraces(o.traces, B, I, rec ? H : undefined, (traces) =>
        impl(x!, w!, b, { v: v!, s: s!, ...(a ? { a } : {}) }, wRec, {
          beta: beta!,
          threshold: 0.7,
          resetDetach,
          surrogate: fastSigmoid({ slope: 5 }),
          ...(rho ? { adaptation: { rho, strength: 0.4 } } : {}),
          ...(temporal === false ? { temporal } : {}),
          ...(traces ? { traces } : {}),
        }),
      );
      return layerOutput(r, withState);
    },
  } as KernelCase;
};

const leakyReadoutCase = (
  name: string,
  o: { T?: number; B?: number; H?: number; O?: number; p?: number; analog?: boolean; bias?: boolean; temporal?: false; traces?: TraceCase } = {},
): KernelCase => {
  const { T = 6, B = 3, H = 40, O = 20, p = 0.15, analog = false, bias = true, temporal } = o;
  const options = temporal === false ? { temporal } : {};
  return {
    name,
    args: () => [
      windowInput([T, B, H], p, analog, 41),
      tf.randomNormal([H, O], 0, 1, 'float32', 42),
      tf.randomNormal([B, O], 0, 1, 'float32', 43),
      ...(bias ? [tf.randomNormal([O], 0, 1, 'float32', 44)] : []),
    ],
    call: (impl: KernelSignatures['spikeflow.leakyReadout'], [x, w, y0, b]) =>
      withTraces(o.traces, B, H, undefined, (traces) => impl(x!, w!, bias ? b : undefined, y0!, 0.8, { ...options, ...(traces ? { traces } : {}) })),
  } as KernelCase;
};

/**
 * `spikeflow.integrateFireEligibility` over windows of 3, 1 and 4 steps (every call in order, the
 * weights changing between windows, a carried signal from the second window on), as one tensor:
 * each window's spikes, final state, spike sums and gradients, flattened. Args: x `[8, B, I]`, and per window
 * W, b, W_rec (stacked), the signals m `[8, B, H]` and c `[3, B, H]`.
 */
const eligibilityCase = (
  name: string,
  o: {
    B?: number;
    I?: number;
    H?: number;
    resetDetach?: boolean;
    adaptive?: boolean;
    recurrent?: boolean;
    bias?: boolean;
    triangle?: boolean;
    p?: number;
  } = {},
): KernelCase => {
  const { B = 3, I = 30, H = 21, resetDetach = true, adaptive = false, recurrent = true, bias = true, p = 0.3 } = o;
  const windows = [3, 1, 4];
  return {
    name,
    args: () => [
      spikes([8, B, I], p, 51),
      tf.randomNormal([3, I, H], 0.1, 0.5, 'float32', 52),
      tf.randomNormal([3, H], 0.1, 0.2, 'float32', 53),
      tf.randomNormal([3, H, H], 0, 0.4, 'float32', 54),
      tf.randomNormal([8, B, H], 0, 1, 'float32', 55),
      tf.randomNormal([3, B, H], 0, 1, 'float32', 56),
    ],
    call: (impl: KernelSignatures['spikeflow.integrateFireEligibility'], [x, w, b, wRec, m, c]) =>
      tf.tidy(() => {
        const rho = tf.linspace(0.8, 0.95, H);
        const traces = impl({
          batch: B,
          inputs: I,
          size: H,
          recurrent,
          bias,
          kappa: 0.8,
          neuron: {
            beta: tf.scalar(0.85),
            threshold: 1,
            resetDetach,
            surrogate: o.triangle ? triangle({ width: 0.8 }) : fastSigmoid({ slope: 4 }),
            ...(adaptive ? { adaptation: { rho, strength: 0.5 } } : {}),
          },
        });
        const out: Tensor[] = [];
        let t0 = 0;
        windows.forEach((n, k) => {
          const at = (t: Tensor) => tf.squeeze(tf.slice(t, [k], [1]), [0]);
          const f = traces.forward(tf.slice(x!, [t0], [n]), at(w!), bias ? at(b!) : undefined, recurrent ? at(wRec!) : undefined);
          const g = traces.backward(tf.slice(m!, [t0], [n]), k > 0 ? at(c!) : undefined, k < windows.length - 1);
          out.push(f.spikes, f.final.v, ...(f.final.a ? [f.final.a] : []), f.filtered, f.count, g.w, ...(g.wRec ? [g.wRec] : []), ...(g.b ? [g.b] : []));
          t0 += n;
        });
        traces.dispose();
        return tf.concat(out.map((t) => tf.reshape(t, [-1])));
      }),
  } as KernelCase;
};

/**
 * Cases for each kernel: sparse 0/1 spikes and dense weights, and the edges — no spikes, all
 * spikes, one step, one batch row, no recurrence, the reset detached, a decay per neuron, a
 * surrogate other than the fast sigmoid. The values are compared outside a gradient tape (where a
 * fast kernel may take an inference path) and the gradients on one.
 */
export const kernelCases: { readonly [K in KernelName]: readonly KernelCase[] } = {
  'spikeflow.dense': [
    {
      name: '20% spikes',
      args: () => [spikes([16, 40], 0.2, 1), tf.randomNormal([40, 24], 0, 1, 'float32', 2)],
      call: (impl: KernelSignatures['spikeflow.dense'], [x, w]) => impl(x!, w!),
    } as KernelCase,
  ],
  // Presynaptic activity with zeros, ones and other values (analog inputs), over 6 steps and batch 3.
  'spikeflow.outerSum': [
    {
      name: 'mixed activity',
      args: () => [
        tf.tidy(() => {
          const u = tf.randomUniform([6, 3, 40], 0, 1, 'float32', 4);
          return tf.where(tf.less(u, 0.7), tf.zerosLike(u), tf.where(tf.less(u, 0.85), tf.onesLike(u), tf.mul(u, 3)));
        }),
        tf.randomNormal([6, 3, 24], 0, 1, 'float32', 5),
      ],
      call: (impl: KernelSignatures['spikeflow.outerSum'], [pre, post]) => impl(pre!, post!),
    } as KernelCase,
  ],
  'spikeflow.eventDense': (
    [
      ['5% spikes', [40, 30], 0.05],
      ['no spikes', [12, 30], 0],
      ['all spikes', [12, 30], 1],
      ['one row', [1, 30], 0.1],
      ['a dense input (past the event path)', [12, 30], 0.6],
      // The kernels read the input a slice of rows at a time: this one is found dense after a slice.
      ['a dense input of 3000 rows', [3000, 30], 0.6],
      ['3000 rows (work enough to split over threads)', [3000, 30], 0.1],
      ['30 000 rows (the weight gradient in chunks of rows)', [30000, 8], 0.3],
    ] as const
  )
    .map(
      ([name, shape, p]) =>
        ({
          name,
          args: () => [spikes([...shape], p, 1), tf.randomNormal([shape[1], 37], 0, 1, 'float32', 2)],
          call: (impl: KernelSignatures['spikeflow.eventDense'], [x, w]) => impl(x!, w!),
        }) as KernelCase,
    )
    .concat({
      // Analog input (zeros, ones and other values): the event values are multiplied, not only
      // added; 23 outputs, fewer than a block of 32 (5 groups of 4 and 3 single columns).
      name: 'analog values, 23 outputs',
      args: () => [
        tf.tidy(() => {
          const u = tf.randomUniform([500, 30], 0, 1, 'float32', 3);
          return tf.where(tf.less(u, 0.8), tf.zerosLike(u), tf.where(tf.less(u, 0.9), tf.onesLike(u), tf.mul(u, -2)));
        }),
        tf.randomNormal([30, 23], 0, 1, 'float32', 2),
      ],
      call: (impl: KernelSignatures['spikeflow.eventDense'], [x, w]) => impl(x!, w!),
    } as KernelCase),
  // Images [N, H, W, C] of spikes (or analog values) by w [kh, kw, C, O]: strides, both paddings,
  // kernels wider than tall, odd output counts (a SIMD tail), an empty and a dense input (tfjs' path).
  'spikeflow.eventConv2d': (
    [
      ['3×3, stride 1, same, 10% spikes', [4, 9, 8, 3], [3, 3, 3, 8], [1, 1], 'same', 0.1],
      ['5×5, stride 2, same, 5% spikes, 34×34×2 (the bench’s first layer)', [3, 34, 34, 2], [5, 5, 2, 16], [2, 2], 'same', 0.05],
      ['3×2, stride 2×3, valid, 7 outputs', [5, 11, 10, 2], [3, 2, 2, 7], [2, 3], 'valid', 0.2],
      ['2×2, stride 1, valid, 1 output', [2, 5, 6, 4], [2, 2, 4, 1], [1, 1], 'valid', 0.15],
      ['stride 3 wider than the kernel, same', [2, 10, 10, 3], [2, 2, 3, 5], [3, 3], 'same', 0.2],
      ['no spikes', [2, 6, 6, 2], [3, 3, 2, 4], [1, 1], 'same', 0],
      ['a dense input (tfjs’ convolution)', [2, 7, 7, 3], [3, 3, 3, 4], [2, 2], 'same', 0.7],
    ] as const
  )
    .map(
      ([name, xs, ws, stride, padding, p]) =>
        ({
          name,
          args: () => [spikes([...xs], p, 41), tf.randomNormal([...ws], 0, 1, 'float32', 42)],
          call: (impl: KernelSignatures['spikeflow.eventConv2d'], [x, w]) => impl(x!, w!, { stride, padding }),
        }) as KernelCase,
    )
    .concat({
      // Analog input: event values are multiplied, not only added.
      name: 'analog values, 3×3, stride 2, valid',
      args: () => [
        tf.tidy(() => {
          const u = tf.randomUniform([3, 9, 9, 2], 0, 1, 'float32', 43);
          return tf.where(tf.less(u, 0.8), tf.zerosLike(u), tf.mul(u, -3));
        }),
        tf.randomNormal([3, 3, 2, 6], 0, 1, 'float32', 44),
      ],
      call: (impl: KernelSignatures['spikeflow.eventConv2d'], [x, w]) => impl(x!, w!, { stride: [2, 2], padding: 'valid' }),
    } as KernelCase),
  // Spikes tie in most windows (the first maximum gets the gradient); analog values too; tiling,
  // overlapping and gapped windows, rows and columns left over, channel counts off the SIMD width.
  'spikeflow.maxPool': (
    [
      ['2×2 tiling, spikes, 17×17×16 (rows and columns left over)', [3, 17, 17, 16], [2, 2], [2, 2], 0.3],
      ['3×3 overlapping (stride 1), spikes, 5 channels', [2, 7, 8, 5], [3, 3], [1, 1], 0.4],
      ['2×3 at stride 3×2 (gaps and overlaps), analog', [2, 9, 10, 6], [2, 3], [3, 2], -1],
      ['1×1, one channel', [2, 4, 4, 1], [1, 1], [1, 1], 0.5],
      ['all zeros (every window ties)', [2, 6, 6, 4], [2, 2], [2, 2], 0],
    ] as const
  ).map(
    ([name, xs, size, stride, p]) =>
      ({
        name,
        args: () => [p < 0 ? tf.randomNormal([...xs], 0, 1, 'float32', 51) : spikes([...xs], p, 52)],
        call: (impl: KernelSignatures['spikeflow.maxPool'], [x]) => impl(x!, { size, stride }),
      }) as KernelCase,
  ),
  'spikeflow.integrateFireSequence': [
    lifCase('recurrent, reset attached'),
    lifCase('recurrent, reset detached', { resetDetach: true }),
    lifCase('feed-forward', { rec: false }),
    lifCase('per-neuron β', { perNeuron: true }),
    lifCase('no spikes', { mean: -3 }),
    lifCase('all spikes', { mean: 5 }),
    lifCase('T = 1', { T: 1 }),
    lifCase('batch 1', { B: 1 }),
    lifCase('odd sizes (B 5, H 37)', { B: 5, H: 37 }),
    // The shared β's gradient sums 33 120 float32 terms (the reference in float32 order, the kernel in float64).
    lifCase('work enough to split over threads (T 16, B 9, H 230)', { T: 16, B: 9, H: 230, mean: 0.1, tolerance: 1e-4 }),
    lifCase('triangle surrogate', { surrogate: triangle({ width: 0.8 }) }),
    // A state to start from that is not 0/1 (the recurrent product multiplies, not only adds), over more than 32 neurons.
    lifCase('analog initial spikes (H 40)', { H: 40, analogS0: true }),
    // ~0.1% of 655 360 neuron-steps spike: the threads list adjacent ranges of few events,
    // where one writing past its range would overwrite the next one's (the weight gradient).
    lifCase('sparse spikes over a long window (T 40, B 64, H 256)', { T: 40, B: 64, H: 256, mean: -0.8, recScale: 0.02, perNeuron: true }),
    // An adaptive threshold: the state carries a, ρ shared or per neuron gets its gradient like β.
    lifCase('adaptive threshold, recurrent, reset attached', { adaptive: 'shared' }),
    lifCase('adaptive threshold, per-neuron β and ρ, reset detached', { adaptive: 'perNeuron', perNeuron: true, resetDetach: true }),
    lifCase('adaptive threshold, feed-forward, triangle surrogate', { adaptive: 'perNeuron', rec: false, surrogate: triangle({ width: 0.8 }) }),
    lifCase('adaptive threshold, T = 1, batch 1', { adaptive: 'shared', T: 1, B: 1 }),
    lifCase('adaptive threshold, odd sizes (B 5, H 37), analog initial spikes', { adaptive: 'perNeuron', B: 5, H: 37, analogS0: true }),
    lifCase('adaptive threshold, work enough to split over threads (T 16, B 9, H 230)', {
      adaptive: 'shared',
      T: 16,
      B: 9,
      H: 230,
      mean: 0.3,
      recScale: 0.1,
      tolerance: 1e-4,
    }),
    // No temporal path: each step on its own (SLTT's and OTTT's spatial gradient); no gradient to the initial state.
    lifCase('no temporal path, recurrent, reset attached', { temporal: false }),
    lifCase('no temporal path, per-neuron β, reset detached, triangle surrogate', {
      temporal: false,
      perNeuron: true,
      resetDetach: true,
      surrogate: triangle({ width: 0.8 }),
    }),
    lifCase('no temporal path, adaptive threshold, per-neuron ρ', { temporal: false, adaptive: 'perNeuron' }),
    // The shared ρ's gradient here sums 126 float32 terms of either sign, each up to ~16× the sum:
    // the reference's float32 sum and the kernel's float64 one differ by ~3e-5 of it.
    lifCase('no temporal path, adaptive threshold, reset detached, triangle surrogate', {
      temporal: false,
      adaptive: 'shared',
      resetDetach: true,
      surrogate: triangle({ width: 0.8 }),
      tolerance: 1e-4,
    }),
    // Presynaptic traces (OTTT): W_rec's gradient pairs g filtered backward in time with s_{t−1}, plus the trace before the window.
    lifCase('presynaptic traces, no temporal path', { temporal: false, traces: { decay: 0.8, start: true } }),
    lifCase('presynaptic traces, first window, temporal path, adaptive threshold', { traces: { decay: 0.9, start: false }, adaptive: 'perNeuron' }),
    lifCase('presynaptic traces, T = 1, λ = 0', { T: 1, temporal: false, traces: { decay: 0, start: true } }),
    lifCase('presynaptic traces, all spikes (a dense W_rec gradient), T 16, B 9, H 230', {
      temporal: false,
      traces: { decay: 0.85, start: true },
      T: 16,
      B: 9,
      H: 230,
      mean: 5,
      tolerance: 1e-4,
    }),
    lifCase('no temporal path, adaptive threshold, work enough to split over threads (T 16, B 9, H 230)', {
      temporal: false,
      adaptive: 'perNeuron',
      perNeuron: true,
      T: 16,
      B: 9,
      H: 230,
      mean: 0.3,
      recScale: 0.1,
      tolerance: 1e-4,
    }),
  ],
  'spikeflow.integrateFireLayer': [
    lifLayerCase('spikes, bias, recurrent, 37 neurons (a block of 32 and 5 more)'),
    lifLayerCase('no bias, feed-forward', { bias: false, rec: false }),
    lifLayerCase('analog input', { analog: true }),
    lifLayerCase('no input events', { p: 0 }),
    lifLayerCase('a dense input (past the event path)', { p: 0.9 }),
    lifLayerCase('reset detached, per-neuron β', { resetDetach: true, perNeuron: true }),
    lifLayerCase('T = 1', { T: 1 }),
    lifLayerCase('batch 1', { B: 1 }),
    lifLayerCase('work enough to split over threads (T 16, B 9, I 200, H 230)', { T: 16, B: 9, I: 200, H: 230, p: 0.05, perNeuron: true }),
    // 1500 rows of 700 inputs: the input product is split over threads, each in blocks of rows.
    lifLayerCase('1500 rows of 700 inputs (the product in blocks of rows)', { T: 30, B: 50, I: 700, H: 40, p: 0.05, perNeuron: true }),
    lifLayerCase('adaptive threshold, bias, recurrent', { adaptive: 'shared' }),
    lifLayerCase('adaptive threshold, per-neuron β and ρ, reset detached, no bias', { adaptive: 'perNeuron', perNeuron: true, resetDetach: true, bias: false }),
    lifLayerCase('adaptive threshold, work enough to split over threads (T 16, B 9, I 200, H 230)', {
      adaptive: 'perNeuron',
      T: 16,
      B: 9,
      I: 200,
      H: 230,
      p: 0.05,
      tolerance: 1e-4,
    }),
    lifLayerCase('no temporal path, recurrent', { temporal: false }),
    lifLayerCase('no temporal path, adaptive threshold, per-neuron ρ, reset detached', { temporal: false, adaptive: 'perNeuron', resetDetach: true }),
    // Presynaptic traces (OTTT): W's, b's and W_rec's gradients from the traces, the input's gradient from g itself.
    lifLayerCase('presynaptic traces, no temporal path, traces before the window', { temporal: false, traces: { decay: 0.8, start: true } }),
    lifLayerCase('presynaptic traces, first window, feed-forward, no bias', { temporal: false, traces: { decay: 0.6, start: false }, rec: false, bias: false }),
    lifLayerCase('presynaptic traces, analog input, temporal path, adaptive threshold', {
      analog: true,
      traces: { decay: 0.9, start: true },
      adaptive: 'shared',
    }),
    lifLayerCase('presynaptic traces, a dense input (past the event path), λ = 1', { p: 0.9, temporal: false, traces: { decay: 1, start: true } }),
    lifLayerCase('presynaptic traces, T = 1, batch 1', { T: 1, B: 1, temporal: false, traces: { decay: 0.7, start: true } }),
    lifLayerCase('presynaptic traces, work enough to split over threads (T 16, B 9, I 200, H 230)', {
      T: 16,
      B: 9,
      I: 200,
      H: 230,
      p: 0.05,
      perNeuron: true,
      temporal: false,
      traces: { decay: 0.85, start: true },
      tolerance: 1e-4,
    }),
  ],
  'spikeflow.leakyReadout': [
    leakyReadoutCase('spikes, 20 outputs, bias'),
    leakyReadoutCase('37 outputs, no bias', { O: 37, bias: false }),
    leakyReadoutCase('analog input', { analog: true }),
    leakyReadoutCase('T = 1, batch 1', { T: 1, B: 1 }),
    leakyReadoutCase('a dense input (past the event path)', { p: 0.9 }),
    leakyReadoutCase('work enough to split over threads (T 40, B 16, H 256, 20 outputs)', { T: 40, B: 16, H: 256, p: 0.1 }),
    leakyReadoutCase('no temporal path (∂d_t = ∂y_t, no gradient to y0)', { temporal: false }),
    leakyReadoutCase('presynaptic traces, no temporal path, traces before the window', { temporal: false, traces: { decay: 0.8, start: true } }),
    leakyReadoutCase('presynaptic traces, first window, temporal path, no bias', { bias: false, traces: { decay: 0.8, start: false } }),
    leakyReadoutCase('presynaptic traces, a dense analog input, T = 1', { p: 0.9, analog: true, T: 1, temporal: false, traces: { decay: 0.5, start: true } }),
    leakyReadoutCase('presynaptic traces, work enough to split over threads (T 40, B 16, H 256)', {
      T: 40,
      B: 16,
      H: 256,
      p: 0.1,
      temporal: false,
      traces: { decay: 0.9, start: true },
    }),
  ],
  'spikeflow.integrateFireEligibility': [
    eligibilityCase('reset detached, recurrent, bias'),
    eligibilityCase('reset attached', { resetDetach: false }),
    eligibilityCase('adaptive threshold, reset attached, triangle surrogate', { adaptive: true, resetDetach: false, triangle: true }),
    eligibilityCase('adaptive threshold, feed-forward, no bias, batch 1', { adaptive: true, recurrent: false, bias: false, B: 1 }),
    eligibilityCase('no input events', { p: 0 }),
    eligibilityCase('work enough to split over threads (B 24, I 200, H 70)', { B: 24, I: 200, H: 70, adaptive: true, p: 0.1 }),
  ],
  // The trace after a window: from a trace before it or none, λ in (0, 1), 0 and 1, spikes and analog values, one step.
  'spikeflow.decayedSum': (
    [
      ['spikes, a trace before the window', [9, 4, 37], 0.2, false, 0.85, true],
      ['spikes, no trace before the window (a sequence’s first)', [9, 4, 37], 0.2, false, 0.85, false],
      ['analog values, λ = 0 (the last step)', [5, 3, 30], 0.5, true, 0, true],
      ['λ = 1 (a plain sum), one step', [1, 2, 23], 0.5, true, 1, true],
      ['the bench’s input window (64 steps, batch 64, 700 inputs at 5%)', [64, 64, 700], 0.05, false, 0.9, true],
    ] as const
  ).map(
    ([name, shape, p, analog, decay, before]) =>
      ({
        name,
        args: () => [windowInput([...shape], p, analog, 71), tf.randomUniform([shape[1], shape[2]], 0, 2, 'float32', 72)],
        call: (impl: KernelSignatures['spikeflow.decayedSum'], [x, a0]) => impl(x!, decay, before ? a0 : undefined),
      }) as KernelCase,
  ),
  // Adam's first update and a later one, other β's and ε, a parameter of odd size (SIMD lanes and the rest).
  'spikeflow.adamMoments': (
    [
      ['first update, [37]', [37], { beta1: 0.9, beta2: 0.999, eps: 1e-8, count: 1 }],
      ['update 7 of a [700, 33] weight', [700, 33], { beta1: 0.9, beta2: 0.999, eps: 1e-8, count: 7 }],
      ['β1 0.8, β2 0.99, ε 1e-6, update 1000, [5]', [5], { beta1: 0.8, beta2: 0.99, eps: 1e-6, count: 1000 }],
    ] as const
  ).map(
    ([name, shape, p]) =>
      ({
        name,
        args: () => [
          tf.randomNormal([...shape], 0, 1, 'float32', 81),
          tf.randomNormal([...shape], 0, 0.1, 'float32', 82),
          tf.randomUniform([...shape], 0, 0.01, 'float32', 83),
        ],
        call: (impl: KernelSignatures['spikeflow.adamMoments'], [g, mu, nu]) =>
          tf.tidy(() => {
            const r = impl(g!, mu!, nu!, p);
            return tf.stack([r.update, r.mu, r.nu]);
          }),
      }) as KernelCase,
  ),
  // The dual form's pull (σ = 1), the textbook form's (σ = ½), and a parameter the loss does not reach (no g).
  'spikeflow.fpttPull': (
    [
      ['dual form, [33, 7]', [33, 7], 0.1, 1, true],
      ['textbook form, [701]', [701], 0.5, 0.5, true],
      ['no loss gradient, [3]', [3], 0.1, 1, false],
    ] as const
  ).map(
    ([name, shape, alpha, shiftScale, withG]) =>
      ({
        name,
        args: () => [0, 1, 2, 3].map((i) => tf.randomNormal([...shape], 0, 1, 'float32', 91 + i)),
        call: (impl: KernelSignatures['spikeflow.fpttPull'], [g, w, wbar, shift]) => impl(withG ? g : undefined, w!, wbar!, shift!, { alpha, shiftScale }),
      }) as KernelCase,
  ),
  'spikeflow.fpttAnchor': (
    [
      ['α 0.1, β 0.5, [33, 7]', [33, 7], 0.1, 0.5],
      ['α 0.5, β 0.9, [701]', [701], 0.5, 0.9],
    ] as const
  ).map(
    ([name, shape, alpha, beta]) =>
      ({
        name,
        args: () => [0, 1, 2].map((i) => tf.randomNormal([...shape], 0, 1, 'float32', 101 + i)),
        call: (impl: KernelSignatures['spikeflow.fpttAnchor'], [w, wbar, lambda]) =>
          tf.tidy(() => {
            const r = impl(w!, wbar!, lambda!, { alpha, beta });
            return tf.stack([r.wbar, r.lambda]);
          }),
      }) as KernelCase,
  ),
  // FPTT's whole update with Adam: the first update and a later one at another rate, and a parameter the loss does not reach (no g).
  'spikeflow.fpttAdamStep': (
    [
      ['first update, α 0.1, β 0.5, [33, 7]', [33, 7], { alpha: 0.1, beta: 0.5, beta1: 0.9, beta2: 0.999, eps: 1e-8, count: 1, lr: 1e-3 }, true],
      ['update 40, α 0.5, β 0.9, lr 0.02, [701]', [701], { alpha: 0.5, beta: 0.9, beta1: 0.9, beta2: 0.999, eps: 1e-8, count: 40, lr: 0.02 }, true],
      ['no loss gradient, [3]', [3], { alpha: 0.1, beta: 0.5, beta1: 0.8, beta2: 0.99, eps: 1e-6, count: 3, lr: 1e-3 }, false],
    ] as const
  ).map(
    ([name, shape, p, withG]) =>
      ({
        name,
        args: () => [
          ...[0, 1, 2, 3, 4].map((i) => tf.randomNormal([...shape], 0, i === 4 ? 0.1 : 1, 'float32', 111 + i)),
          tf.randomUniform([...shape], 0, 0.01, 'float32', 116),
        ],
        call: (impl: KernelSignatures['spikeflow.fpttAdamStep'], [g, w, wbar, lambda, mu, nu]) =>
          tf.tidy(() => {
            const r = impl(withG ? g : undefined, w!, wbar!, lambda!, mu!, nu!, p);
            return tf.stack([r.w, r.wbar, r.lambda, r.mu, r.nu]);
          }),
      }) as KernelCase,
  ),
  // TSSL-BP's neurons: currents around the threshold (silent neurons, single and repeated spikes,
  // the fallback and the 1/Δu cap), τ_m and τ_s as the authors' MNIST and N-MNIST networks.
  'spikeflow.spikeTimingSequence': (
    [
      [5, 3, 5, 3],
      [12, 2, 8, 4],
      [1, 4, 5, 3],
    ] as const
  ).map(
    ([T, B, tauM, tauS]) =>
      ({
        name: `T = ${T}, B = ${B}, τ_m = ${tauM}, τ_s = ${tauS}`,
        args: () => [tf.randomUniform([T, B, 7], -0.3, 1.4, 'float32', 41 + T)],
        call: (impl: KernelSignatures['spikeflow.spikeTimingSequence'], [x]) => impl(x!, { tauM, tauS, threshold: 1 }).psp,
      }) as KernelCase,
  ),
  // One LTC-SN step: adaptive and fixed thresholds, pre-activations and currents that make some
  // neurons fire and others not, the sharper multi-Gaussian surrogate (LTC-SN's own) and a triangle.
  'spikeflow.ltcStep': (
    [
      ['adaptive threshold (b_0 0.1, β 1.8), multi-Gaussian surrogate, [4, 37]', [4, 37], true, 'multi'],
      ['adaptive threshold, triangle surrogate, [1, 5]', [1, 5], true, 'triangle'],
      ['fixed threshold θ 0.5, [3, 130]', [3, 130], false, 'multi'],
    ] as const
  ).map(
    ([name, shape, adaptive, surrogate]) =>
      ({
        name,
        // z_α, I, u, then (adaptive) z_ρ, b, s: every argument reaches the output (the suite takes the gradient of each).
        args: () => [
          tf.randomNormal([...shape], 0, 2, 'float32', 111),
          tf.randomUniform([...shape], -0.5, 2, 'float32', 113),
          tf.randomUniform([...shape], 0, 1, 'float32', 114),
          ...(adaptive
            ? [tf.randomNormal([...shape], 0, 2, 'float32', 112), tf.randomUniform([...shape], 0, 0.5, 'float32', 115), spikes([...shape], 0.3, 116)]
            : []),
        ],
        call: (impl: KernelSignatures['spikeflow.ltcStep'], [zA, cur, u, zR, b, s]) =>
          tf.tidy(() => {
            const p = {
              threshold: adaptive ? 0.1 : 0.5,
              strength: adaptive ? 1.8 : 0,
              surrogate: surrogate === 'multi' ? multiGaussian({ sigma: 0.3, height: 0.15, scale: 6, gamma: 0.5 }) : triangle({ gamma: 0.5, width: 2 }),
            };
            // The fixed variant reads neither s_{t−1} nor b: u stands in for s, unread.
            const r = impl(zA!, adaptive ? zR : undefined, cur!, adaptive ? { u: u!, s: s!, b: b! } : { u: u!, s: u! }, p);
            return tf.stack([r.u, r.s, ...(r.b ? [r.b] : [])]);
          }),
      }) as KernelCase,
  ),
  'spikeflow.leakyScan': (
    [
      [6, 3, true],
      [1, 2, true],
      [4, 1, true],
      [6, 3, false],
    ] as const
  ).map(
    ([T, B, temporal]) =>
      ({
        name: `T = ${T}, B = ${B}${temporal ? '' : ', no temporal path'}`,
        args: () => [tf.randomNormal([T, B, 5], 0, 1, 'float32', 31), tf.randomNormal([B, 5], 0, 1, 'float32', 32)],
        call: (impl: KernelSignatures['spikeflow.leakyScan'], [d, y0]) => impl(d!, y0!, 0.8, temporal ? {} : { temporal: false }),
      }) as KernelCase,
  ),
};

/**
 * Checks fast kernels against core's composite references on the active backend: for every case,
 * values and the gradient of every argument, and no tensor left behind by a second forward and
 * backward pass. `setup` activates the backend the registrations are for.
 */
export function describeKernels(registrations: readonly KernelRegistration[], setup: () => Promise<void> | void, tolerance = 2e-5): void {
  for (const reg of registrations) {
    describe(`kernel ${reg.kernel}@${reg.backend} equals the composite reference`, () => {
      for (const c of kernelCases[reg.kernel]) {
        it(`${c.name}: values${nonDifferentiableKernels.has(reg.kernel) ? '' : ' and gradients'}`, async () => {
          await setup();
          expect(tf.getBackend()).toBe(reg.backend);
          const fast = (...a: Tensor[]) => c.call(reg.impl as never, a);
          const ref = (...a: Tensor[]) => c.call(referenceKernels[reg.kernel] as never, a);
          const args = c.args();
          const yf = fast(...args);
          const yr = ref(...args);
          await checkPending();
          expect(yf.shape).toEqual(yr.shape);
          const tol = c.tolerance ?? tolerance;
          expect(await maxRelDiff(yf, yr)).toBeLessThan(tol);
          if (nonDifferentiableKernels.has(reg.kernel)) {
            const steady = tf.memory().numTensors;
            fast(...args).dispose();
            expect(tf.memory().numTensors).toBe(steady);
            disposeTree([yf, yr, args]);
            return;
          }
          const dy = tf.randomNormal(yr.shape, 0, 1, 'float32', 3);
          const gf = tf.grads((...a: Tensor[]) => tf.sum(tf.mul(fast(...a), dy)))(args);
          const gr = tf.grads((...a: Tensor[]) => tf.sum(tf.mul(ref(...a), dy)))(args);
          for (const [i, g] of gf.entries()) {
            expect(g.shape, `gradient of argument ${i}`).toEqual(args[i]!.shape);
            expect(await maxRelDiff(g, gr[i]!), `gradient of argument ${i}`).toBeLessThan(tol);
          }
          await checkPending();
          disposeTree([yf, yr, dy, gf, gr]);
          // No leak: a second forward and backward leaves the tensor count where the first left it
          // (a kernel may cache per-weight data, such as a transpose, but must not grow).
          const steady = tf.memory().numTensors;
          const again = tf.grads((...a: Tensor[]) => tf.sum(fast(...a)))(args);
          disposeTree(again);
          expect(tf.memory().numTensors).toBe(steady);
          disposeTree(args);
        });
      }
    });
  }
}

/**
 * The backend battery every backend plugin runs: it activates, `tf.grad` and custom gradients
 * work, and each fast kernel it registers equals core's composite reference on every case of
 * {@link kernelCases}, values and gradients of every argument (values only for kernels used
 * outside the tape).
 */
export function describeBackend(backend: Backend): void {
  describe(`backend conformance: ${backend.name}`, () => {
    it('is available, activates, and describes itself', async () => {
      expect(await backend.isAvailable()).toBe(true);
      await backend.activate();
      const info = backend.describe();
      expect(tf.getBackend()).toBe(info.tfBackend);
      expect(info.threads).toBeGreaterThanOrEqual(1);
      expect(info.device.length).toBeGreaterThan(0);
    });

    it('tf.grad works: d/dx Σ x³ = 3x²', async () => {
      await backend.activate();
      const x = tf.tensor1d([-2, -0.5, 0, 1.5]);
      const g = tf.grad((v: Tensor) => tf.sum(tf.pow(v, 3)))(x);
      expect(Array.from(await g.data())).toEqual([12, 0.75, 0, 6.75]);
      disposeTree([x, g]);
    });

    it('custom gradients work: spike op backward and detach', async () => {
      await backend.activate();
      const s = fastSigmoid({ slope: 4 });
      const x = tf.tensor1d([-1, -0.25, 0.5, 2]);
      const g = tf.grad((v: Tensor) => tf.sum(spikeFn(s)(v)))(x);
      const d = s.derivative(x);
      expect(await maxRelDiff(g, d)).toBeLessThan(1e-6);
      const gd = tf.grad((v: Tensor) => tf.sum(tf.add(v, detach(tf.mul(v, 3)))))(x);
      expect(Array.from(await gd.data())).toEqual([1, 1, 1, 1]);
      disposeTree([x, g, d, gd]);
    });

    it('its kernels are for its own tfjs backend', async () => {
      await backend.activate();
      for (const reg of backend.kernels ?? []) expect(reg.backend).toBe(backend.describe().tfBackend);
    });

    describeKernels(backend.kernels ?? [], () => backend.activate());
  });
}

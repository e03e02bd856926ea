import { tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';
import { spikeFn, type Surrogate } from './surrogates.js';
import { tidy } from './state.js';
import { maxPoolFirst } from './conv.js';
import { spikeTimingSequence, type SpikeTimingParams, type SpikeTimingSequence } from './spike-timing.js';
import { integrateFireEligibilityReference, type EligibilitySpec, type EligibilityTraces } from './eligibility.js';
import {
  adamMomentsReference,
  fpttAnchorReference,
  fpttAdamStepReference,
  fpttPullReference,
  type AdamMomentsParams,
  type AdamMomentsResult,
  type FpttAnchorParams,
  type FpttAnchorResult,
  type FpttAdamStepParams,
  type FpttAdamStepResult,
  type FpttPullParams,
} from './updates.js';

/** Identity forward, zero gradient backward. */
export const detach: (x: Tensor) => Tensor = tf.customGrad((x) => ({
  value: tf.clone(x as Tensor),
  gradFunc: (dy: Tensor) => tf.zerosLike(dy),
})) as (x: Tensor) => Tensor;

/**
 * An integrate-and-fire layer as {@link KernelSignatures | `spikeflow.integrateFireSequence`} runs it,
 * for every step t of a window, from the layer's input current `c_t` (feed-forward product and
 * bias, computed for the whole window beforehand):
 *
 *     a_t = ρ·a_{t−1} + s_{t−1}             (with an adaptive threshold only)
 *     I_t = c_t + s_{t−1}·W_rec            (no W_rec: I_t = c_t)
 *     v_t = β·v_{t−1} + I_t − ϑ·r_{t−1}    r = s, a constant in the backward pass if resetDetach
 *     s_t = H(v_t − ϑ − β_a·a_t)            surrogate derivative ψ(v_t − ϑ − β_a·a_t) in the backward pass
 *
 * Without an adaptive threshold the a-terms vanish (β_a·a_t = 0).
 */
export interface IntegrateFireSequenceParams {
  /** β: a scalar, or one decay per neuron `[H]` (trainable where the neuron lets it learn its decay). */
  readonly beta: Tensor;
  readonly threshold: number;
  readonly resetDetach: boolean;
  readonly surrogate: Surrogate;
  /**
   * An adaptive threshold: ρ, a scalar or one decay per neuron `[H]` (trainable where the neuron
   * lets it learn it), and the strength β_a. The state then carries `a` (`[B, H]`).
   */
  readonly adaptation?: { readonly rho: Tensor; readonly strength: number };
  /**
   * `false`: the backward pass drops every temporal path — the state carried into each step (v,
   * a, s, and the previous spikes through W_rec and the reset) is a constant of that step, so the
   * gradient of step t's input reaches only what step t's spikes feed (SLTT, OTTT). W_rec still gets
   * its gradient, with s_{t−1} as its input. Default `true` (BPTT).
   */
  readonly temporal?: boolean;
  /**
   * Presynaptic traces in the weight gradients (OTTT): `W_rec`'s gradient pairs the currents'
   * gradient with the trace of s_{t−1} (`recurrent`), and in `spikeflow.integrateFireLayer` W's
   * and b's with the traces of the input (`input`) and of a constant 1 (`bias`); see
   * {@link PresynapticTraces}. Default: none (the inputs themselves).
   */
  readonly traces?: PresynapticTraces;
}

/**
 * Presynaptic traces for a window's weight gradients (Xiao et al., "Online Training Through Time
 * for Spiking Neural Networks", NeurIPS 2022): a synapse whose input at step t is x_t keeps
 *
 *     â_t = λ·â_{t−1} + x_t
 *
 * and its weight gets Σ_t â_tᵀ·g_t in place of Σ_t x_tᵀ·g_t (g_t: the gradient of the product
 * x_t·W); a bias, whose input is 1, gets Σ_t c_t·Σ_b g_t with c_t = λ·c_{t−1} + 1. The gradient
 * to the input itself stays g_t·Wᵀ. The fields are the traces before the window's first step t0:
 * â_{t0−1} (values: no gradient flows into them), c_{t0−1}. Over the window this is
 * Σ_τ x_τᵀ·ĝ_τ + λ·â_{t0−1}ᵀ·ĝ_{t0} with ĝ_τ = g_τ + λ·ĝ_{τ+1} (g filtered backward in time): what
 * a fast kernel may compute instead.
 */
export interface PresynapticTraces {
  /** λ, the traces' decay per step, in [0, 1]. */
  readonly decay: number;
  /** The trace of the feed-forward input (`x`) before the window, `[B, I]`; omitted: zero. */
  readonly input?: Tensor;
  /** The trace of the recurrent input (s_{t−1}, what W_rec multiplies) before the window, `[B, H]`; omitted: zero. */
  readonly recurrent?: Tensor;
  /** The bias' trace c before the window (default 0). */
  readonly bias?: number;
}

/** A layer's state between windows: membrane and spikes, and the adaptation with an adaptive threshold. */
export interface IntegrateFireState {
  readonly v: Tensor;
  readonly s: Tensor;
  readonly a?: Tensor;
}

/** Options of the leaky readout's kernels (`spikeflow.leakyScan`, `spikeflow.leakyReadout`). */
export interface LeakyScanOptions {
  /**
   * `false`: the backward pass drops the temporal path — y_{t−1} is a constant of step t, so
   * ∂L/∂d_t = ∂L/∂y_t and y0 gets no gradient (as the layers' `temporal: false`). Default `true`.
   */
  readonly temporal?: boolean;
}

/** Options of `spikeflow.leakyReadout`: {@link LeakyScanOptions}, and presynaptic traces in the weight gradients of W and b. */
export interface LeakyReadoutOptions extends LeakyScanOptions {
  /** Presynaptic traces (OTTT) of the input and the bias (`input`, `bias`; see {@link PresynapticTraces}). Default: none. */
  readonly traces?: PresynapticTraces;
}

/** What `spikeflow.integrateFireSequence` returns. */
export interface IntegrateFireSequenceResult {
  /** s_t for every step, `[T, B, H]`: differentiable with respect to every input. */
  readonly spikes: Tensor;
  /**
   * The state after the last step, `[B, H]` each (`a` with an adaptive threshold), to carry into
   * the next window. Values only: no gradient flows back through it (rules that carry state across
   * windows detach it anyway).
   */
  readonly final: IntegrateFireState;
}

/**
 * One step of a layer of liquid-time-constant spiking neurons (Yin, Corradi & Bohté 2023), as
 * `spikeflow.ltcStep` computes it from the gates' pre-activations z_α and z_ρ (`[I_t ; u_{t−1}]·W_α + b_α`
 * and `[I_t ; b_{t−1}]·W_ρ + b_ρ`, made by the caller), the input current I_t and the state
 * (u, s, b) before the step:
 *
 *     α_t = σ(z_α)                         ρ_t = σ(z_ρ)            (adaptive threshold only)
 *     b_t = ρ_t·b_{t−1} + (1 − ρ_t)·s_{t−1}   θ_t = `threshold` + `strength`·b_t
 *     v_t = u_{t−1} + α_t·(I_t − u_{t−1})
 *     s_t = H(v_t − θ_t)                   surrogate derivative ψ(v_t − θ_t) in the backward pass
 *     u_t = (1 − s_t)·v_t                  the reset through s_t, so through the surrogate too
 *
 * Without an adaptive threshold (no z_ρ), θ = `threshold` and the step neither reads nor returns
 * b and s_{t−1}.
 */
export interface LtcStepParams {
  /** The baseline b_0 of an adaptive threshold, or the constant threshold θ. */
  readonly threshold: number;
  /** β: the threshold's rise per unit of b (adaptive threshold only). */
  readonly strength: number;
  readonly surrogate: Surrogate;
}

/** The state of a layer of LTC-SN neurons: membrane u and spikes s, and the adaptation b with an adaptive threshold, `[B, H]` each. */
export interface LtcStepState {
  readonly u: Tensor;
  readonly s: Tensor;
  readonly b?: Tensor;
}

const spikeOps = new WeakMap<Surrogate, (x: Tensor) => Tensor>();

/** `spikeflow.ltcStep` in plain tfjs ops, in the order of the equations of {@link LtcStepParams}. */
export function ltcStepReference(zAlpha: Tensor, zRho: Tensor | undefined, current: Tensor, state: LtcStepState, p: LtcStepParams): LtcStepState {
  const fire = spikeOps.get(p.surrogate) ?? spikeFn(p.surrogate);
  spikeOps.set(p.surrogate, fire);
  return tidy(() => {
    const alpha = tf.sigmoid(zAlpha);
    let b: Tensor | undefined;
    let theta: Tensor | number = p.threshold;
    if (zRho) {
      if (!state.b) throw new SpikeflowError('SHAPE_MISMATCH', 'spikeflow.ltcStep: an adaptive threshold (zRho given) needs the adaptation b in the state');
      const rho = tf.sigmoid(zRho);
      b = tf.add(tf.mul(rho, state.b), tf.mul(tf.sub(1, rho), state.s));
      theta = tf.add(p.threshold, tf.mul(p.strength, b));
    }
    const v = tf.add(state.u, tf.mul(alpha, tf.sub(current, state.u)));
    const s = fire(tf.sub(v, theta));
    const u = tf.mul(tf.sub(1, s), v);
    return b ? { u, s, b } : { u, s };
  });
}

/**
 * SNN kernels: the few hot operations of every rule, named as typed constants. Each has a
 * composite reference built from plain tfjs ops (correct on every backend, with tfjs' own
 * gradients); a backend plugin may register a faster version for its tfjs backend, and the
 * backend conformance suite checks it against the reference, values and gradients.
 */
export interface KernelSignatures {
  /**
   * `x · W` for `x: [B, I]`, `W: [I, O]`, differentiable in both. The hot synaptic product:
   * `x` is usually a 0/1 spike matrix.
   */
  'spikeflow.dense': (x: Tensor, w: Tensor) => Tensor;
  /**
   * `Σ_k pre_k[b]ᵀ ⊗ post_k[b]` for every batch element b: `pre: [n, B, I]`, `post: [n, B, H]` →
   * `[B, I, H]`. The per-example weight gradient of n steps — e-prop's eligibility traces born
   * in a window. `pre` is usually 0/1 spikes, mostly zeros. Used outside the gradient tape (no
   * gradient).
   */
  'spikeflow.outerSum': (pre: Tensor, post: Tensor) => Tensor;
  /**
   * `x · W` for `x: [N, I]`, `W: [I, O]` where `x` is a spike matrix of a whole window (N = T·B
   * rows), mostly zeros: a fast version does work in proportion to the non-zero entries, in the
   * product and in the weight gradient. Differentiable in both; the gradient with respect to `x`
   * is computed only when something upstream needs it (not for the data).
   */
  'spikeflow.eventDense': (x: Tensor, w: Tensor) => Tensor;
  /**
   * A 2-D convolution of channels-last images `x [N, H, W, C]` (usually spikes, mostly zeros) by
   * `w [kh, kw, C, O]` with TensorFlow's `conv2d` geometry (stride, `same` or `valid` padding) →
   * `[N, H′, W′, O]`: a fast version does work in proportion to the non-zero inputs, in the
   * convolution and in the filter gradient. Differentiable in both (the input gradient only where
   * `x` is on a gradient path).
   */
  'spikeflow.eventConv2d': (x: Tensor, w: Tensor, g: Conv2dOptions) => Tensor;
  /**
   * Max pooling of channels-last images `x [N, H, W, C]` over `valid` windows (`size`, `stride`) →
   * `[N, H′, W′, C]`, whose gradient goes to the **first** maximum of each window in row-major
   * window order (PyTorch's and TensorFlow's CPU rule; with 0/1 spikes most windows tie).
   */
  'spikeflow.maxPool': (x: Tensor, g: PoolOptions) => Tensor;
  /**
   * A whole window of a (recurrent) integrate-and-fire layer (see {@link IntegrateFireSequenceParams}): `currents [T, B, H]`,
   * the state before the window `{ v, s, a? }` (`[B, H]` each), `W_rec [H, H]` or `undefined`. Forward and
   * backward through time in one kernel.
   */
  'spikeflow.integrateFireSequence': (
    currents: Tensor,
    init: IntegrateFireState,
    wRec: Tensor | undefined,
    p: IntegrateFireSequenceParams,
  ) => IntegrateFireSequenceResult;
  /**
   * The leaky readout over a window, `y_t = κ·y_{t−1} + d_t`: `d [T, B, O]`, `y0 [B, O]` → `[T, B, O]`.
   * Differentiable in `d` and `y0` (see {@link LeakyScanOptions} for the backward pass without the temporal path).
   */
  'spikeflow.leakyScan': (d: Tensor, y0: Tensor, kappa: number, options?: LeakyScanOptions) => Tensor;
  /**
   * A whole window of an integrate-and-fire layer from its input: the currents `c_t = x_t·W (+ b)` for
   * `x [T, B, I]` (usually spikes, mostly zeros), `W [I, H]`, `b [H]` or `undefined`, then
   * `spikeflow.integrateFireSequence` on them. What {@link Network.runWindow} runs per layer: a fast
   * version may keep the currents to itself (inference never needs them as a tensor).
   * Differentiable in every tensor argument; with `p.traces`, W's, b's and W_rec's gradients take
   * the presynaptic traces ({@link PresynapticTraces}).
   */
  'spikeflow.integrateFireLayer': (
    x: Tensor,
    w: Tensor,
    b: Tensor | undefined,
    init: IntegrateFireState,
    wRec: Tensor | undefined,
    p: IntegrateFireSequenceParams,
  ) => IntegrateFireSequenceResult;
  /**
   * The leaky readout of a window from its input: `d_t = x_t·W (+ b)` for `x [T, B, H]` (usually
   * spikes), `W [H, O]`, `b [O]` or `undefined`, then `y_t = κ·y_{t−1} + d_t` from `y0 [B, O]`
   * → `[T, B, O]`. What {@link Network.runWindow} runs for the readout. Differentiable in every
   * tensor argument (`options` as `spikeflow.leakyScan`'s; with `options.traces`, W's and b's
   * gradients take the presynaptic traces, {@link PresynapticTraces}).
   */
  'spikeflow.leakyReadout': (x: Tensor, w: Tensor, b: Tensor | undefined, y0: Tensor, kappa: number, options?: LeakyReadoutOptions) => Tensor;
  /**
   * e-prop's eligibility traces of one integrate-and-fire layer under a leaky readout (see
   * {@link EligibilityTraces}): an object that runs the layer window by window and, given each
   * window's learning signals, returns its share of the weight gradient and carries the
   * per-synapse traces to the next window. Used outside the gradient tape (no gradient).
   */
  'spikeflow.integrateFireEligibility': (spec: EligibilitySpec) => EligibilityTraces;
  /**
   * A presynaptic trace after a window ({@link PresynapticTraces}): the synapses' inputs at the
   * window's steps `x [k, B, n]`, the decay λ and the trace before the window `[B, n]` (omitted:
   * zero) → `â ← λ·â + x_j` after its last step, `[B, n]`. What a rule carries from window to
   * window (OTTT). Used outside the gradient tape (no gradient).
   */
  'spikeflow.decayedSum': (x: Tensor, decay: number, before?: Tensor) => Tensor;
  /**
   * Adam's moments and step direction for one parameter (see {@link adamMomentsReference}): the
   * gradient `g` and the moments `mu`, `nu` (all of the parameter's shape) → the step direction
   * before the learning rate and the new moments. What `scaleByAdam` runs per parameter. Used
   * outside the gradient tape (no gradient).
   */
  'spikeflow.adamMoments': (g: Tensor, mu: Tensor, nu: Tensor, p: AdamMomentsParams) => AdamMomentsResult;
  /**
   * FPTT's regularised gradient `g + α·(W − W̄) − σ·shift` of one parameter (see
   * {@link fpttPullReference}); `g` undefined where the loss does not reach the parameter. Used
   * outside the gradient tape (no gradient).
   */
  'spikeflow.fpttPull': (g: Tensor | undefined, w: Tensor, wbar: Tensor, shift: Tensor, p: FpttPullParams) => Tensor;
  /**
   * FPTT's anchor update (dual form) of one parameter at its new weights (see
   * {@link fpttAnchorReference}) → the new W̄ and λ. Used outside the gradient tape (no gradient).
   */
  'spikeflow.fpttAnchor': (w: Tensor, wbar: Tensor, lambda: Tensor, p: FpttAnchorParams) => FpttAnchorResult;
  /**
   * FPTT's whole update of one parameter in the dual form with Adam as the optimizer (see
   * {@link fpttAdamStepReference}): pull, Adam's step with the learning rate, and the anchor at the
   * new weights → the new W, W̄, λ and moments. What an optimizer runner applies for FPTT when its
   * optimizer is Adam with a learning rate alone (`OptimizerRunner.applyAnchored`). Used
   * outside the gradient tape (no gradient).
   */
  'spikeflow.fpttAdamStep': (
    g: Tensor | undefined,
    w: Tensor,
    wbar: Tensor,
    lambda: Tensor,
    mu: Tensor,
    nu: Tensor,
    p: FpttAdamStepParams,
  ) => FpttAdamStepResult;
  /**
   * TSSL-BP's neurons over a whole sequence of input currents `x [T, B, H]`: their PSPs, whose
   * gradient is the authors' backward pass (see {@link spikeTimingSequence}), and the spikes,
   * membrane and Δu as values.
   */
  'spikeflow.spikeTimingSequence': (x: Tensor, p: SpikeTimingParams) => SpikeTimingSequence;
  /**
   * The elementwise part of one step of a layer of liquid-time-constant spiking neurons (LTC-SN,
   * see {@link LtcStepParams}), after its gates' products: the gates' pre-activations `zAlpha`
   * and, with an adaptive threshold, `zRho`, the input current and the state before the step,
   * all `[B, H]` → the state after it. Differentiable in every tensor argument.
   */
  'spikeflow.ltcStep': (zAlpha: Tensor, zRho: Tensor | undefined, current: Tensor, state: LtcStepState, p: LtcStepParams) => LtcStepState;
}

/** The geometry of `spikeflow.eventConv2d`: strides (rows, columns) and TensorFlow's padding rule. */
export interface Conv2dOptions {
  readonly stride: readonly [number, number];
  readonly padding: 'same' | 'valid';
}

/** The windows of `spikeflow.maxPool`: size and stride (rows, columns), `valid` padding. */
export interface PoolOptions {
  readonly size: readonly [number, number];
  readonly stride: readonly [number, number];
}

export type KernelName = keyof KernelSignatures;

export const Dense = 'spikeflow.dense' satisfies KernelName;
export const OuterSum = 'spikeflow.outerSum' satisfies KernelName;
export const EventDense = 'spikeflow.eventDense' satisfies KernelName;
export const EventConv2d = 'spikeflow.eventConv2d' satisfies KernelName;
export const MaxPool = 'spikeflow.maxPool' satisfies KernelName;
export const IntegrateFireSequence = 'spikeflow.integrateFireSequence' satisfies KernelName;
export const LeakyScan = 'spikeflow.leakyScan' satisfies KernelName;
export const IntegrateFireLayer = 'spikeflow.integrateFireLayer' satisfies KernelName;
export const LeakyReadout = 'spikeflow.leakyReadout' satisfies KernelName;
export const IntegrateFireEligibility = 'spikeflow.integrateFireEligibility' satisfies KernelName;
export const DecayedSum = 'spikeflow.decayedSum' satisfies KernelName;
export const AdamMoments = 'spikeflow.adamMoments' satisfies KernelName;
export const FpttPull = 'spikeflow.fpttPull' satisfies KernelName;
export const FpttAnchor = 'spikeflow.fpttAnchor' satisfies KernelName;
export const FpttAdamStep = 'spikeflow.fpttAdamStep' satisfies KernelName;
export const SpikeTiming = 'spikeflow.spikeTimingSequence' satisfies KernelName;
export const LtcStep = 'spikeflow.ltcStep' satisfies KernelName;

/**
 * `x·W` whose gradient multiplies by explicit transposes: tfjs' own MatMul gradient passes the
 * transposeA/transposeB flags, which take a path 5–10× slower on the wasm backend (measured on
 * Node 20, tfjs 4.22) and no faster elsewhere. tfjs frees a forward pass's intermediates before
 * the backward pass and keeps only what is saved — as a copy, on wasm (its Identity kernel
 * copies) — so a `tf.Variable` (a parameter, which outlives the backward pass) is read from the
 * closure instead of saved once per step. `transposeOfW` makes Wᵀ (a backend may cache it per
 * weight version).
 */
export function denseByTransposes(transposeOfW: (w: Tensor) => Tensor = tf.transpose): (x: Tensor, w: Tensor) => Tensor {
  return tf.customGrad(((x: Tensor, w: Tensor, save: tf.GradSaveFunc) => {
    const variable = w instanceof tf.Variable;
    save(variable ? [x] : [x, w]);
    return {
      value: tf.matMul(x, w),
      gradFunc: (dy: Tensor, [xs, ws]: Tensor[]) => [tf.matMul(dy, transposeOfW(variable ? w : ws!)), tf.matMul(tf.transpose(xs!), dy)],
    };
  }) as never) as (x: Tensor, w: Tensor) => Tensor;
}

const denseReference = denseByTransposes();

/**
 * The steps of a time-major tensor `[T, ...]` as T tensors, differentiable (tfjs' own unstack has
 * no gradient for T = 1). Copies the whole input once per step on wasm: for references and
 * fallbacks, not hot loops.
 */
export function unstackSteps(x: Tensor): Tensor[] {
  return x.shape[0] === 1 ? [tf.reshape(x, x.shape.slice(1))] : tf.unstack(x);
}

/** The composite integrate-and-fire window: one step at a time, in plain tfjs ops (the neuron's own equations). */
function integrateFireSequenceReference(
  currents: Tensor,
  init: IntegrateFireState,
  wRec: Tensor | undefined,
  p: IntegrateFireSequenceParams,
): IntegrateFireSequenceResult {
  const spike = spikeFn(p.surrogate);
  const thr = tf.scalar(p.threshold);
  const adaptive = p.adaptation;
  if (adaptive && !init.a) {
    throw new SpikeflowError('SHAPE_MISMATCH', 'spikeflow.integrateFireSequence: an adaptive threshold needs the adaptation a in the initial state');
  }
  const traces = p.traces;
  if (traces && wRec) checkPresynapticTraces('spikeflow.integrateFireSequence', traces, init.s.shape[0]!, { recurrent: wRec.shape[0]! });
  // Without the temporal path, the state entering each step is a constant of that step.
  const carried = p.temporal === false ? detach : (x: Tensor) => x;
  let v = init.v;
  let s = init.s;
  let a = init.a;
  // The trace of W_rec's input s_{t−1}, where the weight gradient takes it.
  let trace = traces?.recurrent;
  const out: Tensor[] = [];
  for (const c of unstackSteps(currents)) {
    const sPrev = carried(s);
    let current = c;
    if (wRec && traces) {
      trace = trace && traces.decay > 0 ? tf.add(tf.mul(trace, traces.decay), detach(s)) : detach(s);
      current = tf.add(c, tracedMatMul(sPrev, wRec, trace));
    } else if (wRec) {
      current = tf.add(c, tf.matMul(sPrev, wRec));
    }
    const reset = p.resetDetach ? detach(s) : sPrev;
    v = tf.sub(tf.add(tf.mul(p.beta, carried(v)), current), tf.mul(thr, reset));
    if (adaptive) {
      a = tf.add(tf.mul(adaptive.rho, carried(a!)), sPrev);
      s = spike(tf.sub(v, tf.add(thr, tf.mul(adaptive.strength, a))));
    } else {
      s = spike(tf.sub(v, thr));
    }
    out.push(s);
  }
  return { spikes: tf.stack(out), final: { v: detach(v), s: detach(s), ...(a && adaptive ? { a: detach(a) } : {}) } };
}

/** `x·W` whose gradient to W is `aᵀ·dy` (a: the presynaptic trace, values only) and to x `dy·Wᵀ`. */
const tracedMatMul = tf.customGrad(((x: Tensor, w: Tensor, a: Tensor, save: tf.GradSaveFunc) => {
  save([w, a]);
  return {
    value: tf.matMul(x, w),
    gradFunc: (dy: Tensor, [ws, as]: Tensor[]) => [tf.matMul(dy, tf.transpose(ws!)), tf.matMul(tf.transpose(as!), dy), tf.zerosLike(as!)],
  };
}) as never) as (x: Tensor, w: Tensor, a: Tensor) => Tensor;

/**
 * Throws unless `traces` fit a window of `B` rows: λ in [0, 1], the input's trace `[B, input]`
 * and the recurrent one `[B, recurrent]` where given (and where the kernel reads them), c finite.
 */
export function checkPresynapticTraces(
  kernel: string,
  traces: PresynapticTraces,
  B: number,
  widths: { readonly input?: number; readonly recurrent?: number },
): void {
  const { decay, bias = 0 } = traces;
  if (!(decay >= 0 && decay <= 1) || !Number.isFinite(bias)) {
    throw new SpikeflowError(
      'CONFIG_INVALID',
      `${kernel}: presynaptic traces need a decay λ in [0, 1] and a finite bias trace c, got λ = ${decay} and c = ${bias}`,
    );
  }
  for (const [field, width] of [
    ['input', widths.input],
    ['recurrent', widths.recurrent],
  ] as const) {
    const t = traces[field];
    if (width === undefined || !t || t.shape.join() === `${B},${width}`) continue;
    throw new SpikeflowError('SHAPE_MISMATCH', `${kernel}: the ${field} trace before the window must be [${B}, ${width}] (batch, inputs), got [${t.shape}]`);
  }
}

/**
 * A window's input product `x [T, B, I]·W (+ b)` → `[T, B, O]` whose weight and bias gradients
 * take presynaptic traces ({@link PresynapticTraces}): W gets Σ_t â_tᵀ·g_t, b gets Σ_t c_t·Σ_b g_t,
 * x gets g_t·Wᵀ. What `spikeflow.integrateFireLayer` and `spikeflow.leakyReadout` run for their
 * input with traces.
 */
export type TracedProduct = (x: Tensor, w: Tensor, b: Tensor | undefined, traces: PresynapticTraces) => Tensor;

/** {@link TracedProduct} by its definition: every step's trace â_t as a tensor, the weight gradient their product with g. */
export function tracedProductReference(x: Tensor, w: Tensor, b: Tensor | undefined, traces: PresynapticTraces): Tensor {
  const [T, B, I] = x.shape as [number, number, number];
  const O = w.shape[1]!;
  checkPresynapticTraces('traced product', traces, B, { input: I });
  const lambda = traces.decay;
  // c_t of every step (summed in float64).
  const c = new Float32Array(T);
  for (let t = 0, ct = traces.bias ?? 0; t < T; t++) c[t] = ct = lambda * ct + 1;
  const f = tf.customGrad(((...args: Tensor[]) => {
    const save = args.pop() as unknown as tf.GradSaveFunc;
    const [xx, ww, bb] = args as [Tensor, Tensor, Tensor | undefined];
    let a = traces.input;
    const A = tf.stack(unstackSteps(xx).map((xt) => (a = a && lambda > 0 ? tf.add(tf.mul(a, lambda), xt) : xt)));
    save([ww, tf.reshape(A, [T * B, I])]);
    const product = tf.reshape(tf.matMul(tf.reshape(xx, [T * B, I]), ww), [T, B, O]);
    return {
      value: bb ? tf.add(product, bb) : product,
      gradFunc: (dy: Tensor, [ws, as]: Tensor[]) => {
        const g = tf.reshape(dy, [T * B, O]);
        const grads = [tf.reshape(tf.matMul(g, tf.transpose(ws!)), [T, B, I]), tf.matMul(tf.transpose(as!), g)];
        if (bb) grads.push(tf.sum(tf.mul(tf.sum(dy, 1), tf.tensor2d(c, [T, 1])), 0));
        return grads;
      },
    };
  }) as never) as (...args: Tensor[]) => Tensor;
  return b ? f(x, w, b) : f(x, w);
}

/** `spikeflow.decayedSum` one step at a time: `â = λ·â + x_j` (as a synapse hook advances its trace every step). */
function decayedSumReference(x: Tensor, decay: number, before?: Tensor): Tensor {
  const [, B, n] = x.shape as [number, number, number];
  if (x.rank !== 3 || (before && before.shape.join() !== `${B},${n}`)) {
    throw new SpikeflowError(
      'SHAPE_MISMATCH',
      `spikeflow.decayedSum: expected x [k, B, n] and a trace before it [B, n], got [${x.shape}] and ${before ? `[${before.shape}]` : 'none'}`,
    );
  }
  if (!(decay >= 0 && decay <= 1)) throw new SpikeflowError('CONFIG_INVALID', `spikeflow.decayedSum: the decay λ must be in [0, 1], got ${decay}`);
  return tf.tidy(() => {
    let a = before && decay > 0 ? before : undefined;
    for (const xt of unstackSteps(tf.cast(x, 'float32'))) a = a && decay > 0 ? tf.add(tf.mul(a, decay), xt) : xt;
    return tf.clone(a!);
  });
}

function leakyScanReference(d: Tensor, y0: Tensor, kappa: number, options: LeakyScanOptions = {}): Tensor {
  // Without the temporal path, y_{t−1} is a constant of step t.
  const carried = options.temporal === false ? detach : (x: Tensor) => x;
  let y = y0;
  const ys = unstackSteps(d).map((dt) => (y = tf.add(tf.mul(kappa, carried(y)), dt)));
  return tf.stack(ys);
}

/** `x [T, B, I]·W (+ b)` as `[T, B, O]`, by `product` on the steps flattened into rows. */
function windowProduct(product: (x: Tensor, w: Tensor) => Tensor, x: Tensor, w: Tensor, b: Tensor | undefined): Tensor {
  const [T, B, I] = x.shape as [number, number, number];
  const c = product(tf.reshape(x, [T * B, I]), w);
  return tf.reshape(b ? tf.add(c, b) : c, [T, B, w.shape[1]!]);
}

/**
 * `spikeflow.integrateFireLayer` from the window kernels `eventDense` and `integrateFireSequence` (the references, or
 * a backend's own): the currents as a tensor, then the layer through time.
 */
export function integrateFireLayerOf(
  eventDense: KernelSignatures['spikeflow.eventDense'],
  integrateFireSequence: KernelSignatures['spikeflow.integrateFireSequence'],
  traced: TracedProduct = tracedProductReference,
): KernelSignatures['spikeflow.integrateFireLayer'] {
  return (x, w, b, init, wRec, p) =>
    tidy(() => integrateFireSequence(p.traces ? traced(x, w, b, p.traces) : windowProduct(eventDense, x, w, b), init, wRec, p));
}

/** `spikeflow.leakyReadout` from the window kernels `eventDense` and `leakyScan` (and, with traces, `traced` for the input product). */
export function leakyReadoutOf(
  eventDense: KernelSignatures['spikeflow.eventDense'],
  leakyScan: KernelSignatures['spikeflow.leakyScan'],
  traced: TracedProduct = tracedProductReference,
): KernelSignatures['spikeflow.leakyReadout'] {
  return (x, w, b, y0, kappa, options = {}) =>
    tf.tidy(() => {
      const { traces, ...scan } = options;
      return leakyScan(traces ? traced(x, w, b, traces) : windowProduct(eventDense, x, w, b), y0, kappa, scan);
    });
}

/** Kernels that are only used outside the gradient tape: checked on values, not gradients. */
export const nonDifferentiableKernels: ReadonlySet<KernelName> = new Set<KernelName>([
  'spikeflow.outerSum',
  'spikeflow.integrateFireEligibility',
  'spikeflow.decayedSum',
  'spikeflow.adamMoments',
  'spikeflow.fpttPull',
  'spikeflow.fpttAnchor',
  'spikeflow.fpttAdamStep',
]);

/**
 * The composite references, built from plain tfjs ops: correct on every backend, and the best
 * that plain ops do (explicit transposes, no slice of a big tensor on the tape where avoidable).
 */
export const referenceKernels: { readonly [K in KernelName]: KernelSignatures[K] } = {
  'spikeflow.dense': denseReference,
  'spikeflow.eventDense': denseReference,
  'spikeflow.eventConv2d': (x, w, g) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, g.stride as [number, number], g.padding),
  'spikeflow.maxPool': maxPoolFirst,
  'spikeflow.integrateFireSequence': integrateFireSequenceReference,
  'spikeflow.leakyScan': leakyScanReference,
  'spikeflow.integrateFireLayer': integrateFireLayerOf(denseReference, integrateFireSequenceReference),
  'spikeflow.leakyReadout': leakyReadoutOf(denseReference, leakyScanReference),
  // A batched matrix product [B, I, n]·[B, n, H], with explicit transposes (wasm's transposed
  // matMul path is slow).
  'spikeflow.outerSum': (pre, post) => tf.tidy(() => tf.matMul(tf.transpose(pre, [1, 2, 0]), tf.transpose(post, [1, 0, 2]))),
  'spikeflow.integrateFireEligibility': integrateFireEligibilityReference,
  'spikeflow.decayedSum': decayedSumReference,
  'spikeflow.adamMoments': adamMomentsReference,
  'spikeflow.fpttPull': fpttPullReference,
  'spikeflow.fpttAnchor': fpttAnchorReference,
  'spikeflow.fpttAdamStep': fpttAdamStepReference,
  'spikeflow.spikeTimingSequence': spikeTimingSequence,
  'spikeflow.ltcStep': ltcStepReference,
};

/**
 * `spikeflow.outerSum` event-driven, in typed arrays: for every step and batch element it adds
 * `post_k[b]` (times the presynaptic value) into the rows of the presynaptic entries that are not
 * zero, and skips the rest — about `nnz(pre)·H` additions instead of the `n·B·I·H` of the dense
 * product, and no batched matMul (which wasm runs at ~1 GFLOP/s for these shapes). Reads both
 * inputs into JavaScript, so it suits backends whose data already lives in CPU memory (wasm, cpu);
 * those register it.
 */
export function outerSumByEvents(pre: Tensor, post: Tensor): Tensor {
  const [n, B, I] = pre.shape as [number, number, number];
  const H = post.shape[2]!;
  if (pre.rank !== 3 || post.rank !== 3 || post.shape[0] !== n || post.shape[1] !== B) {
    throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.outerSum: expected pre [n, B, I] and post [n, B, H], got [${pre.shape}] and [${post.shape}]`);
  }
  const p = pre.dataSync();
  const q = post.dataSync();
  const out = new Float32Array(B * I * H);
  for (let k = 0; k < n; k++) {
    for (let b = 0; b < B; b++) {
      const pOff = (k * B + b) * I;
      const qOff = (k * B + b) * H;
      for (let i = 0; i < I; i++) {
        const v = p[pOff + i]!;
        if (v === 0) continue;
        const o = (b * I + i) * H;
        if (v === 1) for (let j = 0; j < H; j++) out[o + j]! += q[qOff + j]!;
        else for (let j = 0; j < H; j++) out[o + j]! += v * q[qOff + j]!;
      }
    }
  }
  return tf.tensor(out, [B, I, H]);
}

/** A fast kernel registered by a backend plugin for one tfjs backend. */
export interface KernelRegistration<K extends KernelName = KernelName> {
  readonly kernel: K;
  /** The tfjs backend name it runs on (`wasm`, `cpu`, `tensorflow`, `webgl`, ...). */
  readonly backend: string;
  readonly impl: KernelSignatures[K];
}

/**
 * Kernels by (kernel, tfjs backend). Owned by whoever composes a run (an app, a test); the
 * network looks its kernels up once per sequence for the active tfjs backend.
 */
export class KernelTable {
  readonly #impls = new Map<string, KernelSignatures[KernelName]>();

  register<K extends KernelName>(reg: KernelRegistration<K>): void {
    if (!(reg.kernel in referenceKernels)) {
      throw new SpikeflowError('UNKNOWN_NAME', `kernel '${reg.kernel}' is not a spikeflow kernel (known: ${Object.keys(referenceKernels).join(', ')})`);
    }
    this.#impls.set(`${reg.kernel}@${reg.backend}`, reg.impl);
  }

  /** The implementation for the active (or given) tfjs backend, else the reference. */
  get<K extends KernelName>(kernel: K, backend: string = tf.getBackend()): KernelSignatures[K] {
    return (this.#impls.get(`${kernel}@${backend}`) as KernelSignatures[K] | undefined) ?? referenceKernels[kernel];
  }

  /** Whether a fast (non-reference) version is registered for `backend`. */
  has(kernel: KernelName, backend: string): boolean {
    return this.#impls.has(`${kernel}@${backend}`);
  }

  /** All kernels resolved for one backend. */
  resolve(backend: string = tf.getBackend()): { readonly [K in KernelName]: KernelSignatures[K] } {
    const out = {} as { [K in KernelName]: KernelSignatures[K] };
    for (const k of Object.keys(referenceKernels) as KernelName[]) (out as Record<KernelName, unknown>)[k] = this.get(k, backend);
    return out;
  }
}

import { tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';
import { spikeFn, type Surrogate } from './surrogates.js';

/** Identity forward, zero gradient backward. */
export const detach: (x: Tensor) => Tensor = tf.customGrad((x) => ({
  value: tf.clone(x as Tensor),
  gradFunc: (dy: Tensor) => tf.zerosLike(dy),
})) as (x: Tensor) => Tensor;

/**
 * A leaky integrate-and-fire layer as {@link KernelSignatures | `spikeflow.integrateFireSequence`} runs it,
 * for every step t of a window, from the layer's input current `c_t` (feed-forward product and
 * bias, computed for the whole window beforehand):
 *
 *     I_t = c_t + s_{t−1}·W_rec            (no W_rec: I_t = c_t)
 *     v_t = β·v_{t−1} + I_t − ϑ·r_{t−1}    r = s, a constant in the backward pass if resetDetach
 *     s_t = H(v_t − ϑ)                      surrogate derivative ψ(v_t − ϑ) in the backward pass
 */
export interface IntegrateFireSequenceParams {
  /** β: a scalar, or one decay per neuron `[H]` (trainable where the neuron lets it learn its decay). */
  readonly beta: Tensor;
  readonly threshold: number;
  readonly resetDetach: boolean;
  readonly surrogate: Surrogate;
}

/** What `spikeflow.integrateFireSequence` returns. */
export interface IntegrateFireSequenceResult {
  /** s_t for every step, `[T, B, H]`: differentiable with respect to every input. */
  readonly spikes: Tensor;
  /**
   * The state after the last step, `[B, H]` each, to carry into the next window. Values only: no
   * gradient flows back through it (rules that carry state across windows detach it anyway).
   */
  readonly final: { readonly v: Tensor; readonly s: Tensor };
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
   * A whole window of a (recurrent) integrate-and-fire layer (see {@link IntegrateFireSequenceParams}): `currents [T, B, H]`,
   * the state before the window `{ v, s }` (`[B, H]`), `W_rec [H, H]` or `undefined`. Forward and
   * backward through time in one kernel.
   */
  'spikeflow.integrateFireSequence': (
    currents: Tensor,
    init: { readonly v: Tensor; readonly s: Tensor },
    wRec: Tensor | undefined,
    p: IntegrateFireSequenceParams,
  ) => IntegrateFireSequenceResult;
  /**
   * The leaky readout over a window, `y_t = κ·y_{t−1} + d_t`: `d [T, B, O]`, `y0 [B, O]` → `[T, B, O]`.
   * Differentiable in `d` and `y0`.
   */
  'spikeflow.leakyScan': (d: Tensor, y0: Tensor, kappa: number) => Tensor;
  /**
   * A whole window of an integrate-and-fire layer from its input: the currents `c_t = x_t·W (+ b)` for
   * `x [T, B, I]` (usually spikes, mostly zeros), `W [I, H]`, `b [H]` or `undefined`, then
   * `spikeflow.integrateFireSequence` on them. What {@link Network.runWindow} runs per layer: a fast
   * version may keep the currents to itself (inference never needs them as a tensor).
   * Differentiable in every tensor argument.
   */
  'spikeflow.integrateFireLayer': (
    x: Tensor,
    w: Tensor,
    b: Tensor | undefined,
    init: { readonly v: Tensor; readonly s: Tensor },
    wRec: Tensor | undefined,
    p: IntegrateFireSequenceParams,
  ) => IntegrateFireSequenceResult;
  /**
   * The leaky readout of a window from its input: `d_t = x_t·W (+ b)` for `x [T, B, H]` (usually
   * spikes), `W [H, O]`, `b [O]` or `undefined`, then `y_t = κ·y_{t−1} + d_t` from `y0 [B, O]`
   * → `[T, B, O]`. What {@link Network.runWindow} runs for the readout. Differentiable in every
   * tensor argument.
   */
  'spikeflow.leakyReadout': (x: Tensor, w: Tensor, b: Tensor | undefined, y0: Tensor, kappa: number) => Tensor;
}

export type KernelName = keyof KernelSignatures;

export const Dense = 'spikeflow.dense' satisfies KernelName;
export const OuterSum = 'spikeflow.outerSum' satisfies KernelName;
export const EventDense = 'spikeflow.eventDense' satisfies KernelName;
export const IntegrateFireSequence = 'spikeflow.integrateFireSequence' satisfies KernelName;
export const LeakyScan = 'spikeflow.leakyScan' satisfies KernelName;
export const IntegrateFireLayer = 'spikeflow.integrateFireLayer' satisfies KernelName;
export const LeakyReadout = 'spikeflow.leakyReadout' satisfies KernelName;

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
  init: { readonly v: Tensor; readonly s: Tensor },
  wRec: Tensor | undefined,
  p: IntegrateFireSequenceParams,
): IntegrateFireSequenceResult {
  const spike = spikeFn(p.surrogate);
  const thr = tf.scalar(p.threshold);
  let v = init.v;
  let s = init.s;
  const out: Tensor[] = [];
  for (const c of unstackSteps(currents)) {
    const current = wRec ? tf.add(c, tf.matMul(s, wRec)) : c;
    const reset = p.resetDetach ? detach(s) : s;
    v = tf.sub(tf.add(tf.mul(p.beta, v), current), tf.mul(thr, reset));
    s = spike(tf.sub(v, thr));
    out.push(s);
  }
  return { spikes: tf.stack(out), final: { v: detach(v), s: detach(s) } };
}

function leakyScanReference(d: Tensor, y0: Tensor, kappa: number): Tensor {
  let y = y0;
  const ys = unstackSteps(d).map((dt) => (y = tf.add(tf.mul(kappa, y), dt)));
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
): KernelSignatures['spikeflow.integrateFireLayer'] {
  return (x, w, b, init, wRec, p) => {
    const out = tf.tidy(() => {
      const r = integrateFireSequence(windowProduct(eventDense, x, w, b), init, wRec, p);
      return { spikes: r.spikes, v: r.final.v, s: r.final.s };
    });
    return { spikes: out.spikes, final: { v: out.v, s: out.s } };
  };
}

/** `spikeflow.leakyReadout` from the window kernels `eventDense` and `leakyScan`. */
export function leakyReadoutOf(
  eventDense: KernelSignatures['spikeflow.eventDense'],
  leakyScan: KernelSignatures['spikeflow.leakyScan'],
): KernelSignatures['spikeflow.leakyReadout'] {
  return (x, w, b, y0, kappa) => tf.tidy(() => leakyScan(windowProduct(eventDense, x, w, b), y0, kappa));
}

/** Kernels that are only used outside the gradient tape: checked on values, not gradients. */
export const nonDifferentiableKernels: ReadonlySet<KernelName> = new Set<KernelName>(['spikeflow.outerSum']);

/**
 * The composite references, built from plain tfjs ops: correct on every backend, and the best
 * that plain ops do (explicit transposes, no slice of a big tensor on the tape where avoidable).
 */
export const referenceKernels: { readonly [K in KernelName]: KernelSignatures[K] } = {
  'spikeflow.dense': denseReference,
  'spikeflow.eventDense': denseReference,
  'spikeflow.integrateFireSequence': integrateFireSequenceReference,
  'spikeflow.leakyScan': leakyScanReference,
  'spikeflow.integrateFireLayer': integrateFireLayerOf(denseReference, integrateFireSequenceReference),
  'spikeflow.leakyReadout': leakyReadoutOf(denseReference, leakyScanReference),
  // A batched matrix product [B, I, n]·[B, n, H], with explicit transposes (wasm's transposed
  // matMul path is slow).
  'spikeflow.outerSum': (pre, post) => tf.tidy(() => tf.matMul(tf.transpose(pre, [1, 2, 0]), tf.transpose(post, [1, 0, 2]))),
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

import { tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';

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
}

export type KernelName = keyof KernelSignatures;

export const Dense = 'spikeflow.dense' satisfies KernelName;
export const OuterSum = 'spikeflow.outerSum' satisfies KernelName;

/** Kernels that are only used outside the gradient tape: checked on values, not gradients. */
export const nonDifferentiableKernels: ReadonlySet<KernelName> = new Set<KernelName>(['spikeflow.outerSum']);

/** The composite references, built from plain tfjs ops. */
export const referenceKernels: { readonly [K in KernelName]: KernelSignatures[K] } = {
  'spikeflow.dense': (x, w) => tf.matMul(x, w),
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
    for (const k of Object.keys(referenceKernels) as KernelName[]) out[k] = this.get(k, backend);
    return out;
  }
}

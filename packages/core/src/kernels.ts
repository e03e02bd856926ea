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
}

export type KernelName = keyof KernelSignatures;

export const Dense = 'spikeflow.dense' satisfies KernelName;

/** The composite references, built from plain tfjs ops. */
export const referenceKernels: { readonly [K in KernelName]: KernelSignatures[K] } = {
  'spikeflow.dense': (x, w) => tf.matMul(x, w),
};

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

/**
 * Shared by core's own tests (never built into dist): a minimal neuron so that networks can be
 * built without a plugin, the cpu backend, and a helper that returns the SpikeflowError a call throws.
 */
import { beforeAll } from 'vitest';
import { IntegrateFireLayer, IntegrateFireSequence, KernelTable, LeakyReadout, referenceKernels } from './kernels.js';
import { tf, type Tensor } from './tf.js';
import { isSpikeflowError, type SpikeflowError } from './errors.js';
import { defineNeuron, type AnyNeuronModel } from './neuron.js';
import { builtinSurrogates } from './surrogates.js';
import type { ModelRegistries } from './model.js';

/** Runs the file's tests on the cpu backend. */
export function useCpuBackend(): void {
  beforeAll(async () => {
    await tf.setBackend('cpu');
    await tf.ready();
    // The cpu backend advertises tfjs-node on its first write in Node (as @spikeflow/backend-cpu skips it).
    const backend = tf.backend() as unknown as { firstUse?: boolean };
    if (backend.firstUse === true) backend.firstUse = false;
  });
}

/** The SpikeflowError `f` throws (any other outcome fails the test). */
export function errorOf(f: () => unknown): SpikeflowError {
  try {
    f();
  } catch (e) {
    if (isSpikeflowError(e)) return e;
    throw e;
  }
  throw new Error('expected a SpikeflowError, nothing was thrown');
}

/** The SpikeflowError promise `p` rejects with (any other outcome fails the test). */
export async function rejection(p: Promise<unknown>): Promise<SpikeflowError> {
  try {
    await p;
  } catch (e) {
    if (isSpikeflowError(e)) return e;
    throw e;
  }
  throw new Error('expected a rejection with a SpikeflowError');
}

/** Non-leaky integrate-and-fire with subtractive reset: v = v_prev + I − thr·s_prev; s = H(v − thr). */
export const iaf = defineNeuron({
  name: 'iaf',
  description: 'integrate-and-fire (test neuron)',
  configSchema: { threshold: { type: 'number', default: 1, min: 0, exclusiveMin: true } },
  stateKeys: ['v', 's'],
  membrane: 'v',
  spikes: 's',
  tensorParams: (c) => ({ threshold: { value: c.threshold, trainable: false } }),
  init: (b, n) => {
    const z = tf.zeros([b, n]);
    return { v: z, s: z };
  },
  step: ({ tensors }, st: { v: Tensor; s: Tensor }, current, { spike }) => {
    const thr = tensors['threshold']!;
    const v = tf.sub(tf.add(st.v, current), tf.mul(thr, st.s));
    const s = spike(tf.sub(v, thr));
    return { state: { v, s }, spikes: s };
  },
});

/**
 * Core's composite references registered as a backend's fused kernels (`spikeflow.integrateFireLayer`,
 * `spikeflow.leakyReadout`) for the cpu backend: a network built with this table runs the fused path.
 */
export function referenceFusedKernels(): KernelTable {
  const t = new KernelTable();
  for (const k of [IntegrateFireLayer, IntegrateFireSequence, LeakyReadout] as const)
    t.register({ kernel: k, backend: 'cpu', impl: referenceKernels[k] as never });
  return t;
}

/**
 * `iaf` declaring that its step is core's fused integrate-and-fire equation (β 1, its threshold, no
 * detached reset): a network of it runs fused where the kernel table has the fused kernels
 * ({@link referenceFusedKernels}).
 */
export const fusableIaf = {
  ...iaf,
  name: 'iaf-fused',
  integrateFire: ({ config, tensors }: { config: Record<string, unknown>; tensors: Record<string, Tensor> }) => ({
    beta: tf.onesLike(tensors['threshold']!),
    threshold: config['threshold'] as number,
    resetDetach: false,
  }),
} as unknown as AnyNeuronModel;

/** The registries of core's spatial and dropout tests: `iaf`, and `iaf-fused` (the fused form), with core's surrogates. */
export function iafRegistry(): ModelRegistries {
  return {
    neurons: new Map<string, AnyNeuronModel>([
      ['iaf', iaf as AnyNeuronModel],
      ['iaf-fused', fusableIaf],
    ]),
    surrogates: builtinSurrogates,
  };
}

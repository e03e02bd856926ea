import { SpikeflowError, outerSumByEvents, tf, type Backend, type BackendInfo, type KernelRegistration } from '@spikeflow/core';
import { KERNELS_VERSION, activeThreads, cpuMemoryKernels, simdAvailable } from '@spikeflow/kernels';
import os from 'node:os';

/**
 * The pure-JavaScript tfjs backend (shipped inside `@tensorflow/tfjs`, which core already loads).
 * About 35× slower than wasm on matrix products, but needs nothing and runs everywhere: the
 * reference the other backends are checked against.
 */
export const cpuKernels: readonly KernelRegistration[] = [{ kernel: 'spikeflow.outerSum', backend: 'cpu', impl: outerSumByEvents }, ...cpuMemoryKernels('cpu')];

export const cpu: Backend = {
  name: 'cpu',
  description: 'TensorFlow.js pure-JavaScript backend (slow, runs everywhere)',
  kernels: cpuKernels,
  isAvailable: async () => tf.findBackendFactory('cpu') !== null,
  async activate() {
    if (!(await tf.setBackend('cpu'))) {
      throw new SpikeflowError('BACKEND_UNAVAILABLE', 'the cpu backend is not registered: is @tensorflow/tfjs installed once, at 4.22.0?', { backend: 'cpu' });
    }
    await tf.ready();
    // tfjs' cpu backend prints an advert for tfjs-node on its first write in Node; spikeflow
    // lists its own backends, so the notice is noise here.
    const backend = tf.backend() as unknown as { firstUse?: boolean };
    if (backend.firstUse === true) backend.firstUse = false;
  },
  describe(): BackendInfo {
    // tfjs' own kernels run on one thread; spikeflow's fused kernels on every core (worker
    // threads): the count running now. `simd`: whether the fused kernels (WebAssembly SIMD) run here.
    const simd = simdAvailable();
    const kernelThreads = simd ? activeThreads() : 0;
    return {
      tfBackend: 'cpu',
      device: os.cpus()[0]?.model ?? 'unknown CPU',
      threads: Math.max(1, kernelThreads),
      details: { tfjs: tf.version_core, tfjsThreads: 1, simd, kernelThreads, kernels: KERNELS_VERSION },
    };
  },
};

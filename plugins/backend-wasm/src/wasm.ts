import { SpikeflowError, denseByTransposes, outerSumByEvents, tf, type Backend, type BackendInfo, type KernelRegistration, type Tensor } from '@spikeflow/core';
import * as wasmBackend from '@tensorflow/tfjs-backend-wasm';
import { KERNELS_VERSION, activeThreads, cpuMemoryKernels, simdAvailable } from '@spikeflow/kernels';
import os from 'node:os';

/**
 * Wᵀ for each weight buffer, made once per weight version instead of once per step: the backward
 * pass of a T-step sequence otherwise transposes (and keeps until it ends) the same W T times.
 * Keyed by the weight's data buffer, so an optimizer update (a new buffer) gets a new transpose;
 * an entry is freed once its buffer is gone (swept on every lookup).
 */
const transposes = new Map<object, Tensor>();

function sweepTransposes(): void {
  const backend = tf.backend() as unknown as { refCount?: (dataId: object) => number };
  for (const [id, t] of transposes) {
    if ((backend.refCount?.(id) ?? 0) === 0) {
      t.dispose();
      transposes.delete(id);
    }
  }
}

function transposeOf(w: Tensor): Tensor {
  sweepTransposes();
  let t = transposes.get(w.dataId);
  if (!t || t.isDisposed) {
    t = tf.keep(tf.transpose(w));
    transposes.set(w.dataId, t);
  }
  return t;
}

/** Frees every cached transpose (tests and long-lived processes that drop their networks). */
export function clearTransposeCache(): void {
  for (const t of transposes.values()) t.dispose();
  transposes.clear();
}

/**
 * `x·W` whose gradient multiplies by explicit transposes (core's reference does too: wasm's
 * transposed matMul path is 5–10× slower), with Wᵀ cached per weight version (above). Same
 * values and gradients as the reference.
 */
export const wasmDense = denseByTransposes(transposeOf);

export const wasmKernels: readonly KernelRegistration[] = [
  { kernel: 'spikeflow.dense', backend: 'wasm', impl: wasmDense },
  { kernel: 'spikeflow.outerSum', backend: 'wasm', impl: outerSumByEvents },
  ...cpuMemoryKernels('wasm'),
];

/**
 * tfjs-wasm's Identity kernel copies its input into a new buffer, and tfjs runs Identity for every
 * `clone` — among them the copy the engine keeps of each tensor a taped op saves for its gradient.
 * Tensors are immutable (no kernel of tfjs' or spikeflow's writes into an input), so a clone can
 * share the buffer and count one more reference to it, as the cpu backend's Identity does: a
 * gradient tape on wasm then holds one buffer per saved tensor instead of two, and makes no copies.
 */
function shareBuffersOnClone(): void {
  const copying = tf.getKernel('Identity', 'wasm');
  if (!copying || (copying.kernelFunc as { shares?: boolean }).shares) return;
  const share = Object.assign(
    (args: { inputs: { x?: tf.TensorInfo }; backend: unknown; attrs?: unknown }) => {
      const x = args.inputs.x!;
      if (x.dtype === 'string') return copying.kernelFunc(args as Parameters<typeof copying.kernelFunc>[0]);
      (args.backend as { incRef(dataId: object): void }).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    },
    { shares: true },
  );
  tf.unregisterKernel('Identity', 'wasm');
  tf.registerKernel({ ...copying, kernelFunc: share as unknown as typeof copying.kernelFunc });
}

/** What activation learnt of tfjs' backend; the kernels' part is read at each describe(). */
let tfjsInfo: { readonly simd: boolean; readonly tfjsThreads: number } | undefined;

/**
 * The embedded default backend: tfjs on WebAssembly, SIMD where the runtime has it. In Node it
 * runs on one thread (the threaded build needs Blob-URL workers that Node refuses) with a heap
 * limit near 4 GiB.
 */
export const wasm: Backend = {
  name: 'wasm',
  description: 'TensorFlow.js WebAssembly backend (embedded default; SIMD, one thread in Node)',
  kernels: wasmKernels,
  isAvailable: async () => typeof WebAssembly === 'object' && typeof WebAssembly.instantiate === 'function',
  async activate() {
    if (tf.getBackend() === 'wasm' && tfjsInfo) return;
    // In Node the backend reads its .wasm files from its own dist/ folder with fs: offline, no
    // setWasmPaths (a path there is handed to fetch(), which refuses file paths).
    let ok = false;
    let cause: unknown;
    try {
      ok = await tf.setBackend('wasm');
      await tf.ready();
    } catch (e) {
      cause = e;
    }
    if (!ok || tf.getBackend() !== 'wasm') {
      throw new SpikeflowError(
        'BACKEND_UNAVAILABLE',
        `the wasm backend could not start${cause instanceof Error ? `: ${cause.message}` : ''}. ` +
          `Check that @tensorflow/tfjs-backend-wasm is installed with its dist/*.wasm files, or use --backend cpu.`,
        { backend: 'wasm' },
        { cause },
      );
    }
    shareBuffersOnClone();
    const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
    const tfjsThreads = typeof wasmBackend.getThreadsCount === 'function' ? wasmBackend.getThreadsCount() : 1;
    tfjsInfo = { simd, tfjsThreads };
    // Start the kernels' thread pool now rather than in the first kernel call.
    if (simdAvailable()) activeThreads();
  },
  describe(): BackendInfo {
    if (!tfjsInfo) return { tfBackend: 'wasm', device: os.cpus()[0]?.model ?? 'unknown CPU', threads: 1, details: { activated: false } };
    // tfjs' own kernels run on one thread; spikeflow's fused kernels on every core (worker
    // threads): the count running now (a pool short of workers that did not start counts less).
    const simd = simdAvailable();
    const kernelThreads = simd ? activeThreads() : 0;
    return {
      tfBackend: 'wasm',
      device: os.cpus()[0]?.model ?? 'unknown CPU',
      threads: Math.max(kernelThreads, tfjsInfo.tfjsThreads),
      details: {
        simd,
        tfjsSimd: tfjsInfo.simd,
        tfjs: tf.version_core,
        heapLimitGiB: 4,
        tfjsThreads: tfjsInfo.tfjsThreads,
        kernelThreads,
        kernels: KERNELS_VERSION,
      },
    };
  },
};

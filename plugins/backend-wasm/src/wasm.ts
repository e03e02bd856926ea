import { SpikeflowError, tf, type Backend, type BackendInfo, type KernelRegistration, type Tensor } from '@spikeflow/core';
import * as wasmBackend from '@tensorflow/tfjs-backend-wasm';
import os from 'node:os';

/**
 * `x·W` whose gradient multiplies by explicit transposes. tfjs' built-in MatMul gradient uses the
 * transposeA/transposeB flags, which take a path 5–10× slower on the wasm backend than
 * transposing first (measured on Node 20, tfjs 4.22). Same values and gradients as the reference.
 */
export const wasmDense = tf.customGrad(((x: Tensor, w: Tensor, save: tf.GradSaveFunc) => {
  save([x, w]);
  return {
    value: tf.matMul(x, w),
    gradFunc: (dy: Tensor, [xs, ws]: Tensor[]) => [tf.matMul(dy, tf.transpose(ws!)), tf.matMul(tf.transpose(xs!), dy)],
  };
}) as never) as (x: Tensor, w: Tensor) => Tensor;

export const wasmKernels: readonly KernelRegistration[] = [{ kernel: 'spikeflow.dense', backend: 'wasm', impl: wasmDense }];

let info: BackendInfo | undefined;

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
    if (tf.getBackend() === 'wasm' && info) return;
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
    const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
    const threads = typeof wasmBackend.getThreadsCount === 'function' ? wasmBackend.getThreadsCount() : 1;
    info = {
      tfBackend: 'wasm',
      device: os.cpus()[0]?.model ?? 'unknown CPU',
      threads,
      details: { simd, tfjs: tf.version_core, heapLimitGiB: 4 },
    };
  },
  describe() {
    return info ?? { tfBackend: 'wasm', device: os.cpus()[0]?.model ?? 'unknown CPU', threads: 1, details: { activated: false } };
  },
};

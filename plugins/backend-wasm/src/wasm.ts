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

/**
 * tfjs-wasm has no Conv2DBackpropFilter (the weight gradient of conv2d) but has the 3-D one: a 2-D
 * convolution is a 3-D one of depth 1, so the kernel hands it `x [B, 1, H, W, C]` and
 * `dy [B, 1, H′, W′, O]` and reads the `[1, kh, kw, C, O]` result as `[kh, kw, C, O]`. tfjs-wasm's
 * 3-D kernel is wrong for strides above 1 (4.22.0: measured against the cpu backend), so a strided
 * gradient is asked as a stride-1 one: `x` padded as the forward pass pads it (TensorFlow's "same"
 * rule) and cut to the rows and columns the windows reach, `dy` spread out with stride − 1 zeros
 * between its entries. Channels-last (`NHWC`) only, as everything in spikeflow.
 */
function conv2dFilterGradient(): void {
  if (tf.getKernel('Conv2DBackpropFilter', 'wasm')) return;
  const conv3d = tf.getKernel('Conv3DBackpropFilterV2', 'wasm');
  if (!conv3d) return;
  type Info = tf.TensorInfo;
  type Pair = [number, number];
  interface Heap {
    readSync(dataId: object): Float32Array;
    write(values: Float32Array, shape: number[], dtype: 'float32'): object;
    disposeData(dataId: object): void;
  }
  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'wasm',
    kernelFunc: ((args: {
      inputs: { x: Info; dy: Info };
      backend: Heap;
      attrs: { strides: number | Pair; pad: 'same' | 'valid' | number; dataFormat?: string; filterShape: number[] };
    }) => {
      const { x, dy } = args.inputs;
      const { strides, pad, dataFormat, filterShape } = args.attrs;
      if ((dataFormat ?? 'NHWC') !== 'NHWC' || typeof pad !== 'string') {
        throw new SpikeflowError(
          'INCOMPATIBLE',
          `Conv2DBackpropFilter on wasm: only channels-last (NHWC) input with "same" or "valid" padding, got ${dataFormat} and ${JSON.stringify(pad)}`,
        );
      }
      const [sh, sw] = typeof strides === 'number' ? [strides, strides] : strides;
      const b = args.backend;
      const made: Info[] = [];
      let xs: Info = x;
      let dys: Info = dy;
      let padding: 'same' | 'valid' = pad;
      if (sh > 1 || sw > 1) {
        const [B, H, W, C] = x.shape as [number, number, number, number];
        const [, Ho, Wo, O] = dy.shape as [number, number, number, number];
        const [kh, kw] = filterShape as [number, number];
        const before = (n: number, no: number, k: number, s: number) => (pad === 'same' ? Math.floor(Math.max((no - 1) * s + k - n, 0) / 2) : 0);
        const top = before(H, Ho, kh, sh);
        const left = before(W, Wo, kw, sw);
        const [Hp, Wp] = [(Ho - 1) * sh + kh, (Wo - 1) * sw + kw];
        const xv = b.readSync(x.dataId);
        const xp = new Float32Array(B * Hp * Wp * C);
        for (let n = 0; n < B; n++) {
          for (let r = 0; r < Hp; r++) {
            const i = r - top;
            if (i < 0 || i >= H) continue;
            for (let k = 0; k < Wp; k++) {
              const j = k - left;
              if (j < 0 || j >= W) continue;
              xp.set(xv.subarray(((n * H + i) * W + j) * C, ((n * H + i) * W + j + 1) * C), ((n * Hp + r) * Wp + k) * C);
            }
          }
        }
        const [Hd, Wd] = [(Ho - 1) * sh + 1, (Wo - 1) * sw + 1];
        const dyv = b.readSync(dy.dataId);
        const dyd = new Float32Array(B * Hd * Wd * O);
        for (let n = 0; n < B; n++) {
          for (let i = 0; i < Ho; i++) {
            for (let j = 0; j < Wo; j++)
              dyd.set(dyv.subarray(((n * Ho + i) * Wo + j) * O, ((n * Ho + i) * Wo + j + 1) * O), ((n * Hd + i * sh) * Wd + j * sw) * O);
          }
        }
        const info = (values: Float32Array, shape: number[]): Info => ({ dataId: b.write(values, shape, 'float32'), shape, dtype: 'float32' });
        xs = info(xp, [B, Hp, Wp, C]);
        dys = info(dyd, [B, Hd, Wd, O]);
        made.push(xs, dys);
        padding = 'valid';
      }
      const five = (t: Info): Info => ({ dataId: t.dataId, shape: [t.shape[0]!, 1, ...t.shape.slice(1)], dtype: t.dtype });
      try {
        const out = conv3d.kernelFunc({
          inputs: { x: five(xs), dy: five(dys) },
          backend: b,
          attrs: { strides: [1, 1, 1], pad: padding, filterShape: [1, ...filterShape] },
        } as unknown as Parameters<typeof conv3d.kernelFunc>[0]) as Info;
        return { dataId: out.dataId, shape: filterShape, dtype: out.dtype };
      } finally {
        for (const t of made) b.disposeData(t.dataId);
      }
    }) as unknown as tf.KernelFunc,
  });
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
    conv2dFilterGradient();
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

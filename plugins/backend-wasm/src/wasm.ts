import { SpikeflowError, denseByTransposes, outerSumByEvents, tf, type Backend, type BackendInfo, type KernelRegistration, type Tensor } from '@spikeflow/core';
import * as wasmBackend from '@tensorflow/tfjs-backend-wasm';
import { KERNELS_VERSION, activeThreads, cpuMemoryKernels, prepareKernels, simdAvailable, sumRowsOnHeap } from '@spikeflow/kernels';

// Node's os module where there is one (the CPU's name); a browser has none (a bundler would refuse a static import).
const os = typeof process !== 'undefined' && process.versions?.node ? await import('node:os') : undefined;
const device = (): string =>
  os?.cpus()[0]?.model ?? (typeof navigator !== 'undefined' ? `${navigator.hardwareConcurrency ?? '?'}-core browser CPU` : 'unknown CPU');

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

/** What the conv gradient kernels below use of tfjs-wasm's backend. */
interface ConvHeap {
  readSync(dataId: object): Float32Array;
  write(values: Float32Array, shape: number[], dtype: 'float32'): object;
  disposeData(dataId: object): void;
}

/** The attributes tfjs passes a conv2d gradient kernel. */
interface ConvGradAttrs {
  readonly strides: number | [number, number];
  readonly pad: 'same' | 'valid' | number;
  readonly dataFormat?: string;
  readonly dilations?: number | [number, number];
}

/** Whether the kernels below handle these attributes: channels-last, "same" or "valid" padding, no dilation. */
function plainConv(a: ConvGradAttrs): a is ConvGradAttrs & { pad: 'same' | 'valid' } {
  const dilated = a.dilations !== undefined && (typeof a.dilations === 'number' ? a.dilations !== 1 : a.dilations.some((d) => d !== 1));
  return (a.dataFormat ?? 'NHWC') === 'NHWC' && typeof a.pad === 'string' && !dilated;
}

/** The rows (or columns) TensorFlow's rule pads before an input of n with no outputs, kernel k, stride s. */
function padBefore(pad: 'same' | 'valid', n: number, no: number, k: number, s: number): number {
  return pad === 'same' ? Math.floor(Math.max((no - 1) * s + k - n, 0) / 2) : 0;
}

/** `strides` as a pair. */
const stridePair = (strides: number | [number, number]): [number, number] => (typeof strides === 'number' ? [strides, strides] : strides);

/**
 * tfjs-wasm has no Conv2DBackpropFilter, the weight gradient of conv2d (4.22.0; its 3-D one is
 * slow, and wrong for strides above 1). This one asks it of tfjs-wasm's fast Conv2D:
 * `dW[p, q, c, o] = Σ_{n,i,j} x[n, i·sh + p − top, j·sw + q − left, c]·dy[n, i, j, o]` is a
 * "valid" convolution of the input read as `[C, H′′, W′′, N]` (its channels as the batch, the batch
 * as channels; padded as the forward pass pads it, cut to the rows and columns the windows reach)
 * with the output gradient as its `[H′, W′, N, O]` kernel, dilated by the stride; the `[C, kh, kw,
 * O]` result is laid out as `[kh, kw, C, O]`. Channels-last (`NHWC`) only, as everything in spikeflow.
 */
function conv2dFilterGradient(): void {
  if (tf.getKernel('Conv2DBackpropFilter', 'wasm')) return;
  const conv = tf.getKernel('Conv2D', 'wasm');
  if (!conv) return;
  type Info = tf.TensorInfo;
  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'wasm',
    kernelFunc: ((args: { inputs: { x: Info; dy: Info }; backend: ConvHeap; attrs: ConvGradAttrs & { filterShape: number[] } }) => {
      const { x, dy } = args.inputs;
      const a = args.attrs;
      if (!plainConv(a)) {
        throw new SpikeflowError(
          'INCOMPATIBLE',
          `Conv2DBackpropFilter on wasm: only channels-last (NHWC) input, "same" or "valid" padding and no dilation, got ${a.dataFormat}, ${JSON.stringify(a.pad)} and dilations ${JSON.stringify(a.dilations)}`,
        );
      }
      const { pad, filterShape } = a;
      const [sh, sw] = stridePair(a.strides);
      const [B, H, W, C] = x.shape as [number, number, number, number];
      const [, Ho, Wo, O] = dy.shape as [number, number, number, number];
      const [kh, kw] = filterShape as [number, number];
      const top = padBefore(pad, H, Ho, kh, sh);
      const left = padBefore(pad, W, Wo, kw, sw);
      const b = args.backend;
      // The input as [C, Hp, Wp, B]: padded, and cut to the (Ho − 1)·sh + kh rows (and columns) the windows reach.
      const [Hp, Wp] = [(Ho - 1) * sh + kh, (Wo - 1) * sw + kw];
      const xv = b.readSync(x.dataId);
      const xt = new Float32Array(C * Hp * Wp * B);
      for (let n = 0; n < B; n++) {
        for (let r = 0; r < Hp; r++) {
          const i = r - top;
          if (i < 0 || i >= H) continue;
          for (let k = 0; k < Wp; k++) {
            const j = k - left;
            if (j < 0 || j >= W) continue;
            const from = ((n * H + i) * W + j) * C;
            for (let c = 0; c < C; c++) xt[((c * Hp + r) * Wp + k) * B + n] = xv[from + c]!;
          }
        }
      }
      // The output gradient as a [Ho, Wo, B, O] kernel.
      const dyv = b.readSync(dy.dataId);
      const kernel = new Float32Array(Ho * Wo * B * O);
      for (let n = 0; n < B; n++) {
        for (let i = 0; i < Ho; i++) {
          for (let j = 0; j < Wo; j++) kernel.set(dyv.subarray(((n * Ho + i) * Wo + j) * O, ((n * Ho + i) * Wo + j + 1) * O), ((i * Wo + j) * B + n) * O);
        }
      }
      const input: Info = { dataId: b.write(xt, [C, Hp, Wp, B], 'float32'), shape: [C, Hp, Wp, B], dtype: 'float32' };
      const filter: Info = { dataId: b.write(kernel, [Ho, Wo, B, O], 'float32'), shape: [Ho, Wo, B, O], dtype: 'float32' };
      let out: Info | undefined;
      try {
        out = conv.kernelFunc({
          inputs: { x: input, filter },
          backend: b,
          attrs: { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [sh, sw] },
        } as unknown as Parameters<typeof conv.kernelFunc>[0]) as Info;
        // [C, kh, kw, O] → [kh, kw, C, O].
        const ov = b.readSync(out.dataId);
        const dw = new Float32Array(kh * kw * C * O);
        for (let c = 0; c < C; c++) {
          for (let pq = 0; pq < kh * kw; pq++) dw.set(ov.subarray((c * kh * kw + pq) * O, (c * kh * kw + pq + 1) * O), (pq * C + c) * O);
        }
        return { dataId: b.write(dw, filterShape, 'float32'), shape: filterShape, dtype: 'float32' };
      } finally {
        b.disposeData(input.dataId);
        b.disposeData(filter.dataId);
        if (out) b.disposeData(out.dataId);
      }
    }) as unknown as tf.KernelFunc,
  });
}

/**
 * tfjs-wasm's Conv2DBackpropInput (the input gradient of conv2d) runs far slower than its Conv2D
 * (XNNPACK). For channels-last input without dilation it is asked of Conv2D instead: the input
 * gradient is a stride-1 "valid" convolution of the output gradient — spread out with stride − 1
 * zeros between its entries and padded by kernel − 1 − the forward padding — with the kernel
 * flipped in both axes and its channels swapped. Anything else goes to tfjs-wasm's own kernel.
 */
function conv2dInputGradient(): void {
  const own = tf.getKernel('Conv2DBackpropInput', 'wasm');
  const conv = tf.getKernel('Conv2D', 'wasm');
  if (!own || !conv || (own.kernelFunc as { viaConv2D?: boolean }).viaConv2D) return;
  type Info = tf.TensorInfo;
  const viaConv2D = Object.assign(
    (args: { inputs: { dy: Info; filter: Info }; backend: ConvHeap; attrs: ConvGradAttrs & { inputShape: number[] } }) => {
      const { dy, filter } = args.inputs;
      const a = args.attrs;
      if (!plainConv(a)) return own.kernelFunc(args as unknown as Parameters<typeof own.kernelFunc>[0]);
      const { pad, inputShape } = a;
      const [sh, sw] = stridePair(a.strides);
      const [B, H, W, C] = inputShape as [number, number, number, number];
      const [, Ho, Wo, O] = dy.shape as [number, number, number, number];
      const [kh, kw] = filter.shape as [number, number, number, number];
      const top = padBefore(pad, H, Ho, kh, sh);
      const left = padBefore(pad, W, Wo, kw, sw);
      const b = args.backend;
      // dy spread out and padded: [B, H + kh − 1, W + kw − 1, O], dy[n, i, j] at (i·sh + kh − 1 − top, j·sw + kw − 1 − left).
      const [Hp, Wp] = [H + kh - 1, W + kw - 1];
      const dyv = b.readSync(dy.dataId);
      const spread = new Float32Array(B * Hp * Wp * O);
      for (let n = 0; n < B; n++) {
        for (let i = 0; i < Ho; i++) {
          const r = i * sh + kh - 1 - top;
          for (let j = 0; j < Wo; j++) {
            const from = ((n * Ho + i) * Wo + j) * O;
            spread.set(dyv.subarray(from, from + O), ((n * Hp + r) * Wp + j * sw + kw - 1 - left) * O);
          }
        }
      }
      // The kernel flipped in both axes, [kh, kw, O, C].
      const wv = b.readSync(filter.dataId);
      const flipped = new Float32Array(kh * kw * O * C);
      for (let p = 0; p < kh; p++) {
        for (let q = 0; q < kw; q++) {
          const src = ((kh - 1 - p) * kw + (kw - 1 - q)) * C * O;
          const dst = (p * kw + q) * O * C;
          for (let c = 0; c < C; c++) for (let o = 0; o < O; o++) flipped[dst + o * C + c] = wv[src + c * O + o]!;
        }
      }
      const x: Info = { dataId: b.write(spread, [B, Hp, Wp, O], 'float32'), shape: [B, Hp, Wp, O], dtype: 'float32' };
      const w: Info = { dataId: b.write(flipped, [kh, kw, O, C], 'float32'), shape: [kh, kw, O, C], dtype: 'float32' };
      try {
        return conv.kernelFunc({
          inputs: { x, filter: w },
          backend: b,
          attrs: { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dilations: [1, 1] },
        } as unknown as Parameters<typeof conv.kernelFunc>[0]);
      } finally {
        b.disposeData(x.dataId);
        b.disposeData(w.dataId);
      }
    },
    { viaConv2D: true },
  );
  tf.unregisterKernel('Conv2DBackpropInput', 'wasm');
  tf.registerKernel({ ...own, kernelFunc: viaConv2D as unknown as typeof own.kernelFunc });
}

/**
 * tfjs-wasm's Sum reduces only innermost axes: over leading ones (a bias's gradient, Σ over the
 * rows of `[T·B, H]`) it first transposes the whole input — 62 ms and a second 64 MiB for
 * `[64000, 256]` here. A sum over the leading axes of a float32 tensor is spikeflow's column sum
 * instead, one SIMD pass where the tensor lies in tfjs-wasm's heap (`sumRowsOnHeap`, about 6 ms
 * there). Any other reduction goes to tfjs-wasm's own kernel.
 */
function sumLeadingAxesInPlace(): void {
  const own = tf.getKernel('Sum', 'wasm');
  if (!own || (own.kernelFunc as { inPlace?: boolean }).inPlace) return;
  type Info = tf.TensorInfo;
  const inPlace = Object.assign(
    (args: { inputs: { x: Info }; backend: unknown; attrs: { axis: number | number[]; keepDims: boolean } }) => {
      const { x } = args.inputs;
      const rank = x.shape.length;
      const axes = [...new Set((Array.isArray(args.attrs.axis) ? args.attrs.axis : [args.attrs.axis]).map((a) => (a < 0 ? a + rank : a)))].sort(
        (a, b) => a - b,
      );
      const k = axes.length;
      const rows = x.shape.slice(0, k).reduce((p, d) => p * d, 1);
      const rest = x.shape.slice(k);
      const cols = rest.reduce((p, d) => p * d, 1);
      // Leading axes only, at least one kept; the in-place path only (not on a shared memory).
      const leading = k > 0 && k < rank && axes.every((a, i) => a === i) && rows > 0 && cols > 0;
      const out = leading ? sumRowsOnHeap(x, rows, cols, args.attrs.keepDims ? [...axes.map(() => 1), ...rest] : rest) : undefined;
      return out ?? own.kernelFunc(args as unknown as Parameters<typeof own.kernelFunc>[0]);
    },
    { inPlace: true },
  );
  tf.unregisterKernel('Sum', 'wasm');
  tf.registerKernel({ ...own, kernelFunc: inPlace as unknown as typeof own.kernelFunc });
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
    // In a browser that is cross-origin isolated, tfjs would pick its threaded build, whose pthread
    // workers are started from a script that bundlers break (Vite: "e is not defined", then a hang):
    // tfjs' own ops stay on one thread there, as in Node.
    if (!os) tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
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
    conv2dInputGradient();
    sumLeadingAxesInPlace();
    const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
    const tfjsThreads = typeof wasmBackend.getThreadsCount === 'function' ? wasmBackend.getThreadsCount() : 1;
    tfjsInfo = { simd, tfjsThreads };
    // Compile the kernels ahead (a page should not compile them synchronously in its first kernel
    // call; there they also start their Web Workers), and start their thread pool now.
    if ((await prepareKernels()) && simdAvailable()) activeThreads();
  },
  describe(): BackendInfo {
    if (!tfjsInfo) return { tfBackend: 'wasm', device: device(), threads: 1, details: { activated: false } };
    // tfjs' own kernels run on one thread; spikeflow's fused kernels on every core (worker
    // threads): the count running now (a pool short of workers that did not start counts less).
    const simd = simdAvailable();
    const kernelThreads = simd ? activeThreads() : 0;
    return {
      tfBackend: 'wasm',
      device: device(),
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

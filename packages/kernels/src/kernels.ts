import {
  SpikeflowError,
  checkPresynapticTraces,
  leakyReadoutOf,
  integrateFireLayerOf,
  tf,
  type Conv2dOptions,
  type PoolOptions,
  type PresynapticTraces,
  type IntegrateFireSequenceParams,
  type IntegrateFireSequenceResult,
  type IntegrateFireState,
  type LeakyReadoutOptions,
  type LeakyScanOptions,
  type Tensor,
} from '@spikeflow/core';
import { activeThreads, arena, inKernel, parallelRows, partsFor, scanWork, snn, type Arena } from './wasm.js';

/**
 * spikeflow's fast SNN kernels for tfjs backends whose tensors live in CPU memory (wasm, cpu).
 * The loops run in WebAssembly with SIMD (assembly/snn.ts); each kernel is one node on the
 * gradient tape whose backward pass computes only the gradients something upstream needs (tfjs
 * calls a gradient thunk only for inputs on the path to the parameters), and does work in
 * proportion to the spikes where an operand is spikes.
 */

/**
 * Above this fraction of non-zero entries, a dense matrix product (XNNPACK on wasm) is faster than
 * adding rows: measured on the bench's shapes, SIMD row additions run at ~5·10⁹ floats/s and the
 * dense product at ~9·10⁹ multiply-adds/s.
 */
export const EVENT_DENSITY_LIMIT = 0.3;

type GradThunks = Record<string, () => Tensor>;
export interface KernelFuncParams {
  forwardFunc: (backend: unknown, save: (tensors: Tensor[]) => void) => Tensor | Tensor[];
  backwardsFunc: (dy: Tensor | Tensor[], saved: Tensor[]) => GradThunks;
  inputs: Record<string, Tensor>;
}

/** Runs `f` as the region `name` (a profiler times it); see {@link setKernelProbe}. */
export type KernelProbe = <T>(name: string, f: () => T) => T;

let probe: KernelProbe | undefined;

/**
 * Installs (or, without an argument, removes) a probe around every part of these kernels: the
 * forward pass, the backward pass and each input's gradient, named `spikeflow.integrateFireSequence
 * (forward)`, `spikeflow.integrateFireSequence (∂wRec)`, … The bench's `--profile` times them with it.
 */
export function setKernelProbe(p?: KernelProbe): void {
  probe = p;
}

/** Runs `f` as the region `name`: probed, and named by the errors the kernels raise in it. */
export const probed = <T>(name: string, f: () => T): T => inKernel(name, () => (probe ? probe(name, f) : f()));

/**
 * Whether ops now are recorded for a backward pass (inference skips what only the backward pass
 * reads). Ask before the op runs: inside a kernel the engine reports the tape off.
 */
function taped(): boolean {
  const engine = tf.engine() as unknown as { isTapeOn?: () => boolean };
  return engine.isTapeOn?.() ?? true;
}

/**
 * Runs `forward` as one op on the gradient tape with a backward pass that returns one thunk per
 * input: the engine's own mechanism for registered kernels, used here for a function. The
 * backward pass must read only `saved` tensors (the inputs may be freed by then).
 */
export function customOp(kernel: string, params: KernelFuncParams): Tensor {
  return customOps(kernel, params)[0]!;
}

/**
 * {@link customOp} with every output the forward pass returns, in order (the backward pass gets
 * one gradient per output, zeros for an output that nothing downstream read).
 */
export function customOps(kernel: string, params: KernelFuncParams): Tensor[] {
  const engine = tf.engine() as unknown as { runKernelFunc(p: KernelFuncParams): Tensor | Tensor[] };
  const out = engine.runKernelFunc({
    inputs: params.inputs,
    forwardFunc: (b, save) => probed(`${kernel} (forward)`, () => params.forwardFunc(b, save)),
    backwardsFunc: (dy, saved) => {
      const thunks = probed(`${kernel} (backward)`, () => params.backwardsFunc(dy, saved));
      return Object.fromEntries(Object.entries(thunks).map(([k, f]) => [k, () => probed(`${kernel} (∂${k})`, f)]));
    },
  });
  return Array.isArray(out) ? out : [out];
}

/** A tensor with a copy of `values` (which may be a view of the kernels' scratch memory). */
export function tensorOf(values: Float32Array | Int32Array, shape: number[], dtype: 'float32' | 'int32' = 'float32'): Tensor {
  // The wasm backend copies into its own heap; the cpu backend keeps the array it is given.
  return tf.tensor(tf.getBackend() === 'wasm' ? values : values.slice(), shape, dtype);
}

/**
 * The values of `t`. On the wasm backend a view of its heap, without the copy `dataSync` makes:
 * valid until tfjs next allocates, so copy out of it at once.
 */
export function readF32(t: Tensor): Float32Array {
  return (heapView(t) as Float32Array | undefined) ?? (t.dataSync() as Float32Array);
}

function readI32(t: Tensor): Int32Array {
  return (heapView(t) as Int32Array | undefined) ?? (t.dataSync() as Int32Array);
}

/** On the wasm backend, a view of a float32 or int32 tensor's memory in tfjs' heap (else undefined). */
function heapView(t: Tensor): Float32Array | Int32Array | undefined {
  if ((t.dtype !== 'float32' && t.dtype !== 'int32') || tf.getBackend() !== 'wasm') return undefined;
  const b = tf.backend() as unknown as { dataIdMap?: { get(id: object): { memoryOffset?: number } | undefined }; wasm?: { HEAPU8?: Uint8Array } };
  const at = b.dataIdMap?.get(t.dataId)?.memoryOffset;
  const heap = b.wasm?.HEAPU8;
  if (typeof at !== 'number' || !heap) return undefined;
  return t.dtype === 'int32' ? new Int32Array(heap.buffer, heap.byteOffset + at, t.size) : new Float32Array(heap.buffer, heap.byteOffset + at, t.size);
}

/** The slope of core's `fast_sigmoid`, which the LIF kernel computes itself; else 0. */
function fastSigmoidSlope(s: IntegrateFireSequenceParams['surrogate']): number {
  const slope = s.params['slope'];
  return s.name === 'fast_sigmoid' && typeof slope === 'number' && slope > 0 ? slope : 0;
}

/** The events (compressed sparse rows) of `x [N, I]` in the arena; see assembly/snn.ts. */
interface EventsAt {
  readonly ptr: number;
  readonly cols: number;
  readonly vals: number;
  readonly nnz: number;
  /** Every value is 1 (spikes): the row additions skip the multiplication. */
  readonly binary: boolean;
}

/** Where rows `[base, base + R)` of a `[·, O]` matrix lie packed by {@link packed}. */
interface Packed {
  readonly at: number;
  readonly R: number;
  readonly base: number;
}

/** Packs rows `[base, base + R)` of `w [·, O]` into 16-column blocks at `at` (which holds `R·O` floats). */
function packed(w: number, base: number, R: number, O: number, at: number): Packed {
  snn().packBlocks(w + base * O * 4, R, O, at);
  return { at, R, base };
}

/**
 * `out [N, O]` = the rows of `w` the events name, summed per row (plus `bias [O]` at that offset,
 * 0: none); rows split over the threads.
 */
function scatter(ev: EventsAt, N: number, w: number, p: Packed, O: number, out: number, accumulate = false, bias = 0): void {
  parallelRows(
    'scatterRowRange',
    N,
    (n0, n1) => [ev.ptr, ev.cols, ev.vals, n0, n1, w, p.at, p.R, p.base, O, out, accumulate ? 1 : 0, ev.binary ? 1 : 0, bias],
    (ev.nnz + N) * O,
  );
}

/** The non-zero entries of `x [N, I]` at `px`: their number, and where each thread's rows start. */
interface Counted {
  readonly nnz: number;
  readonly starts: readonly number[];
  /** The work the split was chosen for: {@link eventsIn} splits the rows the same way. */
  readonly work: number;
}

function countIn(a: Arena, px: number, N: number, I: number): Counted {
  const work = scanWork(N * I);
  const parts = partsFor(N, work);
  const at = a.alloc(parts);
  a.commit();
  parallelRows('countRows', N, (n0, n1, part) => [px, n0, n1, I, at + 4 * part], work);
  const starts = [0];
  for (const c of a.i32(at, parts)) starts.push(starts.at(-1)! + c);
  return { nnz: starts.pop()!, starts, work };
}

/** The events of `x [N, I]` at `px` (counted by {@link countIn}), built by every thread. */
function eventsIn(a: Arena, px: number, N: number, I: number, counted: Counted): EventsAt {
  // Room for 4 more entries: the listing stores 4 at a time (assembly/snn.ts, rowEvents).
  const ev = { ptr: a.alloc(N + 1), cols: a.alloc(counted.nnz + 4), vals: a.alloc(counted.nnz + 4), nnz: counted.nnz };
  a.commit();
  // Each range stops short of the next one's entries (the last has 4 entries of room).
  parallelRows(
    'events',
    N,
    (n0, n1, part) => [px + 4 * n0 * I, n0, n1, I, ev.ptr, ev.cols, ev.vals, counted.starts[part]!, counted.starts[part + 1] ?? counted.nnz + 4],
    counted.work,
  );
  return { ...ev, binary: snn().allOnes(ev.vals, ev.nnz) !== 0 };
}

/** Bytes of `x` staged at a time by {@link streamEvents}: a slice that stays in the core's cache. */
const STAGE_BYTES = 128 << 10;

/**
 * The events of `x [N, I]`, read where it lies (tfjs' heap on wasm) a slice of rows at a time:
 * each slice is copied into the arena and listed while it is in cache, so the input is read once
 * and never copied whole (a copy and two passes over it took twice as long on the bench's input).
 * The lists are given room for `limit` of `x`; undefined where more than that is non-zero (a dense
 * product is faster then).
 */
function streamEvents(a: Arena, x: Float32Array, N: number, I: number, limit: number): EventsAt | undefined {
  const rows = Math.max(1, Math.min(N, Math.floor(STAGE_BYTES / (4 * I))));
  const max = Math.floor(limit * N * I);
  // A slice is checked after it is listed: room for one more slice past the limit, and for the
  // 3 entries the listing may store past the last (assembly/snn.ts, rowEvents).
  const room = max + rows * I + 4;
  const stage = a.alloc(rows * I);
  const ptr = a.alloc(N + 1);
  const cols = a.alloc(room);
  const vals = a.alloc(room);
  a.commit();
  const m = snn();
  const staged = a.f32(stage, rows * I);
  const ends = a.i32(ptr, N + 1);
  for (let n0 = 0, k = 0; n0 < N; n0 += rows) {
    const n1 = Math.min(N, n0 + rows);
    staged.set(x.subarray(n0 * I, n1 * I));
    m.events(stage, n0, n1, I, ptr, cols, vals, k, room);
    k = ends[n1]!;
    if (k > max) return undefined;
  }
  return { ptr, cols, vals, nnz: ends[N]!, binary: m.allOnes(vals, ends[N]!) !== 0 };
}

/** Rows of g per chunk of `xᵀ·g` (about 4 MiB of g): the rows a chunk's events read stay in cache. */
const CHUNK_BYTES = 4 << 20;

/**
 * `xᵀ·g` (`[I, O]`) for `x [N, I]` given by its events in the arena and `g [N, O]` at `pg`, chunk
 * of rows by chunk: each chunk's events are transposed (a counting sort) so that every output row
 * is summed in registers over the chunk and added in once; threads split the output rows.
 * Returns the output's offset.
 */
function transposedProduct(a: Arena, ev: EventsAt, N: number, I: number, pg: number, O: number): number {
  const out = a.alloc(I * O);
  const t = { ptr: a.alloc(I + 1), cols: a.alloc(ev.nnz), vals: a.alloc(ev.nnz), nnz: ev.nnz, binary: ev.binary };
  const chunk = Math.max(1, Math.floor(CHUNK_BYTES / (4 * O)));
  const pack = a.alloc(Math.min(chunk, Math.max(N, 1)) * O);
  a.commit();
  let n0 = 0;
  do {
    const n1 = Math.min(N, n0 + chunk);
    snn().transposeEvents(ev.ptr, ev.cols, ev.vals, n0, n1, I, t.ptr, t.cols, t.vals);
    // The first chunk writes the output, the others add to it.
    scatter({ ...t, nnz: Math.ceil((ev.nnz * (n1 - n0)) / Math.max(1, N)) }, I, pg, packed(pg, n0, n1 - n0, O, pack), O, out, n0 > 0);
    n0 = n1;
  } while (n0 < N);
  return out;
}

/**
 * `xᵀ·g` for `x [N, I]` given by saved event tensors and `g [N, O]` (a tensor, or its values).
 * `around` works on `g` in the arena before the product and on the product after it (OTTT's
 * traced gradient: the reverse filter, then the start-trace term).
 */
function eventsTransposedTimes(
  ptr: Tensor,
  cols: Tensor,
  vals: Tensor,
  g: Tensor | Float32Array,
  N: number,
  I: number,
  O: number,
  around?: { readonly before: (a: Arena, pg: number) => void; readonly after: (a: Arena, pg: number, out: number) => void },
): Tensor {
  const a = arena({ rows: N, width: `${I} → ${O}` });
  const nnz = cols.size;
  const at = { ptr: a.alloc(N + 1), cols: a.alloc(nnz), vals: a.alloc(nnz) };
  const pg = a.alloc(N * O);
  a.commit();
  a.i32(at.ptr, N + 1).set(readI32(ptr));
  a.i32(at.cols, nnz).set(readI32(cols));
  a.f32(at.vals, nnz).set(readF32(vals));
  const ev = { ...at, nnz, binary: snn().allOnes(at.vals, nnz) !== 0 };
  a.f32(pg, N * O).set(g instanceof Float32Array ? g : readF32(g));
  around?.before(a, pg);
  const out = transposedProduct(a, ev, N, I, pg, O);
  around?.after(a, pg, out);
  return tensorOf(a.f32(out, I * O), [I, O]);
}

/** A product's forward pass on a tape node: its value, and what its weight gradient reads. */
interface ProductForward {
  readonly out: Tensor;
  /** Whether it ran by events: `save` holds the events (ptr, cols, vals), else `x` itself. */
  readonly sparse: boolean;
  /** What the weight gradient reads (after `w`), to save; the ones made here are freed after saving (`made`). */
  readonly save: Tensor[];
  readonly made: Tensor[];
}

/**
 * `x [N, I]·W (+ b)` adding W's rows of the active entries of `x` (the bias added to every row's
 * sum), or a dense product where more than {@link EVENT_DENSITY_LIMIT} of `x` is non-zero. On a
 * tape, the events (or `x`) are kept for the weight gradient.
 */
function productForward(x: Tensor, w: Tensor, b: Tensor | undefined, tape: boolean): ProductForward {
  const [N, I] = x.shape as [number, number];
  const O = w.shape[1]!;
  const a = arena({ rows: N, width: `${I} → ${O}` });
  const ev = streamEvents(a, readF32(x), N, I, EVENT_DENSITY_LIMIT);
  if (!ev) {
    const out = tf.tidy(() => (b ? tf.add(tf.matMul(x, w), b) : tf.matMul(x, w)));
    return { out, sparse: false, save: [x], made: [] };
  }
  const pw = a.alloc(I * O);
  const pp = a.alloc(I * O);
  const pb = b ? a.alloc(O) : 0;
  const out = a.alloc(N * O);
  a.commit()
    .f32(pw, I * O)
    .set(readF32(w));
  if (b) a.f32(pb, O).set(readF32(b));
  scatter(ev, N, pw, packed(pw, 0, I, O, pp), O, out, false, pb);
  const evT = tape ? eventsAsTensors(a, ev, N) : [];
  return { out: tensorOf(a.f32(out, N * O), [N, O]), sparse: true, save: evT, made: evT };
}

/** `xᵀ·g` for `x [N, I]` as {@link productForward} saved it (`saved`: the events, or x) and `g [N, O]`. */
function savedTransposedTimes(sparse: boolean, saved: Tensor[], g: Tensor | Float32Array, N: number, I: number, O: number): Tensor {
  if (sparse) return eventsTransposedTimes(saved[0]!, saved[1]!, saved[2]!, g, N, I, O);
  return tf.tidy(() => tf.matMul(tf.transpose(saved[0]!), g instanceof Float32Array ? tf.tensor2d(g, [N, O]) : g));
}

/**
 * `spikeflow.eventDense`: `x·W` adding W's rows of the active entries of `x` only (a dense product
 * where more than {@link EVENT_DENSITY_LIMIT} of `x` is non-zero). The weight gradient `xᵀ·dy`
 * visits only the active rows; the input gradient `dy·Wᵀ` is a dense product, computed only when
 * `x` is on a gradient path (not for the data).
 */
export function eventDense(x: Tensor, w: Tensor): Tensor {
  if (x.rank !== 2 || w.rank !== 2 || x.shape[1] !== w.shape[0]) {
    throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.eventDense: expected x [N, I] and W [I, O], got [${x.shape}] and [${w.shape}]`);
  }
  const [N, I] = x.shape as [number, number];
  const O = w.shape[1]!;
  const tape = taped();
  let sparse = false;
  return customOp('spikeflow.eventDense', {
    inputs: { x, w },
    forwardFunc: (_, save) => {
      const f = productForward(x, w, undefined, tape);
      sparse = f.sparse;
      save([w, ...f.save]);
      tf.dispose(f.made);
      return f.out;
    },
    backwardsFunc: (dy, [ws, ...saved]) => ({
      x: () => tf.tidy(() => tf.matMul(dy as Tensor, tf.transpose(ws!))),
      w: () => savedTransposedTimes(sparse, saved, dy as Tensor, N, I, O),
    }),
  });
}

/**
 * `spikeflow.maxPool`: max pooling of channels-last images over `valid` windows in one pass
 * (`maxPoolFirst`, images split over the threads) that also records where each maximum came from —
 * the first in row-major window order — so that the gradient is one pass adding each output's
 * gradient there (`maxPoolFirstBack`), where the reference takes a dozen whole-tensor ops.
 */
export function maxPool(x: Tensor, g: PoolOptions): Tensor {
  const [ph, pw] = g.size;
  const [sh, sw] = g.stride;
  if (x.rank !== 4 || x.dtype !== 'float32') {
    throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.maxPool: expected float32 images x [N, H, W, C], got ${x.dtype} [${x.shape}]`);
  }
  const [N, H, W, C] = x.shape as [number, number, number, number];
  const Ho = Math.floor((H - ph) / sh) + 1;
  const Wo = Math.floor((W - pw) / sw) + 1;
  if (!(Ho >= 1 && Wo >= 1 && sh >= 1 && sw >= 1)) {
    throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.maxPool: ${ph}×${pw} windows at stride ${sh}×${sw} leave no output of [${H}, ${W}]`);
  }
  const size = { rows: N, width: `${H}×${W}×${C} → ${Ho}×${Wo}×${C}` };
  return customOp('spikeflow.maxPool', {
    inputs: { x },
    forwardFunc: (_, save) => {
      const a = arena(size);
      const px = a.alloc(N * H * W * C);
      const out = a.alloc(N * Ho * Wo * C);
      const arg = a.alloc(N * Ho * Wo * C);
      a.commit()
        .f32(px, N * H * W * C)
        .set(readF32(x));
      parallelRows('maxPoolFirst', N, (n0, n1) => [px, n0, n1, H, W, C, ph, pw, sh, sw, Ho, Wo, out, arg], N * Ho * Wo * C * ph * pw);
      const argT = tensorOf(a.i32(arg, N * Ho * Wo * C), [N, Ho, Wo, C], 'int32');
      save([argT]);
      argT.dispose();
      return tensorOf(a.f32(out, N * Ho * Wo * C), [N, Ho, Wo, C]);
    },
    backwardsFunc: (dy, [argT]) => ({
      x: () => {
        const a = arena(size);
        const pdy = a.alloc(N * Ho * Wo * C);
        const parg = a.alloc(N * Ho * Wo * C);
        const pdx = a.alloc(N * H * W * C);
        a.commit();
        a.f32(pdy, N * Ho * Wo * C).set(readF32(dy as Tensor));
        a.i32(parg, N * Ho * Wo * C).set(readI32(argT!));
        snn().maxPoolFirstBack(pdy, parg, N, H, W, C, Ho, Wo, pdx);
        return tensorOf(a.f32(pdx, N * H * W * C), [N, H, W, C]);
      },
    }),
  });
}

/** The events listed in an arena as tensors (`ptr` and `cols` int32, `vals`), to save for a backward pass. */
function eventsAsTensors(a: Arena, ev: EventsAt, N: number): Tensor[] {
  return [tensorOf(a.i32(ev.ptr, N + 1), [N + 1], 'int32'), tensorOf(a.i32(ev.cols, ev.nnz), [ev.nnz], 'int32'), tensorOf(a.f32(ev.vals, ev.nnz), [ev.nnz])];
}

/** Every non-zero entry of `x [N, I]` as event tensors (no density limit). */
function eventTensors(x: Tensor, N: number, I: number): Tensor[] {
  const a = arena({ rows: N, width: I });
  return eventsAsTensors(a, streamEvents(a, readF32(x), N, I, 1)!, N);
}

/** Above this fraction of non-zero inputs, {@link eventConv2d} takes tfjs' dense convolution and its gradients. */
const CONV_DENSITY_LIMIT = 0.25;

/** The output size and the padding before the first row (or column) of a convolution, by TensorFlow's rule. */
function convAxis(n: number, k: number, s: number, padding: 'same' | 'valid'): { out: number; before: number } {
  if (padding === 'valid') return { out: Math.floor((n - k) / s) + 1, before: 0 };
  const out = Math.ceil(n / s);
  return { out, before: Math.floor(Math.max(0, (out - 1) * s + k - n) / 2) };
}

/**
 * `spikeflow.eventConv2d`: a channels-last convolution (TensorFlow's `conv2d`) that visits only the
 * non-zero inputs. The forward pass lists each image's events and adds, for each, the kernel's
 * weights into every output position it reaches (`convEvents`, images split over the threads);
 * the filter gradient pairs the same events with the output gradient (`convFilterEvents`, one
 * thread: the same sums on any thread count); the input gradient, a dense transposed convolution
 * of the output gradient, is tfjs' (`conv2dTranspose`), only where `x` is on a gradient path.
 * Where more than {@link CONV_DENSITY_LIMIT} of `x` is non-zero, it is tfjs' `conv2d` and its
 * gradients.
 */
export function eventConv2d(x: Tensor, w: Tensor, g: Conv2dOptions): Tensor {
  if (x.rank !== 4 || w.rank !== 4 || x.shape[3] !== w.shape[2]) {
    throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.eventConv2d: expected x [N, H, W, C] and w [kh, kw, C, O], got [${x.shape}] and [${w.shape}]`);
  }
  const [N, H, W, C] = x.shape as [number, number, number, number];
  const [kh, kw, , O] = w.shape as [number, number, number, number];
  const [sh, sw] = g.stride;
  const rows = convAxis(H, kh, sh, g.padding);
  const cols = convAxis(W, kw, sw, g.padding);
  if (!(rows.out >= 1 && cols.out >= 1)) {
    throw new SpikeflowError(
      'SHAPE_MISMATCH',
      `spikeflow.eventConv2d: a ${kh}×${kw} kernel with stride ${sh}×${sw} and '${g.padding}' padding leaves no output of [${H}, ${W}]`,
    );
  }
  const [Ho, Wo] = [rows.out, cols.out];
  const I = H * W * C;
  const geometry = [sh, sw, rows.before, cols.before, Ho, Wo] as const;
  const stride = [sh, sw] as [number, number];
  let sparse = false;
  const size = { rows: N, width: `${H}×${W}×${C} → ${Ho}×${Wo}×${O}` };
  /** The filter gradient by events (`ptr`, `cols`, `vals` tensors) and the output gradient. */
  const filterGradient = ([ptrT, colsT, valsT]: readonly Tensor[], dy: Tensor): Tensor => {
    const nnz = colsT!.size;
    const a = arena(size);
    const at = { ptr: a.alloc(N + 1), cols: a.alloc(nnz), vals: a.alloc(nnz) };
    const pdy = a.alloc(N * Ho * Wo * O);
    const pdw = a.alloc(kh * kw * C * O);
    a.commit();
    a.i32(at.ptr, N + 1).set(readI32(ptrT!));
    a.i32(at.cols, nnz).set(readI32(colsT!));
    a.f32(at.vals, nnz).set(readF32(valsT!));
    a.f32(pdy, N * Ho * Wo * O).set(readF32(dy));
    const ones = snn().allOnes(at.vals, nnz) !== 0;
    snn().convFilterEvents(at.ptr, at.cols, at.vals, N, W, C, pdy, kh, kw, O, ...geometry, pdw, ones ? 1 : 0);
    return tensorOf(a.f32(pdw, kh * kw * C * O), [kh, kw, C, O]);
  };
  return customOp('spikeflow.eventConv2d', {
    inputs: { x, w },
    forwardFunc: (_, save) => {
      const a = arena(size);
      const ev = streamEvents(a, readF32(x), N, I, CONV_DENSITY_LIMIT);
      if (!ev) {
        save([x, w]);
        return tf.tidy(() => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, stride, g.padding));
      }
      sparse = true;
      const pw = a.alloc(kh * kw * C * O);
      const out = a.alloc(N * Ho * Wo * O);
      a.commit()
        .f32(pw, kh * kw * C * O)
        .set(readF32(w));
      parallelRows(
        'convEvents',
        N,
        (n0, n1) => [ev.ptr, ev.cols, ev.vals, n0, n1, W, C, pw, kh, kw, O, ...geometry, out, ev.binary ? 1 : 0],
        ev.nnz * kh * kw * O + N,
      );
      const evT = eventsAsTensors(a, ev, N);
      save([w, ...evT]);
      tf.dispose(evT);
      return tensorOf(a.f32(out, N * Ho * Wo * O), [N, Ho, Wo, O]);
    },
    backwardsFunc: (dy, saved) => {
      const wT = sparse ? saved[0]! : saved[1]!;
      return {
        x: () => tf.conv2dTranspose(dy as tf.Tensor4D, wT as tf.Tensor4D, [N, H, W, C], stride, g.padding),
        w: () => {
          if (!sparse && tf.getKernel('Conv2DBackpropFilter', tf.getBackend())) {
            // tfjs' own filter gradient (the kernel its conv2d's gradient runs).
            const attrs = { strides: stride, pad: g.padding, dataFormat: 'NHWC', filterShape: [kh, kw, C, O] };
            return tf.engine().runKernel('Conv2DBackpropFilter', { x: saved[0]!, dy: dy as Tensor }, attrs as never) as Tensor;
          }
          if (!sparse) {
            // No filter gradient kernel on this backend (tfjs-wasm alone): by events all the same.
            const events = eventTensors(saved[0]!, N, I);
            try {
              return filterGradient(events, dy as Tensor);
            } finally {
              tf.dispose(events);
            }
          }
          return filterGradient(saved.slice(1), dy as Tensor);
        },
      };
    },
  });
}

/**
 * `g` filtered backward in time with decay λ: ĝ_t = g_t + λ·ĝ_{t+1} for `g [T, n]` (one SIMD
 * pass, `leakyScanBack`); a copy of `g` where λ = 0.
 */
function reverseFiltered(g: Float32Array, T: number, n: number, lambda: number): Float32Array {
  if (lambda === 0) return g.slice();
  const a = arena({ T, width: n });
  const pg = a.alloc(T * n);
  a.commit()
    .f32(pg, T * n)
    .set(g);
  snn().leakyScanBack(pg, Math.fround(lambda), T, n, pg);
  return a.f32(pg, T * n).slice();
}

/**
 * Presynaptic traces in a weight gradient made in the kernels' memory (see core's
 * `PresynapticTraces`): `filter` turns g `[T, n]` at `pg` into ĝ in place (before the product
 * `xᵀ·ĝ`), `start` adds `λ·a0ᵀ·ĝ_0` to the product `[I, O]` at `out` (`a0 [B, I]`, the trace before
 * the window; dense, one register-blocked product). `plusStartTerm` is the start term in tfjs ops
 * for the dense paths (freeing `product`).
 */
const traced = {
  filter(pg: number, T: number, n: number, lambda: number): void {
    if (lambda > 0) snn().leakyScanBack(pg, Math.fround(lambda), T, n, pg);
  },
  start(a: Arena, pg: number, out: number, a0: Tensor | undefined, lambda: number, B: number, I: number, O: number): void {
    if (!a0 || lambda === 0) return;
    const pa = a.alloc(B * I);
    const pt = a.alloc(B * I);
    const pp = a.alloc(I * O);
    a.commit()
      .f32(pa, B * I)
      .set(readF32(a0));
    snn().addTransposedProduct(pa, B, I, pg, O, pt, pp, out, Math.fround(lambda));
  },
  plusStartTerm(product: Tensor, a0: Tensor | undefined, lambda: number, first: Float32Array, B: number): Tensor {
    if (!a0 || lambda === 0) return product;
    const O = product.shape[1]!;
    const scaled = first.map((g) => lambda * g);
    const out = tf.tidy(() => tf.add(product, tf.matMul(tf.transpose(a0), tf.tensor2d(scaled, [B, O]))));
    product.dispose();
    return out;
  },
};

/**
 * W's gradient with presynaptic traces, `Σ_τ x_τᵀ·ĝ_τ + λ·a0ᵀ·ĝ_0`, for `x [T·B, I]` as
 * {@link productForward} saved it and the product's gradient `g [T, B, O]`: by events, g filtered
 * in place in the kernels' memory; a dense product where x was dense.
 */
function tracedTransposedTimes(
  sparse: boolean,
  saved: Tensor[],
  g: Tensor,
  T: number,
  B: number,
  I: number,
  O: number,
  lambda: number,
  a0: Tensor | undefined,
): Tensor {
  const N = T * B;
  if (!sparse) {
    const filtered = reverseFiltered(readF32(g), T, B * O, lambda);
    const product = tf.tidy(() => tf.matMul(tf.transpose(saved[0]!), tf.tensor2d(filtered, [N, O])));
    return traced.plusStartTerm(product, a0, lambda, filtered.subarray(0, B * O), B);
  }
  return eventsTransposedTimes(saved[0]!, saved[1]!, saved[2]!, g, N, I, O, {
    before: (_, pg) => traced.filter(pg, T, B * O, lambda),
    after: (a, pg, out) => traced.start(a, pg, out, a0, lambda, B, I, O),
  });
}

/** c_t of every step of a window of `T` steps from the bias trace `c0` before it: c_t = λ·c_{t−1} + 1 (in float64, stored as float32). */
function biasTraces(T: number, lambda: number, c0: number): Float32Array {
  const c = new Float32Array(T);
  for (let t = 0, ct = c0; t < T; t++) c[t] = ct = lambda * ct + 1;
  return c;
}

/**
 * A window's input product `x [T, B, I]·W (+ b)` → `[T, B, O]` whose weight and bias gradients
 * take presynaptic traces (core's `TracedProduct`; OTTT): the value and the input gradient `g·Wᵀ`
 * as {@link eventDense}'s; W's gradient `Σ_τ x_τᵀ·ĝ_τ + λ·â_{t0−1}ᵀ·ĝ_{t0}`, ĝ the output's
 * gradient filtered backward in time (one SIMD pass) and the product by events as eventDense's;
 * b's `Σ_t c_t·Σ_b g_t` (one SIMD pass). What the fast `spikeflow.integrateFireLayer` and
 * `spikeflow.leakyReadout` run on a tape with traces.
 */
export function tracedProduct(x: Tensor, w: Tensor, b: Tensor | undefined, traces: PresynapticTraces): Tensor {
  if (x.rank !== 3) throw new SpikeflowError('SHAPE_MISMATCH', `traced product: expected x [T, B, I], got [${x.shape}]`);
  const [T, B, I] = x.shape as [number, number, number];
  checkProduct('traced product', x, w, b);
  checkPresynapticTraces('traced product', traces, B, { input: I });
  const O = w.shape[1]!;
  const N = T * B;
  const lambda = traces.decay;
  const a0 = lambda > 0 ? traces.input : undefined;
  const tape = taped();
  let sparse = false;
  const inputs: Record<string, Tensor> = { x, w };
  if (b) inputs['b'] = b;
  return customOp('spikeflow.tracedProduct', {
    inputs,
    forwardFunc: (_, save) => {
      const f = productForward(tf.reshape(x, [N, I]), w, b, tape);
      sparse = f.sparse;
      // The trace before the window is saved last (where the weight gradient reads it).
      save([w, ...f.save, ...(a0 ? [a0] : [])]);
      tf.dispose(f.made);
      return tf.reshape(f.out, [T, B, O]);
    },
    backwardsFunc: (dy, [ws, ...rest]) => {
      const g = dy as Tensor;
      const saved = a0 ? rest.slice(0, -1) : rest;
      const a0s = a0 ? rest.at(-1) : undefined;
      return {
        x: () => tf.tidy(() => tf.reshape(tf.matMul(tf.reshape(g, [N, O]), tf.transpose(ws!)), [T, B, I])),
        w: () => tracedTransposedTimes(sparse, saved, g, T, B, I, O, lambda, a0s),
        b: () => {
          // Σ_t c_t·Σ_b g_t: each step's rows summed in float32, the steps in float64.
          const a = arena({ T, batch: B, width: O });
          const pg = a.alloc(N * O);
          const pc = a.alloc(T);
          const row = a.alloc(O);
          const out = a.alloc(2 * O);
          a.commit();
          a.f32(pg, N * O).set(readF32(g));
          a.f32(pc, T).set(biasTraces(T, lambda, traces.bias ?? 0));
          snn().stepWeightedSums(pg, T, B, O, pc, row, out);
          const sums = a.f32(out, 2 * O);
          return tf.tensor1d(Float32Array.from(new Float64Array(sums.buffer, sums.byteOffset, O)));
        },
      };
    },
  });
}

/**
 * `spikeflow.decayedSum`: a presynaptic trace after a window, `â ← λ·â + x_j` over the steps of
 * `x [k, B, n]` from `before` (zero where absent): the leaky scan run in place in the kernels'
 * memory (one SIMD pass; the same float32 operations as the steps one at a time), its last step.
 */
export function decayedSum(x: Tensor, decay: number, before?: Tensor): Tensor {
  const [k, B, n] = x.shape as [number, number, number];
  if (x.rank !== 3 || (before && before.shape.join() !== `${B},${n}`)) {
    throw new SpikeflowError(
      'SHAPE_MISMATCH',
      `spikeflow.decayedSum: expected x [k, B, n] and a trace before it [B, n], got [${x.shape}] and ${before ? `[${before.shape}]` : 'none'}`,
    );
  }
  if (!(decay >= 0 && decay <= 1)) throw new SpikeflowError('CONFIG_INVALID', `spikeflow.decayedSum: the decay λ must be in [0, 1], got ${decay}`);
  return probed('spikeflow.decayedSum', () => {
    const m = B * n;
    const a = arena({ T: k, batch: B, width: n });
    const px = a.alloc(k * m);
    const p0 = a.alloc(m);
    a.commit();
    const xf = x.dtype === 'float32' ? x : tf.cast(x, 'float32');
    a.f32(px, k * m).set(readF32(xf));
    if (xf !== x) xf.dispose();
    if (before && decay > 0) a.f32(p0, m).set(readF32(before));
    else a.f32(p0, m).fill(0);
    snn().leakyScan(px, p0, Math.fround(decay), k, m, px);
    return tensorOf(a.f32(px + 4 * (k - 1) * m, m), [B, n]);
  });
}

/** The LIF forward pass's results in the arena: views are taken on demand (the arena may grow). */
interface LifRun {
  readonly V: () => Float32Array;
  readonly S: () => Float32Array;
  /** The adaptation a_t of every step (with an adaptive threshold; else empty). */
  readonly A: () => Float32Array;
  /** The state after the last step (`a` with an adaptive threshold). */
  readonly last: { readonly v: Float32Array; readonly s: Float32Array; readonly a?: Float32Array };
}

/** The state after a window as tensors (values only). */
function finalState(last: LifRun['last'], B: number, H: number): IntegrateFireState {
  return { v: tf.tensor2d(last.v, [B, H]), s: tf.tensor2d(last.s, [B, H]), ...(last.a ? { a: tf.tensor2d(last.a, [B, H]) } : {}) };
}

/** Whether a decay tensor (β, ρ) holds one value per neuron, else one shared value. */
const perNeuronOf = (decay: Tensor, H: number) => (decay.size === H && H > 1 ? 1 : 0);

/**
 * Steps a LIF layer through the window whose currents `[T, B, H]` are (or, once `fill` has run,
 * will be) at `pc` in the arena `a`: allocates the rest, copies the state, `W_rec` (packed), β
 * (and the adaptation's ρ) in, calls `fill` after the arena has its final size, and runs the
 * batch rows on every thread.
 */
function lifForwardIn(
  a: Arena,
  pc: number,
  T: number,
  B: number,
  H: number,
  init: IntegrateFireState,
  wRec: Tensor | undefined,
  p: IntegrateFireSequenceParams,
  fill: () => void,
): LifRun {
  const BH = B * H;
  const adapt = p.adaptation;
  const pv0 = a.alloc(BH);
  const ps0 = a.alloc(BH);
  const pw = wRec ? a.alloc(H * H) : 0;
  const pp = wRec ? a.alloc(H * H) : 0;
  const pb = a.alloc(H);
  const pV = a.alloc(T * BH);
  const pS = a.alloc(T * BH);
  const pa0 = adapt ? a.alloc(BH) : 0;
  const pA = adapt ? a.alloc(T * BH) : 0;
  const prho = adapt ? a.alloc(H) : 0;
  // Scratch: each row's recurrent current and its list of active neurons.
  const rec = a.alloc(BH);
  const act = a.alloc(B * (2 * H + 12));
  a.commit();
  fill();
  a.f32(pv0, BH).set(readF32(init.v));
  a.f32(ps0, BH).set(readF32(init.s));
  if (wRec) {
    a.f32(pw, H * H).set(readF32(wRec));
    snn().packBlocks(pw, H, H, pp);
  }
  a.f32(pb, p.beta.size).set(readF32(p.beta));
  if (adapt) {
    a.f32(pa0, BH).set(readF32(init.a!));
    a.f32(prho, adapt.rho.size).set(readF32(adapt.rho));
  }
  const perNeuron = perNeuronOf(p.beta, H);
  const perNeuronRho = adapt ? perNeuronOf(adapt.rho, H) : 0;
  const strength = adapt ? Math.fround(adapt.strength) : 0;
  parallelRows(
    'lifForward',
    B,
    (b0, b1) => [pc, pv0, ps0, pw, pp, pb, perNeuron, Math.fround(p.threshold), T, B, H, b0, b1, pV, pS, rec, act, pa0, pA, prho, perNeuronRho, strength],
    T * B * H * (wRec ? 4 : 1),
  );
  const V = () => a.f32(pV, T * BH);
  const S = () => a.f32(pS, T * BH);
  const A = () => (adapt ? a.f32(pA, T * BH) : new Float32Array(0));
  const last = (x: Float32Array) => x.slice((T - 1) * BH);
  return { V, S, A, last: { v: last(V()), s: last(S()), ...(adapt ? { a: last(A()) } : {}) } };
}

/** Throws unless `init`, `W_rec`, β and the adaptation fit a LIF layer of `B` rows and `H` neurons. */
function checkLif(kernel: string, B: number, H: number, init: IntegrateFireState, wRec: Tensor | undefined, p: IntegrateFireSequenceParams, got: string): void {
  if (init.v.shape.join() !== `${B},${H}` || init.s.shape.join() !== `${B},${H}` || (wRec && wRec.shape.join() !== `${H},${H}`)) {
    throw new SpikeflowError(
      'SHAPE_MISMATCH',
      `${kernel}: with ${got}, expected the state v and s [${B}, ${H}] and W_rec [${H}, ${H}] or none, got [${init.v.shape}], [${init.s.shape}] and ${wRec ? `[${wRec.shape}]` : 'none'}`,
    );
  }
  if (p.beta.size !== 1 && p.beta.size !== H) {
    throw new SpikeflowError('SHAPE_MISMATCH', `${kernel}: β must be a scalar or one value per neuron [${H}], got [${p.beta.shape}]`);
  }
  const adapt = p.adaptation;
  if (!adapt) return;
  if (init.a?.shape.join() !== `${B},${H}`) {
    throw new SpikeflowError(
      'SHAPE_MISMATCH',
      `${kernel}: with an adaptive threshold, expected the adaptation a [${B}, ${H}] in the initial state, got ${init.a ? `[${init.a.shape}]` : 'none'} (pass { v, s, a })`,
    );
  }
  if (adapt.rho.size !== 1 && adapt.rho.size !== H) {
    throw new SpikeflowError('SHAPE_MISMATCH', `${kernel}: ρ must be a scalar or one value per neuron [${H}], got [${adapt.rho.shape}]`);
  }
  if (!Number.isFinite(adapt.strength)) {
    throw new SpikeflowError('CONFIG_INVALID', `${kernel}: the adaptation strength β_a must be a finite number, got ${adapt.strength}`);
  }
}

/** `Σ_{t, b} x_t·y_{t−1}` per neuron (`perNeuron`) or summed, as a tensor of `shape`, in float64. */
function decayGradient(acc: Float64Array, perNeuron: number, shape: number[]): Tensor {
  if (perNeuron) return tf.tensor(Float32Array.from(acc), shape);
  return tf.tidy(() => tf.reshape(tf.scalar(acc.reduce((s, x) => s + x, 0)), shape));
}

/**
 * `spikeflow.integrateFireSequence`: the forward pass steps every neuron through the window and adds
 * `W_rec`'s rows of the neurons that spiked; the backward pass runs through time once in reverse,
 * with one register-blocked product `g_t·W_recᵀ` per step, and yields the gradients of the
 * currents, `W_rec` (visiting only the spikes), β, ρ and the initial state, each only if needed.
 * With an adaptive threshold the state carries a (`ρ` per neuron or shared, trainable like β).
 * Without the temporal path (`temporal: false`) the backward pass is one step at a time,
 * g_t = dS_t·ψ_t with no sweep and no product, and the initial state gets no gradient.
 */
export function integrateFireSequence(
  currents: Tensor,
  init: IntegrateFireState,
  wRec: Tensor | undefined,
  p: IntegrateFireSequenceParams,
): IntegrateFireSequenceResult {
  const [T, B, H] = currents.shape as [number, number, number];
  if (currents.rank !== 3) throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.integrateFireSequence: expected currents [T, B, H], got [${currents.shape}]`);
  checkLif('spikeflow.integrateFireSequence', B, H, init, wRec, p, `currents [T, B, H] = [${currents.shape}]`);
  const BH = B * H;
  const thr = Math.fround(p.threshold);
  const thrAttached = p.resetDetach ? 0 : thr;
  const temporal = p.temporal !== false;
  const adapt = p.adaptation;
  const strength = adapt ? Math.fround(adapt.strength) : 0;
  const perNeuron = perNeuronOf(p.beta, H);
  const perNeuronRho = adapt ? perNeuronOf(adapt.rho, H) : 0;
  const betaShape = p.beta.shape;
  const inputs: Record<string, Tensor> = { beta: p.beta, v0: init.v, s0: init.s, currents };
  if (wRec) inputs['wRec'] = wRec;
  if (adapt) Object.assign(inputs, { rho: adapt.rho, a0: init.a! });
  // What the backward pass reads, in this order: v, s (and a) of every step, β, the state before, W_rec, ρ.
  const at = { wRec: wRec ? 5 : -1, a: adapt ? (wRec ? 6 : 5) : -1 };
  // W_rec's gradient with presynaptic traces: the trace before the window is saved last.
  const traces = wRec ? p.traces : undefined;
  if (traces) checkPresynapticTraces('spikeflow.integrateFireSequence', traces, B, { recurrent: H });
  const lambda = traces?.decay ?? 0;
  const r0 = lambda > 0 ? traces?.recurrent : undefined;
  const tape = taped();
  let last: LifRun['last'] | undefined;
  const spikes = customOp('spikeflow.integrateFireSequence', {
    inputs,
    forwardFunc: (_, save) => {
      const a = arena({ T, batch: B, width: H });
      const pc = a.alloc(T * BH);
      const lif = lifForwardIn(a, pc, T, B, H, init, wRec, p, () => a.f32(pc, T * BH).set(readF32(currents)));
      last = lif.last;
      const sT = tensorOf(lif.S(), [T, B, H]);
      if (tape) {
        // Only the backward pass reads the potentials (and adaptations): inference does not copy them out.
        const vT = tensorOf(lif.V(), [T, B, H]);
        const aT = adapt ? tensorOf(lif.A(), [T, B, H]) : undefined;
        save([vT, sT, p.beta, init.v, init.s, ...(wRec ? [wRec] : []), ...(adapt ? [aT!, adapt.rho, init.a!] : []), ...(r0 ? [r0] : [])]);
        tf.dispose([vT, ...(aT ? [aT] : [])]);
      }
      return sT;
    },
    backwardsFunc: (dy, saved) => {
      const [vT, sT, betaT, v0T, s0T] = saved as [Tensor, Tensor, Tensor, Tensor, Tensor];
      const wRecT = at.wRec >= 0 ? saved[at.wRec]! : undefined;
      const [aT, rhoT, a0T] = adapt ? (saved.slice(at.a, at.a + 3) as [Tensor, Tensor, Tensor]) : [];
      // ψ_t = σ'(v_t − ϑ − β_a·a_t) with the layer's own surrogate: computed in the loop for core's
      // fast sigmoid, else by the surrogate's own ops on the whole window.
      const slope = fastSigmoidSlope(p.surrogate);
      const psiT = slope > 0 ? vT : tf.tidy(() => p.surrogate.derivative(aT ? tf.sub(vT, tf.add(thr, tf.mul(strength, aT))) : tf.sub(vT, thr)));
      const a = arena({ T, batch: B, width: H });
      const pdS = a.alloc(T * BH);
      const ppsi = a.alloc(T * BH);
      const pG = a.alloc(T * BH);
      const pb = a.alloc(H);
      const pcarry = a.alloc(BH);
      // The adaptation of every step and before, ρ, h = ∂L/∂a (one step's), Σ_t h_t·a_{t−1} (float64).
      const pA = aT ? a.alloc(T * BH) : 0;
      const pa0 = aT ? a.alloc(BH) : 0;
      const prho = aT ? a.alloc(H) : 0;
      const ph = aT ? a.alloc(BH) : 0;
      const pdRho = aT ? a.alloc(2 * BH) : 0;
      // W_rec and its transpose (for the carry g_t·W_recᵀ of the temporal path).
      const recurrent = wRecT && temporal;
      const pwT = recurrent ? a.alloc(H * H) : 0;
      const pw = recurrent ? a.alloc(H * H) : 0;
      a.commit();
      a.f32(pdS, T * BH).set(readF32(dy as Tensor));
      a.f32(ppsi, T * BH).set(readF32(psiT));
      a.f32(pb, betaT.size).set(readF32(betaT));
      if (psiT !== vT) psiT.dispose();
      if (aT) {
        a.f32(pA, T * BH).set(readF32(aT));
        a.f32(pa0, BH).set(readF32(a0T!));
        a.f32(prho, rhoT!.size).set(readF32(rhoT!));
      }
      if (recurrent) {
        a.f32(pw, H * H).set(readF32(wRecT));
        snn().transpose(pw, H, H, pwT);
      }
      // The whole reverse pass in one call: per step the neurons' gradients, then
      // carry = g_t·W_recᵀ (the recurrent share of ∂L/∂s_{t−1}, and of ∂L/∂s0 after t = 0).
      parallelRows(
        'lifBackward',
        B,
        (b0, b1) => [
          pdS,
          ppsi,
          slope,
          thr,
          pwT,
          pb,
          perNeuron,
          thrAttached,
          T,
          B,
          H,
          b0,
          b1,
          pG,
          pcarry,
          temporal ? 1 : 0,
          pA,
          pa0,
          prho,
          perNeuronRho,
          strength,
          ph,
          pdRho,
        ],
        T * B * H * (recurrent ? 2 * H : aT ? 8 : 4),
      );
      const G = a.f32(pG, T * BH).slice();
      const g0 = G.subarray(0, BH);
      const carry0 = recurrent ? a.f32(pcarry, BH).slice() : undefined;
      const h0 = aT && temporal ? a.f32(ph, BH).slice() : undefined;
      let dRho: Float64Array | undefined;
      if (aT) {
        const view = a.f32(pdRho, 2 * BH);
        const rows = new Float64Array(view.buffer, view.byteOffset, BH);
        dRho = new Float64Array(H);
        for (let i = 0; i < BH; i++) dRho[i % H]! += rows[i]!;
      }
      const betaD = readF32(betaT).slice();
      const rhoD = rhoT ? readF32(rhoT).slice() : undefined;
      const decay = (d: Float32Array, j: number, per: number) => (per ? d[j]! : d[0]!);
      // Without the temporal path, the state before the window is a constant: no gradient.
      const none = () => tf.zeros([B, H]);
      const r0T = r0 ? saved.at(-1) : undefined;
      return {
        wRec: () => {
          // Σ_t s_{t−1}ᵀ·g_t with s_{−1} = s0; with traces, Σ_t s_{t−1}ᵀ·ĝ_t + λ·r0ᵀ·ĝ_0 (ĝ: g filtered
          // backward in time, in place; λ = 0 without traces).
          const b = arena({ T, batch: B, width: H });
          const px = b.alloc(T * BH);
          const pre = b.commit().f32(px, T * BH);
          pre.set(readF32(s0T), 0);
          pre.set(readF32(sT).subarray(0, (T - 1) * BH), BH);
          const counted = countIn(b, px, T * B, H);
          const dense = counted.nnz > EVENT_DENSITY_LIMIT * T * BH;
          const ev = dense ? undefined : eventsIn(b, px, T * B, H, counted);
          const pg = b.alloc(T * BH);
          b.commit()
            .f32(pg, T * BH)
            .set(G);
          traced.filter(pg, T, BH, lambda);
          if (!ev) {
            const [x, g] = [tensorOf(b.f32(px, T * BH), [T * B, H]), tensorOf(b.f32(pg, T * BH), [T * B, H])];
            const product = tf.tidy(() => tf.matMul(tf.transpose(x), g));
            tf.dispose([x, g]);
            return traced.plusStartTerm(product, r0T, lambda, b.f32(pg, BH), B);
          }
          const out = transposedProduct(b, ev, T * B, H, pg, H);
          traced.start(b, pg, out, r0T, lambda, B, H, H);
          return tensorOf(b.f32(out, H * H), [H, H]);
        },
        beta: () => {
          // Σ_{t, b} g_t·v_{t−1}, per neuron or summed for a shared β.
          const vd = readF32(vT);
          const v0 = readF32(v0T);
          const acc = new Float64Array(H);
          for (let t = 0; t < T; t++) {
            const prev = t === 0 ? v0 : vd.subarray((t - 1) * BH, t * BH);
            const o = t * BH;
            for (let i = 0; i < BH; i++) acc[i % H]! += G[o + i]! * prev[i]!;
          }
          return decayGradient(acc, perNeuron, betaShape);
        },
        // Σ_{t, b} h_t·a_{t−1}, summed by the backward pass per row.
        rho: () => decayGradient(dRho!, perNeuronRho, adapt!.rho.shape),
        v0: () =>
          temporal
            ? tf.tensor2d(
                g0.map((g, i) => decay(betaD, i % H, perNeuron) * g),
                [B, H],
              )
            : none(),
        // ∂L/∂s0 = g_0·W_recᵀ − ϑ_a·g_0 (+ h_0, through a_0).
        s0: () => {
          if (!temporal) return none();
          const out = new Float32Array(BH);
          for (let i = 0; i < BH; i++) out[i] = (carry0 ? carry0[i]! : 0) - thrAttached * g0[i]! + (h0 ? h0[i]! : 0);
          return tf.tensor2d(out, [B, H]);
        },
        a0: () =>
          temporal
            ? tf.tensor2d(
                h0!.map((h, i) => decay(rhoD!, i % H, perNeuronRho) * h),
                [B, H],
              )
            : none(),
        currents: () => tf.tensor3d(G, [T, B, H]),
      };
    },
  });
  return { spikes, final: finalState(last!, B, H) };
}

/**
 * `spikeflow.leakyScan`: the forward and the reverse scan each one SIMD loop. Without the temporal
 * path (`temporal: false`) the backward pass is no scan: ∂d_t = ∂y_t, and y0 gets no gradient.
 */
export function leakyScan(d: Tensor, y0: Tensor, kappa: number, { temporal = true }: LeakyScanOptions = {}): Tensor {
  const [T, B, O] = d.shape as [number, number, number];
  if (d.rank !== 3 || y0.shape.join() !== `${B},${O}`) {
    throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.leakyScan: expected d [T, B, O] and y0 [B, O], got [${d.shape}] and [${y0.shape}]`);
  }
  const n = B * O;
  const k = Math.fround(kappa);
  return customOp('spikeflow.leakyScan', {
    inputs: { d, y0 },
    forwardFunc: () => {
      const a = arena({ T, batch: B, width: O });
      const pd = a.alloc(T * n);
      const p0 = a.alloc(n);
      const py = a.alloc(T * n);
      a.commit();
      a.f32(pd, T * n).set(readF32(d));
      a.f32(p0, n).set(readF32(y0));
      snn().leakyScan(pd, p0, k, T, n, py);
      return tensorOf(a.f32(py, T * n), [T, B, O]);
    },
    backwardsFunc: (dy) => {
      if (!temporal) return { d: () => tf.clone(dy as Tensor), y0: () => tf.zeros([B, O]) };
      const a = arena({ T, batch: B, width: O });
      const pdy = a.alloc(T * n);
      const pg = a.alloc(T * n);
      a.commit()
        .f32(pdy, T * n)
        .set(readF32(dy as Tensor));
      snn().leakyScanBack(pdy, k, T, n, pg);
      const G = a.f32(pg, T * n).slice();
      return {
        d: () => tf.tensor3d(G, [T, B, O]),
        y0: () =>
          tf.tensor2d(
            G.subarray(0, n).map((g) => k * g),
            [B, O],
          ),
      };
    },
  });
}

/** Throws unless `x [T, B, I]`, `W [I, O]` and `b [O]` (or none) fit a window's input product. */
function checkProduct(kernel: string, x: Tensor, w: Tensor, b: Tensor | undefined): void {
  if (x.rank !== 3 || w.rank !== 2 || x.shape[2] !== w.shape[0] || (b && b.shape.join() !== `${w.shape[1]}`)) {
    throw new SpikeflowError(
      'SHAPE_MISMATCH',
      `${kernel}: expected x [T, B, I], W [I, O] and b [O] or none, got [${x.shape}], [${w.shape}] and ${b ? `[${b.shape}]` : 'none'}`,
    );
  }
}

/**
 * Above this fraction of non-zero entries in a block of rows, {@link productInto} takes a dense
 * product. Measured on the bench's input (6400 × 700 → 256) and readout (6400 × 256 → 20) on 2
 * threads: adding rows was faster than tfjs' matMul on wasm up to 70% density for the input
 * (74 against 147 ms; 20 against 151 ms at 10%) and up to ~65% for the readout. (The weight
 * gradient of training has its own, {@link EVENT_DENSITY_LIMIT}.)
 */
const INFERENCE_DENSITY_LIMIT = 0.6;

/** Bytes of one block's event lists at the density limit in {@link productInto}: they stay in the core's cache for the sums. */
const PRODUCT_BLOCK_BYTES = 1 << 20;

/** Bytes of the input {@link productInto} stages at a time (a chunk of rows, split over the threads). */
const STAGE_CHUNK_BYTES = 16 << 20;

/**
 * Rows per block of {@link productInto} for an input of width `I` and `N` rows: blocks are
 * counted from the window's first row, and each block's density decides the dense product.
 */
export function productBlockRows(I: number, N: number): number {
  return Math.max(1, Math.min(N, Math.floor(PRODUCT_BLOCK_BYTES / (8 * INFERENCE_DENSITY_LIMIT * I))));
}

/**
 * The input product `x·W (+ b)` of a window `x [T, B, I]` without a gradient tape, for a kernel
 * that reads it from the arena `a`: allocates what it needs now and returns a function that
 * writes the product at `out` (`[T·B, O]` floats allocated by the caller; call it after the
 * caller's last allocation and commit). The input is staged a chunk of rows (16 MiB) at a time;
 * threads take a range of a chunk's rows each: this thread copies a range of `x` in and starts a
 * worker on it before copying the next, and each lists its rows' events a block at a time and
 * sums W's rows of them while the lists are in cache (`eventProduct`, assembly/snn.ts). Where a
 * block is denser than {@link INFERENCE_DENSITY_LIMIT}, the whole product is a dense one instead.
 * Blocks are counted from the window's first row whatever the threads (chunks are whole blocks
 * and threads' ranges begin on a block), so that the choice, and with it every float, is the
 * same on any number of threads.
 */
function productInto(a: Arena, x: Tensor, w: Tensor, b: Tensor | undefined): (out: number) => void {
  const [T, B, I] = x.shape as [number, number, number];
  const O = w.shape[1]!;
  const N = T * B;
  const block = productBlockRows(I, N);
  const cap = Math.floor(INFERENCE_DENSITY_LIMIT * block * I);
  // The input is staged a chunk of rows at a time (the scratch does not grow with T): as few
  // chunks as fit, of equal whole blocks.
  const blocks = Math.ceil(N / block);
  const chunks = Math.ceil(blocks / Math.max(1, Math.floor(STAGE_CHUNK_BYTES / (4 * I * block))));
  const chunk = Math.min(N, Math.ceil(blocks / chunks) * block);
  const px = a.alloc(chunk * I);
  const scratch = Array.from({ length: activeThreads() }, () => [a.alloc(block + 1), a.alloc(cap + I + 4), a.alloc(cap + I + 4)] as const);
  const pw = a.alloc(I * O);
  const pp = a.alloc(I * O);
  const pb = b ? a.alloc(O) : 0;
  return (out) => {
    a.f32(pw, I * O).set(readF32(w));
    snn().packBlocks(pw, I, O, pp);
    if (b) a.f32(pb, O).set(readF32(b));
    const staged = a.f32(px, chunk * I);
    const src = readF32(x);
    for (let c0 = 0; c0 < N; c0 += chunk) {
      const rows = Math.min(chunk, N - c0);
      const nnz = parallelRows(
        'eventProduct',
        rows,
        (r0, r1, part) => {
          const [ptr, cols, vals] = scratch[part]!;
          return [px, r0, r1, I, ptr, cols, vals, cap, block, pw, pp, O, out + 4 * c0 * O, pb];
        },
        rows * I,
        (r0, r1) => staged.set(src.subarray((c0 + r0) * I, (c0 + r1) * I), r0 * I),
        block,
      );
      if (nnz.some((k) => k < 0)) {
        const dense = tf.tidy(() => {
          const c = tf.matMul(tf.reshape(x, [N, I]), w);
          return b ? tf.add(c, b) : c;
        });
        a.f32(out, N * O).set(readF32(dense));
        dense.dispose();
        return;
      }
    }
  };
}

const composedLifLayer = integrateFireLayerOf(eventDense, integrateFireSequence, tracedProduct);
const composedLeakyReadout = leakyReadoutOf(eventDense, leakyScan, tracedProduct);

/**
 * `spikeflow.integrateFireLayer`. On a gradient tape, {@link eventDense} (plus the bias) then
 * {@link integrateFireSequence}: the backward pass needs the currents' gradient. Without one (inference),
 * one kernel: the input product by events on every thread ({@link productInto}), bias included,
 * into the kernels' memory where the LIF loop reads it — no currents tensor, no bias op, no
 * copy out and back in.
 */
export function integrateFireLayer(
  x: Tensor,
  w: Tensor,
  b: Tensor | undefined,
  init: IntegrateFireState,
  wRec: Tensor | undefined,
  p: IntegrateFireSequenceParams,
): IntegrateFireSequenceResult {
  checkProduct('spikeflow.integrateFireLayer', x, w, b);
  const [T, B] = x.shape as [number, number];
  const H = w.shape[1]!;
  checkLif('spikeflow.integrateFireLayer', B, H, init, wRec, p, `W [${w.shape}]`);
  if (taped()) return composedLifLayer(x, w, b, init, wRec, p);
  return probed('spikeflow.integrateFireLayer (forward)', () => {
    const a = arena({ T, batch: B, width: `${x.shape[2]} → ${H}` });
    const product = productInto(a, x, w, b);
    const pc = a.alloc(T * B * H);
    const lif = lifForwardIn(a, pc, T, B, H, init, wRec, p, () => probed('spikeflow.integrateFireLayer (input product)', () => product(pc)));
    return { spikes: tensorOf(lif.S(), [T, B, H]), final: finalState(lif.last, B, H) };
  });
}

/**
 * `spikeflow.leakyReadout`. On a gradient tape, {@link eventDense} (plus the bias) then
 * {@link leakyScan}; without one, the product by events (bias included) and the scan in one kernel.
 */
export function leakyReadout(x: Tensor, w: Tensor, b: Tensor | undefined, y0: Tensor, kappa: number, options: LeakyReadoutOptions = {}): Tensor {
  checkProduct('spikeflow.leakyReadout', x, w, b);
  const [T, B] = x.shape as [number, number];
  const O = w.shape[1]!;
  if (y0.shape.join() !== `${B},${O}`) {
    throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.leakyReadout: with W [${w.shape}], expected y0 [${B}, ${O}], got [${y0.shape}]`);
  }
  if (taped()) return composedLeakyReadout(x, w, b, y0, kappa, options);
  return probed('spikeflow.leakyReadout (forward)', () => {
    const a = arena({ T, batch: B, width: `${x.shape[2]} → ${O}` });
    const product = productInto(a, x, w, b);
    const n = B * O;
    const pd = a.alloc(T * n);
    const p0 = a.alloc(n);
    a.commit();
    product(pd);
    a.f32(p0, n).set(readF32(y0));
    snn().leakyScan(pd, p0, Math.fround(kappa), T, n, pd);
    return tensorOf(a.f32(pd, T * n), [T, B, O]);
  });
}

import {
  SpikeflowError,
  leakyReadoutOf,
  integrateFireLayerOf,
  tf,
  type IntegrateFireSequenceParams,
  type IntegrateFireSequenceResult,
  type Tensor,
} from '@spikeflow/core';
import { activeThreads, arena, inKernel, parallelRows, partsFor, snn, type Arena } from './wasm.js';

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
interface KernelFuncParams {
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
const probed = <T>(name: string, f: () => T): T => inKernel(name, () => (probe ? probe(name, f) : f()));

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
function customOp(kernel: string, params: KernelFuncParams): Tensor {
  const engine = tf.engine() as unknown as { runKernelFunc(p: KernelFuncParams): Tensor | Tensor[] };
  const out = engine.runKernelFunc({
    inputs: params.inputs,
    forwardFunc: (b, save) => probed(`${kernel} (forward)`, () => params.forwardFunc(b, save)),
    backwardsFunc: (dy, saved) => {
      const thunks = probed(`${kernel} (backward)`, () => params.backwardsFunc(dy, saved));
      return Object.fromEntries(Object.entries(thunks).map(([k, f]) => [k, () => probed(`${kernel} (∂${k})`, f)]));
    },
  });
  return Array.isArray(out) ? out[0]! : out;
}

/** A tensor with a copy of `values` (which may be a view of the kernels' scratch memory). */
function tensorOf(values: Float32Array | Int32Array, shape: number[], dtype: 'float32' | 'int32' = 'float32'): Tensor {
  // The wasm backend copies into its own heap; the cpu backend keeps the array it is given.
  return tf.tensor(tf.getBackend() === 'wasm' ? values : values.slice(), shape, dtype);
}

/**
 * The values of `t`. On the wasm backend a view of its heap, without the copy `dataSync` makes:
 * valid until tfjs next allocates, so copy out of it at once.
 */
function readF32(t: Tensor): Float32Array {
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
}

function countIn(a: Arena, px: number, N: number, I: number): Counted {
  const parts = partsFor(N, N * I);
  const at = a.alloc(parts);
  a.commit();
  parallelRows('countRows', N, (n0, n1, part) => [px, n0, n1, I, at + 4 * part], N * I);
  const starts = [0];
  for (const c of a.i32(at, parts)) starts.push(starts.at(-1)! + c);
  return { nnz: starts.pop()!, starts };
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
    N * I,
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

/** `xᵀ·g` for `x [N, I]` given by saved event tensors and `g [N, O]`. */
function eventsTransposedTimes(ptr: Tensor, cols: Tensor, vals: Tensor, g: Tensor, N: number, I: number, O: number): Tensor {
  const a = arena({ rows: N, width: `${I} → ${O}` });
  const nnz = cols.size;
  const at = { ptr: a.alloc(N + 1), cols: a.alloc(nnz), vals: a.alloc(nnz) };
  const pg = a.alloc(N * O);
  a.commit();
  a.i32(at.ptr, N + 1).set(readI32(ptr));
  a.i32(at.cols, nnz).set(readI32(cols));
  a.f32(at.vals, nnz).set(readF32(vals));
  const ev = { ...at, nnz, binary: snn().allOnes(at.vals, nnz) !== 0 };
  a.f32(pg, N * O).set(readF32(g));
  return tensorOf(a.f32(transposedProduct(a, ev, N, I, pg, O), I * O), [I, O]);
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
      const a = arena({ rows: N, width: `${I} → ${O}` });
      const ev = streamEvents(a, readF32(x), N, I, EVENT_DENSITY_LIMIT);
      sparse = ev !== undefined;
      if (!ev) {
        save([w, x]);
        return tf.matMul(x, w);
      }
      const nnz = ev.nnz;
      const pw = a.alloc(I * O);
      const pp = a.alloc(I * O);
      const out = a.alloc(N * O);
      a.commit()
        .f32(pw, I * O)
        .set(readF32(w));
      scatter(ev, N, pw, packed(pw, 0, I, O, pp), O, out);
      if (tape) {
        const evT = [tensorOf(a.i32(ev.ptr, N + 1), [N + 1], 'int32'), tensorOf(a.i32(ev.cols, nnz), [nnz], 'int32'), tensorOf(a.f32(ev.vals, nnz), [nnz])];
        save([w, ...evT]);
        tf.dispose(evT);
      }
      return tensorOf(a.f32(out, N * O), [N, O]);
    },
    backwardsFunc: (dy, [ws, ...saved]) => ({
      x: () => tf.tidy(() => tf.matMul(dy as Tensor, tf.transpose(ws!))),
      w: () =>
        sparse
          ? eventsTransposedTimes(saved[0]!, saved[1]!, saved[2]!, dy as Tensor, N, I, O)
          : tf.tidy(() => tf.matMul(tf.transpose(saved[0]!), dy as Tensor)),
    }),
  });
}

/** The LIF forward pass's results in the arena: views are taken on demand (the arena may grow). */
interface LifRun {
  readonly V: () => Float32Array;
  readonly S: () => Float32Array;
  readonly lastV: Float32Array;
  readonly lastS: Float32Array;
}

/**
 * Steps a LIF layer through the window whose currents `[T, B, H]` are (or, once `fill` has run,
 * will be) at `pc` in the arena `a`: allocates the rest, copies the state, `W_rec` (packed) and
 * β in, calls `fill` after the arena has its final size, and runs the batch rows on every thread.
 */
function lifForwardIn(
  a: Arena,
  pc: number,
  T: number,
  B: number,
  H: number,
  init: { readonly v: Tensor; readonly s: Tensor },
  wRec: Tensor | undefined,
  p: IntegrateFireSequenceParams,
  fill: () => void,
): LifRun {
  const BH = B * H;
  const pv0 = a.alloc(BH);
  const ps0 = a.alloc(BH);
  const pw = wRec ? a.alloc(H * H) : 0;
  const pp = wRec ? a.alloc(H * H) : 0;
  const pb = a.alloc(H);
  const pV = a.alloc(T * BH);
  const pS = a.alloc(T * BH);
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
  const perNeuron = p.beta.size === H && H > 1 ? 1 : 0;
  parallelRows(
    'lifForward',
    B,
    (b0, b1) => [pc, pv0, ps0, pw, pp, pb, perNeuron, Math.fround(p.threshold), T, B, H, b0, b1, pV, pS, rec, act],
    T * B * H * (wRec ? 4 : 1),
  );
  const V = () => a.f32(pV, T * BH);
  const S = () => a.f32(pS, T * BH);
  return { V, S, lastV: V().slice((T - 1) * BH), lastS: S().slice((T - 1) * BH) };
}

/** Throws unless `init`, `W_rec` and β fit a LIF layer of `B` rows and `H` neurons. */
function checkLif(
  kernel: string,
  B: number,
  H: number,
  init: { readonly v: Tensor; readonly s: Tensor },
  wRec: Tensor | undefined,
  p: IntegrateFireSequenceParams,
  got: string,
): void {
  if (init.v.shape.join() !== `${B},${H}` || init.s.shape.join() !== `${B},${H}` || (wRec && wRec.shape.join() !== `${H},${H}`)) {
    throw new SpikeflowError(
      'SHAPE_MISMATCH',
      `${kernel}: with ${got}, expected the state v and s [${B}, ${H}] and W_rec [${H}, ${H}] or none, got [${init.v.shape}], [${init.s.shape}] and ${wRec ? `[${wRec.shape}]` : 'none'}`,
    );
  }
  if (p.beta.size !== 1 && p.beta.size !== H) {
    throw new SpikeflowError('SHAPE_MISMATCH', `${kernel}: β must be a scalar or one value per neuron [${H}], got [${p.beta.shape}]`);
  }
}

/**
 * `spikeflow.integrateFireSequence`: the forward pass steps every neuron through the window and adds
 * `W_rec`'s rows of the neurons that spiked; the backward pass runs through time once in reverse,
 * with one dense product `g_t·W_recᵀ` per step (XNNPACK on wasm), and yields the gradients of the
 * currents, `W_rec` (visiting only the spikes), β and the initial state, each only if needed.
 */
export function integrateFireSequence(
  currents: Tensor,
  init: { readonly v: Tensor; readonly s: Tensor },
  wRec: Tensor | undefined,
  p: IntegrateFireSequenceParams,
): IntegrateFireSequenceResult {
  const [T, B, H] = currents.shape as [number, number, number];
  if (currents.rank !== 3) throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.integrateFireSequence: expected currents [T, B, H], got [${currents.shape}]`);
  checkLif('spikeflow.integrateFireSequence', B, H, init, wRec, p, `currents [T, B, H] = [${currents.shape}]`);
  const BH = B * H;
  const thr = Math.fround(p.threshold);
  const thrAttached = p.resetDetach ? 0 : thr;
  const perNeuron = p.beta.size === H && H > 1 ? 1 : 0;
  const betaShape = p.beta.shape;
  const inputs: Record<string, Tensor> = { beta: p.beta, v0: init.v, s0: init.s, currents };
  if (wRec) inputs['wRec'] = wRec;
  const tape = taped();
  let lastV: Float32Array | undefined;
  let lastS: Float32Array | undefined;
  const spikes = customOp('spikeflow.integrateFireSequence', {
    inputs,
    forwardFunc: (_, save) => {
      const a = arena({ T, batch: B, width: H });
      const pc = a.alloc(T * BH);
      const lif = lifForwardIn(a, pc, T, B, H, init, wRec, p, () => a.f32(pc, T * BH).set(readF32(currents)));
      lastV = lif.lastV;
      lastS = lif.lastS;
      const sT = tensorOf(lif.S(), [T, B, H]);
      if (tape) {
        // Only the backward pass reads the potentials: inference does not copy them out.
        const vT = tensorOf(lif.V(), [T, B, H]);
        save(wRec ? [vT, sT, p.beta, init.v, init.s, wRec] : [vT, sT, p.beta, init.v, init.s]);
        vT.dispose();
      }
      return sT;
    },
    backwardsFunc: (dy, [vT, sT, betaT, v0T, s0T, wRecT]) => {
      // ψ_t = σ'(v_t − ϑ) with the layer's own surrogate: computed in the loop for core's fast
      // sigmoid, else by the surrogate's own ops on the whole window.
      const slope = fastSigmoidSlope(p.surrogate);
      const psiT = slope > 0 ? vT! : tf.tidy(() => p.surrogate.derivative(tf.sub(vT!, thr)));
      const a = arena({ T, batch: B, width: H });
      const pdS = a.alloc(T * BH);
      const ppsi = a.alloc(T * BH);
      const pG = a.alloc(T * BH);
      const pb = a.alloc(H);
      const pcarry = a.alloc(BH);
      a.commit();
      a.f32(pdS, T * BH).set(readF32(dy as Tensor));
      a.f32(ppsi, T * BH).set(readF32(psiT));
      a.f32(pb, betaT!.size).set(readF32(betaT!));
      if (psiT !== vT) psiT.dispose();
      // The whole reverse pass in one call: per step the neurons' gradients, then
      // carry = g_t·W_recᵀ (the recurrent share of ∂L/∂s_{t−1}, and of ∂L/∂s0 after t = 0).
      const pwT = wRecT ? a.alloc(H * H) : 0;
      const pw = wRecT ? a.alloc(H * H) : 0;
      a.commit();
      if (wRecT) {
        a.f32(pw, H * H).set(readF32(wRecT));
        snn().transpose(pw, H, H, pwT);
      }
      parallelRows(
        'lifBackward',
        B,
        (b0, b1) => [pdS, ppsi, slope, thr, pwT, pb, perNeuron, thrAttached, T, B, H, b0, b1, pG, pcarry],
        T * B * H * (wRecT ? 2 * H : 4),
      );
      const G = a.f32(pG, T * BH).slice();
      const g0 = G.subarray(0, BH);
      const carry0 = wRecT ? a.f32(pcarry, BH).slice() : new Float32Array(BH);
      const betaD = readF32(betaT!).slice();
      const betaAt = (j: number) => (perNeuron ? betaD[j]! : betaD[0]!);
      return {
        wRec: () => {
          // Σ_t s_{t−1}ᵀ·g_t with s_{−1} = s0.
          const b = arena({ T, batch: B, width: H });
          const px = b.alloc(T * BH);
          const pre = b.commit().f32(px, T * BH);
          pre.set(readF32(s0T!), 0);
          pre.set(readF32(sT!).subarray(0, (T - 1) * BH), BH);
          const counted = countIn(b, px, T * B, H);
          if (counted.nnz > EVENT_DENSITY_LIMIT * T * BH) {
            return tf.tidy(() => tf.matMul(tf.transpose(tensorOf(pre, [T * B, H])), tf.tensor2d(G, [T * B, H])));
          }
          const ev = eventsIn(b, px, T * B, H, counted);
          const pg = b.alloc(T * BH);
          b.commit()
            .f32(pg, T * BH)
            .set(G);
          return tensorOf(b.f32(transposedProduct(b, ev, T * B, H, pg, H), H * H), [H, H]);
        },
        beta: () => {
          // Σ_{t, b} g_t·v_{t−1}, per neuron or summed for a shared β.
          const vd = readF32(vT!);
          const v0 = readF32(v0T!);
          const acc = new Float64Array(H);
          for (let t = 0; t < T; t++) {
            const prev = t === 0 ? v0 : vd.subarray((t - 1) * BH, t * BH);
            const o = t * BH;
            for (let i = 0; i < BH; i++) acc[i % H]! += G[o + i]! * prev[i]!;
          }
          if (perNeuron) return tf.tensor(Float32Array.from(acc), betaShape);
          return tf.tidy(() => tf.reshape(tf.scalar(acc.reduce((s, x) => s + x, 0)), betaShape));
        },
        v0: () =>
          tf.tensor2d(
            g0.map((g, i) => betaAt(i % H) * g),
            [B, H],
          ),
        s0: () =>
          tf.tensor2d(
            carry0.map((c, i) => c - thrAttached * g0[i]!),
            [B, H],
          ),
        currents: () => tf.tensor3d(G, [T, B, H]),
      };
    },
  });
  return { spikes, final: { v: tf.tensor2d(lastV!, [B, H]), s: tf.tensor2d(lastS!, [B, H]) } };
}

/** `spikeflow.leakyScan`: the forward and the reverse scan each one SIMD loop. */
export function leakyScan(d: Tensor, y0: Tensor, kappa: number): Tensor {
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

const composedLifLayer = integrateFireLayerOf(eventDense, integrateFireSequence);
const composedLeakyReadout = leakyReadoutOf(eventDense, leakyScan);

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
  init: { readonly v: Tensor; readonly s: Tensor },
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
    return { spikes: tensorOf(lif.S(), [T, B, H]), final: { v: tf.tensor2d(lif.lastV, [B, H]), s: tf.tensor2d(lif.lastS, [B, H]) } };
  });
}

/**
 * `spikeflow.leakyReadout`. On a gradient tape, {@link eventDense} (plus the bias) then
 * {@link leakyScan}; without one, the product by events (bias included) and the scan in one kernel.
 */
export function leakyReadout(x: Tensor, w: Tensor, b: Tensor | undefined, y0: Tensor, kappa: number): Tensor {
  checkProduct('spikeflow.leakyReadout', x, w, b);
  const [T, B] = x.shape as [number, number];
  const O = w.shape[1]!;
  if (y0.shape.join() !== `${B},${O}`) {
    throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.leakyReadout: with W [${w.shape}], expected y0 [${B}, ${O}], got [${y0.shape}]`);
  }
  if (taped()) return composedLeakyReadout(x, w, b, y0, kappa);
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

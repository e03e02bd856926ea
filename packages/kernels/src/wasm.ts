import { SpikeflowError } from '@spikeflow/core';
import { SNN_SHARED_WASM_BASE64, SNN_WASM_BASE64 } from './snn-wasm.js';

/** The WebAssembly module's exports (assembly/snn.ts). Pointers are byte offsets into `memory`. */
export interface SnnExports {
  countRows(x: number, n0: number, n1: number, I: number, out: number): void;
  events(x: number, n0: number, n1: number, I: number, ptr: number, cols: number, vals: number, k0: number, kEnd: number): void;
  eventProduct(x: number, n0: number, n1: number, I: number, ptr: number, cols: number, vals: number, cap: number, block: number, w: number, packed: number, O: number, out: number, bias: number): number;
  scatterRowRange(ptr: number, cols: number, vals: number, n0: number, n1: number, w: number, packed: number, R: number, base: number, O: number, out: number, accumulate: number, binary: number, bias: number): void;
  allOnes(x: number, n: number): number;
  packBlocks(w: number, R: number, O: number, packed: number): void;
  transposeEvents(ptr: number, cols: number, vals: number, n0: number, n1: number, I: number, tptr: number, tcols: number, tvals: number): void;
  lifForward(c: number, v0: number, s0: number, w: number, packed: number, beta: number, perNeuron: number, thr: number, T: number, B: number, H: number, b0: number, b1: number, V: number, S: number, rec: number, act: number): void;
  transpose(src: number, R: number, C: number, dst: number): void;
  lifBackward(dS: number, psi: number, slope: number, thr: number, wT: number, beta: number, perNeuron: number, thrAttached: number, T: number, B: number, H: number, b0: number, b1: number, g: number, carry: number): void;
  leakyScan(d: number, y0: number, kappa: number, T: number, n: number, y: number): void;
  leakyScanBack(dy: number, kappa: number, T: number, n: number, g: number): void;
}

/** Kernels that split their work by rows over the thread pool (same arguments plus a range). */
type Parallel = 'lifForward' | 'lifBackward' | 'scatterRowRange' | 'countRows' | 'events' | 'eventProduct';
const PARALLEL: readonly Parallel[] = ['lifForward', 'lifBackward', 'scatterRowRange', 'countRows', 'events', 'eventProduct'];

interface Runtime {
  readonly exports: SnnExports;
  readonly memory: WebAssembly.Memory;
  readonly workers: readonly PoolWorker[];
}

interface PoolWorker {
  /** [0] job number, [1] ready, [2] kernel index, [3] argument count, [4] failed, [5] job done, [6] the kernel's result (an i32, else 0); arguments as float64 from byte 64. */
  readonly control: Int32Array;
  readonly args: Float64Array;
}

type WorkerThreads = typeof import('node:worker_threads');
const workerThreads: WorkerThreads | undefined =
  typeof process !== 'undefined' && process.versions?.node ? await import('node:worker_threads').catch(() => undefined) : undefined;

function decode(b64: string): Uint8Array {
  if (typeof Buffer !== 'undefined') return Buffer.from(b64, 'base64');
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/**
 * Threads the kernels run on: `SPIKEFLOW_THREADS` if set, else every core up to 4 (in Node;
 * elsewhere one). Worker threads share the module's memory and take a range of rows each.
 */
export function kernelThreads(): number {
  const env = typeof process !== 'undefined' ? process.env?.['SPIKEFLOW_THREADS'] : undefined;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) throw new SpikeflowError('CONFIG_INVALID', `SPIKEFLOW_THREADS must be an integer >= 1, got '${env}'`);
    return n;
  }
  if (!workerThreads || typeof SharedArrayBuffer === 'undefined') return 1;
  const os = (process as unknown as { getBuiltinModule?: (m: string) => { availableParallelism?: () => number } }).getBuiltinModule?.('node:os');
  return Math.max(1, Math.min(4, os?.availableParallelism?.() ?? 2));
}

// A worker: instantiates the shared module, then runs the jobs the main thread posts in its
// control block, blocking in Atomics.wait between them. Plain CommonJS, evaluated from a string.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, control, names } = workerData;
const ex = new WebAssembly.Instance(module, { env: { memory } }).exports;
const ctl = new Int32Array(control, 0, 16);
const args = new Float64Array(control, 64, 32);
Atomics.store(ctl, 1, 1);
Atomics.notify(ctl, 1);
let seen = 0;
for (;;) {
  Atomics.wait(ctl, 0, seen);
  seen = Atomics.load(ctl, 0);
  try {
    Atomics.store(ctl, 6, ex[names[ctl[2]]](...Array.from(args.subarray(0, ctl[3]))) ?? 0);
  } catch (e) {
    Atomics.store(ctl, 4, 1);
  }
  Atomics.store(ctl, 5, seen);
  Atomics.notify(ctl, 5);
}
`;

let runtime: Runtime | undefined;

function startWorkers(module: WebAssembly.Module, memory: WebAssembly.Memory, count: number): PoolWorker[] {
  const pool: PoolWorker[] = [];
  for (let i = 0; i < count; i++) {
    const control = new SharedArrayBuffer(64 + 32 * 8);
    const worker = new workerThreads!.Worker(WORKER_SOURCE, { eval: true, workerData: { module, memory, control, names: PARALLEL } });
    worker.unref();
    const ctl = new Int32Array(control, 0, 16);
    // Wait (at most 10 s) for it to be ready; a worker that does not start is left out.
    if (Atomics.wait(ctl, 1, 0, 10_000) === 'timed-out' && Atomics.load(ctl, 1) !== 1) {
      void worker.terminate();
      continue;
    }
    pool.push({ control: ctl, args: new Float64Array(control, 64, 32) });
  }
  return pool;
}

function load(): Runtime {
  const threads = kernelThreads();
  if (threads > 1 && workerThreads && typeof SharedArrayBuffer !== 'undefined') {
    try {
      const memory = new WebAssembly.Memory({ initial: 2, maximum: 65536, shared: true });
      const module = new WebAssembly.Module(decode(SNN_SHARED_WASM_BASE64) as BufferSource);
      const exports = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as SnnExports;
      return { exports, memory, workers: startWorkers(module, memory, threads - 1) };
    } catch {
      // No shared memory or no workers here: one thread.
    }
  }
  const instance = new WebAssembly.Instance(new WebAssembly.Module(decode(SNN_WASM_BASE64) as BufferSource), {});
  const exports = instance.exports as unknown as SnnExports & { memory: WebAssembly.Memory };
  return { exports, memory: exports.memory, workers: [] };
}

function rt(): Runtime {
  if (runtime) return runtime;
  try {
    runtime = load();
  } catch (e) {
    throw new SpikeflowError(
      'BACKEND_UNAVAILABLE',
      `spikeflow's fast kernels need WebAssembly with SIMD (Node 16.4+, current browsers): ${e instanceof Error ? e.message : String(e)}. Run without fast kernels (--no-kernels) on this runtime.`,
      {},
      { cause: e },
    );
  }
  return runtime;
}

/** The kernels' module, compiled and instantiated on first use (6 KB, synchronous). */
export function snn(): SnnExports {
  return rt().exports;
}

/** How many parts {@link parallelRows} splits `rows` of `work` into (the same for the same arguments). */
export function partsFor(rows: number, work = Infinity): number {
  return work < MIN_PARALLEL_WORK ? 1 : Math.min(1 + rt().workers.length, rows);
}

/** Threads the kernels actually run on (1 + the workers that started). */
export function activeThreads(): number {
  return 1 + rt().workers.length;
}

/** Whether this runtime can run the kernels' module (WebAssembly with SIMD). */
export function simdAvailable(): boolean {
  try {
    snn();
    return true;
  } catch {
    return false;
  }
}

/** Below this much work (about one float operation per unit) a call stays on one thread: waking a worker costs ~40 µs. */
const MIN_PARALLEL_WORK = 1 << 17;

/**
 * Runs a row-parallel kernel over rows `[0, rows)`: the workers take a range each and this
 * thread the first, then waits for them. `args(r0, r1)` gives the kernel's arguments for a range;
 * `work` estimates the whole call's cost (small calls run on this thread alone). `stage(r0, r1)`,
 * if given, is called for each range just before its job starts (the workers' first): it may
 * copy that range's input in, so that the workers start while this thread copies its own.
 * Returns each range's result (what the kernel returns; 0 for kernels that return nothing).
 */
export function parallelRows(kernel: Parallel, rows: number, args: (r0: number, r1: number, part: number) => number[], work = Infinity, stage?: (r0: number, r1: number) => void): number[] {
  const { exports, workers } = rt();
  const fn = exports[kernel] as (...a: number[]) => number | undefined;
  const parts = partsFor(rows, work);
  if (parts <= 1) {
    stage?.(0, rows);
    return [fn(...args(0, rows, 0)) ?? 0];
  }
  const bounds = Array.from({ length: parts + 1 }, (_, i) => Math.round((i * rows) / parts));
  const jobs: { w: PoolWorker; job: number }[] = [];
  for (let i = 1; i < parts; i++) {
    const w = workers[i - 1]!;
    stage?.(bounds[i]!, bounds[i + 1]!);
    const a = args(bounds[i]!, bounds[i + 1]!, i);
    w.args.set(a);
    Atomics.store(w.control, 2, PARALLEL.indexOf(kernel));
    Atomics.store(w.control, 3, a.length);
    const job = Atomics.add(w.control, 0, 1) + 1;
    Atomics.notify(w.control, 0);
    jobs.push({ w, job });
  }
  stage?.(bounds[0]!, bounds[1]!);
  const results = [fn(...args(bounds[0]!, bounds[1]!, 0)) ?? 0];
  for (const { w, job } of jobs) {
    const started = Date.now();
    for (let done = Atomics.load(w.control, 5); done !== job; done = Atomics.load(w.control, 5)) {
      if (Atomics.wait(w.control, 5, done, 1000) === 'timed-out' && Date.now() - started > 120_000) {
        throw new SpikeflowError('BACKEND_UNAVAILABLE', `a kernel worker thread did not finish '${kernel}' in 120 s; run with SPIKEFLOW_THREADS=1`);
      }
    }
    if (Atomics.exchange(w.control, 4, 0) !== 0) {
      throw new SpikeflowError('BACKEND_UNAVAILABLE', `a kernel worker thread failed in '${kernel}'; run with SPIKEFLOW_THREADS=1 to see the error`);
    }
    results.push(Atomics.load(w.control, 6));
  }
  return results;
}

/** Where scratch begins: the module's own static data lies below. */
const BASE = 1 << 16;

/**
 * Scratch space for one kernel call, laid out from the start of the module's memory on every
 * call (calls never overlap: tfjs runs one kernel at a time). `alloc` all buffers first, then
 * `commit` (which grows the memory), then take views: growing detaches earlier views.
 */
export class Arena {
  #end = BASE;
  readonly #m = rt().memory;

  /** Reserves `n` 4-byte elements, 16-byte aligned; returns the byte offset. */
  alloc(n: number): number {
    const at = this.#end;
    this.#end += (n * 4 + 15) & ~15;
    return at;
  }

  /** Grows the memory to hold everything allocated. */
  commit(): this {
    const need = this.#end - this.#m.buffer.byteLength;
    if (need > 0) this.#m.grow(Math.ceil(need / 65536));
    return this;
  }

  f32(at: number, n: number): Float32Array {
    return new Float32Array(this.#m.buffer, at, n);
  }

  i32(at: number, n: number): Int32Array {
    return new Int32Array(this.#m.buffer, at, n);
  }
}

/** A fresh arena for one call. */
export function arena(): Arena {
  return new Arena();
}

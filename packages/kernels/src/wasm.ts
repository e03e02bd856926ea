import { SpikeflowError } from '@spikeflow/core';
import { SNN_SHARED_WASM_BASE64, SNN_WASM_BASE64 } from './snn-wasm.js';

/** The WebAssembly module's exports (assembly/snn.ts). Pointers are byte offsets into `memory`. */
/**
 * The parameter updates of assembly/update.ts, by byte offsets into the memory they run on: part of
 * the kernels' module, and alone in the module that runs on tfjs-wasm's memory (src/updates.ts).
 */
export interface UpdateExports {
  adamMoments(
    g: number,
    mu: number,
    nu: number,
    n: number,
    b1: number,
    om1: number,
    b2: number,
    om2: number,
    c1: number,
    c2: number,
    eps: number,
    out: number,
    muOut: number,
    nuOut: number,
  ): void;
  fpttPull(g: number, hasG: number, w: number, wbar: number, shift: number, n: number, alpha: number, scale: number, out: number): void;
  fpttAdamStep(g: number, hasG: number, w: number, wbar: number, lambda: number, mu: number, nu: number, n: number, ...rest: number[]): void;
  fpttAnchor(
    w: number,
    wbar: number,
    lambda: number,
    n: number,
    alpha: number,
    omb: number,
    beta: number,
    ba: number,
    wbarOut: number,
    lambdaOut: number,
  ): void;
  columnSums(x: number, rows: number, cols: number, out: number): void;
  ltcForward(...args: number[]): void;
  ltcBackward(...args: number[]): void;
}

export interface SnnExports extends UpdateExports {
  spikeTimingForward(...args: number[]): void;
  spikeTimingBackward(...args: number[]): void;
  convEvents(...args: number[]): void;
  convFilterEvents(...args: number[]): void;
  maxPoolFirst(...args: number[]): void;
  maxPoolFirstBack(...args: number[]): void;
  countRows(x: number, n0: number, n1: number, I: number, out: number): void;
  events(x: number, n0: number, n1: number, I: number, ptr: number, cols: number, vals: number, k0: number, kEnd: number): void;
  eventProduct(
    x: number,
    n0: number,
    n1: number,
    I: number,
    ptr: number,
    cols: number,
    vals: number,
    cap: number,
    block: number,
    w: number,
    packed: number,
    O: number,
    out: number,
    bias: number,
  ): number;
  scatterRowRange(
    ptr: number,
    cols: number,
    vals: number,
    n0: number,
    n1: number,
    w: number,
    packed: number,
    R: number,
    base: number,
    O: number,
    out: number,
    accumulate: number,
    binary: number,
    bias: number,
  ): void;
  allOnes(x: number, n: number): number;
  packBlocks(w: number, R: number, O: number, packed: number): void;
  transposeEvents(ptr: number, cols: number, vals: number, n0: number, n1: number, I: number, tptr: number, tcols: number, tvals: number): void;
  lifForward(
    c: number,
    v0: number,
    s0: number,
    w: number,
    packed: number,
    beta: number,
    perNeuron: number,
    thr: number,
    T: number,
    B: number,
    H: number,
    b0: number,
    b1: number,
    V: number,
    S: number,
    rec: number,
    act: number,
    a0: number,
    A: number,
    rho: number,
    perNeuronRho: number,
    strength: number,
  ): void;
  transpose(src: number, R: number, C: number, dst: number): void;
  lifBackward(
    dS: number,
    psi: number,
    slope: number,
    thr: number,
    wT: number,
    beta: number,
    perNeuron: number,
    thrAttached: number,
    T: number,
    B: number,
    H: number,
    b0: number,
    b1: number,
    g: number,
    carry: number,
    temporal: number,
    A: number,
    a0: number,
    rho: number,
    perNeuronRho: number,
    strength: number,
    h: number,
    dRho: number,
  ): void;
  leakyScan(d: number, y0: number, kappa: number, T: number, n: number, y: number): void;
  leakyScanBack(dy: number, kappa: number, T: number, n: number, g: number): void;
  addTransposedProduct(a: number, K: number, R: number, g: number, H: number, t: number, p: number, out: number, scale: number): void;
  stepWeightedSums(g: number, T: number, B: number, O: number, c: number, row: number, out: number): void;
  // e-prop's eligibility traces (assembly/eprop.ts, wrapped by src/eprop.ts).
  epropForward(
    C: number,
    S: number,
    v: number,
    a: number,
    w: number,
    beta: number,
    perNeuron: number,
    rho: number,
    perNeuronRho: number,
    strength: number,
    thr: number,
    slope: number,
    n: number,
    B: number,
    H: number,
    b0: number,
    b1: number,
    X: number,
    rec: number,
    kappa: number,
    F: number,
    cnt: number,
  ): void;
  epropSweep(
    psi: number,
    M: number,
    C: number,
    n: number,
    B: number,
    H: number,
    LB: number,
    b0: number,
    b1: number,
    beta: number,
    perNeuron: number,
    rho: number,
    perNeuronRho: number,
    strength: number,
    thrR: number,
    kappa: number,
    X: number,
    withV: number,
    withE: number,
    AZ: number,
    COEF: number,
    Ct: number,
  ): void;
  epropColumns(ptr: number, cols: number, vals: number, n: number, B: number, C: number, cptr: number, crows: number, cvals: number): void;
  epropTraces(
    ptr: number,
    rows: number,
    vals: number,
    cursor: number,
    cols: number,
    i0: number,
    i1: number,
    n: number,
    B: number,
    H: number,
    LB: number,
    P: number,
    fan: number,
    off: number,
    K: number,
    Z: number,
    beta: number,
    betaN: number,
    betaPow: number,
    kappaN: number,
    Ct: number,
    COEF: number,
    AZ: number,
    X: number,
    withV: number,
    withE: number,
    carry: number,
    advance: number,
    gt: number,
    grad: number,
  ): void;
}

/** Kernels that split their work by rows over the thread pool (same arguments plus a range). */
type Parallel =
  | 'lifForward'
  | 'lifBackward'
  | 'scatterRowRange'
  | 'countRows'
  | 'events'
  | 'eventProduct'
  | 'epropForward'
  | 'epropSweep'
  | 'epropTraces'
  | 'convEvents'
  | 'maxPoolFirst'
  | 'spikeTimingForward'
  | 'spikeTimingBackward';
const PARALLEL: readonly Parallel[] = [
  'lifForward',
  'lifBackward',
  'scatterRowRange',
  'countRows',
  'events',
  'eventProduct',
  'epropForward',
  'epropSweep',
  'epropTraces',
  'convEvents',
  'maxPoolFirst',
  'spikeTimingForward',
  'spikeTimingBackward',
];
const KERNEL_INDEX = new Map(PARALLEL.map((k, i) => [k, i]));

// A worker's control block: Int32 words, then the job's arguments as float64 from byte 64.
/** The job number the main thread posts (the worker runs each new one): 1…2³⁰ − 1, then 1 again. */
const JOB = 0;
/** 1 once the worker has instantiated the module; −1 if it died before. */
const READY = 1;
/** The job's kernel (index into PARALLEL) and its argument count. */
const KERNEL = 2;
const ARGC = 3;
/** 1: the last job threw (a trap); its text is on the worker's port. */
const FAILED = 4;
/** The last job number done; −1 once the worker is dead. */
const DONE = 5;
/** The last job's result (an i32, else 0). */
const RESULT = 6;
/** 1 once the worker is exiting (its text is on its port). */
const DEAD = 7;
/** Test-only fault injection, read before each job and cleared (see {@link injectKernelFault}); 0: none. */
const FAULT = 8;
const FAULT_MS = 9;
const FAULT_CODES = { exit: 1, trap: 2, hang: 3, delay: 4, late: 5, chunkTrap: 6 } as const;
/** Chunks of shared calls this worker has run (test-visible: which threads took part). */
const CHUNKS = 10;
/** 1 while the worker runs a chunk of a shared call (a hang names it). */
const CLAIMED = 11;
/** KERNEL's value for a shared call: the job is in the team block, taken a chunk at a time. */
const TEAM_JOB = -1;

// The team block, one per runtime, shared by every thread: a call whose rows are cut into
// chunks that the threads take in turn (see parallelRows). Int32 words, then each chunk's
// arguments (float64, ARG_SLOTS each) from byte 64, then each chunk's result.
/** (call number << 8) | the next chunk to take; the low byte is CLOSED while a call is written. */
const T_WORD = 0;
/** The call's chunk count, kernel (index into PARALLEL), argument count and finished chunks. */
const T_N = 1;
const T_KERNEL = 2;
const T_ARGC = 3;
const T_FIN = 4;
const CLOSED = 255;
/** The most chunks of one call (the low byte of T_WORD holds the next, CLOSED above all). */
const MAX_CHUNKS = 64;
const ARG_SLOTS = 32;
const TEAM_BYTES = 64 + MAX_CHUNKS * ARG_SLOTS * 8 + MAX_CHUNKS * 8;
/**
 * A pointer past the memory (in tests, far below 3.75 GiB): a kernel reading its input there
 * traps, with room for 256 MiB of offsets before the address would wrap around.
 */
const TRAP_POINTER = 0xf000_0000;

interface PoolWorker {
  /** 1-based: thread 0 is the main thread. */
  thread: number;
  readonly control: Int32Array;
  readonly args: Float64Array;
  /** The next text the worker posted (a trap's or its death's), if any has arrived. */
  readonly said: () => string | undefined;
  /** Stops the worker (a hung one too) and closes its channel. */
  readonly stop: () => void;
  /** What the main thread's event loop learnt of its end (an `error` or `exit` event), if anything. */
  ended?: string;
}

interface Runtime {
  readonly exports: SnnExports;
  readonly memory: WebAssembly.Memory;
  readonly workers: readonly PoolWorker[];
  /** The team block its workers share (absent on one thread). */
  readonly team?: Team;
}

/** Views of a runtime's team block, and the number of its last shared call. */
interface Team {
  readonly buffer: SharedArrayBuffer;
  readonly words: Int32Array;
  readonly args: Float64Array;
  readonly results: Float64Array;
  call: number;
}

function newTeam(): Team {
  const buffer = new SharedArrayBuffer(TEAM_BYTES);
  return {
    buffer,
    words: new Int32Array(buffer, 0, 16),
    args: new Float64Array(buffer, 64, MAX_CHUNKS * ARG_SLOTS),
    results: new Float64Array(buffer, 64 + MAX_CHUNKS * ARG_SLOTS * 8, MAX_CHUNKS),
    call: 0,
  };
}

type WorkerThreads = typeof import('node:worker_threads');
const workerThreads: WorkerThreads | undefined =
  typeof process !== 'undefined' && process.versions?.node ? await import('node:worker_threads').catch(() => undefined) : undefined;

export function decode(b64: string): Uint8Array {
  if (typeof Buffer !== 'undefined') return Buffer.from(b64, 'base64');
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function env(name: string): string | undefined {
  const v = typeof process !== 'undefined' ? process.env?.[name] : undefined;
  return v === '' ? undefined : v;
}

/**
 * Threads the kernels run on: `SPIKEFLOW_THREADS` if set, else every core up to 4 (in Node;
 * elsewhere one). Worker threads share the module's memory and take a range of rows each.
 */
export function kernelThreads(): number {
  if (threadsSet !== undefined) return threadsSet;
  const v = env('SPIKEFLOW_THREADS');
  if (v !== undefined) {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new SpikeflowError('CONFIG_INVALID', `SPIKEFLOW_THREADS must be an integer >= 1, got '${v}'`);
    return n;
  }
  if (!workerThreads) return webWorkersUsable() ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 2)) : 1;
  if (typeof SharedArrayBuffer === 'undefined') return 1;
  const os = (process as unknown as { getBuiltinModule?: (m: string) => { availableParallelism?: () => number } }).getBuiltinModule?.('node:os');
  return Math.max(1, Math.min(4, os?.availableParallelism?.() ?? 2));
}

let threadsSet: number | undefined;

/**
 * Sets the threads the kernels run on where no environment variable can (a page): before the
 * first kernel call or {@link prepareKernels}; `undefined` goes back to `SPIKEFLOW_THREADS` or the
 * default. Results do not depend on the count.
 */
export function setKernelThreads(threads: number | undefined): void {
  if (threads !== undefined && (!Number.isInteger(threads) || threads < 1)) {
    throw new SpikeflowError('CONFIG_INVALID', `setKernelThreads: threads must be an integer >= 1, got ${String(threads)}`);
  }
  threadsSet = threads;
}

/**
 * Whether this is a page (or a worker) that can run the kernels on Web Workers sharing their
 * memory: cross-origin isolated (SharedArrayBuffer), with `Worker` and Blob URLs.
 */
function webWorkersUsable(): boolean {
  return (
    !workerThreads &&
    typeof SharedArrayBuffer !== 'undefined' &&
    (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true &&
    typeof Worker !== 'undefined' &&
    typeof Blob !== 'undefined' &&
    typeof URL.createObjectURL === 'function'
  );
}

/** Whether this thread may block in `Atomics.wait` (a browser's main thread may not: it spins instead). */
const canBlock: boolean = (() => {
  if (typeof SharedArrayBuffer === 'undefined') return true;
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
})();

/** `Atomics.wait(ctl, index, value, ms)`, or a spin until the value changes or `ms` pass where this thread may not block. */
function waitOn(ctl: Int32Array, index: number, value: number, ms: number): void {
  if (canBlock) {
    Atomics.wait(ctl, index, value, ms);
    return;
  }
  const end = performance.now() + ms;
  while (Atomics.load(ctl, index) === value && performance.now() < end);
}

/** How the kernels' thread pool watches its workers and when it gives back its memory; see {@link configureKernelPool}. */
export interface KernelPoolOptions {
  /**
   * The hang deadline's floor, in ms. A worker that has neither finished its range nor signalled
   * its death `max(hangFloorMs, hangFactor × t)` after the main thread finished its own range
   * (which took `t`) is taken as hung. Default 30 000, or `SPIKEFLOW_KERNEL_DEADLINE_MS`.
   */
  readonly hangFloorMs: number;
  /** The hang deadline's multiple of the main thread's time for its own range (default 100). */
  readonly hangFactor: number;
  /**
   * Release the scratch memory after the kernels have been idle this long, in ms (default
   * 10 000, or `SPIKEFLOW_KERNEL_IDLE_MS`; 0: never). Checked every `idleReleaseMs`: memory is
   * released 1–2 periods after the last call.
   */
  readonly idleReleaseMs: number;
  /** ... only when the memory has grown beyond this many bytes (default 64 MiB). */
  readonly idleReleaseAboveBytes: number;
}

function envMs(name: string, fallback: number): number {
  const v = env(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new SpikeflowError('CONFIG_INVALID', `${name} must be a number of milliseconds >= 0, got '${v}'`);
  return n;
}

let options: KernelPoolOptions | undefined;

function poolOptions(): KernelPoolOptions {
  options ??= {
    hangFloorMs: envMs('SPIKEFLOW_KERNEL_DEADLINE_MS', 30_000),
    hangFactor: 100,
    idleReleaseMs: envMs('SPIKEFLOW_KERNEL_IDLE_MS', 10_000),
    idleReleaseAboveBytes: 64 << 20,
  };
  return options;
}

/**
 * Changes how the kernels' thread pool detects a hung worker and when it releases its memory
 * (see {@link KernelPoolOptions}); returns the settings before, so that a test can restore them.
 */
export function configureKernelPool(changes: Partial<KernelPoolOptions>): KernelPoolOptions {
  const before = poolOptions();
  for (const [key, value] of Object.entries(changes)) {
    if (!(key in before) || typeof value !== 'number' || !(value >= 0)) {
      throw new SpikeflowError(
        'CONFIG_INVALID',
        `configureKernelPool: '${key}' must be one of ${Object.keys(before).join(', ')} with a number >= 0, got ${String(value)}`,
      );
    }
  }
  options = { ...before, ...changes };
  return before;
}

let warned = false;

/** One warning per process about the pool (a later one would repeat the advice). */
function warnOnce(text: string): void {
  if (warned) return;
  warned = true;
  if (typeof process !== 'undefined' && typeof process.emitWarning === 'function') process.emitWarning(text, { code: 'SPIKEFLOW_KERNEL_THREADS' });
  else console.warn(text);
}

/**
 * A worker's job loop (either kind of worker): runs the jobs the main thread posts in its control
 * block, blocking in Atomics.wait between them. A trap is reported (its text posted, FAILED set)
 * and the worker lives on. FAULT is a test hook (injectKernelFault), inert while 0. `post(text)`
 * and `exit(code)` are the worker's own.
 */
const JOB_LOOP = `
Atomics.store(ctl, ${READY}, 1);
Atomics.notify(ctl, ${READY});
let seen = 0;
for (;;) {
  Atomics.wait(ctl, ${JOB}, seen);
  seen = Atomics.load(ctl, ${JOB});
  if (Atomics.load(ctl, ${KERNEL}) === ${TEAM_JOB}) {
    // A shared call: take chunks until none is left (the call may be over already: then none).
    if (Atomics.load(ctl, ${FAULT}) === ${FAULT_CODES.late}) {
      Atomics.store(ctl, ${FAULT}, 0);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Atomics.load(ctl, ${FAULT_MS}));
    }
    for (;;) {
      const word = Atomics.load(tm, ${T_WORD});
      const i = word & 255;
      if (i >= Atomics.load(tm, ${T_N})) break;
      if (Atomics.compareExchange(tm, ${T_WORD}, word, word + 1) !== word) continue;
      Atomics.store(ctl, ${CLAIMED}, 1);
      const a = Array.from(targs.subarray(i * ${ARG_SLOTS}, i * ${ARG_SLOTS} + Atomics.load(tm, ${T_ARGC})));
      if (Atomics.load(ctl, ${FAULT}) === ${FAULT_CODES.chunkTrap}) {
        Atomics.store(ctl, ${FAULT}, 0);
        a[0] = ${TRAP_POINTER};
      }
      try {
        tres[i] = ex[names[Atomics.load(tm, ${T_KERNEL})]](...a) ?? 0;
      } catch (e) {
        try { post(text(e)); } catch {}
        Atomics.store(ctl, ${FAILED}, 1);
      }
      Atomics.store(ctl, ${CLAIMED}, 0);
      Atomics.add(ctl, ${CHUNKS}, 1);
      Atomics.add(tm, ${T_FIN}, 1);
      Atomics.notify(tm, ${T_FIN});
    }
    Atomics.store(ctl, ${DONE}, seen);
    Atomics.notify(ctl, ${DONE});
    continue;
  }
  const a = Array.from(args.subarray(0, Atomics.load(ctl, ${ARGC})));
  const pending = Atomics.load(ctl, ${FAULT});
  // A fault meant for a shared call's chunk waits for one.
  const fault = pending === ${FAULT_CODES.late} || pending === ${FAULT_CODES.chunkTrap} ? 0 : Atomics.exchange(ctl, ${FAULT}, 0);
  if (fault !== 0) {
    if (fault === ${FAULT_CODES.exit}) exit(70);
    if (fault === ${FAULT_CODES.trap}) a[0] = ${TRAP_POINTER};
    if (fault === ${FAULT_CODES.hang}) for (;;);
    if (fault === ${FAULT_CODES.delay}) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Atomics.load(ctl, ${FAULT_MS}));
  }
  try {
    Atomics.store(ctl, ${RESULT}, ex[names[Atomics.load(ctl, ${KERNEL})]](...a) ?? 0);
  } catch (e) {
    try { post(text(e)); } catch {}
    Atomics.store(ctl, ${FAILED}, 1);
  }
  Atomics.store(ctl, ${DONE}, seen);
  Atomics.notify(ctl, ${DONE});
}
`;

/** A worker's start: its control block, and `die(text)`, which marks it DEAD and wakes the main thread. */
const WORKER_PRELUDE = `
const ctl = new Int32Array(control, 0, 16);
const args = new Float64Array(control, 64, 32);
const tm = new Int32Array(team, 0, 16);
const targs = new Float64Array(team, 64, ${MAX_CHUNKS * ARG_SLOTS});
const tres = new Float64Array(team, ${64 + MAX_CHUNKS * ARG_SLOTS * 8}, ${MAX_CHUNKS});
let dead = false;
const text = (e) => (e && e.stack) || String(e);
const die = (why) => {
  if (dead) return;
  dead = true;
  try { post(why); } catch {}
  Atomics.store(ctl, ${DEAD}, 1);
  Atomics.store(ctl, ${DONE}, -1);
  Atomics.store(ctl, ${READY}, -1);
  Atomics.notify(ctl, ${DONE});
  Atomics.notify(ctl, ${READY});
  Atomics.notify(tm, ${T_FIN});
};
`;

// A Node worker thread: instantiates the shared module, then runs the job loop. On any exit it
// stores DEAD, sets DONE and READY to −1 and wakes the main thread, which may be blocked waiting
// for it (and so cannot receive events). Plain CommonJS, evaluated from a string.
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, control, team, names, port } = workerData;
const post = (t) => port.postMessage(t);
const exit = (code) => process.exit(code);
${WORKER_PRELUDE}
process.on('exit', (code) => die('the worker thread exited (code ' + code + ')'));
process.on('uncaughtException', (e) => { die(text(e)); process.exit(1); });
let ex;
try {
  ex = new WebAssembly.Instance(module, { env: { memory } }).exports;
} catch (e) {
  die('the worker could not instantiate the kernels: ' + text(e));
  process.exit(1);
}
${JOB_LOOP}
`;

// A Web Worker (a page): the same, started by one message { module, memory, control, names };
// it answers 'ready' once it runs the loop. A worker has no exit event: an uncaught error marks
// it DEAD; stopping it is terminate().
const WEB_WORKER_SOURCE = `
self.onmessage = (m) => {
  self.onmessage = null;
  const { module, memory, control, team, names } = m.data;
  const post = (t) => self.postMessage(String(t));
  const exit = (code) => { die('the worker exited (code ' + code + ')'); self.close(); throw new Error('exit'); };
  ${WORKER_PRELUDE}
  self.onerror = (e) => { die(String(e && e.message ? e.message : e)); };
  let ex;
  try {
    ex = new WebAssembly.Instance(module, { env: { memory } }).exports;
  } catch (e) {
    die('the worker could not instantiate the kernels: ' + text(e));
    return;
  }
  self.postMessage('ready');
  ${JOB_LOOP}
};
`;

/** How long the main thread waits for workers to start (they start together, ~50 ms here). */
const START_MS = 60_000;

/** What a worker has said about its end (its port), else what the main thread's events told. */
function endOf(w: PoolWorker): string | undefined {
  return w.said() ?? w.ended;
}

/**
 * Starts `count` workers on the module and memory and waits until every one has instantiated it
 * (or died, or {@link START_MS} passed). Those that did not start are stopped and the pool runs
 * without them, with one warning that says why.
 */
function startWorkers(module: WebAssembly.Module, memory: WebAssembly.Memory, team: Team, count: number): PoolWorker[] {
  const wt = workerThreads!;
  const pool: PoolWorker[] = [];
  for (let i = 0; i < count; i++) {
    const control = new SharedArrayBuffer(64 + 32 * 8);
    const { port1, port2 } = new wt.MessageChannel();
    // No inherited flags: `--input-type=module` would make the source an ES module (no
    // `require`) that fails before it could signal anything, and preloads (`--import`) only slow it.
    const worker = new wt.Worker(WORKER_SOURCE, {
      eval: true,
      execArgv: [],
      workerData: { module, memory, control, team: team.buffer, names: PARALLEL, port: port2 },
      transferList: [port2],
    });
    worker.unref();
    port1.unref();
    const w: PoolWorker = {
      thread: i + 1,
      control: new Int32Array(control, 0, 16),
      args: new Float64Array(control, 64, 32),
      said: () => wt.receiveMessageOnPort(port1)?.message as string | undefined,
      stop: () => {
        void worker.terminate().catch(() => undefined);
        port1.close();
      },
    };
    // Seen only while the main thread is free; a death during a call is seen through DEAD.
    worker.on('error', (e: unknown) => {
      w.ended ??= e instanceof Error ? (e.stack ?? e.message) : String(e);
    });
    worker.on('exit', (code: number) => {
      w.ended ??= `the worker thread exited (code ${code})`;
      Atomics.store(w.control, DEAD, 1);
    });
    pool.push(w);
  }
  const limit = performance.now() + START_MS;
  for (const w of pool) {
    for (let left = START_MS; Atomics.load(w.control, READY) === 0 && left > 0; left = limit - performance.now()) {
      Atomics.wait(w.control, READY, 0, left);
    }
  }
  const started = pool.filter((w) => Atomics.load(w.control, READY) === 1);
  if (started.length < pool.length) {
    const why = pool
      .filter((w) => !started.includes(w))
      .map((w) =>
        Atomics.load(w.control, READY) === 0 ? `did not start within ${START_MS / 1000} s` : `failed to start: ${firstLine(endOf(w) ?? 'no error text')}`,
      );
    for (const w of pool) if (!started.includes(w)) w.stop();
    warnOnce(
      `spikeflow kernels: ${pool.length - started.length} of ${count} worker threads ${why.join('; ')}. The kernels run on ${1 + started.length} thread(s) (results do not depend on the count). Set SPIKEFLOW_THREADS to choose the count.`,
    );
    started.forEach((w, i) => (w.thread = i + 1));
    return started;
  }
  return pool;
}

let runtime: Runtime | undefined;

/** The one-thread module, instantiated ahead by {@link prepareKernels}. */
let prepared: WebAssembly.Instance | undefined;

/**
 * Starts `count` Web Workers on the shared module and memory (a page) and resolves once each has
 * instantiated it, died, or {@link START_MS} passed; those that did not start are stopped and the
 * pool runs without them, with one warning that says why. A worker's texts (a trap's) arrive
 * through the page's event loop: while the main thread spins in a call it sees a dead worker as
 * hung after the deadline.
 */
async function startWebWorkers(module: WebAssembly.Module, memory: WebAssembly.Memory, team: Team, count: number): Promise<PoolWorker[]> {
  const url = URL.createObjectURL(new Blob([WEB_WORKER_SOURCE], { type: 'text/javascript' }));
  const pool: PoolWorker[] = [];
  const ready: Promise<boolean>[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const control = new SharedArrayBuffer(64 + 32 * 8);
      const worker = new Worker(url);
      const texts: string[] = [];
      const w: PoolWorker = {
        thread: i + 1,
        control: new Int32Array(control, 0, 16),
        args: new Float64Array(control, 64, 32),
        said: () => texts.shift(),
        stop: () => worker.terminate(),
      };
      ready.push(
        new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), START_MS);
          worker.onmessage = (m: MessageEvent) => {
            if (m.data === 'ready') {
              clearTimeout(timer);
              resolve(true);
            } else texts.push(String(m.data));
          };
          worker.onerror = (e: ErrorEvent) => {
            w.ended ??= e.message || 'the worker failed';
            Atomics.store(w.control, DEAD, 1);
            clearTimeout(timer);
            resolve(false);
          };
        }),
      );
      worker.postMessage({ module, memory, control, team: team.buffer, names: PARALLEL });
      pool.push(w);
    }
    const ok = await Promise.all(ready);
    const started = pool.filter((_, i) => ok[i]);
    if (started.length < pool.length) {
      const why = pool
        .filter((_, i) => !ok[i])
        .map((w) => (w.ended ? `failed to start: ${firstLine(w.said() ?? w.ended)}` : `did not start within ${START_MS / 1000} s`));
      for (const w of pool) if (!started.includes(w)) w.stop();
      warnOnce(
        `spikeflow kernels: ${pool.length - started.length} of ${count} Web Workers ${why.join('; ')}. The kernels run on ${1 + started.length} thread(s) (results do not depend on the count).`,
      );
      started.forEach((w, i) => (w.thread = i + 1));
    }
    return started;
  } finally {
    URL.revokeObjectURL(url);
  }
}

/**
 * Compiles and instantiates the kernels' module asynchronously, ahead of the first kernel call,
 * where that call could not (a page): the first call would otherwise compile its 25 KB
 * synchronously, which blocks a page and which browsers have refused on the main thread above
 * 4 KB (Chromium 156 accepts it; the limit has changed across versions). In a cross-origin
 * isolated page it also starts the kernels' Web Workers on a shared memory (one per core up to
 * 4, or {@link setKernelThreads}); the main thread, which may not block there, spins while they
 * run its calls' other ranges. Node with worker threads compiles the shared module on first use
 * as before. Resolves to whether the kernels can run here (WebAssembly with SIMD); never rejects.
 * A backend's `activate()` awaits it.
 */
export async function prepareKernels(): Promise<boolean> {
  if (runtime || prepared) return true;
  if (workerThreads && typeof SharedArrayBuffer !== 'undefined' && kernelThreads() > 1) return simdAvailable();
  const threads = kernelThreads();
  if (threads > 1 && webWorkersUsable()) {
    try {
      const memory = new WebAssembly.Memory({ initial: 2, maximum: 65536, shared: true });
      const module = await WebAssembly.compile(decode(SNN_SHARED_WASM_BASE64) as BufferSource);
      const instance = await WebAssembly.instantiate(module, { env: { memory } });
      const team = newTeam();
      const workers = await startWebWorkers(module, memory, team, threads - 1);
      // A kernel call while the workers started made a one-thread runtime: it stays, these go.
      if (runtime) for (const w of workers) w.stop();
      else runtime = { exports: instance.exports as unknown as SnnExports, memory, workers, team };
      return true;
    } catch (e) {
      warnOnce(`spikeflow kernels: no Web Workers on a shared memory here (${e instanceof Error ? e.message : String(e)}); the kernels run on one thread.`);
    }
  }
  try {
    prepared = (await WebAssembly.instantiate(decode(SNN_WASM_BASE64) as BufferSource, {})).instance;
    return true;
  } catch {
    return false;
  }
}

function load(threads: number): Runtime {
  if (threads > 1 && workerThreads && typeof SharedArrayBuffer !== 'undefined') {
    let memory: WebAssembly.Memory | undefined;
    let module: WebAssembly.Module | undefined;
    try {
      memory = new WebAssembly.Memory({ initial: 2, maximum: 65536, shared: true });
      module = new WebAssembly.Module(decode(SNN_SHARED_WASM_BASE64) as BufferSource);
    } catch (e) {
      warnOnce(`spikeflow kernels: no shared WebAssembly memory here (${e instanceof Error ? e.message : String(e)}); the kernels run on one thread.`);
    }
    if (memory && module) {
      const exports = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as SnnExports;
      const team = newTeam();
      return { exports, memory, workers: startWorkers(module, memory, team, threads - 1), team };
    }
  }
  // A prepared instance serves once: a released runtime's memory is not handed out again.
  const instance = prepared ?? new WebAssembly.Instance(new WebAssembly.Module(decode(SNN_WASM_BASE64) as BufferSource), {});
  prepared = undefined;
  const exports = instance.exports as unknown as SnnExports & { memory: WebAssembly.Memory };
  return { exports, memory: exports.memory, workers: [] };
}

function rt(): Runtime {
  if (runtime) return runtime;
  // Settings from the environment are read (and refused, if malformed) before anything starts.
  const threads = kernelThreads();
  poolOptions();
  try {
    runtime = load(threads);
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

/**
 * The runtime for a new kernel call: a worker that died since the last call (its own signal, or
 * the `exit` event the main thread saw) makes the whole pool be replaced first, with a warning.
 */
function freshRuntime(): Runtime {
  const r = rt();
  for (const w of r.workers) {
    if (Atomics.load(w.control, DEAD) !== 0) {
      const text = endOf(w) ?? 'no error text';
      discard(r);
      warnOnce(`spikeflow kernels: kernel worker thread ${w.thread} ended between calls (${firstLine(text)}); the thread pool was started again.`);
      return rt();
    }
  }
  return r;
}

/**
 * Drops a runtime: its workers are stopped (a hung one too) and its memory is never handed out
 * again, so that nothing a stopped worker still writes can reach a later call. The next kernel
 * call builds a fresh one.
 */
function discard(r: Runtime): void {
  if (runtime === r) runtime = undefined;
  // Without Node's worker threads (a browser), the next runtime cannot be compiled synchronously.
  if (!workerThreads) void prepareKernels();
  for (const w of r.workers) w.stop();
}

/** The kernels' module, compiled and instantiated on first use (6 KB, synchronous). */
export function snn(): SnnExports {
  return rt().exports;
}

/**
 * Kernels that keep one range per thread: e-prop's trace pass walks traces laid out `[B, blocks,
 * columns, …]` over a range of columns, so each range reads a strided run per batch row and block,
 * and eight ranges cost ~20% more than two (measured on the standard workload at T = 1000).
 */
const BY_RANGE: ReadonlySet<Parallel> = new Set(['epropTraces']);

/**
 * Chunks per thread of a shared call: a thread that starts late (a worker's wake-up takes 0.1–2 ms
 * on the development machine) or runs slower leaves its share to the others, to within a chunk.
 */
const CHUNKS_PER_THREAD = 4;

/**
 * Parts of `rows` split on multiples of `align` (1 below {@link MIN_PARALLEL_WORK}): one range per
 * thread (`ranges`: a call that stages its input range by range, a {@link BY_RANGE} kernel, or
 * while a test fault waits for a thread's next job), else chunks that the threads take in turn.
 */
function partsIn(r: Runtime, rows: number, work: number, align: number, ranges: boolean): number {
  if (work < MIN_PARALLEL_WORK || r.workers.length === 0) return 1;
  const blocks = Math.ceil(rows / align);
  if (ranges) return Math.min(1 + r.workers.length, blocks);
  return Math.min(blocks, MAX_CHUNKS, CHUNKS_PER_THREAD * (1 + r.workers.length));
}

/** Whether a test fault waits for a thread's next job of its own range (see {@link injectKernelFault}). */
function rangeFault(r: Runtime): boolean {
  return (
    mainFault ||
    r.workers.some((w) => {
      const f = Atomics.load(w.control, FAULT);
      return f !== 0 && f !== FAULT_CODES.late && f !== FAULT_CODES.chunkTrap;
    })
  );
}

/**
 * How many parts {@link parallelRows} splits `rows` of `work` into when it stages nothing (the
 * same for the same arguments until the pool changes): for a kernel that writes one output per
 * part (`part` in its arguments).
 */
export function partsFor(rows: number, work = Infinity, align = 1): number {
  const r = rt();
  return partsIn(r, rows, work, align, rangeFault(r));
}

/** Threads the kernels actually run on (1 + the workers that started); starts the pool if it is not running. */
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

/** Below this much work (about one float operation per unit) a call stays on one thread: waking a worker and joining it costs 0.04–0.2 ms. */
const MIN_PARALLEL_WORK = 1 << 17;

/**
 * The `work` of a pass that only scans `elements` values (counting or listing a matrix's non-zero
 * entries): a compare per value, about a sixteenth of a multiply-add into a row of outputs. Waking a
 * worker and joining it costs 0.1–0.2 ms on the development machine — more than scanning one
 * window of FPTT's ten steps (640 rows of 700 inputs) takes — so such scans stay on one thread
 * until they are 16× the size at which products go parallel.
 */
export function scanWork(elements: number): number {
  return elements / 16;
}

/** The kernel region that runs now (set by {@link inKernel}), for messages. */
let region = 'spikeflow kernels';

/** Runs `f` as the kernel region `name` (e.g. `spikeflow.integrateFireSequence (forward)`), which errors name. */
export function inKernel<T>(name: string, f: () => T): T {
  const outer = region;
  region = name;
  try {
    return f();
  } finally {
    region = outer;
  }
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0]!;
}

interface Fault {
  /** 0: the main thread. */
  readonly thread: number;
  readonly kind: 'trap' | 'died' | 'hung';
  readonly text: string;
}

/**
 * The error for a failed parallel call, after every worker was joined: the runtime is discarded
 * first (the next call starts a fresh pool on fresh memory).
 */
function faultError(r: Runtime, kernel: Parallel, faults: readonly Fault[], cause: unknown): SpikeflowError {
  discard(r);
  const f = faults[0]!;
  const threads = 1 + r.workers.length;
  const who = f.thread === 0 ? `the main thread (of ${threads})` : `kernel worker thread ${f.thread} (of ${threads})`;
  const what =
    f.kind === 'trap'
      ? `trapped in '${kernel}': ${firstLine(f.text)}`
      : f.kind === 'died'
        ? `died while running '${kernel}': ${firstLine(f.text)}`
        : `did not finish '${kernel}': ${f.text}`;
  const remedy =
    f.kind === 'trap'
      ? "A trap is a bug in spikeflow's kernels: please report it with this message. Meanwhile run without the fast kernels (--no-kernels), or on one thread (SPIKEFLOW_THREADS=1) if it happens only on a worker."
      : f.kind === 'died'
        ? 'If it happens again, run the kernels on one thread (SPIKEFLOW_THREADS=1) or without them (--no-kernels).'
        : 'If it happens again, run the kernels on one thread (SPIKEFLOW_THREADS=1) or without them (--no-kernels); on a machine so busy that a healthy worker can stall this long, raise the deadline (SPIKEFLOW_KERNEL_DEADLINE_MS).';
  return new SpikeflowError(
    'KERNEL_FAULT',
    `${region}: ${who} ${what}. The kernels' thread pool and memory were discarded; the next call starts fresh ones. ${remedy}`,
    { kernel: region, wasmKernel: kernel, thread: f.thread, threads, fault: f.kind, error: f.text, faults },
    { cause },
  );
}

/**
 * Waits for every posted job: done, or its worker dead (seen at once: the worker signals its own
 * exit through its control block), or past the hang deadline, `max(hangFloorMs, hangFactor ×
 * mainMs)` from now. Never throws; returns what went wrong.
 */
function join(jobs: readonly { readonly w: PoolWorker; readonly job: number }[], mainMs: number): Fault[] {
  const faults: Fault[] = [];
  let deadline = -1;
  let allowed = 0;
  for (const { w, job } of jobs) {
    const ctl = w.control;
    let done = Atomics.load(ctl, DONE);
    while (done !== job && Atomics.load(ctl, DEAD) === 0) {
      if (deadline < 0) {
        const o = poolOptions();
        allowed = Math.max(o.hangFloorMs, o.hangFactor * mainMs);
        deadline = performance.now() + allowed;
      }
      const left = deadline - performance.now();
      if (left <= 0) break;
      waitOn(ctl, DONE, done, left);
      done = Atomics.load(ctl, DONE);
    }
    if (done === job) {
      if (Atomics.exchange(ctl, FAILED, 0) !== 0) faults.push({ thread: w.thread, kind: 'trap', text: endOf(w) ?? 'no error text' });
    } else if (Atomics.load(ctl, DEAD) !== 0) {
      faults.push({ thread: w.thread, kind: 'died', text: endOf(w) ?? 'no error text' });
    } else {
      faults.push({ thread: w.thread, kind: 'hung', text: hungText(allowed, mainMs) });
    }
  }
  return faults;
}

function hungText(allowed: number, mainMs: number): string {
  const o = poolOptions();
  return `no result and no sign of life ${Math.round(allowed)} ms after the main thread finished its own rows in ${mainMs.toFixed(1)} ms (the hang deadline: max(${o.hangFloorMs} ms, ${o.hangFactor} × that)); the worker was stopped`;
}

/**
 * Waits until every chunk of the shared call is finished (`parts` counted in the team block), a
 * worker that was asked to help is dead (seen at once), or the hang deadline passes (as
 * {@link join}'s, from when the main thread took its last chunk); then collects the helpers'
 * traps. Never throws; returns what went wrong.
 */
function joinShared(team: Team, helpers: readonly PoolWorker[], parts: number, mainMs: number): Fault[] {
  const faults: Fault[] = [];
  let deadline = -1;
  let allowed = 0;
  for (let fin = Atomics.load(team.words, T_FIN); fin < parts; fin = Atomics.load(team.words, T_FIN)) {
    const dead = helpers.find((w) => Atomics.load(w.control, DEAD) !== 0);
    if (dead) {
      faults.push({ thread: dead.thread, kind: 'died', text: endOf(dead) ?? 'no error text' });
      break;
    }
    if (deadline < 0) {
      const o = poolOptions();
      allowed = Math.max(o.hangFloorMs, o.hangFactor * mainMs);
      deadline = performance.now() + allowed;
    }
    const left = deadline - performance.now();
    if (left <= 0) {
      const holders = helpers.filter((w) => Atomics.load(w.control, CLAIMED) !== 0);
      for (const w of holders.length > 0 ? holders : helpers) faults.push({ thread: w.thread, kind: 'hung', text: hungText(allowed, mainMs) });
      break;
    }
    waitOn(team.words, T_FIN, fin, left);
  }
  for (const w of helpers) {
    if (Atomics.exchange(w.control, FAILED, 0) !== 0) faults.push({ thread: w.thread, kind: 'trap', text: endOf(w) ?? 'no error text' });
  }
  return faults;
}

/**
 * Waits until worker `w` has finished every job posted to it (a helper of a shared call may wake
 * after the call is over, to find nothing left), is dead, or `hangFloorMs` passed: a job of its
 * own range is posted only to an idle worker, which reads it whole.
 */
function awaitIdle(w: PoolWorker): void {
  const ctl = w.control;
  const limit = performance.now() + poolOptions().hangFloorMs;
  for (let done = Atomics.load(ctl, DONE); done !== Atomics.load(ctl, JOB) && done !== -1; done = Atomics.load(ctl, DONE)) {
    const left = limit - performance.now();
    if (left <= 0) return;
    waitOn(ctl, DONE, done, left);
  }
}

/** Test-only: the fault the main thread injects into its next range (see {@link injectKernelFault}). */
let mainFault = false;

/**
 * Runs a row-parallel kernel over rows `[0, rows)`, cut into {@link partsFor} parts: chunks that
 * every thread takes in turn ({@link sharedRows}), or, with `stage` (or for {@link BY_RANGE}), one range per thread — the
 * workers take a range each and this thread the first, then it joins every worker.
 * `args(r0, r1, part)` gives the kernel's arguments for a part; `work` estimates the whole call's
 * cost (small calls run on this thread alone). `stage(r0, r1)`, if given, is called for each range
 * just before its job starts (the workers' first): it may copy that range's input in, so that the
 * workers start while this thread copies its own. Parts begin at multiples of `align` (blocks of
 * rows whose handling must not depend on where a part begins). Returns each part's result (what
 * the kernel returns; 0 for kernels that return nothing).
 *
 * A trap (on any thread), a worker's death or a hang fails the call with `KERNEL_FAULT` after
 * every worker was joined (a hung one stopped), and discards the runtime: memory, instance and
 * workers. The next call starts a fresh pool with the full thread count.
 */
export function parallelRows(
  kernel: Parallel,
  rows: number,
  args: (r0: number, r1: number, part: number) => number[],
  work = Infinity,
  stage?: (r0: number, r1: number) => void,
  align = 1,
): number[] {
  const r = rt();
  const fn = r.exports[kernel] as (...a: number[]) => number | undefined;
  const shared = stage === undefined && !BY_RANGE.has(kernel) && !rangeFault(r);
  const parts = partsIn(r, rows, work, align, !shared);
  if (parts > 1 && shared) return sharedRows(r, kernel, fn, rows, args, parts, align);
  if (parts <= 1) {
    stage?.(0, rows);
    const a = args(0, rows, 0);
    if (mainFault) a[0] = injectedTrap();
    try {
      return [fn(...a) ?? 0];
    } catch (e) {
      throw faultError(r, kernel, [{ thread: 0, kind: 'trap', text: e instanceof Error ? (e.stack ?? e.message) : String(e) }], e);
    }
  }
  // The main thread's range is never the larger: it also stages the workers' input.
  const bound = boundsOf(rows, parts, align);
  const jobs: { w: PoolWorker; job: number }[] = [];
  const kernelIndex = KERNEL_INDEX.get(kernel)!;
  let first = 0;
  let mainMs = 0;
  let error: { e: unknown; trap: boolean } | undefined;
  try {
    for (let i = 1; i < parts; i++) {
      const w = r.workers[i - 1]!;
      awaitIdle(w);
      stage?.(bound(i), bound(i + 1));
      const a = args(bound(i), bound(i + 1), i);
      w.args.set(a);
      Atomics.store(w.control, KERNEL, kernelIndex);
      Atomics.store(w.control, ARGC, a.length);
      // Only this thread writes JOB; it never wraps into DONE's −1 or the worker's initial 0.
      const job = (Atomics.load(w.control, JOB) % 0x3fff_ffff) + 1;
      Atomics.store(w.control, JOB, job);
      jobs.push({ w, job });
      Atomics.notify(w.control, JOB);
    }
    stage?.(0, bound(1));
    const a = args(0, bound(1), 0);
    if (mainFault) a[0] = injectedTrap();
    const t0 = performance.now();
    try {
      first = fn(...a) ?? 0;
    } catch (e) {
      error = { e, trap: true };
    }
    mainMs = performance.now() - t0;
  } catch (e) {
    // Not the kernel's own failure (staging, arguments): joined all the same, then rethrown.
    error = { e, trap: false };
  }
  const faults = join(jobs, mainMs);
  if (error?.trap) faults.unshift({ thread: 0, kind: 'trap', text: error.e instanceof Error ? (error.e.stack ?? error.e.message) : String(error.e) });
  if (faults.length > 0) throw faultError(r, kernel, faults, error?.e);
  if (error) throw error.e;
  const results = [first];
  for (const { w } of jobs) results.push(Atomics.load(w.control, RESULT));
  return results;
}

/**
 * A call cut into `parts` chunks that every thread takes in turn from the team block, the main
 * thread too (it starts at once, while the workers wake): whoever is free takes the next chunk,
 * so a worker that wakes late, or runs slower, holds the call up by at most the chunk it took.
 * The chunks' arguments are written before the call opens; a worker that wakes after the call is
 * over finds nothing to take (the call number is part of the word it takes chunks from). Results
 * do not depend on who ran which chunk (each writes its own rows). Faults as {@link parallelRows}.
 */
function sharedRows(
  r: Runtime,
  kernel: Parallel,
  fn: (...a: number[]) => number | undefined,
  rows: number,
  args: (r0: number, r1: number, part: number) => number[],
  parts: number,
  align: number,
): number[] {
  const team = r.team!;
  const words = team.words;
  const bound = boundsOf(rows, parts, align);
  team.call = (team.call % 0x7f_ffff) + 1;
  const open = team.call << 8;
  // Closed while it is written: a worker still looking for the last call's chunks takes none.
  Atomics.store(words, T_WORD, open | CLOSED);
  // (Should an argument throw, nothing is posted: no worker takes a chunk of a closed call.)
  const all: number[][] = [];
  for (let i = 0; i < parts; i++) {
    const a = args(bound(i), bound(i + 1), i);
    team.args.set(a, i * ARG_SLOTS);
    all.push(a);
  }
  let error: unknown;
  Atomics.store(words, T_N, parts);
  Atomics.store(words, T_KERNEL, KERNEL_INDEX.get(kernel)!);
  Atomics.store(words, T_ARGC, all[0]!.length);
  Atomics.store(words, T_FIN, 0);
  Atomics.store(words, T_WORD, open);
  const helpers = r.workers.slice(0, parts - 1);
  for (const w of helpers) {
    Atomics.store(w.control, KERNEL, TEAM_JOB);
    Atomics.store(w.control, JOB, (Atomics.load(w.control, JOB) % 0x3fff_ffff) + 1);
    Atomics.notify(w.control, JOB);
  }
  let mainMs = 0;
  for (;;) {
    const word = Atomics.load(words, T_WORD);
    const i = word & 0xff;
    if (i >= parts) break;
    if (Atomics.compareExchange(words, T_WORD, word, word + 1) !== word) continue;
    // After a trap the main thread runs nothing more, but still counts what it takes.
    if (error === undefined) {
      const t0 = performance.now();
      try {
        team.results[i] = fn(...all[i]!) ?? 0;
      } catch (e) {
        error = e;
      }
      mainMs += performance.now() - t0;
    }
    Atomics.add(words, T_FIN, 1);
  }
  const faults = joinShared(team, helpers, parts, mainMs);
  if (error !== undefined) faults.unshift({ thread: 0, kind: 'trap', text: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  if (faults.length > 0) throw faultError(r, kernel, faults, error);
  return Array.from(team.results.subarray(0, parts));
}

/** Where part `i` of `parts` of `rows` begins (`i = parts`: the end), on multiples of `align`; the earlier parts are never the larger. */
function boundsOf(rows: number, parts: number, align: number): (i: number) => number {
  const blocks = Math.ceil(rows / align);
  return (i) => (i === parts ? rows : Math.min(rows, Math.floor((i * blocks) / parts) * align));
}

function injectedTrap(): number {
  mainFault = false;
  return TRAP_POINTER;
}

/**
 * Test-only fault injection, inert unless called: makes thread `thread` (0: the main thread,
 * which supports `trap` only; 1…: a worker) fail at its next job. `exit`: the worker exits
 * (`process.exit(70)`); `trap`: the kernel runs with an input pointer past the memory and traps;
 * `hang`: the worker spins forever; `{ delayMs }`: the worker sleeps that long, then runs the job
 * normally. Each worker reads its word once per job; while one of these waits, calls give each
 * thread one range (as staged calls do), so that the fault's job is the worker's own.
 *
 * For shared calls (chunks taken in turn): `{ lateMs }`: the worker sleeps that long when it
 * wakes for its next shared call, then looks for chunks (a late wake-up); `chunkTrap`: the next
 * chunk the worker takes runs with the pointer past the memory.
 */
export function injectKernelFault(
  thread: number,
  fault: 'exit' | 'trap' | 'hang' | 'chunkTrap' | { readonly delayMs: number } | { readonly lateMs: number },
): void {
  if (thread === 0) {
    if (fault !== 'trap') throw new SpikeflowError('CONFIG_INVALID', 'injectKernelFault: the main thread supports only trap');
    mainFault = true;
    return;
  }
  const w = rt().workers[thread - 1];
  if (!w) throw new SpikeflowError('CONFIG_INVALID', `injectKernelFault: no worker thread ${thread} (the pool has ${rt().workers.length})`);
  if (typeof fault === 'object') Atomics.store(w.control, FAULT_MS, 'delayMs' in fault ? fault.delayMs : fault.lateMs);
  Atomics.store(w.control, FAULT, FAULT_CODES[typeof fault === 'object' ? ('delayMs' in fault ? 'delay' : 'late') : fault]);
}

/**
 * Test-only: each worker's posted and finished job numbers now (to check that a failed call
 * joined them), and how many chunks of shared calls it has run.
 */
export function workerJobs(): { readonly posted: () => number; readonly done: () => number; readonly chunks: () => number }[] {
  return rt().workers.map((w) => ({
    posted: () => Atomics.load(w.control, JOB),
    done: () => Atomics.load(w.control, DONE),
    chunks: () => Atomics.load(w.control, CHUNKS),
  }));
}

/** Where scratch begins: the module's own static data lies below. */
const BASE = 1 << 16;
/** The most a wasm32 memory holds (65536 pages of 64 KiB; the shared module's declared maximum). */
const MAX_BYTES = 2 ** 32;

/** The sizes of a kernel call, as an out-of-memory error names them. */
export interface CallSize {
  readonly T?: number;
  readonly batch?: number;
  /** Rows when time and batch come flattened (`T·batch`). */
  readonly rows?: number;
  readonly width: number | string;
}

function describeSize(s: CallSize): string {
  const parts = [];
  if (s.T !== undefined) parts.push(`T = ${s.T}`);
  if (s.batch !== undefined) parts.push(`batch ${s.batch}`);
  if (s.rows !== undefined) parts.push(`${s.rows} rows (T × batch)`);
  parts.push(`width ${s.width}`);
  return parts.join(', ');
}

const gib = (bytes: number) => (bytes / 2 ** 30).toFixed(2);

let calls = 0;
let idleTimer: ReturnType<typeof setTimeout> | undefined;
let callsWhenArmed = 0;

/** After a call leaves the memory above the release size, checks every `idleReleaseMs` whether the kernels were called since; releases once they were not. */
function armIdleRelease(bytes: number): void {
  if (idleTimer !== undefined) return;
  const o = poolOptions();
  if (o.idleReleaseMs <= 0 || bytes <= o.idleReleaseAboveBytes) return;
  callsWhenArmed = calls;
  idleTimer = setTimeout(() => {
    idleTimer = undefined;
    const r = runtime;
    if (!r) return;
    if (calls !== callsWhenArmed) armIdleRelease(r.memory.buffer.byteLength);
    else if (r.memory.buffer.byteLength > poolOptions().idleReleaseAboveBytes) discard(r);
  }, o.idleReleaseMs);
  (idleTimer as { unref?: () => void }).unref?.();
}

/**
 * Releases the kernels' scratch memory now: WebAssembly memory cannot shrink, so the runtime
 * (memory, instance, worker threads) is dropped and the next kernel call builds a fresh one
 * (~50 ms to start the workers). Returns the bytes released (0 if none was held). The kernels
 * also release it by themselves once idle: see {@link KernelPoolOptions.idleReleaseMs}. Where
 * the kernels run without Node's worker threads (a browser), the next runtime is prepared again
 * at once, asynchronously, as {@link prepareKernels} does.
 */
export function releaseKernelMemory(): number {
  const r = runtime;
  if (!r) return 0;
  const bytes = r.memory.buffer.byteLength;
  discard(r);
  return bytes;
}

/** Bytes of scratch memory the kernels hold now (0 when released). */
export function kernelMemoryBytes(): number {
  return runtime?.memory.buffer.byteLength ?? 0;
}

/**
 * Scratch space for one kernel call, laid out from the start of the module's memory on every
 * call (calls never overlap: tfjs runs one kernel at a time), after the memory a kernel keeps
 * across calls ({@link keep}) if one does. `alloc` all buffers first, then
 * `commit` (which grows the memory, or fails with `OUT_OF_MEMORY` naming the call's sizes), then
 * take views: growing detaches earlier views.
 */
export class Arena {
  #end: number;
  readonly #m: WebAssembly.Memory;
  readonly #size: CallSize;

  constructor(size: CallSize) {
    const r = freshRuntime();
    this.#m = r.memory;
    // Laid out after the memory a kernel keeps across calls (see keep()), if any.
    this.#end = held?.r === r ? BASE + held.bytes : BASE;
    this.#size = size;
    calls++;
  }

  /** Reserves `n` 4-byte elements, 16-byte aligned; returns the byte offset (valid after {@link commit}). */
  alloc(n: number): number {
    const at = this.#end;
    // Plain arithmetic: exact far beyond 4 GiB, where commit() refuses.
    this.#end += Math.ceil(n / 4) * 16;
    return at;
  }

  /** Grows the memory to hold everything allocated. */
  commit(): this {
    if (!(this.#end <= MAX_BYTES)) throw this.#outOfMemory(`more than the 4 GiB a WebAssembly memory can hold`);
    const need = this.#end - this.#m.buffer.byteLength;
    if (need > 0) {
      try {
        this.#m.grow(Math.ceil(need / 65536));
      } catch (e) {
        throw this.#outOfMemory(`and the memory could not grow to that here (${e instanceof Error ? e.message : String(e)})`, e);
      }
    }
    armIdleRelease(this.#m.buffer.byteLength);
    return this;
  }

  #outOfMemory(why: string, cause?: unknown): SpikeflowError {
    return new SpikeflowError(
      'OUT_OF_MEMORY',
      `${region}: needs ${gib(this.#end)} GiB of scratch memory for ${describeSize(this.#size)}, ${why}. ` +
        'Use a smaller batch, shorter windows (truncated BPTT, e.g. the rule tbptt with a smaller k), or run without the fast kernels (--no-kernels).',
      { kernel: region, bytes: this.#end, ...this.#size },
      { cause },
    );
  }

  f32(at: number, n: number): Float32Array {
    return new Float32Array(this.#m.buffer, at, n);
  }

  i32(at: number, n: number): Int32Array {
    return new Int32Array(this.#m.buffer, at, n);
  }
}

/** A fresh arena for one call of the given sizes (named by an out-of-memory error). */
export function arena(size: CallSize): Arena {
  return new Arena(size);
}

/** The memory kept across calls (see {@link keep}): the runtime it lies in, its size in bytes from {@link BASE}, and whose it is. */
let held: { readonly r: Runtime; bytes: number; readonly owner: Kept } | undefined;

/**
 * Memory a kernel keeps from one call to the next (e-prop's eligibility traces between windows):
 * the first bytes of scratch, which every later {@link Arena} is laid out after. One holder at a
 * time: a later {@link keep} takes it over (the earlier holder's `live()` turns false), as does
 * the runtime being discarded (a fault, {@link releaseKernelMemory}, the idle release).
 */
export interface Kept {
  /** Byte offset of the kept memory (fixed; the content is valid while {@link live}). */
  readonly at: number;
  /** Keeps `n` 4-byte elements from now on (the content up to the smaller size stays). */
  resize(n: number): void;
  /** Whether the memory is still this holder's. */
  live(): boolean;
  f32(at: number, n: number): Float32Array;
  i32(at: number, n: number): Int32Array;
  /** Gives the memory back (later arenas begin at the start of scratch again). */
  release(): void;
}

/** Keeps `n` 4-byte elements of the kernels' memory across calls; `size` names the call in an out-of-memory error. */
export function keep(n: number, size: CallSize): Kept {
  const r = freshRuntime();
  const kept: Kept = {
    at: BASE,
    resize(m) {
      if (!kept.live()) throw new SpikeflowError('KERNEL_FAULT', `${region}: the memory it kept across calls was released or taken over; start again`);
      const bytes = Math.ceil(m / 4) * 16;
      if (!(BASE + bytes <= MAX_BYTES)) {
        throw new SpikeflowError(
          'OUT_OF_MEMORY',
          `${region}: needs ${gib(BASE + bytes)} GiB of memory kept across calls for ${describeSize(size)}, more than the 4 GiB a WebAssembly memory can hold. Use a smaller batch or layer, or run without the fast kernels (--no-kernels).`,
          { kernel: region, bytes: BASE + bytes, ...size },
        );
      }
      const need = BASE + bytes - r.memory.buffer.byteLength;
      if (need > 0) {
        try {
          r.memory.grow(Math.ceil(need / 65536));
        } catch (e) {
          throw new SpikeflowError(
            'OUT_OF_MEMORY',
            `${region}: needs ${gib(BASE + bytes)} GiB of memory kept across calls for ${describeSize(size)}, and the memory could not grow to that here (${e instanceof Error ? e.message : String(e)}). Use a smaller batch or layer, or run without the fast kernels (--no-kernels).`,
            { kernel: region, bytes: BASE + bytes, ...size },
            { cause: e },
          );
        }
      }
      held!.bytes = bytes;
      calls++;
      armIdleRelease(r.memory.buffer.byteLength);
    },
    live: () => held?.owner === kept && held.r === runtime,
    f32: (at, m) => new Float32Array(r.memory.buffer, at, m),
    i32: (at, m) => new Int32Array(r.memory.buffer, at, m),
    release() {
      if (held?.owner === kept) held = undefined;
    },
  };
  held = { r, bytes: 0, owner: kept };
  kept.resize(n);
  return kept;
}

import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { execFileSync } from 'node:child_process';
import { fastSigmoid, isSpikeflowError, tf, type SpikeflowError } from '@spikeflow/core';
import { eventDense, integrateFireLayer } from './index.js';
import { activeThreads, arena, configureKernelPool, injectKernelFault, kernelMemoryBytes, parallelRows, releaseKernelMemory, workerJobs } from './wasm.js';
import { inChild, kernelWorkload, useWasm } from './test-support.js';

// Two threads whatever the machine (read when the pool starts, below).
const threadsBefore = process.env['SPIKEFLOW_THREADS'];
process.env['SPIKEFLOW_THREADS'] = '2';

/** The workload's hash in a fresh process on two threads. */
let fresh: string;

beforeAll(async () => {
  await useWasm();
  releaseKernelMemory();
  fresh = inChild<{ hash: string }>('kernels', { SPIKEFLOW_THREADS: '2' }).hash;
}, 120_000);

const defaults = configureKernelPool({});
afterEach(() => {
  configureKernelPool(defaults);
  process.env['SPIKEFLOW_THREADS'] = '2';
  vi.useRealTimers();
});
afterAll(() => {
  releaseKernelMemory();
  if (threadsBefore === undefined) delete process.env['SPIKEFLOW_THREADS'];
  else process.env['SPIKEFLOW_THREADS'] = threadsBefore;
});

/** The SpikeflowError `f` throws and how long it took to throw. */
function failure(f: () => unknown): { error: SpikeflowError; ms: number } {
  const t0 = performance.now();
  try {
    f();
  } catch (e) {
    if (isSpikeflowError(e)) return { error: e, ms: performance.now() - t0 };
    throw e;
  }
  throw new Error('expected a SpikeflowError, nothing was thrown');
}

/**
 * `countRows` over `rows` rows of 4 ones, split over every thread (work enough for all of them):
 * each part's count (a chunk of a shared call, or a thread's range while a fault waits).
 */
function countEverywhere(rows: number): number[] {
  const a = arena({ rows, width: 4 });
  const px = a.alloc(rows * 4);
  const out = a.alloc(64);
  a.commit()
    .f32(px, rows * 4)
    .fill(1);
  const parts = parallelRows('countRows', rows, (n0, n1, part) => [px, n0, n1, 4, out + 4 * part]).length;
  return Array.from(a.i32(out, parts));
}

describe("a fault in the kernels' thread pool is contained", () => {
  const cases = [
    { fault: 'exit', says: /died while running 'eventProduct': the worker thread exited \(code 70\)/, floorMs: 60_000 },
    { fault: 'trap', says: /trapped in 'eventProduct': RuntimeError: memory access out of bounds/, floorMs: 60_000 },
    { fault: 'hang', says: /did not finish 'eventProduct': no result and no sign of life/, floorMs: 250 },
  ] as const;
  for (const { fault, says, floorMs } of cases) {
    it(`a worker that ${fault === 'exit' ? 'exits' : fault === 'trap' ? 'traps' : 'hangs'}: the call fails with KERNEL_FAULT within 2 s naming the kernel, the worker's error and the remedy; the next call equals a fresh process's, on two threads`, () => {
      // Exits and traps are signalled by the worker itself: a long hang deadline must not matter.
      configureKernelPool({ hangFloorMs: floorMs, hangFactor: 10 });
      expect(kernelWorkload()).toBe(fresh);
      const tensors = tf.memory().numTensors;
      injectKernelFault(1, fault);
      const { error, ms } = failure(() => kernelWorkload());
      expect(ms).toBeLessThan(2000);
      expect(error.code).toBe('KERNEL_FAULT');
      expect(error.message).toMatch(/^spikeflow\.integrateFireLayer \(input product\): kernel worker thread 1 \(of 2\) /);
      expect(error.message).toMatch(says);
      expect(error.message).toContain('SPIKEFLOW_THREADS=1');
      expect(error.details).toMatchObject({
        kernel: 'spikeflow.integrateFireLayer (input product)',
        wasmKernel: 'eventProduct',
        thread: 1,
        fault: fault === 'exit' ? 'died' : fault === 'trap' ? 'trap' : 'hung',
      });
      expect(tf.memory().numTensors).toBe(tensors);
      expect(kernelWorkload()).toBe(fresh);
      expect(activeThreads()).toBe(2);
    }, 60_000);
  }

  it("a trap in the main thread's own range: every worker is joined (a slow one finishes its range) before the call fails", () => {
    configureKernelPool({ hangFloorMs: 60_000 });
    countEverywhere(64);
    const [worker] = workerJobs();
    injectKernelFault(1, { delayMs: 300 });
    injectKernelFault(0, 'trap');
    const { error } = failure(() => countEverywhere(64));
    expect(worker!.done()).toBe(worker!.posted());
    expect(error.code).toBe('KERNEL_FAULT');
    expect(error.message).toMatch(/: the main thread \(of 2\) trapped in 'countRows': RuntimeError: memory access out of bounds/);
    expect(countEverywhere(64)).toEqual(Array(8).fill(32));
  });

  it('a worker that dies: the other workers are joined (a slow one finishes its range) before the call fails', () => {
    process.env['SPIKEFLOW_THREADS'] = '3';
    releaseKernelMemory();
    configureKernelPool({ hangFloorMs: 60_000 });
    expect(countEverywhere(60)).toEqual([20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20]);
    const workers = workerJobs();
    expect(workers).toHaveLength(2);
    injectKernelFault(1, 'exit');
    injectKernelFault(2, { delayMs: 300 });
    const { error } = failure(() => countEverywhere(60));
    expect(error.message).toMatch(/kernel worker thread 1 \(of 3\) died while running 'countRows'/);
    expect(workers[1]!.done()).toBe(workers[1]!.posted());
    expect(countEverywhere(60)).toEqual(Array(12).fill(20));
    releaseKernelMemory();
  });
});

describe('a shared call (chunks that the threads take in turn)', () => {
  /** `countEverywhere` over a million rows: each of its 8 chunks takes a worker's wake-up time or more. */
  const big = () => countEverywhere(1 << 20);
  const whole = Array(8).fill((4 << 20) / 8);

  it("a worker that wakes late leaves its chunks to the main thread; waking after the call is over, it takes nothing from the next one's", () => {
    configureKernelPool({ hangFloorMs: 60_000 });
    expect(countEverywhere(64)).toEqual(Array(8).fill(32));
    const [worker] = workerJobs();
    const ran = worker!.chunks();
    injectKernelFault(1, { lateMs: 300 });
    // The worker sleeps 300 ms on waking: the main thread takes every chunk and returns.
    expect(big()).toEqual(whole);
    expect(worker!.chunks()).toBe(ran);
    expect(worker!.done()).toBeLessThan(worker!.posted());
    // A second call while it still sleeps: the main thread alone again.
    expect(countEverywhere(64)).toEqual(Array(8).fill(32));
    expect(worker!.chunks()).toBe(ran);
    // Once awake it found both calls over; the next calls have it back.
    while (worker!.done() !== worker!.posted()) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    expect(worker!.chunks()).toBe(ran);
    for (let i = 0; i < 50 && worker!.chunks() === ran; i++) expect(big()).toEqual(whole);
    expect(worker!.chunks()).toBeGreaterThan(ran);
  });

  it('a worker that traps in a chunk: the call fails with KERNEL_FAULT naming it after every chunk is done; the next call is whole', () => {
    configureKernelPool({ hangFloorMs: 60_000 });
    const [worker] = workerJobs();
    const ran = worker!.chunks();
    injectKernelFault(1, 'chunkTrap');
    let error: SpikeflowError | undefined;
    // The fault waits for the worker's next chunk: it fails the first call the worker helps with.
    for (let i = 0; i < 50 && !error; i++) {
      try {
        expect(big()).toEqual(whole);
      } catch (e) {
        if (!isSpikeflowError(e)) throw e;
        error = e;
      }
    }
    expect(worker!.chunks()).toBeGreaterThan(ran);
    expect(error?.code).toBe('KERNEL_FAULT');
    expect(error?.message).toMatch(/kernel worker thread 1 \(of 2\) trapped in 'countRows': RuntimeError: memory access out of bounds/);
    expect(big()).toEqual(whole);
  });
});

it('workers start whatever flags the process was given: under `node --input-type=module -e` every thread runs', () => {
  const loader = new URL('./test-loader.mjs', import.meta.url).pathname;
  const wasm = new URL('./wasm.ts', import.meta.url).href;
  // Inherited, the flag made the workers' source an ES module that died before it could signal.
  const out = execFileSync(
    process.execPath,
    ['--import', loader, '--input-type=module', '-e', `const k = await import(${JSON.stringify(wasm)}); console.log(k.activeThreads());`],
    {
      env: { ...process.env, SPIKEFLOW_THREADS: '2' },
      encoding: 'utf8',
      timeout: 30_000,
    },
  );
  expect(out.trim().split('\n').at(-1)).toBe('2');
}, 60_000);

describe("the kernels' scratch memory", () => {
  it('releaseKernelMemory() gives it back; the next call starts afresh with the same results', () => {
    expect(kernelWorkload()).toBe(fresh);
    const held = kernelMemoryBytes();
    expect(held).toBeGreaterThan(1 << 20);
    expect(releaseKernelMemory()).toBe(held);
    expect(kernelMemoryBytes()).toBe(0);
    expect(releaseKernelMemory()).toBe(0);
    expect(kernelWorkload()).toBe(fresh);
  });

  it('is released once the kernels have been idle for idleReleaseMs, not while a loop keeps calling them', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    configureKernelPool({ idleReleaseMs: 1000, idleReleaseAboveBytes: 0 });
    releaseKernelMemory();
    kernelWorkload();
    vi.advanceTimersByTime(600);
    kernelWorkload();
    vi.advanceTimersByTime(600);
    // 1200 ms after the first call, 600 after the last: kept.
    expect(kernelMemoryBytes()).toBeGreaterThan(0);
    vi.advanceTimersByTime(1000);
    expect(kernelMemoryBytes()).toBe(0);
    expect(kernelWorkload()).toBe(fresh);
  });

  it('a size beyond 4 GiB fails with OUT_OF_MEMORY naming the kernel, the sizes and the remedies, and nothing wraps around', () => {
    const x = tf.zeros([1_100_000, 1]);
    const w = tf.zeros([1, 1000]);
    const flat = failure(() => eventDense(x, w));
    expect(flat.error.code).toBe('OUT_OF_MEMORY');
    expect(flat.error.message).toMatch(
      /^spikeflow\.eventDense \(forward\): needs 4\.\d\d GiB of scratch memory for 1100000 rows \(T × batch\), width 1 → 1000, more than the 4 GiB a WebAssembly memory can hold\./,
    );
    const init = { v: tf.zeros([100, 600]), s: tf.zeros([100, 600]) };
    const p = { beta: tf.scalar(0.9), threshold: 1, resetDetach: false, surrogate: fastSigmoid({ slope: 5 }) };
    const long = tf.zeros([20_000, 100, 1]);
    const wide = tf.zeros([1, 600]);
    const layer = failure(() => integrateFireLayer(long, wide, undefined, init, undefined, p));
    expect(layer.error.code).toBe('OUT_OF_MEMORY');
    expect(layer.error.message).toMatch(
      /^spikeflow\.integrateFireLayer \(forward\): needs \d+\.\d\d GiB of scratch memory for T = 20000, batch 100, width 1 → 600/,
    );
    expect(layer.error.message).toMatch(/smaller batch, shorter windows \(truncated BPTT.*\), or run without the fast kernels \(--no-kernels\)/);
    const a = arena({ width: 1 });
    const first = a.alloc(600_000_000);
    expect(a.alloc(600_000_000) - first).toBe(2_400_000_000);
    expect(failure(() => a.commit()).error.code).toBe('OUT_OF_MEMORY');
    tf.dispose([x, w, long, wide, init.v, init.s, p.beta]);
    expect(kernelWorkload()).toBe(fresh);
  });
});

import { tf } from '@spikeflow/core';
import { setKernelProbe } from '@spikeflow/kernels';

/** Time spent in one tfjs kernel during a profiled call. */
export interface KernelTime {
  readonly kernel: string;
  /** Exclusive wall time: the kernel's own, without kernels it ran inside it. */
  readonly ms: number;
  readonly calls: number;
}

/** Where one call's time went: kernel by kernel, and the rest (tape, dispatch, JavaScript around the kernels). */
export interface KernelProfile {
  readonly totalMs: number;
  /** Σ of the kernels' exclusive times. */
  readonly kernelMs: number;
  /** `totalMs − kernelMs`: the engine, the tape, op wrappers, rule and network code. */
  readonly outsideMs: number;
  /** By exclusive time, largest first. */
  readonly kernels: readonly KernelTime[];
}

/**
 * Runs `f` with every kernel of tfjs backend `backend` timed (the CPU backends execute kernels
 * synchronously, so wall time around a kernel is its cost; on a backend that queues its work,
 * WebGPU, it is the dispatch, and the wait for the device falls outside the kernels), and every
 * part of spikeflow's fast kernels (`spikeflow.integrateFireSequence (forward)`, `(backward)`,
 * `(∂wRec)`, …), and restores the kernels afterwards. Nested kernels are charged to themselves
 * only. `f` may be asynchronous: the kernels stay timed, and the total runs, until its promise
 * settles.
 */
export async function profileKernels(backend: string, f: () => void | Promise<void>): Promise<KernelProfile> {
  const configs = tf.getKernelsForBackend(backend);
  const stats = new Map<string, { ms: number; calls: number }>();
  const originals = configs.map((c) => c.kernelFunc);
  // Exclusive time: a kernel's elapsed time less that of kernels started inside it.
  const childMs: number[] = [];
  const timed = <T>(name: string, run: () => T): T => {
    childMs.push(0);
    const t0 = performance.now();
    try {
      return run();
    } finally {
      const elapsed = performance.now() - t0;
      const own = elapsed - childMs.pop()!;
      if (childMs.length) childMs[childMs.length - 1]! += elapsed;
      const s = stats.get(name) ?? { ms: 0, calls: 0 };
      s.ms += own;
      s.calls++;
      stats.set(name, s);
    }
  };
  configs.forEach((c) => {
    const fn = c.kernelFunc;
    (c as { kernelFunc: typeof fn }).kernelFunc = ((args: never) => timed(c.kernelName, () => fn(args))) as typeof fn;
  });
  setKernelProbe(timed);
  const t0 = performance.now();
  try {
    await f();
  } finally {
    setKernelProbe();
    configs.forEach((c, i) => ((c as { kernelFunc: unknown }).kernelFunc = originals[i]));
  }
  const totalMs = performance.now() - t0;
  const kernels = [...stats].map(([kernel, s]) => ({ kernel, ms: s.ms, calls: s.calls })).sort((a, b) => b.ms - a.ms);
  const kernelMs = kernels.reduce((a, k) => a + k.ms, 0);
  return { totalMs, kernelMs, outsideMs: totalMs - kernelMs, kernels };
}

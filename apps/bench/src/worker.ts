import { createRegistry, isSpikeflowError, loadPlugins, SpikeflowError } from '@spikeflow/core';
import { measure, type RuleChoice, type Workload } from './measure.js';

/** What the bench hands one measuring process. */
export interface Job {
  readonly plugins: readonly string[];
  readonly backend: string;
  readonly choice: RuleChoice;
  readonly steps: number;
  readonly workload: Workload;
}

/** Runs one job in this process and prints its measurement as one JSON line. */
export async function runJob(job: Job): Promise<void> {
  const registry = createRegistry(await loadPlugins(job.plugins, { from: import.meta.url }));
  const backend = registry.backends.get(job.backend);
  if (!backend) throw new SpikeflowError('UNKNOWN_NAME', `bench: backend '${job.backend}' is not loaded (${[...registry.backends.keys()].join(', ')})`);
  await backend.activate();
  const m = await measure(registry, job.choice, job.steps, job.workload);
  process.stdout.write(`${JSON.stringify({ ok: true, measurement: m, backend: backend.describe() })}\n`);
}

/**
 * What a failed point reports. Running out of memory shows as a kernel's `OUT_OF_MEMORY`, or, in
 * tfjs' own WebAssembly heap, as a `RuntimeError` (a failed allocation then written through) or a
 * `RangeError` (an array too large for JavaScript): all three are said to be out of memory, the
 * original text kept.
 */
export function failureMessage(job: Pick<Job, 'choice' | 'steps' | 'workload'>, e: unknown): string {
  const text = e instanceof Error ? `${e.name === 'Error' ? '' : `${e.name}: `}${e.message}` : String(e);
  const where = `${job.choice.label} at T = ${job.steps}, B = ${job.workload.batch}`;
  if (isSpikeflowError(e, 'OUT_OF_MEMORY')) return `out of memory: ${where} does not fit (${(e as Error).message})`;
  const wasmTrap = typeof WebAssembly !== 'undefined' && e instanceof WebAssembly.RuntimeError && /out of bounds|OOM|Aborted/i.test(e.message);
  const tooLarge = e instanceof RangeError && /allocation failed|Invalid (typed )?array length|out of memory/i.test(e.message);
  if (wasmTrap || tooLarge) return `out of memory: ${where} does not fit in the backend's memory (${text})`;
  return (e as Error)?.message ?? text;
}

if (process.argv[2] === '--job') {
  const job = JSON.parse(process.argv[3]!) as Job;
  runJob(job).catch((e: unknown) => {
    process.stdout.write(`${JSON.stringify({ ok: false, message: failureMessage(job, e), code: isSpikeflowError(e) ? e.code : undefined })}\n`);
    process.exitCode = 1;
  });
}

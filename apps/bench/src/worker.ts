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

if (process.argv[2] === '--job') {
  runJob(JSON.parse(process.argv[3]!) as Job).catch((e: unknown) => {
    process.stdout.write(`${JSON.stringify({ ok: false, message: (e as Error).message, code: isSpikeflowError(e) ? e.code : undefined })}\n`);
    process.exitCode = 1;
  });
}

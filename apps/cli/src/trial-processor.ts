import os from 'node:os';
import type { SandboxedJob } from 'bullmq';
import { runTrial, type TrialJob, type TrialRow } from './trial.js';

/**
 * BullMQ's sandboxed processor for sweep trials: runs in a child process of the worker, and runs
 * the trial's `spikeflow train` in the worker's process group (so that stopping or killing the
 * worker's group stops the training too).
 */
export default async function process_(job: SandboxedJob<TrialJob, TrialRow>): Promise<TrialRow> {
  return runTrial(job.data, { detached: false, worker: `${os.hostname()}:${process.ppid}` });
}

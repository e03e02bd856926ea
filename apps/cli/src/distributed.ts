import { existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { SpikeflowError } from '@spikeflow/core';
import type { Pruner } from './prune.js';
import { evaluations, STOP, type TrialJob, type TrialRow } from './trial.js';

/**
 * Sweeps on BullMQ (a job queue on Redis): the coordinator queues a sweep's trials as jobs whose id
 * is the trial's, so that queueing a sweep again adds nothing twice; workers on any machine that
 * sees the same run directories (a shared filesystem) run each job in a sandboxed child process
 * (`trial-processor.ts`: BullMQ's own lock renewal stays free of the training's CPU load). A
 * worker that dies stops renewing its job's lock; after the lock's duration BullMQ hands the job to
 * another worker, which resumes the trial from its newest checkpoint. A worker that lost its lock
 * and finishes anyway is refused by BullMQ (its lock token no longer matches): its result is
 * dropped, and the row stays the one of the worker that holds the job.
 */

/** The queue every sweep's trials go to unless `--queue` says otherwise. */
export const QUEUE = 'spikeflow-trials';

/** A Redis connection as BullMQ wants one (no retry limit on blocking commands). */
export function connect(url: string): Redis {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SpikeflowError('CONFIG_INVALID', `--redis: '${url}' is not a URL (redis://host:port)`, { path: '--redis' });
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    throw new SpikeflowError('CONFIG_INVALID', `--redis: '${url}' is not a redis:// URL`, { path: '--redis' });
  return new Redis(url, { maxRetriesPerRequest: null, lazyConnect: false });
}

/** A trial's job id (BullMQ's ids may not hold ':'). */
export const jobIdOf = (trialId: string) => trialId.replace(/:/g, '.');

export interface RedisSweepOptions {
  readonly url: string;
  readonly queue?: string;
  readonly log: (line: string) => void;
  /** Each row as it is final (the coordinator appends it to the results). */
  readonly onRow: (row: TrialRow) => void;
  readonly pruner: Pruner;
  readonly epochs: (job: TrialJob) => number;
}

/**
 * Queues `jobs` (the trials without a final row) and waits until each has one: a completed job's
 * row, or a failed job's. Prunes from the evaluations each trial logs in its run directory (a
 * {@link STOP} file tells its worker). A job that completed while no coordinator watched gives
 * its row now; a failed one is queued again.
 */
export async function runOnRedis(jobs: readonly TrialJob[], { url, queue = QUEUE, log, onRow, pruner, epochs }: RedisSweepOptions): Promise<void> {
  const connection = connect(url);
  const q = new Queue(queue, { connection });
  try {
    await q.waitUntilReady();
    const pending = new Map<string, TrialJob>();
    for (const j of jobs) {
      const id = jobIdOf(j.id);
      // A trial run again (it failed, as a job or in its training) needs its old job gone: a job id is queued once.
      const old = await q.getJob(id);
      if (old && ((await old.isFailed()) || (old.returnvalue as TrialRow | null)?.status === 'failed')) await old.remove();
      await q.add('trial', j, { jobId: id, attempts: 1, removeOnComplete: false, removeOnFail: false });
      pending.set(id, j);
    }
    log(`queued ${jobs.length} trial${jobs.length === 1 ? '' : 's'} on ${queue}; waiting for workers (spikeflow worker --redis ${url})`);
    const offsets = new Map<string, number>();
    while (pending.size) {
      for (const [id, j] of [...pending]) {
        // Pruning: from the evaluations the trial's run logged (a shared filesystem).
        const got = evaluations(j.metric, j.dir, offsets.get(id) ?? 0);
        offsets.set(id, got.offset);
        for (const [epoch, v] of got.values)
          if (!pruner.report(j.id, epoch, v, epochs(j)) && !existsSync(join(j.dir, STOP))) {
            writeFileSync(join(j.dir, STOP), `pruned after epoch ${epoch}\n`);
            log(`${j.id}: pruned after epoch ${epoch}`);
          }
        // The state first, then the job: a job read before its completion lacks its return value.
        const state = await q.getJobState(id);
        if (state !== 'completed' && state !== 'failed') continue;
        const job: Job | undefined = await q.getJob(id);
        if (!job) continue;
        if (state === 'completed') {
          const row = job.returnvalue as TrialRow | null;
          if (!row) continue;
          if (row.status === 'done') pruner.finished(j.id);
          onRow(row);
          pending.delete(id);
        } else if (state === 'failed') {
          onRow({
            id: j.id,
            trial: j.index,
            params: j.params,
            status: 'failed',
            epochs: 0,
            seconds: 0,
            runDir: j.dir,
            note: job.failedReason ?? 'the job failed',
            time: new Date().toISOString(),
          });
          pending.delete(id);
        }
      }
      if (pending.size) await new Promise((r) => setTimeout(r, 300));
    }
  } finally {
    await q.close();
    connection.disconnect();
  }
}

export interface WorkerOptions {
  readonly url: string;
  readonly queue?: string;
  /** Trials at once (default 1). */
  readonly concurrency?: number;
  /** How long a job's lock lasts without renewal, in ms (default 30 s): after that a silent worker's job goes to another. */
  readonly lockMs?: number;
  readonly log: (line: string) => void;
}

const processor = fileURLToPath(new URL('./trial-processor.js', import.meta.url));

/**
 * A worker: takes trials from the queue and runs each in a sandboxed child process (which runs
 * `spikeflow train`), `concurrency` at a time, each with ⌊cores/concurrency⌋ kernel threads unless
 * `SPIKEFLOW_THREADS` says otherwise. Resolves when it is closed (SIGINT, SIGTERM).
 */
export async function runWorker({ url, queue = QUEUE, concurrency = 1, lockMs = 30_000, log }: WorkerOptions): Promise<void> {
  const connection = connect(url);
  process.env['SPIKEFLOW_THREADS'] ??= String(Math.max(1, Math.floor(os.cpus().length / concurrency)));
  const name = `${os.hostname()}:${process.pid}`;
  const worker = new Worker(queue, processor, {
    connection,
    concurrency,
    lockDuration: lockMs,
    stalledInterval: Math.max(500, Math.floor(lockMs / 2)),
    maxStalledCount: 5,
    name,
  });
  worker.on('active', (job) => log(`${name}: ${job.id} started`));
  worker.on('completed', (job) => log(`${name}: ${job.id} ${(job.returnvalue as TrialRow).status}`));
  worker.on('failed', (job, err) => log(`${name}: ${job?.id ?? '?'} failed: ${err.message}`));
  // A worker that was silent past its lock (paused, cut off) loses the job to another; the result
  // it still delivers is refused by BullMQ (its lock token is stale) and dropped here.
  worker.on('error', (err) => {
    const late = /Missing lock for job (\S+?)\.? moveToFinished/.exec(err.message);
    const lost = /could not renew lock for job (\S+)/.exec(err.message);
    if (late) log(`${name}: the result of ${late[1]} was rejected: this worker lost the job's lock, and another worker holds the trial`);
    else if (lost) log(`${name}: lost the lock of ${lost[1]} (silent past its lock duration): another worker may take the trial over`);
    else log(`${name}: ${err.message}`);
  });
  await worker.waitUntilReady();
  log(`${name}: waiting for trials on ${queue} (${concurrency} at a time)`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      log(`${name}: closing`);
      void worker.close().then(() => resolve());
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  connection.disconnect();
}

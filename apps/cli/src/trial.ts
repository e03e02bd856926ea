import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RunConfig } from '@spikeflow/core';
import { CHECKPOINT, METRICS } from './train.js';

/**
 * One sweep trial run as `spikeflow train` in a child process of its own process group, watched
 * through the evaluations it logs: what a local sweep runs in its processes and a worker runs in
 * its sandboxed ones.
 */

/** One row of a sweep's results: the last word on one trial. */
export interface TrialRow {
  readonly id: string;
  readonly trial: number;
  readonly params: Readonly<Record<string, unknown>>;
  readonly status: 'done' | 'pruned' | 'failed';
  /** The metric at the last evaluation (of the epochs it trained). */
  readonly value?: number;
  readonly epochs: number;
  readonly seconds: number;
  readonly runDir: string;
  /** Why it failed, or where it was pruned. */
  readonly note?: string;
  /**
   * Where the trial resumed from a checkpoint: whether it stays bitwise the run it would have been
   * uninterrupted (the checkpoint's fingerprint — backend, SIMD, threads, kernels' version — is
   * this setup's), and the trainer's warning where not.
   */
  readonly resumed?: { readonly bitwise: boolean; readonly note?: string };
  /** The worker that ran it (a BullMQ sweep). */
  readonly worker?: string;
  readonly time: string;
}

/** The metric a sweep ranks by. */
export interface MetricSpec {
  readonly split: string;
  readonly name: 'loss' | 'accuracy';
}

/** Everything a trial's run needs: plain data, as a BullMQ job carries it. */
export interface TrialJob {
  readonly id: string;
  readonly index: number;
  readonly params: Readonly<Record<string, unknown>>;
  readonly config: RunConfig;
  readonly dir: string;
  readonly metric: MetricSpec;
  readonly pruneKind: string;
  /** Kernel threads of the training process (`SPIKEFLOW_THREADS`; empty: the runner's own setting). */
  readonly threads: string;
}

/** The file in a trial's run directory that tells whoever runs it to stop it (a pruned trial of a distributed sweep). */
export const STOP = 'stop';

/** The evaluations a trial's run logged from byte `from`: `[epoch, value]` of the metric, in order, and where the complete lines end. */
export function evaluations(metric: MetricSpec, dir: string, from = 0): { values: [number, number][]; offset: number } {
  const path = join(dir, METRICS);
  if (!existsSync(path)) return { values: [], offset: from };
  const text = readFileSync(path, 'utf8');
  const end = text.lastIndexOf('\n') + 1;
  const values: [number, number][] = [];
  for (const line of text.slice(from, end).split('\n')) {
    if (!line.includes('"eval"')) continue;
    try {
      const e = JSON.parse(line) as { type: string; position: { epoch: number }; result: { split: string; loss: number; accuracy?: number } };
      if (e.type === 'eval' && e.result.split === metric.split)
        values.push([e.position.epoch, metric.name === 'loss' ? e.result.loss : (e.result.accuracy ?? Number.NaN)]);
    } catch {
      // a line being written
    }
  }
  return { values, offset: end };
}

const cliBin = fileURLToPath(new URL('./bin.js', import.meta.url));

export interface RunTrialOptions {
  /** Each evaluation as it is logged; `false` stops the trial (pruned). */
  readonly onEval?: (epoch: number, value: number) => boolean;
  readonly log?: (line: string) => void;
  /** Whether to start the training in a process group of its own (local sweeps: to stop it with its children). */
  readonly detached?: boolean;
  readonly worker?: string;
}

/**
 * Trains one trial (resuming from its checkpoint where it has one) and returns its row. The trial
 * stops early where `onEval` says so or a {@link STOP} file appears in its run directory.
 */
export async function runTrial(t: TrialJob, { onEval, log = () => {}, detached = true, worker }: RunTrialOptions = {}): Promise<TrialRow> {
  mkdirSync(t.dir, { recursive: true });
  const configFile = join(t.dir, 'trial.json');
  await writeFile(configFile, `${JSON.stringify(t.config, null, 2)}\n`);
  const resume = existsSync(join(t.dir, CHECKPOINT));
  const started = Date.now();
  const child = spawn(process.execPath, [cliBin, 'train', configFile, '--out', t.dir, '--quiet', ...(resume ? ['--resume'] : [])], {
    detached,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...(t.threads ? { SPIKEFLOW_THREADS: t.threads } : {}) },
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  log(`${t.id} ${resume ? 'resumes' : 'starts'} ${JSON.stringify(t.params)}`);
  let offset = 0;
  let last: [number, number] | undefined;
  let pruned: number | undefined;
  const stop = () => {
    try {
      if (detached) process.kill(-child.pid!, 'SIGTERM');
      else child.kill('SIGTERM');
    } catch {
      // already gone
    }
  };
  const watch = setInterval(() => {
    const got = evaluations(t.metric, t.dir, offset);
    offset = got.offset;
    for (const [epoch, v] of got.values) {
      last = [epoch, v];
      if (pruned === undefined && onEval && !onEval(epoch, v)) {
        pruned = epoch;
        stop();
      }
    }
    if (pruned === undefined && existsSync(join(t.dir, STOP))) {
      pruned = last?.[0] ?? 0;
      stop();
    }
  }, 200);
  const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
  clearInterval(watch);
  // The evaluations logged between the last look and the exit.
  for (const [epoch, v] of evaluations(t.metric, t.dir, offset).values) {
    last = [epoch, v];
    if (pruned === undefined && code === 0) onEval?.(epoch, v);
  }
  const mismatch = /warning: (resuming .* under another setup[^\n]*)/.exec(stderr)?.[1];
  const common = {
    id: t.id,
    trial: t.index,
    params: t.params,
    epochs: last?.[0] ?? 0,
    seconds: (Date.now() - started) / 1000,
    runDir: t.dir,
    ...(resume ? { resumed: { bitwise: mismatch === undefined, ...(mismatch ? { note: mismatch } : {}) } } : {}),
    ...(worker ? { worker } : {}),
    time: new Date().toISOString(),
  };
  if (pruned !== undefined)
    return { ...common, status: 'pruned', ...(last ? { value: last[1] } : {}), note: `stopped after epoch ${pruned} by the ${t.pruneKind} rule` };
  if (code === 0) return { ...common, status: 'done', ...(last ? { value: last[1] } : {}) };
  return { ...common, status: 'failed', note: stderr.trim().split('\n').at(-1) ?? `exit ${String(code)}` };
}

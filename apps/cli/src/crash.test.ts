import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRng, disposeTree, loadCheckpoint, type Tensor } from '@spikeflow/core';
import { describe, expect, it } from 'vitest';

/**
 * Crash safety under fire: a training run that checkpoints after every step is killed with
 * SIGKILL at random moments — half of them the moment a checkpoint write is seen under way — and
 * resumed each time. Every checkpoint left behind must load, and the run must end with exactly the
 * weights of a run that was never interrupted.
 *
 * `SPIKEFLOW_CRASH_KILLS` sets the number of kills (default 6 in `pnpm test`; `pnpm crash-test`
 * runs 50) and `SPIKEFLOW_CRASH_SEED` the seed of their timing.
 */
const KILLS = Number(process.env['SPIKEFLOW_CRASH_KILLS'] ?? 6);
const SEED = Number(process.env['SPIKEFLOW_CRASH_SEED'] ?? 5);
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

const config = {
  plugins: ['@spikeflow/neuron-lif', '@spikeflow/rule-bptt', '@spikeflow/backend-wasm', '@spikeflow/dataset-add-task'],
  backend: 'wasm',
  seed: 11,
  data: { name: 'add-task', steps: 16, trainSamples: 1280, testSamples: 64 },
  model: { layers: [{ neuron: 'lif', size: 192, recurrent: true }], readout: { kappa: 0 } },
  rule: { name: 'bptt' },
  optimizer: { name: 'adam', lr: 0.003, schedule: 'cosine' },
  // One epoch (40 steps) per kill: a kill lets at most 25 steps through (below), so the run
  // outlasts the kills whatever the machine's speed.
  train: { epochs: Math.max(2, KILLS), batchSize: 32, checkpointEvery: 1 },
};

function weights(path: string): { step: number; params: Record<string, Buffer> } {
  const ck = loadCheckpoint<{ position: { step: number } }>(path, { warn: () => {} });
  const params = Object.fromEntries(
    Object.entries((ck.trees as { params: Record<string, Tensor> }).params).map(([k, t]) => [k, Buffer.from((t.dataSync() as Float32Array).buffer)]),
  );
  disposeTree(ck.trees as never);
  return { step: ck.meta.position.step, params };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Checkpoints the run's log records after byte `from` (the ones written by the process started then). */
function savedSince(log: string, from: number): number {
  if (!existsSync(log)) return 0;
  return readFileSync(log).subarray(from).toString('utf8').split('"type":"checkpoint"').length - 1;
}

describe('crash safety', () => {
  it(
    `${KILLS} SIGKILLs at random moments, inside checkpoint writes too: every checkpoint left loads, and the resumed run ends bitwise equal to an uninterrupted one`,
    async () => {
      const dir = mkdtempSync(join(tmpdir(), 'spikeflow-crash-'));
      writeFileSync(join(dir, 'run.json'), JSON.stringify(config));
      const reference = spawnSync(process.execPath, [bin, 'train', 'run.json', '--out', 'reference', '--quiet'], { cwd: dir, encoding: 'utf8' });
      expect(reference.status, reference.stderr).toBe(0);
      const want = weights(join(dir, 'reference', 'checkpoint.sfck'));

      const run = join(dir, 'run');
      const ckpt = join(run, 'checkpoint.sfck');
      const log = join(run, 'metrics.jsonl');
      const rng = createRng(SEED);
      let killed = 0;
      let inWrite = 0;
      let lastStep = -1;
      for (let cycle = 0; ; cycle++) {
        expect(cycle, 'the run never finished').toBeLessThan(KILLS + 20);
        const args = ['train', 'run.json', '--out', 'run', '--quiet', ...(existsSync(ckpt) ? ['--resume'] : [])];
        const from = existsSync(log) ? statSync(log).size : 0;
        const child = spawn(process.execPath, [bin, ...args], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
        let done: number | null | undefined;
        void exited.then((c) => (done = c));
        if (killed < KILLS) {
          // The moment is chosen by the run's progress, not the clock, so that the kills never let
          // more than a few epochs through, on a fast machine as on a slow one: a quarter during
          // start-up (loading, resuming), the rest after 1–20 checkpoints of this process, then
          // either the moment its next checkpoint write is seen under way (half of all kills) or a
          // random moment within a step.
          const tmp = join(run, `checkpoint.sfck.tmp-${child.pid}`);
          const kind = rng();
          if (kind < 0.25) {
            await sleep(rng() * 300);
          } else {
            const after = 1 + Math.floor(rng() * 20);
            const moment = rng();
            const saved = () => savedSince(log, from);
            const until = Date.now() + 60_000;
            while (done === undefined && saved() < after && Date.now() < until) await sleep(1);
            if (kind < 0.75) {
              // Polled every millisecond; a write missed goes on to the next one, a few at most.
              while (done === undefined && !existsSync(tmp) && saved() < after + 5 && Date.now() < until) await sleep(1);
            } else {
              await sleep(moment * 20);
            }
          }
          if (done === undefined) {
            child.kill('SIGKILL');
            await exited;
            killed++;
            if (existsSync(tmp)) inWrite++;
            // Whatever the moment, the checkpoint in place is whole, and never older than the last one seen.
            if (existsSync(ckpt)) {
              const { step } = weights(ckpt);
              expect(step).toBeGreaterThanOrEqual(lastStep);
              lastStep = step;
            }
            continue;
          }
        }
        const code = await exited;
        expect(code, stderr).toBe(0);
        break;
      }
      expect(killed).toBe(KILLS);
      const got = weights(ckpt);
      expect(got.step).toBe(want.step);
      expect(Object.keys(got.params).sort()).toEqual(Object.keys(want.params).sort());
      for (const [k, v] of Object.entries(want.params)) expect(got.params[k]!.equals(v), k).toBe(true);
      // Temporary files of the killed writers are swept by the next save.
      expect(readdirSync(run).filter((f) => f.includes('.tmp-'))).toEqual([]);
      process.stdout.write(
        `crash safety: ${killed} SIGKILLs (${inWrite} inside a checkpoint write), ${config.train.epochs} epochs, ${config.train.epochs * 40} steps; final weights bitwise equal to the uninterrupted run (seed ${SEED})\n`,
      );
    },
    30 * 60_000,
  );
});

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
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
  // One epoch (40 steps) per kill: a kill at a random moment lets at most a couple of seconds of
  // training through (fewer than 40 steps here), so the run outlasts the kills on a fast machine too.
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
      const rng = createRng(SEED);
      let killed = 0;
      let inWrite = 0;
      let lastStep = -1;
      for (let cycle = 0; ; cycle++) {
        expect(cycle, 'the run never finished').toBeLessThan(KILLS + 20);
        const args = ['train', 'run.json', '--out', 'run', '--quiet', ...(existsSync(ckpt) ? ['--resume'] : [])];
        const child = spawn(process.execPath, [bin, ...args], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
        let done: number | null | undefined;
        void exited.then((c) => (done = c));
        if (killed < KILLS) {
          const tmp = join(run, `checkpoint.sfck.tmp-${child.pid}`);
          if (rng() < 0.5) {
            // The moment this process is seen writing a checkpoint (polled every millisecond).
            const until = Date.now() + 20_000;
            while (done === undefined && !existsSync(tmp) && Date.now() < until) await sleep(1);
          } else {
            await sleep(rng() * 2000);
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

import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { createRng, deriveSeed } from '@spikeflow/core';
import { Pruner, parsePruner, type PrunerSpec } from './prune.js';
import { readSweep, trialsOf, withField } from './sweep.js';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
// One kernel thread per trial unless a test says otherwise: the same fingerprint on any machine.
const cli = (args: string[], cwd: string, threads = '1') =>
  spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', env: { ...process.env, CI: '1', SPIKEFLOW_THREADS: threads } });

const base = {
  plugins: ['@spikeflow/neuron-lif', '@spikeflow/rule-bptt', '@spikeflow/backend-wasm', '@spikeflow/dataset-add-task'],
  backend: 'wasm',
  seed: 2,
  data: { name: 'add-task', steps: 10, trainSamples: 256, testSamples: 64 },
  model: { layers: [{ neuron: 'lif', size: 16, recurrent: true }], readout: { kappa: 0 } },
  rule: { name: 'bptt' },
  optimizer: { name: 'adam', lr: 0.003 },
  train: { epochs: 2, batchSize: 32, maxBatchesPerEpoch: 2 },
};

function sweepDir(sweep: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'spikeflow-sweep-'));
  writeFileSync(join(dir, 'base.json'), JSON.stringify(base));
  writeFileSync(join(dir, 'sweep.json'), JSON.stringify({ base: 'base.json', root: 'sweeps', ...sweep }));
  return dir;
}

describe('sweep files and trials', () => {
  it('expands a grid in file order, each trial its own run directory and checked config', async () => {
    const dir = sweepDir({ name: 'g', space: { 'optimizer.lr': [0.001, 0.01], 'model.layers.0.size': { range: [8, 24], int: true, steps: 3 } } });
    const spec = await readSweep(join(dir, 'sweep.json'));
    const trials = trialsOf(spec);
    expect(trials.map((t) => t.params)).toEqual([
      { 'optimizer.lr': 0.001, 'model.layers.0.size': 8 },
      { 'optimizer.lr': 0.001, 'model.layers.0.size': 16 },
      { 'optimizer.lr': 0.001, 'model.layers.0.size': 24 },
      { 'optimizer.lr': 0.01, 'model.layers.0.size': 8 },
      { 'optimizer.lr': 0.01, 'model.layers.0.size': 16 },
      { 'optimizer.lr': 0.01, 'model.layers.0.size': 24 },
    ]);
    expect(trials.map((t) => t.id)).toEqual(['g:0', 'g:1', 'g:2', 'g:3', 'g:4', 'g:5']);
    expect(trials[4]!.config.optimizer['lr']).toBe(0.01);
    expect((trials[4]!.config.model.layers[0] as { size: number }).size).toBe(16);
    expect(trials[4]!.dir).toBe(join(dir, 'sweeps', 'g', 'trial-4'));
  });

  it('draws random trials from the seed alone: the same trials every time, and more trials keep the first ones', async () => {
    const space = { 'optimizer.lr': { log: [1e-4, 1e-1] }, 'model.layers.0.params.beta': { range: [0.8, 0.99] }, 'model.layers.0.size': [8, 16, 32] };
    const a = trialsOf(await readSweep(join(sweepDir({ name: 'r', space, search: { kind: 'random', trials: 5, seed: 3 } }), 'sweep.json')));
    const b = trialsOf(await readSweep(join(sweepDir({ name: 'r', space, search: { kind: 'random', trials: 8, seed: 3 } }), 'sweep.json')));
    expect(b.slice(0, 5).map((t) => t.params)).toEqual(a.map((t) => t.params));
    for (const t of b) {
      const lr = t.params['optimizer.lr'] as number;
      expect(lr).toBeGreaterThanOrEqual(1e-4);
      expect(lr).toBeLessThan(1e-1);
      expect([8, 16, 32]).toContain(t.params['model.layers.0.size']);
    }
    expect(new Set(b.map((t) => t.params['optimizer.lr'])).size).toBe(8);
  });

  it('refuses what it cannot run, naming the field or the trial', async () => {
    const refusal = async (sweep: Record<string, unknown>) => {
      try {
        trialsOf(await readSweep(join(sweepDir(sweep), 'sweep.json')));
        return '';
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(await refusal({ space: { 'optimizer.lr': [0.1] }, serach: 'grid' })).toMatch(/serach: unknown key/);
    expect(await refusal({ space: { 'optimizer.lr': { range: [0.1, 0.01] } } })).toMatch(/space\.optimizer\.lr\.range: expected \[low, high\] with low < high/);
    expect(await refusal({ space: { 'optimizer.lr': { log: [1e-4, 1e-2] } } })).toMatch(
      /space\.optimizer\.lr: a grid search needs a list of values, or "steps"/,
    );
    expect(await refusal({ space: { 'model.layers.3.size': [8] } })).toMatch(
      /space\.model\.layers\.3\.size: '3' is no index of the list at 'model\.layers' \(1 entries\)/,
    );
    expect(await refusal({ space: { 'train.batchSize': [8, 0] } })).toMatch(/trial sweep:1 \(\{"train\.batchSize":0\}\): train\.batchSize: must be >= 1/);
    expect(() => withField({ a: 1 }, 'a.b', 2)).toThrow(/'a' is 1, not an object or list/);
    expect(() => parsePruner({ kind: 'hyperband' }, 'prune')).toThrow(/prune\.kind: 'hyperband' is no pruner/);
  });
});

/**
 * A deterministic toy objective: trial i's loss after epoch e is q_i + c_i/e, where q_i (its final
 * quality) and c_i come from the seed, and the curves of better trials stay better, as a learning
 * curve ranking usually does. Each trial reports epochs 1…E until the pruner stops it.
 */
function toySweep(spec: PrunerSpec, trials = 16, epochs = 9) {
  const pruner = new Pruner(spec, 'min');
  const curves = Array.from({ length: trials }, (_, i) => {
    const rand = createRng(deriveSeed(11, 'toy', i));
    const q = rand();
    return { q, c: 0.5 + q * 0.5 };
  });
  let early = 0;
  const finals: [number, number][] = [];
  curves.forEach(({ q, c }, i) => {
    for (let e = 1; e <= epochs; e++) {
      const v = q + c / e;
      if (!pruner.report(`t${i}`, e, v, epochs)) {
        early++;
        return;
      }
    }
    pruner.finished(`t${i}`);
    finals.push([i, q + c / epochs]);
  });
  const best = finals.reduce((b, f) => (f[1] < b[1] ? f : b));
  return { early, best: best[0], finished: finals.length };
}

describe('early stopping', () => {
  it('ASHA over a 16-trial random sweep stops at least half of the trials early and finds the best trial of the unpruned sweep', () => {
    const full = toySweep({ kind: 'none' });
    const asha = toySweep({ kind: 'asha', minEpochs: 1, eta: 3 });
    expect(full.early).toBe(0);
    expect(asha.early).toBeGreaterThanOrEqual(8);
    expect(asha.best).toBe(full.best);
    expect(new Pruner({ kind: 'asha', minEpochs: 1, eta: 3 }, 'min').rungs(9)).toEqual([1, 3]);
  });

  it('the median rule stops trials worse than the finished trials’ median, after its warm-up and start-up trials', () => {
    const p = new Pruner({ kind: 'median', warmup: 1, startup: 2 }, 'max');
    for (const [id, acc] of [
      ['a', 0.5],
      ['b', 0.7],
    ] as const) {
      expect(p.report(id, 1, acc, 3)).toBe(true);
      p.finished(id);
    }
    expect(p.report('c', 1, 0.59, 3)).toBe(false); // median 0.6
    expect(p.report('d', 1, 0.61, 3)).toBe(true);
    expect(p.report('e', 3, 0.1, 3)).toBe(true); // its last epoch: nothing left to save
    expect(toySweep({ kind: 'median', warmup: 1, startup: 3 }).best).toBe(toySweep({ kind: 'none' }).best);
  });
});

describe('spikeflow sweep (local processes)', () => {
  it('runs every trial once in 2 processes, keeps results on a second run, resumes an unfinished trial and exports the best config', () => {
    const dir = sweepDir({ name: 'lr', space: { 'optimizer.lr': [0.001, 0.003, 0.01, 0.03] }, metric: { name: 'loss' } });
    const r = cli(['sweep', 'sweep.json', '--local', '2'], dir);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^trial\s+status\s+loss\s+epochs\s+seconds\s+optimizer\.lr/);
    const results = join(dir, 'sweeps', 'lr', 'results.jsonl');
    const rows = readFileSync(results, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; status: string; value: number; epochs: number });
    expect(rows.map((x) => x.id).sort()).toEqual(['lr:0', 'lr:1', 'lr:2', 'lr:3']);
    expect(rows.every((x) => x.status === 'done' && x.epochs === 2 && Number.isFinite(x.value))).toBe(true);
    // Each trial is an ordinary run: its last logged evaluation is the row's value.
    for (const row of rows) {
      const i = Number(row.id.split(':')[1]);
      const ev = readFileSync(join(dir, 'sweeps', 'lr', `trial-${i}`, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { type: string; result?: { loss: number } })
        .filter((e) => e.type === 'eval');
      expect(row.value).toBe(ev.at(-1)!.result!.loss);
    }
    // Again: nothing runs twice.
    const again = cli(['sweep', 'sweep.json', '--local', '2'], dir);
    expect(again.stderr).toMatch(/4 of 4 trials already have their result/);
    expect(readFileSync(results, 'utf8').trim().split('\n')).toHaveLength(4);
    // A trial without its row (a coordinator killed before writing it) resumes from its checkpoint, to the same value.
    const kept = readFileSync(results, 'utf8').trim().split('\n');
    const dropped = JSON.parse(kept.find((l) => l.includes('"lr:2"'))!) as { value: number };
    writeFileSync(results, `${kept.filter((l) => !l.includes('"lr:2"')).join('\n')}\n`);
    const resumed = cli(['sweep', 'sweep.json', '--local', '2'], dir);
    expect(resumed.stderr).toMatch(/lr:2 resumes/);
    const lastRow = () => JSON.parse(readFileSync(results, 'utf8').trim().split('\n').at(-1)!) as { id: string; value: number };
    expect(lastRow()).toMatchObject({ id: 'lr:2', value: dropped.value, resumed: { bitwise: true } });
    // Resumed on another setup (two kernel threads where it ran on one): the row says it is no longer bitwise.
    const rows2 = readFileSync(results, 'utf8').trim().split('\n');
    writeFileSync(results, `${rows2.filter((l) => !l.includes('"lr:3"')).join('\n')}\n`);
    expect(cli(['sweep', 'sweep.json'], dir, '2').status).toBe(0);
    expect(lastRow()).toMatchObject({
      id: 'lr:3',
      resumed: { bitwise: false, note: expect.stringMatching(/under another setup .*kernelThreads 1.*kernelThreads 2/) },
    });
    // The best trial's config, as a run config.
    const status = JSON.parse(cli(['sweep', 'status', 'sweep.json'], dir).stdout) as { done: number; pending: number; best: string };
    expect(status).toMatchObject({ done: 4, pending: 0 });
    const best = cli(['sweep', 'best', 'sweep.json', '--export', 'best.yaml'], dir);
    expect(best.status, best.stderr).toBe(0);
    const exported = parseYaml(readFileSync(join(dir, 'best.yaml'), 'utf8')) as { optimizer: { lr: number } };
    const bestRow = rows.reduce((b, x) => (x.value < b.value ? x : b));
    expect(status.best).toBe(bestRow.id);
    expect(exported.optimizer.lr).toBe([0.001, 0.003, 0.01, 0.03][Number(bestRow.id.split(':')[1])]);
    // The exported config trains as it is.
    expect(cli(['train', 'best.yaml', '--out', 'from-best', '--quiet', '--dry-run'], dir).status).toBe(0);
  }, 300_000);

  it('records a trial that fails as failed, with the reason, and runs it again on the next run', () => {
    const dir = sweepDir({ name: 'bad', space: { 'model.layers.0.size': [8, -1] } });
    const r = cli(['sweep', 'sweep.json'], dir);
    expect(r.status, r.stderr).toBe(0);
    const rows = () =>
      readFileSync(join(dir, 'sweeps', 'bad', 'results.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { id: string; status: string; note?: string });
    expect(rows().map((x) => [x.id, x.status])).toEqual([
      ['bad:0', 'done'],
      ['bad:1', 'failed'],
    ]);
    expect(rows()[1]!.note).toMatch(/model\.layers\[0\]\.size: must be >= 1/);
    expect(r.stdout).toMatch(/bad:0 \*/);
    const again = cli(['sweep', 'sweep.json'], dir);
    expect(again.stderr).toMatch(/1 of 2 trials already have their result/);
    expect(rows()).toHaveLength(3);
  }, 300_000);
});

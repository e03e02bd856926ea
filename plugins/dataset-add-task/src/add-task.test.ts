import { beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, denseInputs, deriveSeed, disposeBatch, inputShape, isSpikeflowError, isStepSource, stepsOf, tf } from '@spikeflow/core';
import { wasm } from '@spikeflow/backend-wasm';
import { describeDataset } from '@spikeflow/testing';
import plugin, { addBatch, addSample, addTask } from './index.js';

beforeAll(() => wasm.activate());

const opts = { steps: 20, trainSamples: 10, testSamples: 7, seed: 3 };

async function collect(split: string, o: Parameters<ReturnType<typeof addTask>['batches']>[1], ds = addTask(opts)) {
  const out: { x: number[]; y: number[]; shape: number[] }[] = [];
  for await (const b of ds.batches(split, o)) {
    const x = denseInputs(b.inputs);
    out.push({ x: Array.from(x.dataSync()), y: Array.from(b.targets.dataSync()), shape: inputShape(b.inputs) });
    x.dispose();
    disposeBatch(b);
  }
  return out;
}

describeDataset('add-task', async () => addTask(opts));

describe('add task', () => {
  it('a batch is a step source whose windows are the dense batch of addSample, however they are asked for', () => {
    const T = 37;
    const seeds = [5, 6, 70, 123456];
    // The dense batch as the dataset made it before it streamed: addSample per sample, time-major.
    const dense = new Float32Array(T * seeds.length * 2);
    const y = seeds.map((seed, b) => {
      const s = addSample(T, seed);
      for (let t = 0; t < T; t++) {
        dense[(t * seeds.length + b) * 2] = s.values[t]!;
        dense[(t * seeds.length + b) * 2 + 1] = s.markers[t]!;
      }
      return Math.fround(s.target);
    });
    const { inputs, targets } = addBatch(T, seeds);
    expect(isStepSource(inputs)).toBe(true);
    expect(inputShape(inputs)).toEqual([T, 4, 2]);
    expect(Array.from(targets)).toEqual(y);
    const xs = stepsOf(inputs);
    const per = seeds.length * 2;
    for (const [from, to] of [
      [0, T],
      [0, 1],
      [10, 30],
      [36, 37],
      [10, 30],
      [18, 19],
    ] as const) {
      const w = xs.window(from, to);
      expect(Array.from(w.dataSync()), `[${from}, ${to})`).toEqual(Array.from(dense.subarray(from * per, to * per)));
      w.dispose();
    }
    const step = xs.at(20);
    expect(Array.from(step.dataSync())).toEqual(Array.from(dense.subarray(20 * per, 21 * per)));
    step.dispose();
  });

  it('a pass yields the batches of addSample from the pass seed, sample by sample', async () => {
    const batches = await collect('train', { batchSize: 4, seed: 1 });
    const stream = deriveSeed(opts.seed, 'train', 1);
    batches.forEach((b, i) =>
      b.y.forEach((y, j) => {
        const s = addSample(20, deriveSeed(stream, i * 4 + j));
        expect(y).toBe(Math.fround(s.target));
        for (let t = 0; t < 20; t++) expect(b.x[(t * b.shape[1]! + j) * 2]).toBe(s.values[t]);
      }),
    );
  });

  it('has exactly one marker in each half and targets the sum of the marked values', () => {
    for (let seed = 0; seed < 200; seed++) {
      const T = 5 + (seed % 40);
      const s = addSample(T, seed);
      const half = Math.floor(T / 2);
      const marks = Array.from(s.markers.keys()).filter((t) => s.markers[t] === 1);
      expect(marks.length).toBe(2);
      expect(marks[0]!).toBeLessThan(half);
      expect(marks[1]!).toBeGreaterThanOrEqual(half);
      expect(s.target).toBeCloseTo(s.values[marks[0]!]! + s.values[marks[1]!]!, 6);
      expect(Array.from(s.values).every((v) => v >= 0 && v < 1)).toBe(true);
    }
  });

  it('the trivial predictor 1.0 scores MSE ≈ 1/6', () => {
    let se = 0;
    const n = 20000;
    for (let i = 0; i < n; i++) se += (addSample(10, i).target - 1) ** 2;
    expect(se / n).toBeGreaterThan(0.16);
    expect(se / n).toBeLessThan(0.173);
  });

  it('yields time-major batches [T, B, 2] with targets [B, 1], values in channel 0 and markers in channel 1', async () => {
    const before = tf.memory().numTensors;
    const batches = await collect('train', { batchSize: 4, seed: 1 });
    expect(batches.map((b) => b.shape)).toEqual([
      [20, 4, 2],
      [20, 4, 2],
      [20, 2, 2],
    ]);
    const b0 = batches[0]!;
    for (let b = 0; b < 4; b++) {
      let sum = 0;
      let marks = 0;
      for (let t = 0; t < 20; t++) {
        if (b0.x[(t * 4 + b) * 2 + 1] === 1) {
          marks++;
          sum += b0.x[(t * 4 + b) * 2]!;
        }
      }
      expect(marks).toBe(2);
      expect(b0.y[b]).toBeCloseTo(sum, 5);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('is deterministic: same pass seed, same batches; a new epoch seed gives fresh training data; the test split is fixed', async () => {
    expect(await collect('train', { batchSize: 4, seed: 1 })).toEqual(await collect('train', { batchSize: 4, seed: 1 }));
    expect(await collect('train', { batchSize: 4, seed: 2 })).not.toEqual(await collect('train', { batchSize: 4, seed: 1 }));
    expect(await collect('test', { batchSize: 4, seed: 1 })).toEqual(await collect('test', { batchSize: 4, seed: 9 }));
  });

  it('skip yields exactly the later batches of the full pass; batchCount and dropLast agree', async () => {
    const full = await collect('train', { batchSize: 3, seed: 5 });
    expect(await collect('train', { batchSize: 3, seed: 5, skip: 2 })).toEqual(full.slice(2));
    const ds = addTask(opts);
    expect(ds.batchCount('train', { batchSize: 3 })).toBe(full.length);
    expect(ds.batchCount('train', { batchSize: 3, dropLast: true })).toBe(3);
    expect((await collect('train', { batchSize: 3, seed: 5, dropLast: true })).length).toBe(3);
  });

  it('describes itself and refuses an unknown split', async () => {
    const ds = addTask(opts);
    expect(ds.describe()).toEqual({ steps: 20, channels: 2, outputs: 1, target: 'values-last', samples: { train: 10, test: 7 } });
    const err = await collect('valid', { batchSize: 2, seed: 0 }).catch((e: unknown) => e);
    expect(isSpikeflowError(err, 'CONFIG_INVALID')).toBe(true);
  });

  it('is a plugin whose entry validates its options', async () => {
    const entry = createRegistry([plugin]).datasets.get('add-task')!;
    const ds = await entry.open({ steps: 50, trainSamples: 64, testSamples: 32, seed: 0 }, { cacheDir: '/tmp' });
    expect(ds.describe().steps).toBe(50);
    // Defaults filled, and a bad option refused naming the field, through the registry's entry and through addTask.
    expect((await entry.open({ steps: 30 }, { cacheDir: '/tmp' })).describe()).toMatchObject({ steps: 30, samples: { train: 10000, test: 1000 } });
    const bad = await entry.open({ steps: 1 }, { cacheDir: '/tmp' }).catch((e: unknown) => e);
    expect(isSpikeflowError(bad, 'CONFIG_INVALID')).toBe(true);
    expect((bad as Error).message).toBe('data.steps: must be >= 2, got 1');
    expect(() => addTask({ trainSamples: 0 })).toThrow('data.trainSamples: must be >= 1, got 0');
    expect(addTask().describe().steps).toBe(100);
  });
});

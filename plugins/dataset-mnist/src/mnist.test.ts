import { beforeAll, describe, expect, it } from 'vitest';
import {
  createRegistry,
  createRng,
  denseInputs,
  deriveSeed,
  disposeTree,
  inputShape,
  isSpikeflowError,
  parseSchema,
  permutation,
  shuffleInPlace,
  stepsOf,
  tf,
  type BatchOptions,
  type Dataset,
} from '@spikeflow/core';
import { wasm } from '@spikeflow/backend-wasm';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describeDataset } from '@spikeflow/testing';
import plugin, { fashionMnistSchema, mnistEntry, mnistSchema } from './index.js';
import { createImageDataset, openMnist, type MnistOptions } from './mnist.js';
import { DEFAULT_ENCODER, encodeInto, sequenceLayout } from './encode.js';
import { BUNDLED_COUNTS, BUNDLED_TRAIN_COUNTS, IDX_LUT, loadBundled, type ImageSet } from './sources.js';

beforeAll(() => wasm.activate());

const ctx = { cacheDir: '/nonexistent-spikeflow-cache' };

describeDataset('mnist (bundled, rate-coded, shifted)', () =>
  openMnist({ source: 'bundled', encoder: 'rate', augmentShift: 2, trainLimit: 10, testLimit: 7 }, ctx),
);
const digitsDir = join(dirname(createRequire(import.meta.url).resolve('mnist/package.json')), 'src', 'digits');
const digitFile = new Map<number, number[]>();
/** Pixels of sample k of digit d, read straight from the `mnist` package. */
function sourcePixels(d: number, k: number): number[] {
  if (!digitFile.has(d)) digitFile.set(d, (JSON.parse(readFileSync(join(digitsDir, `${d}.json`), 'utf8')) as { data: number[] }).data);
  return digitFile.get(d)!.slice(k * 784, (k + 1) * 784);
}

interface Got {
  shape: number[];
  x: Float32Array;
  y: number[];
}
async function collect(ds: Dataset, split: string, o: BatchOptions): Promise<Got[]> {
  const out: Got[] = [];
  for await (const b of ds.batches(split, o)) {
    const x = denseInputs(b.inputs);
    out.push({ shape: inputShape(b.inputs), x: x.dataSync() as Float32Array, y: Array.from(b.targets.dataSync()) });
    expect(x.dtype).toBe('float32');
    x.dispose();
    expect(b.targets.dtype).toBe('int32');
    disposeTree(b);
  }
  return out;
}
const open = (o: MnistOptions) => openMnist(o, ctx);

describe('bundled digits', () => {
  it('holds 1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978 images per digit, as the package files do', () => {
    for (let d = 0; d < 10; d++) {
      const data = (JSON.parse(readFileSync(join(digitsDir, `${d}.json`), 'utf8')) as { data: number[] }).data;
      expect(data.length).toBe(BUNDLED_COUNTS[d]! * 784);
    }
    expect(BUNDLED_COUNTS.reduce((a, b) => a + b)).toBe(10000);
  });

  it('splits each digit 80/20 in file order: 7,996 train, 2,004 test', async () => {
    const set = await loadBundled();
    expect([set.train.count, set.test.count]).toEqual([7996, 2004]);
    expect(BUNDLED_TRAIN_COUNTS).toEqual([800, 901, 792, 825, 784, 690, 811, 856, 755, 782]);
    for (const split of ['train', 'test'] as const) {
      const s = set[split];
      const perDigit = new Array<number>(10).fill(0);
      s.labels.forEach((l) => perDigit[l]!++);
      expect(perDigit).toEqual(BUNDLED_COUNTS.map((n, d) => (split === 'train' ? BUNDLED_TRAIN_COUNTS[d]! : n - BUNDLED_TRAIN_COUNTS[d]!)));
      s.origin.forEach((o, i) => {
        const [d, k] = [Math.floor(o / 10000), o % 10000];
        expect(d).toBe(s.labels[i]);
        expect(split === 'train' ? k < BUNDLED_TRAIN_COUNTS[d]! : k >= BUNDLED_TRAIN_COUNTS[d]!).toBe(true);
      });
      expect(new Set(s.origin).size).toBe(s.count);
    }
    // a short prefix already holds every digit (the split is stored in a fixed mixed order)
    expect(new Set(set.train.labels.subarray(0, 100)).size).toBe(10);
  });
});

describe('variants', () => {
  it('row: [28, B, 28], step t = row t of the image, values equal the source pixels', async () => {
    const ds = await open({ testLimit: 20 });
    expect(ds.describe()).toEqual({ steps: 28, channels: 28, outputs: 10, target: 'labels', samples: { train: 7996, test: 20 } });
    const [b0] = await collect(ds, 'test', { batchSize: 8, seed: 0 });
    expect(b0!.shape).toEqual([28, 8, 28]);
    const set = await loadBundled();
    for (const b of [0, 5]) {
      const o = set.test.origin[b]!;
      const px = sourcePixels(Math.floor(o / 10000), o % 10000);
      expect(b0!.y[b]).toBe(Math.floor(o / 10000));
      const got: number[] = [];
      for (let t = 0; t < 28; t++) for (let c = 0; c < 28; c++) got.push(b0!.x[(t * 8 + b) * 28 + c]!);
      expect(got).toEqual(px.map(Math.fround));
      expect(px.some((v) => v > 0.5)).toBe(true);
    }
  });

  it('pixel: [784, B, 1] in row-major order; permuted: the same pixels under a fixed permutation', async () => {
    const opts = { testLimit: 6 };
    const [row] = await collect(await open({ ...opts, variant: 'row' }), 'test', { batchSize: 6, seed: 0 });
    const [px] = await collect(await open({ ...opts, variant: 'pixel' }), 'test', { batchSize: 6, seed: 0 });
    const [pm] = await collect(await open({ ...opts, variant: 'permuted', permutationSeed: 7 }), 'test', { batchSize: 6, seed: 0 });
    expect(px!.shape).toEqual([784, 6, 1]);
    expect(pm!.shape).toEqual([784, 6, 1]);
    const perm = permutation(784, 7);
    for (let b = 0; b < 6; b++) {
      for (let t = 0; t < 784; t++) {
        const rowValue = row!.x[(Math.floor(t / 28) * 6 + b) * 28 + (t % 28)]!;
        if (px!.x[t * 6 + b] !== rowValue) throw new Error(`pixel variant differs at t=${t}, b=${b}`);
        const p = perm[t]!;
        if (pm!.x[t * 6 + b] !== px!.x[p * 6 + b]) throw new Error(`permuted variant differs at t=${t}, b=${b}`);
      }
    }
    const ds = await open({ variant: 'permuted' });
    expect(ds.describe().steps).toBe(784);
    expect(ds.describe().channels).toBe(1);
  });

  it('image: the whole image at each of imageSteps steps, 784 channels described as [28, 28, 1] (ON/OFF: [28, 28, 2]); rate spikes drawn anew per step', async () => {
    const ds = await open({ variant: 'image', imageSteps: 3, testLimit: 4 });
    expect(ds.describe()).toEqual({ steps: 3, channels: 784, shape: [28, 28, 1], outputs: 10, target: 'labels', samples: { train: 7996, test: 4 } });
    const [row] = await collect(await open({ testLimit: 4 }), 'test', { batchSize: 4, seed: 0 });
    const [img] = await collect(ds, 'test', { batchSize: 4, seed: 0 });
    expect(img!.shape).toEqual([3, 4, 784]);
    for (let t = 0; t < 3; t++) {
      for (let b = 0; b < 4; b++) {
        const step = Array.from(img!.x.subarray((t * 4 + b) * 784, (t * 4 + b + 1) * 784));
        const image = Array.from({ length: 784 }, (_, p) => row!.x[(Math.floor(p / 28) * 4 + b) * 28 + (p % 28)]!);
        expect(step).toEqual(image);
      }
    }
    expect((await open({ variant: 'image' })).describe().steps).toBe(8);
    expect((await open({ variant: 'image', encoder: 'delta' })).describe()).toMatchObject({ channels: 1568, shape: [28, 28, 2] });
    const [rate] = await collect(await open({ variant: 'image', imageSteps: 2, encoder: 'rate', testLimit: 4 }), 'test', { batchSize: 4, seed: 0 });
    const [s0, s1] = [rate!.x.subarray(0, 4 * 784), rate!.x.subarray(4 * 784)];
    expect(s0.some((v, i) => v !== s1[i])).toBe(true);
    expect((await open({ variant: 'row' })).describe().shape).toBeUndefined();
  });
});

/** A hand-made set: 2 training images of 2×2 pixels, codes chosen for exact intensities. */
const tiny: ImageSet = {
  height: 2,
  width: 2,
  lut: IDX_LUT,
  // image 0: [[255, 0], [51, 204]] = [[1, 0], [0.2, 0.8]]; image 1: [[0, 255], [255, 0]]
  train: { images: Uint8Array.from([255, 0, 51, 204, 0, 255, 255, 0]), labels: Uint8Array.from([7, 3]), count: 2, origin: Int32Array.from([0, 1]) },
  test: { images: new Uint8Array(0), labels: new Uint8Array(0), count: 0, origin: new Int32Array(0) },
};

describe('encoders in batches', () => {
  const first = async (ds: Dataset) => (await collect(ds, 'train', { batchSize: 2, seed: 0, shuffle: false }))[0]!;
  /** x[t][b][c] as nested arrays. */
  const nested = (g: Got) => {
    const [T, B, C] = g.shape as [number, number, number];
    return Array.from({ length: T }, (_, t) => Array.from({ length: B }, (_, b) => Array.from(g.x.subarray((t * B + b) * C, (t * B + b + 1) * C))));
  };

  it('direct: the intensities, time-major', async () => {
    const g = await first(createImageDataset('tiny', tiny));
    expect(g.y).toEqual([7, 3]);
    expect(nested(g)).toEqual([
      [
        [1, 0],
        [0, 1],
      ],
      [
        [Math.fround(0.2), Math.fround(0.8)],
        [1, 0],
      ],
    ]);
  });

  it('latency: T·L steps, one spike per bright pixel at round((1 − x)(L − 1))', async () => {
    const ds = createImageDataset('tiny', tiny, { encoder: { name: 'latency', latencySteps: 3, latencyThreshold: 0.1 } });
    expect(ds.describe()).toMatchObject({ steps: 6, channels: 2 });
    const g = await first(ds);
    // image 0: row 0 = [1, 0] → (s = 0, none); row 1 = [0.2, 0.8] → s = round(1.6) = 2, round(0.4) = 0
    // image 1: row 0 = [0, 1] → (none, s = 0); row 1 = [1, 0] → (s = 0, none)
    expect(nested(g)).toEqual([
      [
        [1, 0],
        [0, 1],
      ],
      [
        [0, 0],
        [0, 0],
      ],
      [
        [0, 0],
        [0, 0],
      ],
      [
        [0, 1],
        [1, 0],
      ],
      [
        [0, 0],
        [0, 0],
      ],
      [
        [1, 0],
        [0, 0],
      ],
    ]);
  });

  it('delta: ON/OFF channel pairs along the sequence', async () => {
    const ds = createImageDataset('tiny', tiny, { variant: 'pixel', encoder: { name: 'delta', deltaThreshold: 0.5 } });
    expect(ds.describe()).toMatchObject({ steps: 4, channels: 2 });
    const g = await first(ds);
    // image 0 pixels 1, 0, 0.2, 0.8: ON (ref 1), OFF (ref 0), none (+0.2), ON (+0.8)
    // image 1 pixels 0, 1, 1, 0: none, ON, none, OFF
    expect(nested(g)).toEqual([
      [
        [1, 0],
        [0, 0],
      ],
      [
        [0, 1],
        [1, 0],
      ],
      [
        [0, 0],
        [0, 0],
      ],
      [
        [1, 0],
        [0, 1],
      ],
    ]);
  });

  it('rate: 0/1 spikes, certain for intensity 1, impossible for 0; same seed same spikes', async () => {
    const ds = createImageDataset('tiny', tiny, { encoder: { name: 'rate' } });
    const a = await first(ds);
    const x = nested(a);
    expect(x[0]).toEqual([
      [1, 0],
      [0, 1],
    ]);
    expect(x[1]![1]).toEqual([1, 0]);
    expect(a.x.every((v) => v === 0 || v === 1)).toBe(true);
    expect((await first(ds)).x).toEqual(a.x);
  });

  it('rate spikes follow intensity × gain on real digits, and depend on the pass seed', async () => {
    const direct = await collect(await open({ testLimit: 64 }), 'test', { batchSize: 64, seed: 1 });
    const ds = await open({ testLimit: 64, encoder: 'rate', rateGain: 0.5 });
    const r1 = await collect(ds, 'test', { batchSize: 64, seed: 1 });
    const mean = (a: Float32Array) => a.reduce((s, v) => s + v, 0) / a.length;
    expect(mean(r1[0]!.x)).toBeCloseTo(0.5 * mean(direct[0]!.x), 2);
    expect((await collect(ds, 'test', { batchSize: 64, seed: 1 }))[0]!.x).toEqual(r1[0]!.x);
    expect((await collect(ds, 'test', { batchSize: 64, seed: 2 }))[0]!.x).not.toEqual(r1[0]!.x);
    expect(ds.describe()).toMatchObject({ steps: 28, channels: 28 });
  });
});

describe('passes', () => {
  it('same seed gives identical batches; another seed another order; test is unshuffled by default', async () => {
    const ds = await open({ trainLimit: 96, testLimit: 40 });
    const a = await collect(ds, 'train', { batchSize: 32, seed: 3 });
    expect(a.map((g) => g.shape)).toEqual([
      [28, 32, 28],
      [28, 32, 28],
      [28, 32, 28],
    ]);
    expect(await collect(ds, 'train', { batchSize: 32, seed: 3 })).toEqual(a);
    const b = await collect(ds, 'train', { batchSize: 32, seed: 4 });
    expect(b.map((g) => g.y)).not.toEqual(a.map((g) => g.y));
    expect(b.flatMap((g) => g.y).sort()).toEqual(a.flatMap((g) => g.y).sort());
    const set = await loadBundled();
    const unshuffled = await collect(ds, 'train', { batchSize: 96, seed: 3, shuffle: false });
    expect(unshuffled[0]!.y).toEqual(Array.from(set.train.labels.subarray(0, 96)));
    const t1 = await collect(ds, 'test', { batchSize: 40, seed: 1 });
    expect(t1[0]!.y).toEqual(Array.from(set.test.labels.subarray(0, 40)));
    expect(await collect(ds, 'test', { batchSize: 40, seed: 2 })).toEqual(t1);
  });

  it('a batch’s windows are the dense batch the dataset wrote before it streamed (rate-coded, shifted, permuted pixels)', async () => {
    const set = await loadBundled();
    const view = { variant: 'permuted', permutationSeed: 3, encoder: { name: 'rate', rateGain: 1.3 }, augmentShift: 1, trainLimit: 20 } as const;
    const ds = createImageDataset('mnist', set, view);
    const seed = 9;
    const batchSize = 8;
    // The dense batches as the dataset wrote them before (one [T, B, C] array per batch, encodeInto per sample).
    const layout = sequenceLayout('permuted', 28, 28, 3);
    const enc = { ...DEFAULT_ENCODER, name: 'rate' as const, rateGain: 1.3 };
    const indices = shuffleInPlace(
      Array.from({ length: 20 }, (_, i) => i),
      createRng(deriveSeed(seed, 'order')),
    );
    const seq = new Float32Array(784);
    let i = 0;
    for await (const batch of ds.batches('train', { batchSize, seed })) {
      const B = inputShape(batch.inputs)[1]!;
      const dense = new Float32Array(784 * B);
      const rand = createRng(deriveSeed(seed, 'rate', 'train', i));
      const jitter = createRng(deriveSeed(seed, 'shift', i));
      for (let b = 0; b < B; b++) {
        const base = indices[i * batchSize + b]! * 784;
        const dy = Math.floor(jitter() * 3) - 1;
        const dx = Math.floor(jitter() * 3) - 1;
        for (let j = 0; j < 784; j++) {
          const p = layout.order[j]!;
          const [r, c] = [Math.floor(p / 28) - dy, (p % 28) - dx];
          seq[j] = r >= 0 && r < 28 && c >= 0 && c < 28 ? set.lut[set.train.images[base + r * 28 + c]!]! : set.lut[0]!;
        }
        encodeInto(enc, seq, 784, 1, dense, b, B, rand);
      }
      const xs = stepsOf(batch.inputs);
      for (const [from, to] of [
        [0, 784],
        [0, 100],
        [100, 401],
        [783, 784],
        [100, 401],
      ] as const) {
        const w = xs.window(from, to);
        expect(Array.from(w.dataSync()), `batch ${i} [${from}, ${to})`).toEqual(Array.from(dense.subarray(from * B, to * B)));
        w.dispose();
      }
      disposeTree(batch);
      i++;
    }
    expect(i).toBe(3);
  });

  it('skip: k yields exactly batches k.. of the full pass (random encoder included)', async () => {
    for (const encoder of ['direct', 'rate'] as const) {
      const ds = await open({ trainLimit: 100, encoder, variant: encoder === 'rate' ? 'row' : 'pixel' });
      const full = await collect(ds, 'train', { batchSize: 16, seed: 11 });
      expect(full.length).toBe(7);
      expect(await collect(ds, 'train', { batchSize: 16, seed: 11, skip: 3 })).toEqual(full.slice(3));
      expect(await collect(ds, 'train', { batchSize: 16, seed: 11, skip: 7 })).toEqual([]);
    }
  });

  it('augmentShift translates training images by whole pixels (zero fill), reproducibly and resumably; test images stay put', async () => {
    const plain = await open({ trainLimit: 64, testLimit: 16 });
    const shifted = await open({ trainLimit: 64, testLimit: 16, augmentShift: 2 });
    const a = await collect(plain, 'train', { batchSize: 16, seed: 5 });
    const b = await collect(shifted, 'train', { batchSize: 16, seed: 5 });
    expect(b.map((g) => g.y)).toEqual(a.map((g) => g.y));
    expect(await collect(shifted, 'train', { batchSize: 16, seed: 5 })).toEqual(b);
    expect(await collect(shifted, 'train', { batchSize: 16, seed: 5, skip: 2 })).toEqual(b.slice(2));
    // Every shifted image is its original image moved by some (dy, dx) in [-2, 2]².
    let moved = 0;
    for (let i = 0; i < a.length; i++) {
      const B = a[i]!.shape[1]!;
      for (let k = 0; k < B; k++) {
        const img = (g: Got) => Array.from({ length: 784 }, (_, p) => g.x[(Math.floor(p / 28) * B + k) * 28 + (p % 28)]!);
        const [src, dst] = [img(a[i]!), img(b[i]!)];
        const fits = [];
        for (let dy = -2; dy <= 2; dy++) {
          for (let dx = -2; dx <= 2; dx++) {
            const ok = dst.every((v, p) => {
              const r = Math.floor(p / 28) - dy;
              const c = (p % 28) - dx;
              return v === (r >= 0 && r < 28 && c >= 0 && c < 28 ? src[r * 28 + c] : 0);
            });
            if (ok) fits.push([dy, dx]);
          }
        }
        expect(fits.length, `batch ${i} sample ${k}`).toBeGreaterThan(0);
        if (!fits.some(([dy, dx]) => dy === 0 && dx === 0)) moved++;
      }
    }
    expect(moved).toBeGreaterThan(30);
    expect(await collect(shifted, 'test', { batchSize: 16, seed: 5 })).toEqual(await collect(plain, 'test', { batchSize: 16, seed: 5 }));
  });

  it('batchCount with and without dropLast matches the batches yielded', async () => {
    const ds = await open({ trainLimit: 50, testLimit: 7 });
    expect(ds.batchCount('train', { batchSize: 16 })).toBe(4);
    expect(ds.batchCount('train', { batchSize: 16, dropLast: true })).toBe(3);
    expect(ds.batchCount('test', { batchSize: 7, dropLast: true })).toBe(1);
    const last = await collect(ds, 'train', { batchSize: 16, seed: 0 });
    expect(last.map((g) => g.shape[1])).toEqual([16, 16, 16, 2]);
    expect((await collect(ds, 'train', { batchSize: 16, seed: 0, dropLast: true })).map((g) => g.shape[1])).toEqual([16, 16, 16]);
    expect(ds.batchCount('train', { batchSize: 100 })).toBe(1);
  });

  it('leaks no tensors: numTensors is back to its baseline once the batches are disposed', async () => {
    const ds = await open({ trainLimit: 40, encoder: 'latency', variant: 'row' });
    const before = tf.memory().numTensors;
    let n = 0;
    for await (const b of ds.batches('train', { batchSize: 8, seed: 0 })) {
      expect(inputShape(b.inputs)).toEqual([140, 8, 28]);
      n++;
      disposeTree(b);
    }
    expect(n).toBe(5);
    // leaving a pass early creates nothing that outlives it either
    for await (const b of ds.batches('train', { batchSize: 8, seed: 0 })) {
      disposeTree(b);
      break;
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses an unknown split and a bad batch size', async () => {
    const ds = await open({ trainLimit: 4 });
    const err = await collect(ds, 'valid', { batchSize: 2, seed: 0 }).catch((e: unknown) => e);
    expect(isSpikeflowError(err, 'CONFIG_INVALID')).toBe(true);
    expect(() => ds.batchCount('train', { batchSize: 0 })).toThrow(/batchSize/);
  });
});

describe('plugin', () => {
  it('provides mnist and fashion-mnist, both reading idx files', () => {
    const reg = createRegistry([plugin]);
    expect([...reg.datasets.keys()].sort()).toEqual(['fashion-mnist', 'mnist']);
    expect(reg.datasets.get('mnist')!.formats).toEqual(['idx']);
    expect(reg.datasets.get('fashion-mnist')!.formats).toEqual(['idx']);
    expect(plugin.meta.name).toBe('@spikeflow/dataset-mnist');
  });

  it('validates options on every path: the registry entries and openMnist reject a bad one naming the field', async () => {
    const reg = createRegistry([plugin]);
    const viaEntry = await reg.datasets
      .get('mnist')!
      .open({ variant: 'diagonal' }, ctx)
      .catch((e: unknown) => e);
    expect(isSpikeflowError(viaEntry, 'CONFIG_INVALID')).toBe(true);
    expect((viaEntry as Error).message).toBe("data.variant: must be one of 'row', 'pixel', 'permuted', 'image', got 'diagonal'");
    const fashion = await reg.datasets
      .get('fashion-mnist')!
      .open({ source: 'bundled' }, ctx)
      .catch((e: unknown) => e);
    expect((fashion as Error).message).toBe("data.source: must be one of 'idx', got 'bundled'");
    const direct = await openMnist({ latencySteps: 0 }, ctx).catch((e: unknown) => e);
    expect((direct as Error).message).toBe('data.latencySteps: must be >= 1, got 0');
    // A relation between fields is still the factory's to check.
    const dir = await openMnist({ dir: '/somewhere' }, ctx).catch((e: unknown) => e);
    expect((dir as Error).message).toMatch(/^data\.dir: is only used with source: 'idx'/);
  });

  it('opens from a config section with defaults filled; describe() reports sizes after encoding', async () => {
    const o = parseSchema(mnistSchema, { variant: 'pixel', encoder: 'delta', trainLimit: 10, testLimit: 10 }, 'data');
    expect(o).toMatchObject({ source: 'bundled', download: false, permutationSeed: 0, deltaThreshold: 0.1 });
    const ds = await mnistEntry.open(o, ctx);
    expect(ds.describe()).toEqual({ steps: 784, channels: 2, outputs: 10, target: 'labels', samples: { train: 10, test: 10 } });
  });

  it('refuses bad options with CONFIG_INVALID', async () => {
    const fails = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(isSpikeflowError(e, 'CONFIG_INVALID'), String(e)).toBe(true);
        return (e as Error).message;
      }
      throw new Error('did not throw');
    };
    expect(fails(() => parseSchema(mnistSchema, { encoder: 'poisson' }, 'data'))).toContain(
      "data.encoder: must be one of 'direct', 'rate', 'latency', 'delta'",
    );
    expect(fails(() => parseSchema(fashionMnistSchema, { source: 'bundled' }, 'data'))).toContain("data.source: must be one of 'idx'");
    fails(() => parseSchema(mnistSchema, { latencySteps: 0 }, 'data'));
    fails(() => parseSchema(mnistSchema, { trainLimit: 1.5 }, 'data'));
    const err = await open({ dir: '/tmp/somewhere' }).catch((e: unknown) => e);
    expect(isSpikeflowError(err, 'CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toContain("data.dir: is only used with source: 'idx'");
  });
});

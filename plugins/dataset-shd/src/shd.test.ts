import { denseInputs, disposeBatch, inputShape, isSpikeflowError, stepsOf, tf } from '@spikeflow/core';
import '@spikeflow/backend-wasm';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { describeDataset } from '@spikeflow/testing';
import plugin, { Hdf5Reader, ShdFile, halfToNumber, openShd, shdEntry } from './index.js';

const data = fileURLToPath(new URL('../test-data/', import.meta.url));
const file = (name: string) => join(data, name);
const tmp = () => mkdtempSync(join(tmpdir(), 'spikeflow-shd-'));

beforeAll(async () => {
  await tf.setBackend('wasm');
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** The error `f` throws (or rejects with). */
async function errorOf(f: () => unknown): Promise<Error> {
  try {
    await f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

describe('half floats', () => {
  it('decodes normal, subnormal and special values', () => {
    expect(halfToNumber(0x3c00)).toBe(1);
    expect(halfToNumber(0xc000)).toBe(-2);
    expect(halfToNumber(0x3555)).toBeCloseTo(0.333251953125, 12);
    expect(halfToNumber(0x0001)).toBe(2 ** -24);
    expect(halfToNumber(0x03ff)).toBe(1023 * 2 ** -24);
    expect(halfToNumber(0x7bff)).toBe(65504);
    expect(halfToNumber(0x7c00)).toBe(Infinity);
    expect(halfToNumber(0xfc00)).toBe(-Infinity);
    expect(halfToNumber(0x7e00)).toBeNaN();
    expect(Object.is(halfToNumber(0x8000), -0)).toBe(true);
  });
});

describe('SHD files', () => {
  it('reads float16, float32 and float64 spike times alike', async () => {
    const files = await Promise.all(['shd-f16.h5', 'shd-f32.h5', 'shd-f64.h5'].map((n) => ShdFile.open(file(n))));
    try {
      expect(files.map((f) => f.timeType)).toEqual(['float16', 'float32', 'float64']);
      const [f16, f32, f64] = files as [ShdFile, ShdFile, ShdFile];
      for (const f of files) {
        expect(f.samples).toBe(12);
        expect(Array.from(f.labels)).toEqual(Array.from({ length: 12 }, (_, i) => i % 4));
        expect(f.extra).toEqual(['keys', 'speaker']);
      }
      for (let i = 0; i < 12; i++) {
        const [a, b, c] = [f16.read(i), f32.read(i), f64.read(i)];
        expect(c.events.t.length).toBe(4 + 3 * i);
        expect(Array.from(a.events.x)).toEqual(Array.from(c.events.x));
        expect(Array.from(b.events.x)).toEqual(Array.from(c.events.x));
        c.events.t.forEach((t, k) => {
          expect(Math.abs(b.events.t[k]! - t)).toBeLessThanOrEqual(t * 2 ** -23);
          // half precision: 11 significant bits
          expect(Math.abs(a.events.t[k]! - t)).toBeLessThanOrEqual(Math.max(t * 2 ** -11, 2 ** -24));
        });
      }
    } finally {
      files.forEach((f) => f.close());
    }
  });

  it('names the file and the sample of every fault, and drops NaN/Inf times with a warning that counts them', async () => {
    const log = vi.fn();
    const f = await ShdFile.open(file('shd-faults.h5'), { log });
    try {
      expect(Array.from(f.read(0).events.t.map((t) => Math.round(t * 10)))).toEqual([1, 2, 3]);
      const cases: [number, RegExp][] = [
        [1, /sample 1: event 0 has a negative time/],
        [2, /sample 2: event 1 is earlier \(0\.2.*\) than the event before it/],
        [3, /sample 3: event 1 has channel 700, outside 0\.\.699/],
        [5, /sample 5 has 3 spike times but 2 units/],
      ];
      for (const [i, msg] of cases) {
        const e = await errorOf(() => f.read(i));
        expect(isSpikeflowError(e, 'DATA_INVALID')).toBe(true);
        expect(e.message).toContain(file('shd-faults.h5'));
        expect(e.message).toMatch(msg);
      }
      const cleaned = f.read(4);
      expect(Array.from(cleaned.events.x)).toEqual([1, 3, 5]);
      f.read(4);
      expect(log).toHaveBeenCalledTimes(1);
      expect(log.mock.calls[0]![0]).toMatch(/shd-faults\.h5: sample 4: dropped 2 spike times that are NaN or infinite/);
      expect(f.nonFinite).toBe(4);
    } finally {
      f.close();
    }
  });

  it('refuses files that are missing, not HDF5, truncated, or not in the SHD layout', async () => {
    const dir = tmp();
    const text = join(dir, 'notes.h5');
    writeFileSync(text, 'spike times, honestly\n');
    const whole = readFileSync(file('shd-f32.h5'));
    const cut = join(dir, 'cut.h5');
    writeFileSync(cut, whole.subarray(0, Math.floor(whole.length / 2)));
    const cases: [string, RegExp][] = [
      [join(dir, 'none.h5'), /none\.h5: no such file/],
      [text, /notes\.h5: not an HDF5 file \(no HDF5 signature in its 22 bytes\)/],
      [file('not-shd.h5'), /not-shd\.h5: has no dataset 'spikes\/times', so it is not in the SHD\/SSC layout/],
      [file('shd-short-labels.h5'), /shd-short-labels\.h5: 3 samples but 2 labels/],
    ];
    for (const [path, msg] of cases) {
      const e = await errorOf(() => ShdFile.open(path));
      expect(isSpikeflowError(e, 'DATA_INVALID')).toBe(true);
      expect(e.message).toMatch(msg);
    }
    const e = await errorOf(() => ShdFile.open(cut));
    expect(isSpikeflowError(e, 'DATA_INVALID')).toBe(true);
    expect(e.message).toContain(`cut.h5: truncated: its HDF5 superblock records ${whole.length} bytes, the file has ${Math.floor(whole.length / 2)}`);
  });
});

describe('data inspect', () => {
  it.each(['shd-f16', 'shd-f32', 'shd-f64', 'shd-many'])('%s: the summary h5py computes for the same file', async (name) => {
    const want = JSON.parse(readFileSync(file(`${name}.inspect.json`), 'utf8')) as Record<string, unknown> & { durationSec: { max: number } };
    const got = await shdEntry.inspect!(file(`${name}.h5`), 'shd');
    const { durationSec, ...rest } = want;
    expect(got).toMatchObject(rest);
    expect((got['durationSec'] as { max: number }).max).toBeCloseTo(durationSec.max, 12);
    expect(got['dtype']).toBe(name === 'shd-f32' ? 'float32' : name === 'shd-f64' ? 'float64' : 'float16');
  });

  it('counts the NaN/Inf times of a file and recognises the layout', async () => {
    const want = JSON.parse(readFileSync(file('shd-nan.inspect.json'), 'utf8')) as Record<string, unknown>;
    expect(await shdEntry.inspect!(file('shd-nan.h5'), 'shd')).toMatchObject(want);
    // A sample that breaks the layout stops the summary, named.
    await expect(shdEntry.inspect!(file('shd-faults.h5'), 'shd')).rejects.toThrow(/shd-faults\.h5: sample 1: event 0 has a negative time/);
    expect(await shdEntry.detect!(file('shd-f16.h5'))).toBe('shd');
    expect(await shdEntry.detect!(file('not-shd.h5'))).toBeUndefined();
    expect(await shdEntry.detect!(fileURLToPath(import.meta.url))).toBeUndefined();
    await expect(shdEntry.inspect!(file('shd-f16.h5'), 'idx')).rejects.toThrow(/reads format 'shd'/);
  });
});

/** A directory holding `train` and `test` as shd_train.h5 and shd_test.h5. */
const dirWith = (train: string, test: string) => {
  const dir = tmp();
  copyFileSync(file(train), join(dir, 'shd_train.h5'));
  copyFileSync(file(test), join(dir, 'shd_test.h5'));
  return dir;
};

describeDataset('shd (augmented, 20 frames)', () =>
  openShd('shd', { dir: dirWith('shd-f32.h5', 'shd-f16.h5'), bins: 20, spatialShift: 5, dropEvents: 0.2, timeJitter: 0.01 }, { cacheDir: tmp() }),
);

describe('shd dataset', () => {
  it('bins each sample into 100 frames over 1.4 s of 700 channels, with split sizes from the files', async () => {
    const ds = await openShd('shd', { dir: dirWith('shd-f32.h5', 'shd-many.h5') }, { cacheDir: tmp() });
    expect(ds.describe()).toEqual({ steps: 100, channels: 700, outputs: 20, target: 'labels', samples: { train: 12, test: 400 } });
    const reference = await ShdFile.open(file('shd-many.h5'));
    let seen = 0;
    for await (const b of ds.batches('test', { batchSize: 64, seed: 0 })) {
      const B = b.targets.shape[0]!;
      expect(inputShape(b.inputs)).toEqual([100, B, 700]);
      const whole = denseInputs(b.inputs);
      const x = whole.dataSync();
      whole.dispose();
      // A window of frames, made on its own, is those frames of the whole.
      const w = stepsOf(b.inputs).window(40, 60);
      expect(Array.from(w.dataSync())).toEqual(Array.from(x.subarray(40 * B * 700, 60 * B * 700)));
      w.dispose();
      const labels = Array.from(b.targets.dataSync());
      for (let k = 0; k < B; k++) {
        const ev = reference.read(seen + k);
        expect(labels[k]).toBe(ev.label);
        // every event lies inside 1.4 s here: the sample's frames hold all of them, each in its channel
        let total = 0;
        for (let t = 0; t < 100; t++) for (let c = 0; c < 700; c++) total += x[(t * B + k) * 700 + c]!;
        expect(total).toBe(ev.events.t.length);
        const first = Math.floor(ev.events.t[0]! / 0.014);
        expect(x[(first * B + k) * 700 + ev.events.x[0]!]).toBeGreaterThan(0);
      }
      seen += B;
      disposeBatch(b);
    }
    expect(seen).toBe(400);
    reference.close();
  });

  it('streams: each batch reads only its own samples, one at a time, and nothing is kept between batches', async () => {
    const ds = await openShd('shd', { dir: dirWith('shd-f16.h5', 'shd-many.h5'), bins: 10 }, { cacheDir: tmp() });
    const reads = vi.spyOn(Hdf5Reader.prototype, 'vlenArrays');
    for (let pass = 0; pass < 2; pass++) {
      let before = reads.mock.calls.length;
      for await (const b of ds.batches('test', { batchSize: 50, seed: pass })) {
        const calls = reads.mock.calls.slice(before);
        // times and units of each of the batch's samples, one sample per read
        expect(calls.length).toBe(2 * b.targets.shape[0]!);
        expect(calls.every(([, , count]) => count === 1)).toBe(true);
        before = reads.mock.calls.length;
        disposeBatch(b);
      }
    }
    expect(reads.mock.calls.length).toBe(2 * 2 * 400);
  });

  it('applies the training augmentation deterministically under a seed, to the training split only', async () => {
    const ds = await openShd('shd', { dir: dirWith('shd-f64.h5', 'shd-f64.h5'), dropEvents: 0.5, spatialShift: 20 }, { cacheDir: tmp() });
    const sums = async (split: string, seed: number) => {
      const out: number[] = [];
      for await (const b of ds.batches(split, { batchSize: 12, seed, shuffle: false })) {
        out.push(...(tf.tidy(() => tf.sum(denseInputs(b.inputs), [0, 2]).arraySync()) as number[]));
        disposeBatch(b);
      }
      return out;
    };
    const all = Array.from({ length: 12 }, (_, i) => 4 + 3 * i);
    expect(await sums('test', 1)).toEqual(all);
    const a = await sums('train', 1);
    expect(await sums('train', 1)).toEqual(a);
    expect(a.reduce((s, v) => s + v, 0)).toBeLessThan(0.8 * all.reduce((s, v) => s + v, 0));
  });

  it('refuses labels beyond the classes of the family, and a missing file says where to get it', async () => {
    const dir = tmp();
    const e = await errorOf(() => openShd('shd', { dir }, { cacheDir: tmp() }));
    expect(isSpikeflowError(e, 'DATA_INVALID')).toBe(true);
    expect(e.message).toMatch(/shd_train\.h5: not found\. Download https:\/\/zenkelab\.org\/datasets\/shd_train\.h5\.gz .*md5sums\.txt.*download: true/);
    const d2 = tmp();
    for (const n of ['ssc_train.h5', 'ssc_valid.h5', 'ssc_test.h5']) copyFileSync(file('shd-f32.h5'), join(d2, n));
    const ssc = await openShd('ssc', { dir: d2, testLimit: 5 }, { cacheDir: tmp() });
    expect(ssc.describe().samples).toEqual({ train: 12, valid: 5, test: 5 });
    expect(ssc.describe().outputs).toBe(35);
  });

  it('is a plugin with the shd and ssc datasets', () => {
    expect(plugin.datasets!.map((d) => d.name)).toEqual(['shd', 'ssc']);
  });
});

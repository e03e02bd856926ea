import { beforeAll, describe, expect, it } from 'vitest';
import { createRegistry, createRng, parseSchema } from '@spikeflow/core';
import { wasm } from '@spikeflow/backend-wasm';
import { channelOf, eventsOf, type Events } from '@spikeflow/events';
import { describeDataset } from '@spikeflow/testing';
import { mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import plugin, {
  NMNIST_SENSOR,
  decodeNmnist,
  detectNmnist,
  encodeNmnist,
  inspectNmnist,
  listNmnistSplit,
  nmnistEntry,
  nmnistSchema,
  openNmnist,
} from './index.js';
import { collect, counting, refusal, same, tempDirs } from './test-util.js';

beforeAll(() => wasm.activate());

const ctx = { cacheDir: '/nonexistent-spikeflow-cache' };
const freshDir = tempDirs('spikeflow-nmnist-');

function write(path: string, bytes: Uint8Array): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, bytes);
  return path;
}

/** A plausible sample: `n` events over [0, span) s in time order on the 34 × 34 sensor. */
function sample(seed: number, n: number, span = 0.3): Events {
  const r = createRng(seed);
  const t = Array.from({ length: n }, () => Math.round(r() * span * 1e6) / 1e6).sort((a, b) => a - b);
  return eventsOf(
    t,
    t.map(() => Math.floor(r() * 34)),
    t.map(() => Math.floor(r() * 34)),
    t.map(() => (r() < 0.5 ? 0 : 1)),
  );
}

/** Writes Train/<d>/<k>.bin and Test/<d>/<k>.bin; returns each file's events. */
function writeTree(
  root: string,
  perDigit: { train: number; test: number },
  events = (split: string, d: number, k: number) => sample(d * 1000 + k + (split === 'Test' ? 500 : 0), 3 + ((d + k) % 7)),
) {
  const written = new Map<string, { events: Events; label: number }>();
  for (const [split, n] of [
    ['Train', perDigit.train],
    ['Test', perDigit.test],
  ] as const) {
    for (let d = 0; d < 10; d++) {
      for (let k = 0; k < n; k++) {
        const ev = events(split, d, k);
        written.set(write(join(root, split, String(d), `${String(k + 1).padStart(5, '0')}.bin`), encodeNmnist(ev)), { events: ev, label: d });
      }
    }
  }
  return written;
}

describeDataset('nmnist (augmented, downsampled)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'spikeflow-nmnist-suite-'));
  writeTree(dir, { train: 1, test: 1 });
  return openNmnist({ dir, bins: 6, downsample: 2, spatialShift: 2, dropEvents: 0.1 }, { cacheDir: dir });
});

describe('N-MNIST sample files', () => {
  it('lays out an event as x, y, polarity bit 7 + 23-bit µs time, big-endian, 5 bytes', () => {
    // t = 0x12345 µs = 74565 µs; ON at (33, 7); then OFF at (0, 0), t = 0x7fffff µs (the largest)
    const b = encodeNmnist(eventsOf([0.074565, 8.388607], [33, 0], [7, 0], [1, 0]));
    expect(Array.from(b)).toEqual([33, 7, 0x80 | 0x01, 0x23, 0x45, 0, 0, 0x7f, 0xff, 0xff]);
    const ev = decodeNmnist(b.subarray(0, 5), 'x.bin');
    expect([ev.t[0], ev.x[0], ev.y[0], ev.p[0]]).toEqual([0.074565, 33, 7, 1]);
  });

  it('round-trips random samples exactly (times in whole µs)', () => {
    for (let s = 0; s < 50; s++) {
      const ev = sample(s, s * 13, 2);
      const back = decodeNmnist(encodeNmnist(ev), 's.bin');
      expect(Array.from(back.t)).toEqual(Array.from(ev.t));
      expect(Array.from(back.x)).toEqual(Array.from(ev.x));
      expect(Array.from(back.y)).toEqual(Array.from(ev.y));
      expect(Array.from(back.p)).toEqual(Array.from(ev.p));
    }
  });

  it('refuses to encode what the format cannot hold', async () => {
    await refusal(() => encodeNmnist(eventsOf([9], [0])), 'CONFIG_INVALID');
    await refusal(() => encodeNmnist(eventsOf([-0.001], [0])), 'CONFIG_INVALID');
    await refusal(() => encodeNmnist(eventsOf([0], [256])), 'CONFIG_INVALID');
    await refusal(() => encodeNmnist(eventsOf([0], [0], [0], [2])), 'CONFIG_INVALID');
  });

  it('refuses truncated files, coordinates off the 34 × 34 sensor and decreasing times, naming the file', async () => {
    const ok = encodeNmnist(sample(1, 4));
    const e1 = await refusal(() => decodeNmnist(ok.subarray(0, 18), 'Train/3/00001.bin (sample 7)'));
    expect(e1.message).toContain('Train/3/00001.bin (sample 7)');
    expect(e1.message).toMatch(/18 bytes is not a whole number of 5-byte events.*truncated/);
    const e2 = await refusal(() => decodeNmnist(encodeNmnist(eventsOf([0, 0.1], [3, 34], [0, 0], [0, 1])), 'f.bin'));
    expect(e2.message).toContain('f.bin: event 1 has x 34, outside 0..33');
    const e3 = await refusal(() => decodeNmnist(encodeNmnist(eventsOf([0, 0.1], [3, 3], [40, 0], [0, 1])), 'f.bin'));
    expect(e3.message).toContain('event 0 has y 40, outside 0..33');
    const e4 = await refusal(() => decodeNmnist(encodeNmnist(eventsOf([0.2, 0.1], [3, 3])), 'f.bin'));
    expect(e4.message).toContain('event 1 is earlier (0.1) than the event before it (0.2)');
  });
});

describe('nmnist dataset', () => {
  it('lists Train/<digit>/<id>.bin round-robin over digits, labelled by their folder', async () => {
    const root = freshDir();
    writeTree(root, { train: 3, test: 1 });
    write(join(root, 'Train', 'README.txt'), new Uint8Array(1));
    write(join(root, 'Train', '4', 'notes.txt'), new Uint8Array(1));
    const list = await listNmnistSplit(join(root, 'Train'));
    expect(list).toHaveLength(30);
    expect(list.slice(0, 12).map((f) => f.label)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    expect(list.every((f) => basename(dirname(f.path)) === String(f.label) && f.path.endsWith('.bin'))).toBe(true);
    expect(list.filter((f) => f.label === 7).map((f) => basename(f.path))).toEqual(['00001.bin', '00002.bin', '00003.bin']);
  });

  it('yields [T, B, 2·34·34] batches of the binned samples with their digits, reading back what was written', async () => {
    const root = freshDir();
    const written = writeTree(root, { train: 2, test: 1 }, (split, d, k) =>
      // one ON event at (d, k) at 0.01 s, one OFF event at (33 − d, 3) at 0.25 s (row 2 in the
      // train split: only the test split's files pass), one after maxTime
      eventsOf([0.01, 0.25, 0.31], [d, 33 - d, 0], [k, split === 'Test' ? 3 : 2, 0], [1, 0, 1]),
    );
    expect(written.size).toBe(30);
    const ds = await openNmnist({ dir: root, bins: 3 }, ctx);
    expect(ds.describe()).toEqual({ steps: 3, channels: 2 * 34 * 34, shape: [34, 34, 2], outputs: 10, target: 'labels', samples: { train: 20, test: 10 } });
    const [b] = await collect(ds, 'test', { batchSize: 10, seed: 0 });
    expect(b!.shape).toEqual([3, 10, 2312]);
    expect(b!.y).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    for (let s = 0; s < 10; s++) {
      const at = (t: number, c: number) => b!.x[(t * 10 + s) * 2312 + c]!;
      const on = channelOf(NMNIST_SENSOR, s, 0, 1);
      const off = channelOf(NMNIST_SENSOR, 33 - s, 3, 0);
      // 0.3 s in 3 frames: 0.01 s → frame 0, 0.25 s → frame 2; 0.31 s is cropped
      expect([at(0, on), at(1, on), at(2, off)]).toEqual([1, 0, 1]);
      let total = 0;
      for (let t = 0; t < 3; t++) for (let c = 0; c < 2312; c++) total += at(t, c);
      expect(total).toBe(2);
    }
  });

  it('is deterministic under a seed (order and augmentation), and another seed gives another pass', async () => {
    const root = freshDir();
    writeTree(root, { train: 4, test: 1 });
    const o = { dir: root, bins: 5, spatialShift: 2, dropEvents: 0.2, timeJitter: 0.001 };
    const a = await collect(await openNmnist(o, ctx), 'train', { batchSize: 8, seed: 3 });
    const b = await collect(await openNmnist(o, ctx), 'train', { batchSize: 8, seed: 3 });
    const c = await collect(await openNmnist(o, ctx), 'train', { batchSize: 8, seed: 4 });
    expect(a.map((g) => g.shape)).toEqual([
      [5, 8, 2312],
      [5, 8, 2312],
      [5, 8, 2312],
      [5, 8, 2312],
      [5, 8, 2312],
    ]);
    expect(a.map((g) => g.y)).toEqual(b.map((g) => g.y));
    a.forEach((g, i) => expect(same(g.x, b[i]!.x)).toBe(true));
    expect(a.map((g) => g.y)).not.toEqual(c.map((g) => g.y));
    expect(a.flatMap((g) => g.y).sort()).toEqual(c.flatMap((g) => g.y).sort());
    // resuming with skip gives exactly the later batches
    const resumed = await collect(await openNmnist(o, ctx), 'train', { batchSize: 8, seed: 3, skip: 3 });
    expect(resumed.map((g) => g.y)).toEqual(a.slice(3).map((g) => g.y));
    resumed.forEach((g, i) => expect(same(g.x, a[3 + i]!.x)).toBe(true));
  });

  it('downsamples, merges polarity and caps the splits as the options ask', async () => {
    const root = freshDir();
    writeTree(root, { train: 3, test: 2 });
    const ds = await openNmnist({ dir: root, downsample: 2, polarity: 'merge', window: 0.05, trainLimit: 7, testLimit: 12 }, ctx);
    expect(ds.describe()).toEqual({ steps: 6, channels: 17 * 17, shape: [17, 17, 1], outputs: 10, target: 'labels', samples: { train: 7, test: 12 } });
    const got = await collect(ds, 'test', { batchSize: 5, seed: 0 });
    expect(got.map((g) => g.shape)).toEqual([
      [6, 5, 289],
      [6, 5, 289],
      [6, 2, 289],
    ]);
    // the first 12 test samples, round-robin: digits 0..9 then 0, 1
    expect(got.flatMap((g) => g.y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
  });

  it('opens from a config section with defaults (0.3 s, 30 frames) through the plugin', async () => {
    const root = freshDir();
    writeTree(root, { train: 1, test: 1 });
    const reg = createRegistry([plugin]);
    expect([...reg.datasets.keys()].sort()).toEqual(['dvs-gesture', 'nmnist']);
    expect(reg.datasets.get('nmnist')!.formats).toEqual(['nmnist']);
    expect(plugin.meta.name).toBe('@spikeflow/dataset-events');
    const o = parseSchema(nmnistSchema, { dir: root }, 'data');
    expect(o).toMatchObject({ maxTime: 0.3, binBy: 'time', values: 'count', downsample: 1, polarity: 'split' });
    const ds = await nmnistEntry.open(o, ctx);
    expect(ds.describe()).toMatchObject({ steps: 30, channels: 2312, outputs: 10 });
    await refusal(() => parseSchema(nmnistSchema, { bins: 0 }, 'data'), 'CONFIG_INVALID');
    await refusal(() => parseSchema(nmnistSchema, { trainLimit: 2.5 }, 'data'), 'CONFIG_INVALID');
    await refusal(async () => nmnistEntry.open(parseSchema(nmnistSchema, { dir: root, bins: 4, window: 0.1 }, 'data'), ctx), 'CONFIG_INVALID');
  });

  it('says where N-MNIST is published and the layout it expects when the folder, a split or its samples are missing', async () => {
    const nowhere = join(freshDir(), 'no-such-dir');
    const e1 = await refusal(openNmnist({}, { cacheDir: nowhere }));
    expect(e1.message).toContain(join(nowhere, 'nmnist'));
    expect(e1.message).toContain('no such folder');
    expect(e1.message).toContain('does not download N-MNIST');
    expect(e1.message).toContain('garrickorchard.com/datasets/n-mnist');
    expect(e1.message).toContain('Train/<digit>/<id>.bin and Test/<digit>/<id>.bin');
    const onlyTrain = freshDir();
    write(join(onlyTrain, 'Train', '0', '1.bin'), new Uint8Array(0));
    expect((await refusal(openNmnist({ dir: onlyTrain }, ctx))).message).toContain('has no Test/ folder');
    write(join(onlyTrain, 'Test.zip'), new Uint8Array(4));
    expect((await refusal(openNmnist({ dir: onlyTrain }, ctx))).message).toContain('holds Test.zip but no Test/ folder: unzip Test.zip there first');
    mkdirSync(join(onlyTrain, 'Test', 'x'), { recursive: true });
    expect((await refusal(openNmnist({ dir: onlyTrain }, ctx))).message).toMatch(/Test: holds no samples: expected Test\/<digit>\/<id>\.bin/);
  });

  it('refuses a bad sample file when a batch reads it, naming the file and the sample', async () => {
    const root = freshDir();
    writeTree(root, { train: 1, test: 1 });
    const bad = join(root, 'Test', '3', '00001.bin');
    write(bad, encodeNmnist(sample(9, 4)).subarray(0, 17));
    const ds = await openNmnist({ dir: root }, ctx);
    const e = await refusal(collect(ds, 'test', { batchSize: 4, seed: 0 }));
    // round-robin order: test sample 3 is digit 3's first file
    expect(e.message).toContain(`${bad} (nmnist test sample 3)`);
    expect(e.message).toContain('truncated');
    write(bad, encodeNmnist(eventsOf([0.1, 0.05], [1, 1])));
    expect((await refusal(collect(ds, 'test', { batchSize: 4, seed: 0 }))).message).toContain(`${bad} (nmnist test sample 3): event 1 is earlier`);
  });

  it('reads only the files of each batch: a tree of 2,000 samples, counted through a wrapped file system', async () => {
    const root = freshDir();
    const written = writeTree(root, { train: 200, test: 1 });
    const { files, opened, reads } = counting();
    const ds = await openNmnist({ dir: root, bins: 4 }, ctx, files);
    expect(opened).toEqual([]); // opening lists names only
    expect(ds.describe().samples).toEqual({ train: 2000, test: 10 });
    const seen = new Set<string>();
    let batches = 0;
    await collect(ds, 'train', { batchSize: 64, seed: 5 }, (g) => {
      const B = g.y.length;
      expect(opened).toHaveLength(B);
      expect(new Set(opened).size).toBe(B);
      const bytesRead = new Map<string, number>();
      for (const r of reads) bytesRead.set(r.path, (bytesRead.get(r.path) ?? 0) + r.length);
      for (const p of opened) {
        expect(seen.has(p)).toBe(false);
        seen.add(p);
        expect(bytesRead.get(p)).toBe(statSync(p).size);
      }
      expect([...bytesRead.keys()].sort()).toEqual([...opened].sort());
      expect(opened.map((p) => written.get(p)!.label).sort()).toEqual([...g.y].sort());
      opened.length = 0;
      reads.length = 0;
      batches++;
    });
    expect(batches).toBe(Math.ceil(2000 / 64));
    expect(seen.size).toBe(2000);
  });
});

describe('inspect and detect (format nmnist)', () => {
  it('summarises a tree one sample at a time: samples, splits, shape, events, duration, digits', async () => {
    const root = freshDir();
    const written = writeTree(root, { train: 3, test: 2 });
    const s = await nmnistEntry.inspect!(root, 'nmnist');
    const counts = [...written.values()].map((w) => w.events.t.length).sort((a, b) => a - b);
    expect(s).toMatchObject({
      path: root,
      format: 'nmnist',
      samples: 50,
      shape: [2, 34, 34],
      dtype: 'events',
      sensor: { width: 34, height: 34, polarities: 2 },
      splits: { train: 30, test: 20 },
      classes: 10,
      labelHistogram: Object.fromEntries(Array.from({ length: 10 }, (_, d) => [String(d), 5])),
    });
    expect(s.eventsPerSample).toEqual({ min: counts[0], median: (counts[24]! + counts[25]!) / 2, max: counts[49] });
    expect((s.durationSec as { max: number }).max).toBe(Math.max(...[...written.values()].map((w) => w.events.t[w.events.t.length - 1]!)));
    // a split folder, a digit folder and a single file
    expect(await inspectNmnist(join(root, 'Test'))).toMatchObject({ samples: 20, classes: 10 });
    expect(await inspectNmnist(join(root, 'Test', '4'))).toMatchObject({ samples: 2, classes: 1, labelHistogram: { 4: 2 } });
    const one = join(root, 'Train', '7', '00002.bin');
    expect(await inspectNmnist(one)).toMatchObject({ samples: 1, labelHistogram: { 7: 1 }, eventsPerSample: { min: written.get(one)!.events.t.length } });
  });

  it('refuses what is not N-MNIST, and names a bad sample file', async () => {
    const d = freshDir();
    write(join(d, 'other', 'a.txt'), new Uint8Array(3));
    expect((await refusal(inspectNmnist(d))).message).toContain('is not N-MNIST data');
    expect((await refusal(inspectNmnist(join(d, 'none')))).message).toContain('no such file or folder');
    const bad = write(join(d, 'Train', '2', '1.bin'), new Uint8Array(7));
    expect((await refusal(inspectNmnist(d))).message).toContain(`${bad} (sample 0 of ${d})`);
    expect((await refusal(inspectNmnist(bad))).message).toContain(`${bad}: 7 bytes`);
    await refusal(nmnistEntry.inspect!(bad, 'aedat'), 'CONFIG_INVALID');
  });

  it('detects .bin files of whole events and folders in the published layout, and nothing else', async () => {
    const root = freshDir();
    writeTree(root, { train: 1, test: 1 });
    expect(await detectNmnist(root)).toBe('nmnist');
    expect(await detectNmnist(join(root, 'Train'))).toBe('nmnist');
    expect(await detectNmnist(join(root, 'Train', '3', '00001.bin'))).toBe('nmnist');
    expect(await nmnistEntry.detect!(join(root, 'Test', '0', '00001.bin'))).toBe('nmnist');
    const other = freshDir();
    expect(await detectNmnist(write(join(other, 'x.bin'), new Uint8Array(7)))).toBeUndefined();
    expect(await detectNmnist(write(join(other, 'x.dat'), new Uint8Array(10)))).toBeUndefined();
    expect(await detectNmnist(other)).toBeUndefined();
    expect(await detectNmnist(join(other, 'missing'))).toBeUndefined();
    mkdirSync(join(other, 'Train', 'cats'), { recursive: true });
    expect(await detectNmnist(other)).toBeUndefined();
  });
});

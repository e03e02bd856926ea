import { beforeAll, describe, expect, it } from 'vitest';
import { createRng, parseSchema } from '@spikeflow/core';
import { wasm } from '@spikeflow/backend-wasm';
import { channelOf, eventsOf, type Events } from '@spikeflow/events';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DVS128_SENSOR,
  GESTURE_CLASSES,
  detectAedat,
  dvsGestureEntry,
  dvsGestureSchema,
  encodeAedat31,
  encodeGestureLabels,
  indexAedat,
  inspectAedat,
  nodeFiles,
  openDvsGesture,
  parseGestureLabels,
  parseTrials,
  polarityPackets,
  type AedatPacket,
  type GestureSegment,
} from './index.js';
import { collect, counting, refusal, same, tempDirs } from './test-util.js';

beforeAll(() => wasm.activate());

const ctx = { cacheDir: '/nonexistent-spikeflow-cache' };
const freshDir = tempDirs('spikeflow-gesture-');

/** Concatenates event streams already in time order one after another. */
function cat(...parts: Events[]): Events {
  return eventsOf(
    parts.flatMap((p) => Array.from(p.t)),
    parts.flatMap((p) => Array.from(p.x)),
    parts.flatMap((p) => Array.from(p.y)),
    parts.flatMap((p) => Array.from(p.p)),
  );
}

/**
 * A recording in the published form: its segments (µs) and its events (seconds, time order),
 * written as `<name>.aedat` in packets of `perPacket` events plus `<name>_labels.csv`.
 */
function writeRecording(dir: string, name: string, segments: readonly GestureSegment[], events: Events, perPacket = 16, packets?: AedatPacket[]): string {
  const path = join(dir, `${name}.aedat`);
  writeFileSync(path, encodeAedat31(packets ?? polarityPackets(events, perPacket)));
  writeFileSync(join(dir, `${name}_labels.csv`), encodeGestureLabels(segments));
  return path;
}

/**
 * The standard test recording: 11 segments, one per class in a shuffled order, 1 s long and 0.5 s
 * apart from `t0` s. In segment s: an ON event at +0.1 s at (label, 0), an OFF event at +0.6 s at
 * (0, label) and `extra` events spread over the segment; around it, events 1 µs before its start
 * and exactly at its end, which belong to no sample.
 */
function standardRecording(seed: number, t0: number, extra = 0): { segments: GestureSegment[]; events: Events } {
  const r = createRng(seed);
  const labels = Array.from({ length: 11 }, (_, i) => i);
  for (let i = 10; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [labels[i], labels[j]] = [labels[j]!, labels[i]!];
  }
  const segments: GestureSegment[] = [];
  const parts: Events[] = [];
  labels.forEach((label, s) => {
    const start = Math.round((t0 + s * 1.5) * 1e6);
    const end = start + 1_000_000;
    segments.push({ label, startUs: start, endUs: end });
    const t = [(start - 1) / 1e6, (start + 100_000) / 1e6, (start + 600_000) / 1e6];
    const x = [127, label, 0];
    const y = [127, 0, label];
    const p = [1, 1, 0];
    const more = Array.from({ length: extra }, () => start + 650_000 + Math.floor(r() * 340_000)).sort((a, b) => a - b);
    for (const us of more) {
      t.push(us / 1e6);
      x.push(Math.floor(r() * 128));
      y.push(Math.floor(r() * 128));
      p.push(r() < 0.5 ? 0 : 1);
    }
    t.push(end / 1e6);
    x.push(126);
    y.push(126);
    p.push(0);
    parts.push(eventsOf(t, x, y, p));
  });
  return { segments, events: cat(...parts) };
}

/** A DvsGesture folder: three training recordings, one test recording, the trials lists. */
function writeGestureDir(root: string, extra = 0): Record<string, GestureSegment[]> {
  mkdirSync(root, { recursive: true });
  const names = { train: ['user01_fluorescent', 'user01_led', 'user02_natural'], test: ['user24_lab'] };
  const out: Record<string, GestureSegment[]> = {};
  [...names.train, ...names.test].forEach((n, k) => {
    const { segments, events } = standardRecording(k + 1, 10 + k * 100, extra);
    writeRecording(root, n, segments, events, 5);
    out[n] = segments;
  });
  writeFileSync(join(root, 'trials_to_train.txt'), `${names.train.map((n) => `${n}.aedat`).join('\r\n')}\r\n\r\n`);
  writeFileSync(join(root, 'trials_to_test.txt'), names.test.join('\n'));
  return out;
}

describe('labels CSV and trials lists', () => {
  it('round-trips segments, class = label + 1, CRLF lines; reads blank lines, BOM and spaces', () => {
    const segs: GestureSegment[] = [
      { label: 0, startUs: 80048239, endUs: 85092709 },
      { label: 10, startUs: 2 ** 31 + 5, endUs: 2 ** 31 + 9 },
    ];
    const csv = encodeGestureLabels(segs);
    expect(csv).toBe('class,startTime_usec,endTime_usec\r\n1,80048239,85092709\r\n11,2147483653,2147483657\r\n');
    expect(parseGestureLabels(csv, 'l.csv')).toEqual(segs);
    expect(parseGestureLabels('\uFEFFclass, startTime_usec, endTime_usec\n\n 3 , 10, 20 \n\n', 'l.csv')).toEqual([{ label: 2, startUs: 10, endUs: 20 }]);
    expect(parseTrials('user01_fluorescent.aedat\r\nuser02_led\r\n\r\n')).toEqual(['user01_fluorescent.aedat', 'user02_led.aedat']);
  });

  it.each([
    ['start,end\n1,2\n', 'line 1 is "start,end", not the header class,startTime_usec,endTime_usec: not a DVS Gesture labels file'],
    ['class,startTime_usec,endTime_usec\n1,2\n', 'line 2 has 2 fields, not 3 (class,startTime_usec,endTime_usec): "1,2"'],
    ['class,startTime_usec,endTime_usec\n1,10,20\n2,ten,30\n', 'line 3: startTime_usec is "ten", not a whole number'],
    ['class,startTime_usec,endTime_usec\n1.5,10,20\n', 'line 2: class is "1.5", not a whole number'],
    ['class,startTime_usec,endTime_usec\n0,10,20\n', 'line 2: class 0 is outside 1..11'],
    ['class,startTime_usec,endTime_usec\n12,10,20\n', 'line 2: class 12 is outside 1..11'],
    ['class,startTime_usec,endTime_usec\n3,-10,20\n', 'line 2: negative time (-10 µs)'],
    ['class,startTime_usec,endTime_usec\n3,30,20\n', 'line 2: the segment ends (20 µs) before it starts (30 µs)'],
  ])('refuses a malformed labels CSV (%#), naming the file and the line', async (csv, msg) => {
    expect((await refusal(() => parseGestureLabels(csv, '/d/user03_led_labels.csv'))).message).toBe(`/d/user03_led_labels.csv: ${msg}`);
  });
});

describe('dvs-gesture dataset', () => {
  it('makes every labelled segment a sample: its events inside [start, end), times after its start', async () => {
    const root = freshDir();
    const segs = writeGestureDir(root);
    const ds = await openDvsGesture({ dir: root, downsample: 1, bins: 4, maxTime: 2 }, ctx);
    expect(ds.describe()).toEqual({ steps: 4, channels: 2 * 128 * 128, shape: [128, 128, 2], outputs: 11, target: 'labels', samples: { train: 33, test: 11 } });
    const [b] = await collect(ds, 'test', { batchSize: 11, seed: 0 });
    expect(b!.shape).toEqual([4, 11, 32768]);
    expect(b!.y).toEqual(segs.user24_lab!.map((s) => s.label));
    for (let s = 0; s < 11; s++) {
      const label = b!.y[s]!;
      const at = (t: number, c: number) => b!.x[(t * 11 + s) * 32768 + c]!;
      // +0.1 s → frame 0, +0.6 s → frame 1 (0.5 s frames over 2 s); the events just before the start and at
      // the end (which would land in frame 2) are not in the sample
      expect(at(0, channelOf(DVS128_SENSOR, label, 0, 1))).toBe(1);
      expect(at(1, channelOf(DVS128_SENSOR, 0, label, 0))).toBe(1);
      let total = 0;
      for (let i = 0; i < 4 * 32768; i++) total += b!.x[(Math.floor(i / 32768) * 11 + s) * 32768 + (i % 32768)]!;
      expect(total).toBe(2);
    }
    // the training split: the three recordings in list order, each in its CSV's order
    const train = await collect(ds, 'train', { batchSize: 33, seed: 0, shuffle: false });
    expect(train[0]!.y).toEqual([...segs.user01_fluorescent!, ...segs.user01_led!, ...segs.user02_natural!].map((s) => s.label));
  });

  it('opens from a config section with the defaults (downsample 4, 3 s, 60 frames) and is deterministic under a seed', async () => {
    const root = freshDir();
    writeGestureDir(root, 30);
    const o = parseSchema(dvsGestureSchema, { dir: root, spatialShift: 1, dropEvents: 0.1 }, 'data');
    expect(o).toMatchObject({ downsample: 4, maxTime: 3, polarity: 'split', binBy: 'time' });
    const ds = await dvsGestureEntry.open(o, ctx);
    expect(ds.describe()).toMatchObject({ steps: 60, channels: 2 * 32 * 32, outputs: 11, samples: { train: 33, test: 11 } });
    const a = await collect(ds, 'train', { batchSize: 8, seed: 11 });
    const b = await collect(await dvsGestureEntry.open(o, ctx), 'train', { batchSize: 8, seed: 11 });
    const c = await collect(ds, 'train', { batchSize: 8, seed: 12 });
    expect(a.map((g) => g.shape)).toEqual([
      [60, 8, 2048],
      [60, 8, 2048],
      [60, 8, 2048],
      [60, 8, 2048],
      [60, 1, 2048],
    ]);
    expect(a.map((g) => g.y)).toEqual(b.map((g) => g.y));
    a.forEach((g, i) => expect(same(g.x, b[i]!.x)).toBe(true));
    expect(a.map((g) => g.y)).not.toEqual(c.map((g) => g.y));
    // every sample keeps some of its 32 events (2 marks and 30 more; none past 3 s), some dropped
    const sums = a.flatMap((g) =>
      Array.from({ length: g.shape[1]! }, (_, s) => {
        let n = 0;
        for (let t = 0; t < 60; t++) for (let c = 0; c < 2048; c++) n += g.x[(t * g.shape[1]! + s) * 2048 + c]!;
        return n;
      }),
    );
    expect(sums.every((n) => n >= 1 && n <= 32)).toBe(true);
    expect(sums.some((n) => n < 32)).toBe(true);
  });

  it('finds the files in a DvsGesture/ folder, and with limits indexes only the recordings it needs', async () => {
    const dir = freshDir();
    writeGestureDir(join(dir, 'DvsGesture'));
    const { files, opened } = counting();
    const ds = await openDvsGesture({ dir, trainLimit: 5, testLimit: 3 }, ctx, files);
    expect(ds.describe().samples).toEqual({ train: 5, test: 3 });
    expect(opened.filter((p) => p.endsWith('.aedat')).map((p) => p.slice(dir.length + 1))).toEqual([
      'DvsGesture/user01_fluorescent.aedat',
      'DvsGesture/user24_lab.aedat',
    ]);
    const got = await collect(ds, 'train', { batchSize: 4, seed: 0 });
    expect(got.map((g) => g.y.length)).toEqual([4, 1]);
  });

  it('says where DVS Gesture is published and the layout it expects when files are missing', async () => {
    const nowhere = join(freshDir(), 'nowhere');
    const e1 = await refusal(openDvsGesture({}, { cacheDir: nowhere }));
    expect(e1.message).toContain(`${join(nowhere, 'dvs-gesture')}: no such folder`);
    expect(e1.message).toContain('does not download DVS Gesture');
    expect(e1.message).toContain('DvsGesture.tar.gz');
    expect(e1.message).toContain('research.ibm.com');
    expect(e1.message).toContain('userXX_<lighting>.aedat');
    const d = freshDir();
    expect((await refusal(openDvsGesture({ dir: d }, ctx))).message).toContain('has no trials_to_train.txt');
    writeFileSync(join(d, 'DvsGesture.tar.gz'), new Uint8Array(3));
    expect((await refusal(openDvsGesture({ dir: d }, ctx))).message).toContain('holds DvsGesture.tar.gz but not its contents: extract it there first');
    const root = freshDir();
    writeGestureDir(root);
    rmSync(join(root, 'user01_led.aedat'));
    expect((await refusal(openDvsGesture({ dir: root }, ctx))).message).toBe(
      `${join(root, 'trials_to_train.txt')}: lists user01_led.aedat, whose recording user01_led.aedat is not in ${root}: the extracted archive is incomplete; extract DvsGesture.tar.gz again`,
    );
    writeGestureDir(root);
    rmSync(join(root, 'user24_lab_labels.csv'));
    expect((await refusal(openDvsGesture({ dir: root }, ctx))).message).toContain('lists user24_lab.aedat, whose labels file user24_lab_labels.csv is not in');
    rmSync(join(root, 'trials_to_test.txt'));
    expect((await refusal(openDvsGesture({ dir: root }, ctx))).message).toContain('has trials_to_train.txt but no trials_to_test.txt');
  });

  it('refuses malformed labels and recordings at open, naming the file', async () => {
    const root = freshDir();
    writeGestureDir(root);
    writeFileSync(join(root, 'user01_led_labels.csv'), 'class,startTime_usec,endTime_usec\r\n4,100,50\r\n');
    expect((await refusal(openDvsGesture({ dir: root }, ctx))).message).toBe(
      `${join(root, 'user01_led_labels.csv')}: line 2: the segment ends (50 µs) before it starts (100 µs)`,
    );
    writeGestureDir(root);
    writeFileSync(join(root, 'user02_natural.aedat'), new TextEncoder().encode('#!AER-DAT2.0\r\n#\r\n'));
    expect((await refusal(openDvsGesture({ dir: root }, ctx))).message).toContain(`${join(root, 'user02_natural.aedat')}: is AEDAT 2.0`);
  });

  it('refuses a bad segment when a batch reads it, naming the recording and the sample', async () => {
    const root = freshDir();
    const segs = writeGestureDir(root);
    const s = segs.user24_lab![4]!;
    const { events } = standardRecording(4, 310);
    // move the ON event of segment 4 off the sensor's rows
    const i = Array.from(events.t).findIndex((t) => Math.round(t * 1e6) === s.startUs + 100_000);
    events.y[i] = 130;
    writeRecording(root, 'user24_lab', segs.user24_lab!, events, 5);
    const ds = await openDvsGesture({ dir: root }, ctx);
    const e = await refusal(collect(ds, 'test', { batchSize: 3, seed: 0 }));
    expect(e.message).toBe(
      `${join(root, 'user24_lab.aedat')} (dvs-gesture test sample 4: segment 5 of user24_lab_labels.csv, class ${s.label + 1}, ${s.startUs}–${s.endUs} µs): event 0 has y 130, outside 0..127`,
    );
  });

  it('reads only the packets of each batch: a recording of 2,000 segments, counted through a wrapped file system', async () => {
    const root = freshDir();
    const segments: GestureSegment[] = [];
    const packets: AedatPacket[] = [];
    const r = createRng(9);
    for (let s = 0; s < 2000; s++) {
      const start = 1_000_000 + s * 10_000;
      segments.push({ label: s % 11, startUs: start, endUs: start + 8_000 });
      // 20 events in two packets of 10, all inside the segment; now and then special events between segments
      const t = Array.from({ length: 20 }, (_, i) => (start + i * 300) / 1e6);
      const ev = eventsOf(
        t,
        t.map(() => Math.floor(r() * 128)),
        t.map(() => Math.floor(r() * 128)),
        t.map(() => (r() < 0.5 ? 0 : 1)),
      );
      packets.push(...polarityPackets(ev, 10));
      if (s % 50 === 0) packets.push({ eventType: 0, eventSize: 8, count: 4 });
    }
    const path = writeRecording(root, 'user05_led', segments, eventsOf([], []), 10, packets);
    writeRecording(root, 'user25_led', segments.slice(0, 3), eventsOf([], []), 10, packets.slice(0, 6));
    writeFileSync(join(root, 'trials_to_train.txt'), 'user05_led.aedat\n');
    writeFileSync(join(root, 'trials_to_test.txt'), 'user25_led.aedat\n');
    const { files, opened, reads } = counting();
    const ds = await openDvsGesture({ dir: root, bins: 4 }, ctx, files);
    // indexing: headers and first/last events only
    const aedatReads = reads.filter((x) => x.path === path);
    const bigOnes = aedatReads.filter((x) => x.length > 36);
    expect(bigOnes.map((x) => x.position)).toEqual(bigOnes.map(() => 0)); // only the header's read is larger
    expect(aedatReads.reduce((n, x) => n + x.length, 0)).toBeLessThan(packets.length * 40 + 5000);
    const f = await nodeFiles.open(path);
    const index = await indexAedat(f).finally(() => f.close());
    expect(index.packets).toBe(4000);
    opened.length = 0;
    reads.length = 0;
    const packetBytes = 28 + 10 * 8;
    let batches = 0;
    await collect(ds, 'train', { batchSize: 32, seed: 2 }, (g) => {
      const B = g.y.length;
      expect(opened).toEqual(new Array(B).fill(path));
      expect(reads).toHaveLength(B);
      for (const x of reads) {
        // exactly the two packets of one segment: their offset and both packets' bytes
        expect(x.length).toBe(2 * packetBytes);
        const k = Array.prototype.indexOf.call(index.offset, x.position);
        expect(k % 2).toBe(0);
      }
      const segOf = reads.map((x) => Array.prototype.indexOf.call(index.offset, x.position) / 2);
      expect(new Set(segOf).size).toBe(B);
      expect(segOf.map((s) => s % 11).sort()).toEqual([...g.y].sort());
      opened.length = 0;
      reads.length = 0;
      batches++;
    });
    expect(batches).toBe(Math.ceil(2000 / 32));
  });
});

describe('inspect and detect (format aedat)', () => {
  it('summarises a recording with its labels CSV segment by segment', async () => {
    const root = freshDir();
    const { segments, events } = standardRecording(7, 20, 10);
    const path = writeRecording(root, 'user03_led', segments, events, 8);
    const s = await dvsGestureEntry.inspect!(path, 'aedat');
    expect(s).toEqual({
      path,
      format: 'aedat',
      samples: 11,
      shape: [2, 128, 128],
      dtype: 'events',
      sensor: { width: 128, height: 128, polarities: 2 },
      labels: join(root, 'user03_led_labels.csv'),
      packets: Math.ceil(events.t.length / 8),
      eventsPerSample: { min: 12, median: 12, max: 12 },
      durationSec: { max: expect.any(Number) },
      classes: 11,
      labelHistogram: Object.fromEntries(GESTURE_CLASSES.map((_, l) => [String(l), 1])),
    });
    expect((s.durationSec as { max: number }).max).toBeGreaterThan(0.6);
    expect((s.durationSec as { max: number }).max).toBeLessThan(1);
  });

  it('without a labels CSV, summarises the whole recording as one sample, packet by packet', async () => {
    const root = freshDir();
    const ev = eventsOf([3, 3.5, 4.25], [1, 2, 3], [0, 0, 0], [0, 1, 0]);
    const path = join(root, 'loose.aedat');
    writeFileSync(path, encodeAedat31([{ events: eventsOf([2], [9]), valid: [false] }, ...polarityPackets(ev, 2)]));
    expect(await inspectAedat(path)).toMatchObject({
      samples: 1,
      labels: null,
      packets: 3,
      eventsPerSample: { min: 3, median: 3, max: 3 },
      durationSec: { max: 2.25 },
    });
    expect((await inspectAedat(path)).labelHistogram).toBeUndefined();
  });

  it('refuses bad files, and detects AEDAT 3.1 by its first line or its name', async () => {
    const root = freshDir();
    const v2 = join(root, 'old.aedat');
    writeFileSync(v2, new TextEncoder().encode('#!AER-DAT2.0\r\n'));
    expect(await detectAedat(v2)).toBe('aedat');
    expect((await refusal(inspectAedat(v2))).message).toContain('is AEDAT 2.0');
    expect((await refusal(inspectAedat(join(root, 'none.aedat')))).message).toContain('no such file');
    const noName = join(root, 'recording.bin');
    writeFileSync(noName, encodeAedat31(polarityPackets(eventsOf([1, 2], [3, 4]), 2)));
    expect(await dvsGestureEntry.detect!(noName)).toBe('aedat');
    expect(await inspectAedat(noName)).toMatchObject({ samples: 1, eventsPerSample: { max: 2 } });
    const other = join(root, 'other.bin');
    writeFileSync(other, new Uint8Array(10));
    expect(await detectAedat(other)).toBeUndefined();
    expect(await detectAedat(root)).toBeUndefined();
    expect(await detectAedat(join(root, 'missing'))).toBeUndefined();
    await refusal(dvsGestureEntry.inspect!(noName, 'nmnist'), 'CONFIG_INVALID');
  });
});

import { createRng, denseInputs, deriveSeed, disposeBatch, inputShape, isSpikeflowError, shuffleInPlace, stepsOf, tf } from '@spikeflow/core';
import '@spikeflow/backend-wasm';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  EventStatsBuilder,
  binCount,
  binEvents,
  binEventsSparse,
  binInto,
  channelOf,
  checkEvents,
  collateFrames,
  createEventDataset,
  denoise,
  downsample,
  dropEvents,
  eventsOf,
  mergePolarity,
  spatialShift,
  timeJitter,
  transformsFromOptions,
  type Events,
  type Sensor,
} from './index.js';

beforeAll(async () => {
  await tf.setBackend('wasm');
});

/** A random stream: `n` events over [0, span) on a sensor, times sorted. */
function randomStream(rand: () => number, n: number, span: number, s: Sensor): Events {
  const t = Array.from({ length: n }, () => rand() * span).sort((a, b) => a - b);
  return eventsOf(
    t,
    t.map(() => Math.floor(rand() * s.width)),
    t.map(() => Math.floor(rand() * s.height)),
    t.map(() => Math.floor(rand() * s.polarities)),
  );
}

const sum = (a: Float32Array) => a.reduce((s, v) => s + v, 0);

describe('binning', () => {
  it('conserves events: frames sum to the events inside maxTime (property, 300 random streams)', () => {
    const rand = createRng(7);
    for (let trial = 0; trial < 300; trial++) {
      const s: Sensor = { width: 1 + Math.floor(rand() * 40), height: 1 + Math.floor(rand() * 3), polarities: 1 + Math.floor(rand() * 2) };
      const span = 0.01 + rand() * 2;
      const ev = randomStream(rand, Math.floor(rand() * 400), span, s);
      const maxTime = rand() < 0.3 ? undefined : 0.005 + rand() * 2;
      const by = rand() < 0.5 ? 'time' : 'count';
      const bins = 1 + Math.floor(rand() * 50);
      const inside = Array.from(ev.t).filter((t) => t < (maxTime ?? Infinity)).length;
      const frames = binEvents(ev, s, { bins, by, ...(maxTime !== undefined ? { maxTime } : {}) });
      expect(frames.length).toBe(bins * s.width * s.height * s.polarities);
      expect(sum(frames)).toBe(inside);
      if (maxTime !== undefined) {
        const w = binEvents(ev, s, { window: maxTime / bins, maxTime });
        expect(sum(w)).toBe(inside);
      }
    }
  });

  it('puts an event in window ⌊t·T / maxTime⌋ on its channel, and leaves later windows empty', () => {
    const s: Sensor = { width: 4, height: 1, polarities: 1 };
    const f = binEvents(eventsOf([0, 0.05, 0.25, 0.26, 0.99, 1.0, 1.5], [0, 1, 1, 1, 3, 2, 0]), s, { bins: 4, maxTime: 1 });
    // window 0: ch 0, ch 1; window 1: ch 1 twice; window 3: ch 3; t = 1.0 and 1.5 are cropped
    expect(Array.from(f)).toEqual([1, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    const g = binEvents(eventsOf([0, 0.1], [0, 0]), s, { bins: 3, maxTime: 3 });
    expect(Array.from(g.subarray(4))).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('by count, splits the events into runs of nearly equal size', () => {
    const s: Sensor = { width: 1, height: 1, polarities: 1 };
    const f = binEvents(eventsOf([0, 0.001, 0.002, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 0]), s, { bins: 3, by: 'count' });
    // event k of 7 into bin ⌊3k / 7⌋: 0, 0, 0, 1, 1, 2, 2
    expect(Array.from(f)).toEqual([3, 2, 2]);
  });

  it('without maxTime, spans the sample: the last event lands in the last frame', () => {
    const s: Sensor = { width: 2, height: 1, polarities: 1 };
    const f = binEvents(eventsOf([0, 1, 2], [0, 1, 1]), s, { bins: 2 });
    expect(Array.from(f)).toEqual([1, 0, 0, 2]);
  });

  it('spike values clip counts at 1; channels are row, then column, then polarity (a channels-last [H, W, P] frame)', () => {
    const s: Sensor = { width: 3, height: 2, polarities: 2 };
    expect(channelOf(s, 2, 1, 1)).toBe(11);
    expect(channelOf(s, 1, 0, 1)).toBe(3);
    expect(channelOf(s, 0, 1, 0)).toBe(6);
    const f = binEvents(eventsOf([0, 0.1, 0.2], [2, 2, 0], [1, 1, 0], [1, 1, 0]), s, { bins: 1, values: 'spike' });
    expect(f[11]).toBe(1);
    expect(f[0]).toBe(1);
    expect(sum(f)).toBe(2);
  });

  it('refuses unclear options', () => {
    const bad = [
      {},
      { bins: 0 },
      { bins: 2.5 },
      { window: 0.1 },
      { window: 0.1, maxTime: 1, bins: 3 },
      { window: 0.1, maxTime: 1, by: 'count' as const },
      { bins: 3, maxTime: -1 },
    ];
    for (const o of bad) expect(() => binCount(o)).toThrow(/bins|window|maxTime/);
    expect(binCount({ window: 0.01, maxTime: 1.4 })).toBe(140);
  });

  it('a window of frames of a sample binned sparsely equals those frames of the dense binning (property, 200 streams)', () => {
    const s: Sensor = { width: 4, height: 2, polarities: 2 };
    const C = 16;
    const rand = createRng(31);
    const options = [
      { bins: 7, maxTime: 0.8 },
      { bins: 5, by: 'count' as const },
      { bins: 6 },
      { window: 0.15, maxTime: 1 },
      { bins: 4, maxTime: 1, values: 'spike' as const },
    ];
    for (let k = 0; k < 200; k++) {
      const o = options[k % options.length]!;
      const ev = randomStream(rand, Math.floor(rand() * 40), 1.2, s);
      const T = binCount(o);
      const B = 3;
      const b = k % B;
      const dense = new Float32Array(T * B * C);
      binInto(ev, s, o, dense, b, B);
      const sparse = binEventsSparse(ev, s, o);
      expect(sparse.steps).toBe(T);
      const from = Math.floor(rand() * T);
      const to = from + 1 + Math.floor(rand() * (T - from));
      const w = new Float32Array((to - from) * B * C);
      sparse.addTo(w, b, B, from, to);
      expect(Array.from(w), `${JSON.stringify(o)} [${from}, ${to})`).toEqual(Array.from(dense.subarray(from * B * C, to * B * C)));
    }
    const sparse = binEventsSparse(randomStream(rand, 5, 1, s), s, { bins: 3 });
    expect(() => sparse.addTo(new Float32Array(16), 0, 1, 2, 4)).toThrow(/frames \[2, 4\) of a sample of 3 frames must satisfy 0 <= from < to <= 3/);
    expect(() => sparse.addTo(new Float32Array(5), 0, 1, 0, 1)).toThrow(/holds 5 values, not \(to − from\)·B·C = 1·1·16/);
  });

  it('bins into one sample of a time-major batch', () => {
    const s: Sensor = { width: 2, height: 1, polarities: 1 };
    const out = new Float32Array(2 * 3 * 2);
    binInto(eventsOf([0, 0.6], [1, 0]), s, { bins: 2, maxTime: 1 }, out, 1, 3);
    // [T=2, B=3, C=2]: sample 1, step 0, ch 1; step 1, ch 0
    expect(Array.from(out)).toEqual([0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0]);
  });

  it('collates samples of different lengths, padding at the end', () => {
    const c = collateFrames(
      [
        { frames: Float32Array.from([1, 2, 3, 4]), steps: 2 },
        { frames: Float32Array.from([5, 6]), steps: 1 },
      ],
      2,
    );
    expect(c.steps).toBe(2);
    expect(Array.from(c.lengths)).toEqual([2, 1]);
    expect(Array.from(c.inputs)).toEqual([1, 2, 5, 6, 3, 4, 0, 0]);
    expect(() => collateFrames([{ frames: new Float32Array(3), steps: 2 }], 2)).toThrow(/samples\[0\]/);
  });
});

describe('transforms', () => {
  const s: Sensor = { width: 10, height: 10, polarities: 2 };

  it('denoise keeps events with a recent neighbour and drops isolated ones', () => {
    const ev = eventsOf([0, 0.001, 0.002, 0.5, 0.5005], [5, 6, 0, 9, 5], [5, 5, 0, 9, 5], [0, 1, 0, 0, 0]);
    const out = denoise(0.01)({ events: ev, sensor: s }, () => 0).events;
    // (6,5) has (5,5) 1 ms before; (5,5) at 0.5005 has no neighbour since 0.001; the first and isolated ones go
    expect(Array.from(out.t)).toEqual([0.001]);
  });

  it('downsample and polarity merge change the sensor and the coordinates', () => {
    const ev = eventsOf([0, 1], [9, 3], [9, 0], [1, 0]);
    const d = downsample(4)({ events: ev, sensor: s }, () => 0);
    expect(d.sensor).toEqual({ width: 3, height: 3, polarities: 2 });
    expect(Array.from(d.events.x)).toEqual([2, 0]);
    const m = mergePolarity()(d, () => 0);
    expect(m.sensor.polarities).toBe(1);
    expect(Array.from(m.events.p)).toEqual([0, 0]);
  });

  it('random transforms are deterministic under a seed, keep times sorted and stay on the sensor', () => {
    const ev = randomStream(createRng(3), 500, 1, s);
    for (const t of [timeJitter(0.05), spatialShift(3), dropEvents(0.3)]) {
      const a = t({ events: ev, sensor: s }, createRng(11)).events;
      const b = t({ events: ev, sensor: s }, createRng(11)).events;
      expect(Array.from(a.t)).toEqual(Array.from(b.t));
      expect(Array.from(a.x)).toEqual(Array.from(b.x));
      expect(() => checkEvents(a, s, 'out')).not.toThrow();
    }
    const dropped = dropEvents(0.3)({ events: ev, sensor: s }, createRng(1)).events.t.length;
    expect(dropped).toBeGreaterThan(290);
    expect(dropped).toBeLessThan(410);
    expect(dropEvents(0)({ events: ev, sensor: s }, createRng(1)).events.t.length).toBe(500);
  });

  it('builds the configured pipeline: every-sample transforms, and augmentation only when asked', () => {
    expect(transformsFromOptions({}).augment).toBeUndefined();
    const { transform, augment } = transformsFromOptions({ maxTime: 0.5, downsample: 2, polarity: 'merge', spatialShift: 1 });
    const out = transform({ events: eventsOf([0.1, 0.7], [9, 9], [9, 9], [1, 1]), sensor: s }, () => 0);
    expect(out.sensor).toEqual({ width: 5, height: 5, polarities: 1 });
    expect(Array.from(out.events.t)).toEqual([0.1]);
    expect(augment).toBeDefined();
  });
});

describe('checkEvents', () => {
  const s: Sensor = { width: 4, height: 1, polarities: 1 };
  it('names the event that breaks the contract', () => {
    const cases: [Events, RegExp][] = [
      [eventsOf([0, -1], [0, 0]), /event 1 has a negative time/],
      [eventsOf([0.5, 0.2], [0, 0]), /event 1 is earlier \(0.2\) than the event before it \(0.5\)/],
      [eventsOf([0, 1], [0, 4]), /event 1 has channel 4, outside 0..3/],
      [eventsOf([NaN], [0]), /event 0 has time NaN/],
    ];
    for (const [ev, msg] of cases) {
      let err: unknown;
      try {
        checkEvents(ev, s, 'f.h5 sample 3');
      } catch (e) {
        err = e;
      }
      expect(isSpikeflowError(err, 'DATA_INVALID')).toBe(true);
      expect((err as Error).message).toMatch(/^f\.h5 sample 3: /);
      expect((err as Error).message).toMatch(msg);
    }
  });
});

describe('createEventDataset', () => {
  const sensor: Sensor = { width: 6, height: 1, polarities: 1 };
  const samples = Array.from({ length: 11 }, (_, i) => ({ events: randomStream(createRng(i + 1), 20 + i, 1, sensor), label: i % 3 }));
  let reads = 0;
  const source = {
    count: samples.length,
    read: (i: number) => {
      reads++;
      return samples[i]!;
    },
  };
  const ds = createEventDataset({
    name: 'toy',
    sensor,
    classes: 3,
    splits: { train: source, test: source },
    binning: { bins: 5, maxTime: 1 },
    augment: dropEvents(0.5),
  });

  const collect = async (split: string, o: Parameters<typeof ds.batches>[1]) => {
    const out: { x: number[]; y: number[]; shape: number[] }[] = [];
    for await (const b of ds.batches(split, o)) {
      const x = denseInputs(b.inputs);
      out.push({ x: Array.from(x.dataSync()), y: Array.from(b.targets.dataSync()), shape: inputShape(b.inputs) });
      x.dispose();
      disposeBatch(b);
    }
    return out;
  };

  it('describes the binned samples and yields time-major batches with labels', async () => {
    expect(ds.describe()).toEqual({ steps: 5, channels: 6, outputs: 3, target: 'labels', samples: { train: 11, test: 11 } });
    const test = await collect('test', { batchSize: 4, seed: 0 });
    expect(test.map((b) => b.shape)).toEqual([
      [5, 4, 6],
      [5, 4, 6],
      [5, 3, 6],
    ]);
    expect(test.flatMap((b) => b.y)).toEqual(samples.map((s) => s.label));
    // test samples are not augmented: every event is binned
    expect(test.reduce((n, b) => n + b.x.reduce((a, v) => a + v, 0), 0)).toBe(samples.reduce((n, s) => n + s.events.t.length, 0));
  });

  it('a batch is a step source whose windows are the dense batch it was before it streamed (augmented samples included)', async () => {
    const augment = dropEvents(0.5);
    let i = 0;
    for await (const batch of ds.batches('train', { batchSize: 4, seed: 8 })) {
      const B = inputShape(batch.inputs)[1]!;
      // The dense batch as the dataset wrote it before: each sample augmented, then binned into a [T, B, C] array.
      const order = shuffleInPlace(
        Array.from({ length: 11 }, (_, j) => j),
        createRng(deriveSeed(8, 'order')),
      );
      const dense = new Float32Array(5 * B * 6);
      for (let b = 0; b < B; b++) {
        const at = i * 4 + b;
        const s = augment({ events: samples[order[at]!]!.events, sensor }, createRng(deriveSeed(8, 'augment', 'train', at)));
        binInto(s.events, s.sensor, { bins: 5, maxTime: 1 }, dense, b, B);
      }
      const xs = stepsOf(batch.inputs);
      for (const [from, to] of [
        [0, 5],
        [1, 3],
        [4, 5],
        [1, 3],
      ] as const) {
        const w = xs.window(from, to);
        expect(Array.from(w.dataSync()), `batch ${i} [${from}, ${to})`).toEqual(Array.from(dense.subarray(from * B * 6, to * B * 6)));
        w.dispose();
      }
      disposeBatch(batch);
      i++;
    }
    expect(i).toBe(3);
  });

  it('is deterministic under a seed, and a pass resumed with skip yields the later batches exactly', async () => {
    const a = await collect('train', { batchSize: 4, seed: 5 });
    const b = await collect('train', { batchSize: 4, seed: 5 });
    const c = await collect('train', { batchSize: 4, seed: 6 });
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
    expect(await collect('train', { batchSize: 4, seed: 5, skip: 2 })).toEqual(a.slice(2));
  });

  it('reads each sample once per pass, batch by batch', async () => {
    reads = 0;
    let seen = 0;
    for await (const b of ds.batches('test', { batchSize: 4, seed: 0 })) {
      seen += b.targets.shape[0]!;
      expect(reads).toBe(seen);
      disposeBatch(b);
    }
  });

  it('refuses an unknown split and a bad batch size', async () => {
    expect(() => ds.batchCount('valid', { batchSize: 2 })).toThrow(/toy has splits 'train', 'test', not 'valid'/);
    expect(() => ds.batchCount('train', { batchSize: 0 })).toThrow(/batchSize/);
  });
});

describe('EventStatsBuilder', () => {
  it('reports min/median/max events, the longest duration and the labels', () => {
    const s = new EventStatsBuilder();
    s.add(5, 0.5, 1);
    s.add(1, 1.2, 0);
    s.add(9, 0.1, 1);
    s.add(3, 0.3, 1);
    expect(s.build()).toEqual({
      samples: 4,
      classes: 2,
      eventsPerSample: { min: 1, median: 4, max: 9 },
      durationSec: { max: 1.2 },
      labelHistogram: { '0': 1, '1': 3 },
    });
    expect(new EventStatsBuilder().build(20).eventsPerSample).toEqual({ min: 0, median: 0, max: 0 });
  });
});

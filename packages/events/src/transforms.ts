import { configError } from '@spikeflow/core';
import { pick, selectEvents, type Events, type Sensor } from './events.js';

/** A sample's events and the sensor they now belong to (downsampling and polarity merging change it). */
export interface EventSample {
  readonly events: Events;
  readonly sensor: Sensor;
}

/**
 * A transform of one sample's events. `rand` is the sample's own stream of uniform numbers in
 * [0, 1) (seeded from the pass seed and the sample's position), so a transform is deterministic
 * under a seed; transforms without randomness ignore it.
 */
export type EventTransform = (s: EventSample, rand: () => number) => EventSample;

const positive = (name: string, v: number) => {
  if (!(v > 0) || !Number.isFinite(v)) throw configError(name, `must be a positive number, got ${v}`);
};
const nonNegative = (name: string, v: number) => {
  if (!(v >= 0) || !Number.isFinite(v)) throw configError(name, `must be a non-negative number, got ${v}`);
};

/** Keeps the events with `0 ≤ t < maxTime` (seconds). */
export function cropTime(maxTime: number): EventTransform {
  positive('maxTime', maxTime);
  return ({ events, sensor }) => ({ events: selectEvents(events, (i) => events.t[i]! >= 0 && events.t[i]! < maxTime), sensor });
}

/**
 * Spatial downsampling by whole factors: pixel (x, y) becomes (⌊x / fx⌋, ⌊y / fy⌋) on a sensor of
 * ⌈width / fx⌉ × ⌈height / fy⌉ (for SHD's 700 channels, `fx` merges neighbouring channels).
 */
export function downsample(fx: number, fy = fx): EventTransform {
  for (const [n, f] of [
    ['downsample.x', fx],
    ['downsample.y', fy],
  ] as const) {
    if (!Number.isInteger(f) || f < 1) throw configError(n, `must be a whole factor ≥ 1, got ${f}`);
  }
  return ({ events, sensor }) => ({
    events: { t: events.t, x: events.x.map((x) => Math.floor(x / fx)), y: events.y.map((y) => Math.floor(y / fy)), p: events.p },
    sensor: { width: Math.ceil(sensor.width / fx), height: Math.ceil(sensor.height / fy), polarities: sensor.polarities },
  });
}

/** ON and OFF events become one polarity (half the channels). */
export function mergePolarity(): EventTransform {
  return ({ events, sensor }) => ({ events: { ...events, p: new Int32Array(events.t.length) }, sensor: { ...sensor, polarities: 1 } });
}

/**
 * Drops isolated events (sensor noise): an event is kept when one of the pixels around it (the 8
 * neighbours; channels x ± 1 on a 1-D sensor), of either polarity, had an event in the
 * `filterTime` seconds up to it. Every event, kept or not, counts as its pixel's latest.
 */
export function denoise(filterTime: number): EventTransform {
  positive('denoise.filterTime', filterTime);
  return ({ events, sensor }) => {
    const { width: W, height: H } = sensor;
    const last = new Float64Array(W * H).fill(-Infinity);
    const keep = new Uint8Array(events.t.length);
    for (let i = 0; i < events.t.length; i++) {
      const t = events.t[i]!;
      const x = events.x[i]!;
      const y = events.y[i]!;
      let near = false;
      for (let dy = -1; dy <= 1 && !near; dy++) {
        const yy = y + dy;
        if (yy < 0 || yy >= H) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const xx = x + dx;
          if ((dx === 0 && dy === 0) || xx < 0 || xx >= W) continue;
          if (last[yy * W + xx]! >= t - filterTime) {
            near = true;
            break;
          }
        }
      }
      keep[i] = near ? 1 : 0;
      last[y * W + x] = t;
    }
    return { events: selectEvents(events, (i) => keep[i] === 1), sensor };
  };
}

/**
 * Adds Gaussian noise of standard deviation `std` seconds to every time, clips below at 0 and
 * sorts the events by their new times (ties keep their order).
 */
export function timeJitter(std: number): EventTransform {
  nonNegative('timeJitter.std', std);
  return ({ events, sensor }, rand) => {
    const n = events.t.length;
    const t = new Float64Array(n);
    for (let i = 0; i < n; i++) t[i] = Math.max(0, events.t[i]! + std * gaussian(rand));
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => t[a]! - t[b]! || a - b);
    const moved = pick(events, order);
    return { events: { ...moved, t: Float64Array.from(order, (i) => t[i]!) }, sensor };
  };
}

/**
 * Moves the whole sample by whole pixels (dx, dy), each drawn uniformly from [−maxShift, maxShift]
 * (dy is 0 on a 1-D sensor); events moved off the sensor are dropped.
 */
export function spatialShift(maxShift: number): EventTransform {
  if (!Number.isInteger(maxShift) || maxShift < 0) throw configError('spatialShift.maxShift', `must be a whole number ≥ 0, got ${maxShift}`);
  return ({ events, sensor }, rand) => {
    const draw = () => Math.floor(rand() * (2 * maxShift + 1)) - maxShift;
    const dx = draw();
    const dy = sensor.height > 1 ? draw() : 0;
    const x = events.x.map((v) => v + dx);
    const y = events.y.map((v) => v + dy);
    const moved = { ...events, x, y };
    return { events: selectEvents(moved, (i) => x[i]! >= 0 && x[i]! < sensor.width && y[i]! >= 0 && y[i]! < sensor.height), sensor };
  };
}

/** Drops each event with probability `p`. */
export function dropEvents(p: number): EventTransform {
  if (!(p >= 0 && p <= 1)) throw configError('dropEvents.p', `must be a probability in [0, 1], got ${p}`);
  return ({ events, sensor }, rand) => ({ events: selectEvents(events, () => rand() >= p), sensor });
}

/** The transforms in order, each drawing from the same stream. */
export function compose(...ts: readonly EventTransform[]): EventTransform {
  return (s, rand) => ts.reduce((acc, t) => t(acc, rand), s);
}

/** A standard normal draw (Box–Muller) from uniform draws. */
function gaussian(rand: () => number): number {
  const u = Math.max(rand(), Number.MIN_VALUE);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
}

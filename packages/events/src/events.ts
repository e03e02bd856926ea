import { SpikeflowError } from '@spikeflow/core';

/**
 * The events of one sample in time order, as parallel arrays (struct of arrays): event i happened
 * at `t[i]` seconds at pixel (`x[i]`, `y[i]`) with polarity `p[i]`. A one-dimensional sensor (a
 * cochlea's 700 channels in SHD) uses `x` for the channel and zeros for `y` and `p`.
 */
export interface Events {
  /** Times in seconds, non-decreasing. */
  readonly t: Float64Array;
  readonly x: Int32Array;
  readonly y: Int32Array;
  readonly p: Int32Array;
}

/** What produced the events: `width × height` pixels (channels × 1 for a 1-D sensor) and its polarities. */
export interface Sensor {
  readonly width: number;
  readonly height: number;
  /** 1 (no polarity, or merged) or 2 (OFF = 0, ON = 1). */
  readonly polarities: number;
}

/** Events from their arrays; `y` and `p` default to zeros. Throws where the lengths differ. */
export function eventsOf(t: ArrayLike<number>, x: ArrayLike<number>, y?: ArrayLike<number>, p?: ArrayLike<number>): Events {
  const n = t.length;
  for (const [name, a] of [
    ['x', x],
    ['y', y],
    ['p', p],
  ] as const) {
    if (a && a.length !== n) throw new SpikeflowError('SHAPE_MISMATCH', `events: ${n} times but ${a.length} values of ${name}`);
  }
  return {
    t: Float64Array.from(t),
    x: Int32Array.from(x),
    y: y ? Int32Array.from(y) : new Int32Array(n),
    p: p ? Int32Array.from(p) : new Int32Array(n),
  };
}

/** No events. */
export function noEvents(): Events {
  return { t: new Float64Array(0), x: new Int32Array(0), y: new Int32Array(0), p: new Int32Array(0) };
}

/** The events at the positions where `keep` is true, in order. */
export function selectEvents(ev: Events, keep: (i: number) => boolean): Events {
  const idx: number[] = [];
  for (let i = 0; i < ev.t.length; i++) if (keep(i)) idx.push(i);
  return pick(ev, idx);
}

/** The events at `idx`, in that order. */
export function pick(ev: Events, idx: readonly number[]): Events {
  const n = idx.length;
  const out = { t: new Float64Array(n), x: new Int32Array(n), y: new Int32Array(n), p: new Int32Array(n) };
  for (let k = 0; k < n; k++) {
    const i = idx[k]!;
    out.t[k] = ev.t[i]!;
    out.x[k] = ev.x[i]!;
    out.y[k] = ev.y[i]!;
    out.p[k] = ev.p[i]!;
  }
  return out;
}

/** Input channels of frames binned from this sensor: one per pixel and polarity. */
export function channelsOf(s: Sensor): number {
  return s.width * s.height * s.polarities;
}

/**
 * The channel of pixel (x, y) with polarity p: rows, then columns, then polarity — a frame is the
 * channels-last image `[height, width, polarities]` in row-major order, what conv layers read.
 */
export function channelOf(s: Sensor, x: number, y: number, p: number): number {
  return (y * s.width + x) * s.polarities + p;
}

/** Time from the first event to the last, seconds (0 for fewer than two events). */
export function durationOf(ev: Events): number {
  const n = ev.t.length;
  return n > 1 ? ev.t[n - 1]! - ev.t[0]! : 0;
}

/**
 * Throws a `DATA_INVALID` error naming `where` (a file and sample) at the first event that breaks
 * the stream's contract: a time that is not finite, negative or earlier than the one before, or
 * a coordinate or polarity outside the sensor.
 */
export function checkEvents(ev: Events, sensor: Sensor, where: string): void {
  let prev = 0;
  for (let i = 0; i < ev.t.length; i++) {
    const t = ev.t[i]!;
    const bad = (what: string) => new SpikeflowError('DATA_INVALID', `${where}: event ${i} ${what}`, { event: i });
    if (!Number.isFinite(t)) throw bad(`has time ${t}`);
    if (t < 0) throw bad(`has a negative time (${t})`);
    if (t < prev) throw bad(`is earlier (${t}) than the event before it (${prev}): times must not decrease`);
    prev = t;
    const x = ev.x[i]!;
    const y = ev.y[i]!;
    const p = ev.p[i]!;
    if (x < 0 || x >= sensor.width) throw bad(`has ${sensor.height === 1 ? 'channel' : 'x'} ${x}, outside 0..${sensor.width - 1}`);
    if (y < 0 || y >= sensor.height) throw bad(`has y ${y}, outside 0..${sensor.height - 1}`);
    if (p < 0 || p >= sensor.polarities) throw bad(`has polarity ${p}, outside 0..${sensor.polarities - 1}`);
  }
}

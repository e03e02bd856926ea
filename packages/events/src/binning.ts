import { configError } from '@spikeflow/core';
import { channelOf, channelsOf, type Events, type Sensor } from './events.js';

/**
 * How events become frames (steps of input). The policy, in full:
 *
 * - An event is *inside* when `0 ≤ t < maxTime`; without `maxTime`, every event with `t ≥ 0`.
 *   Events outside are cropped (not binned).
 * - `by: 'time'` (default): `bins` windows of `maxTime / bins` seconds each; an inside event
 *   falls into window ⌊t · bins / maxTime⌋. A sample shorter than `maxTime` leaves its last
 *   windows empty (zero padding). Without `maxTime`, the windows split the sample's own span
 *   `[0, last event time]` (the last event in the last window), so window length varies by sample.
 * - `by: 'count'`: the inside events in time order are split into `bins` runs of (nearly) equal
 *   size: event k of n falls into bin ⌊k · bins / n⌋.
 * - Alternatively `window` (seconds) with `maxTime`: `bins` = ⌈maxTime / window⌉ windows of that
 *   length (the last one cut at `maxTime`).
 * - Each frame holds, per channel (pixel × polarity, channels last, see {@link channelOf}), the number of inside
 *   events (`values: 'count'`, default) or 1 where there was at least one (`values: 'spike'`).
 *
 * With `values: 'count'`, a sample's frames sum to its number of inside events.
 */
export interface BinOptions {
  /** Frames per sample (T). Either this or `window` with `maxTime`. */
  readonly bins?: number;
  /** Window length in seconds (with `maxTime`; `by: 'time'` only). */
  readonly window?: number;
  readonly by?: 'time' | 'count';
  /** Events at or after this time (seconds) are cropped. */
  readonly maxTime?: number;
  readonly values?: 'count' | 'spike';
}

/** The number of frames `o` gives every sample. */
export function binCount(o: BinOptions): number {
  if (o.window !== undefined) {
    if (o.bins !== undefined) throw configError('bins', 'give either bins or window, not both');
    if (!(o.window > 0)) throw configError('window', `must be a positive number of seconds, got ${o.window}`);
    if (o.maxTime === undefined) throw configError('window', 'needs maxTime (the number of windows is ⌈maxTime / window⌉)');
    if ((o.by ?? 'time') !== 'time') throw configError('window', "binning by window length is binning by time (by: 'time')");
    if (!(o.maxTime > 0)) throw configError('maxTime', `must be a positive number of seconds, got ${o.maxTime}`);
    return Math.ceil(o.maxTime / o.window - 1e-9);
  }
  if (o.bins === undefined || !Number.isInteger(o.bins) || o.bins < 1) throw configError('bins', `must be a whole number ≥ 1, got ${o.bins}`);
  if (o.maxTime !== undefined && !(o.maxTime > 0)) throw configError('maxTime', `must be a positive number of seconds, got ${o.maxTime}`);
  if (o.by !== undefined && o.by !== 'time' && o.by !== 'count') throw configError('by', `must be 'time' or 'count', got '${String(o.by)}'`);
  if (o.values !== undefined && o.values !== 'count' && o.values !== 'spike')
    throw configError('values', `must be 'count' or 'spike', got '${String(o.values)}'`);
  return o.bins;
}

/**
 * One sample's events binned (see {@link BinOptions}), kept compact: the channel of every inside
 * event, grouped by frame. A batch keeps these and writes the frames of a window of steps when it
 * is asked for them ({@link BinnedEvents.addTo}); memory is that of the events, not of T frames.
 */
export interface BinnedEvents {
  /** Frames T (from {@link binCount}). */
  readonly steps: number;
  /** Channels per frame. */
  readonly channels: number;
  /** Inside events (the binned ones). */
  readonly inside: number;
  /**
   * Adds frames `[from, to)` into sample `b` of a time-major window `out` (`[to − from, B, channels]`):
   * per channel the count of its events in the frame, or 1 where there was one (`values: 'spike'`).
   */
  addTo(out: Float32Array, b: number, B: number, from: number, to: number): void;
}

/** Bins one sample's events: {@link BinnedEvents} of `ev` under `o` on `sensor`. */
export function binEventsSparse(ev: Events, sensor: Sensor, o: BinOptions): BinnedEvents {
  const T = binCount(o);
  const C = channelsOf(sensor);
  const maxTime = o.maxTime ?? Infinity;
  const n = ev.t.length;
  let inside = 0;
  for (let i = 0; i < n; i++) if (ev.t[i]! >= 0 && ev.t[i]! < maxTime) inside++;
  const byCount = (o.by ?? 'time') === 'count';
  // Window of an inside event, by time: over [0, maxTime), or over the sample's own span.
  let span = o.maxTime;
  if (span === undefined) {
    span = 0;
    for (let i = 0; i < n; i++) if (ev.t[i]! >= 0) span = Math.max(span, ev.t[i]!);
  }
  const perWindow = o.window ?? (o.maxTime !== undefined ? o.maxTime / T : undefined);
  const spike = o.values === 'spike';
  // Frame and channel of every inside event, then the channels grouped by frame (a counting sort).
  const frame = new Int32Array(inside);
  const channel = new Int32Array(inside);
  let k = 0;
  for (let i = 0; i < n; i++) {
    const t = ev.t[i]!;
    if (!(t >= 0 && t < maxTime)) continue;
    let bin: number;
    if (byCount) bin = Math.floor((k * T) / inside);
    else if (perWindow !== undefined) bin = Math.floor(t / perWindow);
    else bin = span > 0 ? Math.floor((t / span) * T) : 0;
    frame[k] = Math.min(T - 1, bin);
    channel[k] = channelOf(sensor, ev.x[i]!, ev.y[i]!, ev.p[i]!);
    k++;
  }
  const offsets = new Int32Array(T + 1);
  for (let j = 0; j < inside; j++) offsets[frame[j]! + 1]!++;
  for (let t = 0; t < T; t++) offsets[t + 1]! += offsets[t]!;
  const byFrame = new Int32Array(inside);
  const next = offsets.slice(0, T);
  for (let j = 0; j < inside; j++) byFrame[next[frame[j]!]!++] = channel[j]!;
  return {
    steps: T,
    channels: C,
    inside,
    addTo(out, b, B, from, to) {
      if (!(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from < to && to <= T)) {
        throw configError('window', `frames [${from}, ${to}) of a sample of ${T} frames must satisfy 0 <= from < to <= ${T}`);
      }
      if (out.length !== (to - from) * B * C) throw configError('out', `holds ${out.length} values, not (to − from)·B·C = ${to - from}·${B}·${C}`);
      for (let t = from; t < to; t++) {
        const row = ((t - from) * B + b) * C;
        for (let j = offsets[t]!; j < offsets[t + 1]!; j++) {
          const at = row + byFrame[j]!;
          out[at] = spike ? 1 : out[at]! + 1;
        }
      }
    },
  };
}

/**
 * Bins `ev` into sample `b` of a time-major batch `out [T, B, channels]` (T from {@link binCount}),
 * adding to what is there; returns the number of events binned (the inside ones).
 */
export function binInto(ev: Events, sensor: Sensor, o: BinOptions, out: Float32Array, b: number, B: number): number {
  const T = binCount(o);
  const C = channelsOf(sensor);
  if (out.length !== T * B * C) throw configError('out', `holds ${out.length} values, not T·B·C = ${T}·${B}·${C}`);
  const binned = binEventsSparse(ev, sensor, o);
  binned.addTo(out, b, B, 0, T);
  return binned.inside;
}

/** One sample's frames `[T, channels]`; see {@link BinOptions}. */
export function binEvents(ev: Events, sensor: Sensor, o: BinOptions): Float32Array {
  const out = new Float32Array(binCount(o) * channelsOf(sensor));
  binInto(ev, sensor, o, out, 0, 1);
  return out;
}

/** Frames of one sample, `[steps, channels]` row-major. */
export interface Frames {
  readonly frames: Float32Array;
  readonly steps: number;
}

/**
 * Batches samples of different lengths into one time-major array `[T, B, channels]`, T the
 * longest, each sample's missing steps at the end left zero; `lengths[b]` is sample b's own.
 */
export function collateFrames(samples: readonly Frames[], channels: number): { inputs: Float32Array; steps: number; lengths: Int32Array } {
  const B = samples.length;
  const steps = samples.reduce((m, s) => Math.max(m, s.steps), 0);
  const inputs = new Float32Array(steps * B * channels);
  samples.forEach((s, b) => {
    if (s.frames.length !== s.steps * channels)
      throw configError(`samples[${b}]`, `holds ${s.frames.length} values, not steps·channels = ${s.steps}·${channels}`);
    for (let t = 0; t < s.steps; t++) inputs.set(s.frames.subarray(t * channels, (t + 1) * channels), (t * B + b) * channels);
  });
  return { inputs, steps, lengths: Int32Array.from(samples, (s) => s.steps) };
}

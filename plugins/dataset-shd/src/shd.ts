import { SpikeflowError } from '@spikeflow/core';
import { EventStatsBuilder, checkEvents, type EventRecord, type Events, type EventSource, type EventStats, type Sensor } from '@spikeflow/events';
import { Hdf5Reader } from './hdf5.js';

/** SHD and SSC spikes come from 700 channels of an artificial cochlea (Cramer et al. 2020). */
export const SHD_CHANNELS = 700;

export const shdSensor = (channels = SHD_CHANNELS): Sensor => ({ width: channels, height: 1, polarities: 1 });

const TIMES = 'spikes/times';
const UNITS = 'spikes/units';
const LABELS = 'labels';

/** What an opened SHD-layout file reports about itself. */
export interface ShdFileInfo {
  readonly path: string;
  /** Samples in the file (its own count: releases differ). */
  readonly samples: number;
  /** The spike times' element type. */
  readonly timeType: 'float16' | 'float32' | 'float64';
  /** Datasets under `extra/` (speaker, keys, meta_info, ...). */
  readonly extra: readonly string[];
}

/**
 * A file in the layout of the published SHD/SSC HDF5 files: `spikes/times` (per sample a
 * variable-length array of spike times in seconds, float16, float32 or float64), `spikes/units`
 * (per sample the channel of each spike, 0..channels−1), `labels` (one integer per sample) and
 * optional `extra/...`. Samples are read one at a time from disk.
 *
 * Spike times that are NaN or ±Infinity are dropped with the unit they belong to; `log` hears once
 * per sample how many (and `inspect` counts them all). Anything else wrong with a sample (units
 * and times of different lengths, negative or decreasing times, a channel out of range) is a
 * `DATA_INVALID` error naming the file and the sample.
 */
export class ShdFile implements EventSource, ShdFileInfo {
  readonly path: string;
  readonly samples: number;
  readonly timeType: 'float16' | 'float32' | 'float64';
  readonly extra: readonly string[];
  readonly labels: Int32Array;
  readonly sensor: Sensor;
  /** Spike times dropped so far for being NaN or infinite. */
  nonFinite = 0;
  readonly #h5: Hdf5Reader;
  readonly #log: ((message: string) => void) | undefined;
  readonly #reported = new Set<number>();
  readonly #limit: number;

  private constructor(h5: Hdf5Reader, labels: Int32Array, timeType: ShdFile['timeType'], o: ShdOpenOptions) {
    this.#h5 = h5;
    this.path = h5.path;
    this.labels = labels;
    this.#limit = Math.min(labels.length, o.limit ?? Infinity);
    this.samples = labels.length;
    this.timeType = timeType;
    this.extra = h5.keys('extra');
    this.sensor = shdSensor(o.channels);
    this.#log = o.log;
  }

  /** Opens `path` and checks its layout (datasets present, one label per sample, numeric types). */
  static async open(path: string, o: ShdOpenOptions = {}): Promise<ShdFile> {
    const h5 = await Hdf5Reader.open(path);
    try {
      for (const name of [TIMES, UNITS, LABELS]) {
        if (!h5.has(name)) {
          throw new SpikeflowError(
            'DATA_INVALID',
            `${path}: has no dataset '${name}', so it is not in the SHD/SSC layout (spikes/times, spikes/units, labels)`,
            { path },
          );
        }
      }
      const n = h5.length(TIMES);
      if (h5.length(UNITS) !== n)
        throw new SpikeflowError('DATA_INVALID', `${path}: ${n} samples in '${TIMES}' but ${h5.length(UNITS)} in '${UNITS}'`, { path });
      // Every sample takes file space (a 16-byte reference to its spikes, at least): a count
      // beyond the file's size is a damaged header, refused before anything is sized by it.
      if (n > h5.size) {
        throw new SpikeflowError(
          'DATA_INVALID',
          `${path}: '${TIMES}' declares ${n} samples, more than a file of ${h5.size} bytes can hold: the file is damaged; download it again`,
          { path, samples: n },
        );
      }
      const labelCount = h5.length(LABELS);
      if (labelCount !== n) throw new SpikeflowError('DATA_INVALID', `${path}: ${n} samples but ${labelCount} labels`, { path });
      const labels = h5.integers(LABELS, n);
      const t = h5.vlenType(TIMES);
      if (t.kind !== 'float')
        throw new SpikeflowError('DATA_INVALID', `${path}: '${TIMES}' holds integers, expected spike times in seconds (floats)`, { path });
      if (h5.vlenType(UNITS).kind === 'float')
        throw new SpikeflowError('DATA_INVALID', `${path}: '${UNITS}' holds floats, expected channel numbers (integers)`, { path });
      const bad = labels.findIndex((l) => l < 0);
      if (bad >= 0)
        throw new SpikeflowError('DATA_INVALID', `${path}: sample ${bad} has label ${labels[bad]}; labels are class numbers from 0`, { path, sample: bad });
      return new ShdFile(h5, labels, t.size === 2 ? 'float16' : t.size === 4 ? 'float32' : 'float64', o);
    } catch (e) {
      h5.close();
      throw e;
    }
  }

  /** Samples this source serves (all, or the first `limit`). */
  get count(): number {
    return this.#limit;
  }

  /** Sample `i`: its events (times in seconds, channel in `x`) and label. */
  read(i: number): EventRecord {
    return { events: this.events(i), label: this.labels[i]! };
  }

  /** The events of sample `i`, checked; NaN/Inf times dropped. */
  events(i: number): Events {
    const { events, dropped } = this.#raw(i);
    if (dropped > 0) {
      this.nonFinite += dropped;
      if (!this.#reported.has(i)) {
        this.#reported.add(i);
        this.#log?.(`${this.path}: sample ${i}: dropped ${dropped} spike time${dropped === 1 ? '' : 's'} that ${dropped === 1 ? 'is' : 'are'} NaN or infinite`);
      }
    }
    checkEvents(events, this.sensor, `${this.path}: sample ${i}`);
    return events;
  }

  #raw(i: number): { events: Events; dropped: number } {
    if (!Number.isInteger(i) || i < 0 || i >= this.samples)
      throw new SpikeflowError('DATA_INVALID', `${this.path}: no sample ${i} (it has ${this.samples})`, { path: this.path });
    const [t] = this.#h5.vlenArrays(TIMES, i, 1);
    const [u] = this.#h5.vlenArrays(UNITS, i, 1);
    if (t!.length !== u!.length) {
      throw new SpikeflowError('DATA_INVALID', `${this.path}: sample ${i} has ${t!.length} spike times but ${u!.length} units`, { path: this.path, sample: i });
    }
    let n = 0;
    for (let k = 0; k < t!.length; k++) {
      if (!Number.isFinite(t![k]!)) continue;
      // Units go into 32-bit channel numbers: a larger one would wrap round into the sensor's
      // range (the range itself is checked with the times, by checkEvents).
      if (Math.abs(u![k]!) > 0x7fffffff) {
        throw new SpikeflowError(
          'DATA_INVALID',
          `${this.path}: sample ${i}: event ${n} has channel ${u![k]}, beyond the 32-bit channel numbers this reader takes`,
          { path: this.path, sample: i, event: n },
        );
      }
      n++;
    }
    const ev = { t: new Float64Array(n), x: new Int32Array(n), y: new Int32Array(n), p: new Int32Array(n) };
    for (let k = 0, j = 0; k < t!.length; k++) {
      if (!Number.isFinite(t![k]!)) continue;
      ev.t[j] = t![k]!;
      ev.x[j++] = u![k]!;
    }
    return { events: ev, dropped: t!.length - n };
  }

  /**
   * Streams every sample once, checks it, and summarises the file: what `spikeflow data inspect`
   * prints. Spike times that are NaN or infinite are counted (`nonFiniteTimes`) and left out of the
   * figures; the channel count is the highest unit seen plus one, the class count the highest
   * label plus one.
   */
  stats(): EventStats & { readonly channels: number; readonly nonFiniteTimes: number } {
    const b = new EventStatsBuilder();
    let maxUnit = -1;
    let nonFinite = 0;
    let maxLabel = -1;
    for (let i = 0; i < this.samples; i++) {
      const { events, dropped } = this.#raw(i);
      checkEvents(events, this.sensor, `${this.path}: sample ${i}`);
      nonFinite += dropped;
      for (const x of events.x) if (x > maxUnit) maxUnit = x;
      const n = events.t.length;
      const label = this.labels[i]!;
      maxLabel = Math.max(maxLabel, label);
      b.add(n, n ? events.t[n - 1]! : 0, label);
    }
    return { ...b.build(maxLabel + 1), channels: maxUnit + 1, nonFiniteTimes: nonFinite };
  }

  close(): void {
    this.#h5.close();
  }
}

export interface ShdOpenOptions {
  /** Channels of the sensor (default 700); a unit at or above it is an error. */
  readonly channels?: number;
  /** Serve only the first `limit` samples (quick runs). */
  readonly limit?: number;
  /** Where the NaN/Inf warnings go. */
  readonly log?: (message: string) => void;
}

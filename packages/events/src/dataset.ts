import {
  SpikeflowError,
  closedError,
  configError,
  createRng,
  deriveSeed,
  shuffleInPlace,
  stepSource,
  tf,
  type BatchOptions,
  type Dataset,
  type SequenceBatch,
} from '@spikeflow/core';
import { binCount, binEventsSparse, type BinnedEvents, type BinOptions } from './binning.js';
import { channelsOf, noEvents, type Events, type Sensor } from './events.js';
import type { EventTransform } from './transforms.js';

/** One labelled sample of events. */
export interface EventRecord {
  readonly events: Events;
  readonly label: number;
}

/** A split's samples, read one at a time (from disk, by the reader that knows the format). */
export interface EventSource {
  readonly count: number;
  /** Sample i, 0 ≤ i < count. */
  read(i: number): EventRecord | Promise<EventRecord>;
}

export interface EventDatasetSpec {
  readonly name: string;
  /** The sensor of the raw events. */
  readonly sensor: Sensor;
  readonly classes: number;
  readonly splits: Readonly<Record<string, EventSource>>;
  readonly binning: BinOptions;
  /** Applied to every sample before binning: crop, downsample, polarity merge, denoise. */
  readonly transform?: EventTransform;
  /** Applied after `transform` to samples of the training split only: jitter, shift, drop. */
  readonly augment?: EventTransform;
  /** The split that is augmented and shuffled by default (default `train`). */
  readonly trainSplit?: string;
  /** Releases what the sources hold open (file handles); called once, by the dataset's `close()`. */
  readonly close?: () => void | Promise<void>;
}

const identity: EventTransform = (s) => s;

/**
 * A {@link Dataset} over event samples. Every batch is built from its own samples only (read,
 * transformed and binned), so memory does not grow with the split; its inputs are a step source
 * `[T, B, channels]` that keeps each sample's binned events ({@link binEventsSparse}: a channel
 * per event, grouped by frame) and writes the frames of a window of steps when asked for it, so
 * memory does not grow with T either. Order: with shuffle (default for the training split) a permutation from
 * `createRng(deriveSeed(seed, 'order'))`. The augmentation of the sample at position j of a pass
 * draws from `createRng(deriveSeed(seed, 'augment', split, j))`, so a pass resumed with `skip`
 * yields exactly the later batches of the full pass.
 */
export function createEventDataset(spec: EventDatasetSpec): Dataset {
  const T = binCount(spec.binning);
  const transform = spec.transform ?? identity;
  const augment = spec.augment ?? identity;
  const trainSplit = spec.trainSplit ?? 'train';
  // The transforms' sensor does not depend on the events (downsampling and merging change it).
  const sensor = augment(
    transform({ events: noEvents(), sensor: spec.sensor }, () => 0.5),
    () => 0.5,
  ).sensor;
  const C = channelsOf(sensor);
  const splitOf = (split: string): EventSource => {
    const s = spec.splits[split];
    if (!s)
      throw new SpikeflowError(
        'CONFIG_INVALID',
        `${spec.name} has splits ${Object.keys(spec.splits)
          .map((k) => `'${k}'`)
          .join(', ')}, not '${split}'`,
        { path: 'split' },
      );
    return s;
  };
  const batchCount = (split: string, { batchSize, dropLast = false }: Pick<BatchOptions, 'batchSize' | 'dropLast'>) => {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw configError('batchSize', `must be a positive integer, got ${batchSize}`);
    const n = splitOf(split).count;
    return dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
  };
  let closed: Promise<void> | undefined;
  return {
    name: spec.name,
    splits: Object.keys(spec.splits),
    describe: () => ({
      steps: T,
      channels: C,
      // A frame is the channels-last image [height, width, polarities] (see channelOf).
      ...(sensor.height > 1 ? { shape: [sensor.height, sensor.width, sensor.polarities] as const } : {}),
      outputs: spec.classes,
      target: 'labels',
      samples: Object.fromEntries(Object.entries(spec.splits).map(([k, s]) => [k, s.count])),
    }),
    batchCount,
    async *batches(split: string, o: BatchOptions): AsyncGenerator<SequenceBatch> {
      if (closed) throw closedError(spec.name);
      const source = splitOf(split);
      const { batchSize, seed, shuffle = split === trainSplit, dropLast = false, skip = 0 } = o;
      const total = batchCount(split, { batchSize, dropLast });
      if (!Number.isInteger(skip) || skip < 0) throw configError('skip', `must be a non-negative integer, got ${skip}`);
      const order = Array.from({ length: source.count }, (_, i) => i);
      if (shuffle) shuffleInPlace(order, createRng(deriveSeed(seed, 'order')));
      for (let i = skip; i < total; i++) {
        if (closed) throw closedError(spec.name);
        const start = i * batchSize;
        const B = Math.min(batchSize, source.count - start);
        const binned: BinnedEvents[] = [];
        const y = new Int32Array(B);
        for (let b = 0; b < B; b++) {
          const { events, label } = await source.read(order[start + b]!);
          let s = transform({ events, sensor: spec.sensor }, createRng(deriveSeed(seed, 'transform', split, start + b)));
          if (split === trainSplit) s = augment(s, createRng(deriveSeed(seed, 'augment', split, start + b)));
          binned.push(binEventsSparse(s.events, sensor, spec.binning));
          y[b] = label;
        }
        const inputs = stepSource({
          steps: T,
          stepShape: [B, C],
          fill: (from, to, out) => binned.forEach((e, b) => e.addTo(out, b, B, from, to)),
        });
        yield { inputs, targets: tf.tensor1d(y, 'int32') };
      }
    },
    close: () => (closed ??= Promise.resolve().then(() => spec.close?.())),
  };
}

/** What `spikeflow data inspect` reports about a collection of event samples. */
export interface EventStats {
  readonly samples: number;
  readonly classes: number;
  readonly eventsPerSample: { readonly min: number; readonly median: number; readonly max: number };
  readonly durationSec: { readonly max: number };
  readonly labelHistogram: Readonly<Record<string, number>>;
}

/**
 * Accumulates {@link EventStats} one sample at a time (a reader streams its file through it).
 * `classes` is the number of distinct labels seen unless given. The duration of a sample is its
 * last event's time (samples start at 0 in these formats).
 */
export class EventStatsBuilder {
  readonly #counts: number[] = [];
  readonly #labels = new Map<number, number>();
  #maxTime = 0;

  add(events: number, lastTime: number, label: number | undefined): void {
    this.#counts.push(events);
    if (Number.isFinite(lastTime)) this.#maxTime = Math.max(this.#maxTime, lastTime);
    if (label !== undefined) this.#labels.set(label, (this.#labels.get(label) ?? 0) + 1);
  }

  build(classes?: number): EventStats {
    const c = [...this.#counts].sort((a, b) => a - b);
    const n = c.length;
    const median = n === 0 ? 0 : n % 2 ? c[(n - 1) / 2]! : (c[n / 2 - 1]! + c[n / 2]!) / 2;
    const labels = [...this.#labels.keys()].sort((a, b) => a - b);
    return {
      samples: n,
      classes: classes ?? labels.length,
      eventsPerSample: { min: n ? c[0]! : 0, median, max: n ? c[n - 1]! : 0 },
      durationSec: { max: this.#maxTime },
      labelHistogram: Object.fromEntries(labels.map((l) => [String(l), this.#labels.get(l)!])),
    };
  }
}

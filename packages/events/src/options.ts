import type { BinOptions } from './binning.js';
import { compose, cropTime, denoise, downsample, dropEvents, mergePolarity, spatialShift, timeJitter, type EventTransform } from './transforms.js';

/**
 * The config fields every event dataset shares (flat, as a config's `data` section holds them):
 * binning, the transforms applied to every sample, and the training-only augmentation. Each
 * dataset plugin spreads it into its own schema and sets its own defaults on top.
 */
export const eventViewSchema = {
  bins: { type: 'number', integer: true, min: 1, doc: 'frames per sample (T); or give window with maxTime' },
  window: { type: 'number', min: 0, exclusiveMin: true, doc: 'frame length in seconds (T = ⌈maxTime / window⌉; needs maxTime)' },
  binBy: {
    type: 'string',
    oneOf: ['time', 'count'],
    default: 'time',
    doc: "time: equal windows over [0, maxTime) (or the sample's own span); count: equal numbers of events per frame",
  },
  maxTime: { type: 'number', min: 0, exclusiveMin: true, doc: 'seconds: events at or after it are cropped; shorter samples end in empty frames' },
  values: { type: 'string', oneOf: ['count', 'spike'], default: 'count', doc: 'count: events per channel and frame; spike: 1 where there was at least one' },
  downsample: { type: 'number', integer: true, min: 1, default: 1, doc: 'whole factor merging neighbouring pixels (channels on a 1-D sensor)' },
  polarity: { type: 'string', oneOf: ['split', 'merge'], default: 'split', doc: 'split: a channel per polarity; merge: ON and OFF in one' },
  denoise: { type: 'number', min: 0, default: 0, doc: 'seconds: drop events with no neighbouring event this recently (0: off)' },
  timeJitter: { type: 'number', min: 0, default: 0, doc: 'train only: Gaussian noise of this std (seconds) added to every time' },
  spatialShift: { type: 'number', integer: true, min: 0, default: 0, doc: 'train only: move each sample by up to this many pixels per axis' },
  dropEvents: { type: 'number', min: 0, max: 1, default: 0, doc: 'train only: drop each event with this probability' },
} as const;

/** The values of {@link eventViewSchema}, every one optional. */
export interface EventViewOptions {
  readonly bins?: number;
  readonly window?: number;
  readonly binBy?: 'time' | 'count';
  readonly maxTime?: number;
  readonly values?: 'count' | 'spike';
  readonly downsample?: number;
  readonly polarity?: 'split' | 'merge';
  readonly denoise?: number;
  readonly timeJitter?: number;
  readonly spatialShift?: number;
  readonly dropEvents?: number;
}

/**
 * Binning from the options: `window` where it is given (it wins over `bins`, which a schema may
 * fill with a default), else `bins`, defaulting to `defaultBins`.
 */
export function binningFromOptions(o: EventViewOptions, defaultBins: number): BinOptions {
  return {
    ...(o.window !== undefined ? { window: o.window } : { bins: o.bins ?? defaultBins }),
    by: o.binBy ?? 'time',
    ...(o.maxTime !== undefined ? { maxTime: o.maxTime } : {}),
    values: o.values ?? 'count',
  };
}

/**
 * The transforms the options ask for: `transform` for every sample (crop at maxTime, denoise,
 * downsample, polarity merge, in that order) and `augment` for training samples (time jitter,
 * then shift, then drop; undefined where none is asked for).
 */
export function transformsFromOptions(o: EventViewOptions): { transform: EventTransform; augment?: EventTransform } {
  const every: EventTransform[] = [];
  if (o.maxTime !== undefined) every.push(cropTime(o.maxTime));
  if (o.denoise) every.push(denoise(o.denoise));
  if ((o.downsample ?? 1) > 1) every.push(downsample(o.downsample!));
  if (o.polarity === 'merge') every.push(mergePolarity());
  const train: EventTransform[] = [];
  if (o.timeJitter) train.push(timeJitter(o.timeJitter));
  if (o.spatialShift) train.push(spatialShift(o.spatialShift));
  if (o.dropEvents) train.push(dropEvents(o.dropEvents));
  return { transform: compose(...every), ...(train.length ? { augment: compose(...train) } : {}) };
}

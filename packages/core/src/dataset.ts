import { SpikeflowError } from './errors.js';
import { createRng } from './random.js';
import { configError } from './validate.js';
import type { SequenceBatch } from './rule.js';
import type { Schema, SchemaValues } from './validate.js';

/** What a dataset looks like to a model: sequence length, channels and targets. */
export interface DatasetDescription {
  /** Steps per sequence (T). */
  readonly steps: number;
  /** Input channels per step. */
  readonly channels: number;
  /**
   * Where a step's channels are an image: its `[H, W, C]` (channels last; H·W·C = `channels`, in
   * row-major order). A model whose first layer is spatial (`conv2d`, `sew_block`, pooling) takes it as its
   * `inputShape` when it gives none.
   */
  readonly shape?: readonly [number, number, number];
  /** Classes (classification) or output dimensions (regression). */
  readonly outputs: number;
  /**
   * What each batch's `targets` hold: integer labels `[B]`, values for the last step `[B, O]`,
   * or values for every step `[T, B, O]`. Pick a loss that expects it.
   */
  readonly target: 'labels' | 'values-last' | 'values-every-step';
  /** Samples per split. */
  readonly samples: Readonly<Record<string, number>>;
}

export interface BatchOptions {
  readonly batchSize: number;
  /**
   * Seed of this pass (trainers pass one per epoch, derived from the run's seed): it fixes the
   * shuffle order and any random encoding, so the same seed gives the same batches.
   */
  readonly seed: number;
  /** Shuffle the samples (default: true for `train`, false otherwise). */
  readonly shuffle?: boolean;
  /** Drop a last incomplete batch (default false). */
  readonly dropLast?: boolean;
  /** Skip this many batches first (resuming mid-epoch); the rest are those of the full pass. */
  readonly skip?: number;
}

/**
 * An opened dataset. Batches are time-major: `inputs` `[T, B, channels]` (spikes or analog
 * currents), a `StepSource` that keeps the batch's compact form (bytes, events, seeds) and builds
 * each window of steps when a consumer asks for it (`stepSource` makes one from a fill function),
 * or a tensor; the consumer frees each batch (`disposeBatch`). Whoever opens a dataset closes it
 * (`close()`, on errors too): the trainer's callers, the CLI and the bench do.
 */
export interface Dataset {
  readonly name: string;
  readonly splits: readonly string[];
  describe(): DatasetDescription;
  /** Number of batches one pass over `split` yields. */
  batchCount(split: string, options: Pick<BatchOptions, 'batchSize' | 'dropLast'>): number;
  batches(split: string, options: BatchOptions): AsyncIterable<SequenceBatch>;
  /**
   * Releases what the dataset holds open (file handles, readers' memory). Idempotent. Afterwards
   * `batches` refuses with `CLOSED` (a pass under way stops at its next batch).
   */
  close(): Promise<void>;
}

/**
 * The generator `createRng(seed)` after `position` draws, in constant time: mulberry32's state is
 * a Weyl sequence (each draw adds 0x6d2b79f5 mod 2³² before mixing), so the state after n draws is
 * `seed + n·0x6d2b79f5 mod 2³²`. Datasets that build a window of steps on demand start each
 * sample's draws at the window's first one, and draw exactly what a pass over the whole sequence
 * would have.
 */
export function rngAt(seed: number, position: number): () => number {
  if (!(Number.isSafeInteger(position) && position >= 0)) throw configError('position', `must be a whole number >= 0, got ${position}`);
  return createRng(((seed >>> 0) + Math.imul(position % 0x100000000, 0x6d2b79f5)) >>> 0);
}

/** The error a closed dataset answers `batches` with. */
export function closedError(name: string): SpikeflowError {
  return new SpikeflowError('CLOSED', `dataset '${name}' was closed; open it again to read batches`, { dataset: name });
}

/** What `spikeflow data inspect` prints about a data file. */
export interface DataFileSummary {
  readonly path: string;
  readonly format: string;
  readonly samples: number;
  /** Shape of one sample. */
  readonly shape: readonly number[];
  readonly dtype: string;
  readonly classes?: number;
  readonly labelHistogram?: Readonly<Record<string, number>>;
  readonly [key: string]: unknown;
}

/** Where datasets find and keep files. */
export interface DatasetContext {
  /** Cache directory for downloaded and extracted files. */
  readonly cacheDir: string;
  /** Progress and notices (downloads, extraction) for people. */
  readonly log?: (message: string) => void;
}

/** A named dataset factory, as plugins provide it. `options` come validated from a config. */
export interface DatasetEntry<Sch extends Schema = Schema> {
  readonly name: string;
  readonly description: string;
  readonly optionsSchema: Sch;
  open(options: SchemaValues<Sch>, ctx: DatasetContext): Promise<Dataset>;
  /** File formats this family can summarise (`idx`, ...). */
  readonly formats?: readonly string[];
  /** Summarises a data file of one of `formats`; throws `DATA_INVALID` for a bad file. */
  inspect?(path: string, format: string): Promise<DataFileSummary>;
  /**
   * Which of `formats` the file or directory at `path` is, judged by its name or its first bytes;
   * undefined when this family does not read it. `spikeflow data inspect` asks every installed
   * family when no `--format` is given.
   */
  detect?(path: string): Promise<string | undefined>;
}

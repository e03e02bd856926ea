import type { SequenceBatch } from './rule.js';

/** What a dataset looks like to a model: sequence length, channels and targets. */
export interface DatasetDescription {
  /** Steps per sequence (T). */
  readonly steps: number;
  /** Input channels per step. */
  readonly channels: number;
  /** Classes (classification) or output dimensions (regression). */
  readonly outputs: number;
  /** The loss target kind its batches carry (`labels`, `values-last`, `values-every-step`). */
  readonly target: 'labels' | 'values-last' | 'values-every-step';
  /** Samples per split. */
  readonly samples: Readonly<Record<string, number>>;
}

export interface BatchOptions {
  readonly batchSize: number;
  /** Shuffle seed; the same seed gives the same batches. */
  readonly seed?: number;
  readonly shuffle?: boolean;
  /** Drop a last incomplete batch. */
  readonly dropLast?: boolean;
}

/**
 * A dataset family's opened dataset. Batches are time-major spike tensors; the consumer
 * disposes each batch's tensors.
 */
export interface Dataset {
  readonly name: string;
  readonly splits: readonly string[];
  describe(): DatasetDescription;
  batches(split: string, options: BatchOptions): AsyncIterable<SequenceBatch>;
}

/** A named dataset factory, as plugins provide it. `options` come validated from a config. */
export interface DatasetEntry {
  readonly name: string;
  readonly description: string;
  open(options: Record<string, unknown>): Promise<Dataset>;
}

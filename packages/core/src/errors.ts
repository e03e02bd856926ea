/**
 * Every failure a user can act on is a {@link SpikeflowError}: a stable `code` for programs,
 * a message for people that says what is wrong, where, and how to fix it.
 */
export type SpikeflowErrorCode =
  /** A model spec, rule, optimizer, loss or other config field is missing, mistyped or out of range. */
  | 'CONFIG_INVALID'
  /** A plugin package named in a config is not installed where it was looked up. */
  | 'PLUGIN_NOT_FOUND'
  /** A package was found but its default export is not a valid spikeflow plugin. */
  | 'PLUGIN_INVALID'
  /** Two plugins provide the same neuron, rule, backend, ... name. */
  | 'PLUGIN_CONFLICT'
  /** A name (neuron, rule, surrogate, loss, backend, kernel) is not registered. */
  | 'UNKNOWN_NAME'
  /** A rule cannot train this neuron or loss (a capability it needs is missing). */
  | 'INCOMPATIBLE'
  /** Tensor shapes or sizes do not agree (batch, channels, steps, targets). */
  | 'SHAPE_MISMATCH'
  /** A backend cannot be used here (its native binding or files are missing). */
  | 'BACKEND_UNAVAILABLE'
  /** A data file is missing, truncated or of the wrong format. */
  | 'DATA_INVALID'
  /** NaN or Inf appeared in a loss, gradient or weight. */
  | 'NON_FINITE'
  /** A checkpoint is truncated, foreign or does not match the run. */
  | 'CHECKPOINT_INVALID'
  /**
   * A file's contents (a checkpoint's stored config, a config read on someone else's behalf) name
   * code to load that is not an installed package by name — a path, a URL, an unknown package.
   * Nothing was imported.
   */
  | 'PLUGIN_REFUSED'
  /** A kernel worker thread crashed, trapped or hung; the message carries the worker's own error. */
  | 'KERNEL_FAULT'
  /** A size that cannot be allocated here (batch × steps × width beyond a memory's limit). */
  | 'OUT_OF_MEMORY'
  /** A file could not be written or read (disk full, permissions); what was there before is kept. */
  | 'IO_FAILED'
  /** A dataset (or other resource) was used after `close()`. */
  | 'CLOSED';

export interface SpikeflowErrorDetails {
  /** Dotted path of the offending field, e.g. `model.layers[0].size`. */
  readonly path?: string;
  /** Anything else a program may want (package name, expected/actual values, ...). */
  readonly [key: string]: unknown;
}

export class SpikeflowError extends Error {
  override readonly name = 'SpikeflowError';
  readonly code: SpikeflowErrorCode;
  readonly details: SpikeflowErrorDetails;

  constructor(code: SpikeflowErrorCode, message: string, details: SpikeflowErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.details = details;
  }
}

/** True for a {@link SpikeflowError}, optionally of one code. Works across duplicate installs. */
export function isSpikeflowError(e: unknown, code?: SpikeflowErrorCode): e is SpikeflowError {
  return (
    typeof e === 'object' &&
    e !== null &&
    (e as { name?: unknown }).name === 'SpikeflowError' &&
    (code === undefined || (e as { code?: unknown }).code === code)
  );
}

import {
  defineRule,
  parseSchema,
  trainWindows,
  type LearningRule,
  type RuleContext,
  type SchemaInput,
  type SchemaValues,
  type SequenceBatch,
} from '@spikeflow/core';

/** The rule's options (`{ "name": "bptt", ... }` in a config): the one definition of their types, ranges and defaults. */
export const bpttSchema = {
  truncation: { type: 'number', integer: true, min: 1, doc: 'window k of truncated BPTT; omit for full BPTT' },
  mode: { type: 'string', default: 'accumulate', oneOf: ['accumulate', 'per-window'], doc: 'one update per sequence, or one per window' },
} as const;

/**
 * `truncation`: window length k. Omitted (or ≥ T): full BPTT through the whole sequence. Otherwise
 * the sequence is cut into windows of k steps; the state (neurons and readout) is carried across
 * windows but detached, so no gradient crosses a window boundary. `mode` (with truncation):
 * `accumulate` sums the windows' gradients over the sequence and applies one update per batch;
 * `per-window` applies one update after every window (the weights change mid-sequence; needs a
 * loss that decomposes over time).
 */
export type BpttOptions = SchemaInput<typeof bpttSchema>;

export type TruncationMode = SchemaValues<typeof bpttSchema>['mode'];

type Empty = Record<string, never>;

/**
 * Backpropagation through time: without `truncation`, the exact surrogate gradient of the
 * whole-sequence loss, keeping every step's activations on the tape (memory O(T)); with it,
 * truncated BPTT (Williams & Peng 1990): exact inside each window, paths that cross a window
 * boundary dropped (state carried, detached). Options are validated against {@link bpttSchema}.
 *
 * Truncated, memory is O(k) for losses that decompose over time. A whole-sequence loss
 * (`ce_mean`) in `accumulate` mode needs ∂L/∂y_t for every t before any window's backward pass:
 * core's window engine runs the sequence forward once without a tape (keeping the readout
 * `[T, B, O]`, then ∂L/∂y_t in its place) and then each window again on the tape from the state
 * the previous window's tape ended with: O(k) activations plus O(T·B·O) for the readout.
 */
export function bptt(options: BpttOptions = {}): LearningRule<Empty> {
  const o = parseSchema(bpttSchema, options, 'rule');
  return makeRule(o.truncation, o.mode);
}

/** Truncated BPTT with window `k`: `bptt({ truncation: k, mode })`. */
export function tbptt({ k, mode }: { k: number; mode?: TruncationMode }): LearningRule<Empty> {
  return bptt({ truncation: k, ...(mode ? { mode } : {}) });
}

function makeRule(k: number | undefined, mode: TruncationMode): LearningRule<Empty> {
  const perWindow = k !== undefined && mode === 'per-window';
  return defineRule({
    name: k === undefined ? 'bptt' : `tbptt(k=${k}, ${mode})`,
    memory: k === undefined ? 'O(T)' : 'O(k)',
    gradient: 'exact',
    requires: perWindow ? { lossDecomposesOverTime: true } : {},
    init: () => ({}),
    // Per window: at most one update per window (windows without a loss term make none).
    updatesPerSequence: (T: number) => (perWindow ? Math.ceil(T / k!) : 1),
    update(batch: SequenceBatch, state: Empty, ctx: RuleContext) {
      // Whole sequence: one window. Truncated: windows of k steps from the detached state the previous one left; a
      // whole-sequence loss is split into each window's exact share by core's window engine.
      const report = trainWindows(batch, ctx, {
        window: k ?? Infinity,
        update: perWindow ? 'window' : 'sequence',
        objective: perWindow ? 'steps' : 'sequence',
      });
      return { state, report };
    },
  });
}

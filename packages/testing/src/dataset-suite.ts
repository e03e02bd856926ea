import {
  denseInputs,
  disposeBatch,
  inputShape,
  isSpikeflowError,
  isStepSource,
  stepsOf,
  tf,
  type Dataset,
  type SequenceBatch,
  type Tensor,
} from '@spikeflow/core';
import { describe, expect, it, onTestFinished } from 'vitest';

export interface DatasetSuiteOptions {
  /** Batch size of the passes (default 4). */
  readonly batchSize?: number;
  /** Splits to check (default: every split the dataset has). */
  readonly splits?: readonly string[];
  /** Batches taken from each pass at most (default: the whole pass). */
  readonly maxBatches?: number;
}

interface Seen {
  readonly inputs: number[];
  readonly targets: number[];
  readonly shape: readonly number[];
  readonly dtype: string;
  readonly targetShape: readonly number[];
}

async function take(ds: Dataset, split: string, o: Parameters<Dataset['batches']>[1], max: number): Promise<Seen[]> {
  const out: Seen[] = [];
  for await (const b of ds.batches(split, o)) {
    out.push(seen(b));
    disposeBatch(b);
    if (out.length >= max) break;
  }
  return out;
}

function seen(b: SequenceBatch): Seen {
  const x = denseInputs(b.inputs);
  try {
    return {
      inputs: Array.from(x.dataSync()),
      targets: Array.from(b.targets.dataSync()),
      shape: inputShape(b.inputs),
      dtype: b.inputs.dtype,
      targetShape: b.targets.shape,
    };
  } finally {
    x.dispose();
  }
}

/**
 * Whether a batch's inputs give the same values however they are asked for: the whole sequence,
 * windows that split it, each step alone, a window asked for twice. Returns what differs, or null.
 */
function windowsAgree(b: SequenceBatch): string | null {
  const xs = stepsOf(b.inputs);
  const T = xs.length;
  if (T === 0) return null;
  const read = (t: Tensor) => {
    try {
      return Array.from(t.dataSync());
    } finally {
      t.dispose();
    }
  };
  const whole = read(xs.window(0, T));
  const per = whole.length / T;
  const cuts = [0, Math.floor(T / 3), Math.floor((2 * T) / 3), T].filter((c, i, a) => i === 0 || c > a[i - 1]!);
  for (let i = 0; i + 1 < cuts.length; i++) {
    const [from, to] = [cuts[i]!, cuts[i + 1]!];
    const w = read(xs.window(from, to));
    if (w.some((v, j) => !Object.is(v, whole[from * per + j]))) return `window [${from}, ${to}) differs from the whole sequence's steps`;
  }
  for (const t of new Set([0, Math.floor(T / 2), T - 1])) {
    const step = read(xs.at(t));
    if (step.some((v, j) => !Object.is(v, whole[t * per + j]))) return `step ${t} differs from the whole sequence's`;
  }
  const again = read(xs.window(0, T));
  if (again.some((v, j) => !Object.is(v, whole[j]))) return 'the whole sequence asked for twice differs';
  return null;
}

/**
 * The conformance suite every dataset plugin runs on a small instance of its dataset (`open`
 * returns it; the suite opens it once per test). It checks what trainers rely on:
 *
 * - batches are time-major `[T, B, channels]` float32 as `describe()` says (a step source or a
 *   tensor), with targets of the declared kind (`labels`: int32 `[B]` in 0..outputs−1), and a pass
 *   yields `batchCount` batches covering `samples[split]` samples;
 * - a batch's steps are the same however they are asked for: the whole sequence, windows that
 *   split it, single steps, a window asked for twice;
 * - the same seed gives the same batches, and `skip: k` yields exactly batches k… of the full pass
 *   (exact resume);
 * - no tensors leak: once the consumer frees each batch (`disposeBatch`), nothing of the pass remains;
 * - `close()` is idempotent, and afterwards `batches` refuses with `CLOSED` (a pass under way too).
 */
export function describeDataset(name: string, open: () => Promise<Dataset>, options: DatasetSuiteOptions = {}): void {
  const batchSize = options.batchSize ?? 4;
  const max = options.maxBatches ?? Infinity;

  describe(`dataset conformance: ${name}`, () => {
    it('yields batches as describe() says, batchCount of them over every sample', async () => {
      const ds = await open();
      onTestFinished(() => ds.close());
      const d = ds.describe();
      for (const split of options.splits ?? ds.splits) {
        const batches = await take(ds, split, { batchSize, seed: 3 }, max);
        const count = ds.batchCount(split, { batchSize });
        if (max === Infinity) {
          expect(batches.length, split).toBe(count);
          expect(
            batches.reduce((n, b) => n + b.shape[1]!, 0),
            split,
          ).toBe(d.samples[split]);
        }
        for (const b of batches) {
          const B = b.shape[1]!;
          expect(b.dtype, `${split}: inputs are float32`).toBe('float32');
          expect(b.shape, split).toEqual([d.steps, B, d.channels]);
          expect(B).toBeLessThanOrEqual(batchSize);
          expect(b.inputs.every(Number.isFinite), `${split}: inputs are finite`).toBe(true);
          if (d.target === 'labels') {
            expect(b.targetShape).toEqual([B]);
            expect(
              b.targets.every((y) => Number.isInteger(y) && y >= 0 && y < d.outputs),
              `${split}: labels in 0..${d.outputs - 1}`,
            ).toBe(true);
          } else if (d.target === 'values-last') {
            expect(b.targetShape).toEqual([B, d.outputs]);
          } else {
            expect(b.targetShape).toEqual([d.steps, B, d.outputs]);
          }
        }
      }
    });

    it('makes the same values however its batches’ steps are asked for (windows, single steps, twice)', async () => {
      const ds = await open();
      onTestFinished(() => ds.close());
      for (const split of options.splits ?? ds.splits) {
        let n = 0;
        for await (const b of ds.batches(split, { batchSize, seed: 5 })) {
          try {
            expect(windowsAgree(b), `${split}, batch ${n}${isStepSource(b.inputs) ? ' (a step source)' : ''}`).toBeNull();
          } finally {
            disposeBatch(b);
          }
          if (++n >= Math.min(max, 2)) break;
        }
      }
    });

    it('is deterministic under a seed, and resumes exactly with skip', async () => {
      const ds = await open();
      onTestFinished(() => ds.close());
      const split = (options.splits ?? ds.splits)[0]!;
      const a = await take(ds, split, { batchSize, seed: 11 }, max);
      expect(await take(ds, split, { batchSize, seed: 11 }, max)).toEqual(a);
      if (a.length > 1) expect(await take(ds, split, { batchSize, seed: 11, skip: 1 }, max - 1)).toEqual(a.slice(1));
    });

    it('leaves no tensors behind once its batches are disposed', async () => {
      const ds = await open();
      onTestFinished(() => ds.close());
      const before = tf.memory().numTensors;
      for (const split of options.splits ?? ds.splits) await take(ds, split, { batchSize, seed: 1 }, max);
      expect(tf.memory().numTensors).toBe(before);
    });

    it('closes: idempotent, then batches refuse with CLOSED, a pass under way included', async () => {
      const ds = await open();
      const split = (options.splits ?? ds.splits)[0]!;
      const before = tf.memory().numTensors;
      const pass = ds.batches(split, { batchSize: 1, seed: 2 })[Symbol.asyncIterator]();
      const first = await pass.next();
      if (!first.done) disposeBatch(first.value);
      await ds.close();
      await ds.close();
      const refused = async (f: () => Promise<unknown>) => {
        const e = await f().then(
          () => undefined,
          (err: unknown) => err,
        );
        expect(isSpikeflowError(e, 'CLOSED'), String(e)).toBe(true);
      };
      await refused(() => take(ds, split, { batchSize, seed: 3 }, 1));
      if (!first.done && ds.batchCount(split, { batchSize: 1 }) > 1) await refused(() => pass.next());
      await pass.return?.();
      expect(tf.memory().numTensors).toBe(before);
    });
  });
}

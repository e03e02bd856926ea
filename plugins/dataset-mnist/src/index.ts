import { definePlugin } from '@spikeflow/core';
import { fashionMnistEntry, mnistEntry } from './mnist.js';
import pkg from '../package.json' with { type: 'json' };

export { mnistEntry, fashionMnistEntry, mnistSchema, fashionMnistSchema, openMnist, openFashionMnist, createImageDataset, SPLITS } from './mnist.js';
export type { MnistOptions, FashionMnistOptions, ViewOptions } from './mnist.js';
export { parseIdx, readIdx, encodeIdx, summarizeIdx, isGzip, IDX_TYPES, MNIST_HOME } from './idx.js';
export type { IdxArray, IdxData, IdxType } from './idx.js';
export { fetchIdxFiles, findIdxFile, writeAtomic, sha256, IDX_FILES, DEFAULT_BASE_URLS, SHA256 } from './download.js';
export type { FetchIdxOptions, IdxFamily, IdxRole } from './download.js';
export { sequenceLayout, encodedSize, encodeInto, encodeWindowInto, encodeSequence, VARIANTS, ENCODERS, DEFAULT_ENCODER } from './encode.js';
export type { Variant, EncoderName, EncoderConfig, SequenceLayout } from './encode.js';
export { loadBundled, loadIdxSet, BUNDLED_COUNTS, BUNDLED_TRAIN_COUNTS, BUNDLED_TRAIN_FRACTION, BUNDLED_LUT, IDX_LUT } from './sources.js';
export type { ImageSet, ImageSplit } from './sources.js';

export default definePlugin({
  meta: { name: pkg.name, version: pkg.version },
  datasets: [mnistEntry, fashionMnistEntry],
});

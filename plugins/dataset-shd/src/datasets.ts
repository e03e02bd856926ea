import {
  SpikeflowError,
  configError,
  parseSchema,
  type DataFileSummary,
  type Dataset,
  type DatasetContext,
  type DatasetEntry,
  type SchemaInput,
  type SchemaValues,
} from '@spikeflow/core';
import { binningFromOptions, createEventDataset, eventViewSchema, transformsFromOptions } from '@spikeflow/events';
import { join } from 'node:path';
import { SHD_BASE_URL, SHD_FILES, fetchShdFile, type ShdFamily } from './download.js';
import { isHdf5 } from './hdf5.js';
import { ShdFile } from './shd.js';

/** Classes of each family: SHD's 20 spoken digits (0–9 in English and German), SSC's 35 words. */
export const SHD_CLASSES: Readonly<Record<ShdFamily, number>> = { shd: 20, ssc: 35 };

/** Options of the `shd` and `ssc` datasets (flat, as a config's `data` section holds them). */
export const shdSchema = {
  dir: { type: 'string', doc: 'directory of the HDF5 files (default <cacheDir>/shd or <cacheDir>/ssc)' },
  download: { type: 'boolean', default: false, doc: 'download missing files (<name>.h5.gz from baseUrl, checked against its md5sums.txt) and unpack them' },
  baseUrl: { type: 'string', default: SHD_BASE_URL, doc: 'where the .h5.gz files and md5sums.txt are' },
  ...eventViewSchema,
  bins: { ...eventViewSchema.bins, default: 100 },
  maxTime: { ...eventViewSchema.maxTime, default: 1.4 },
  trainLimit: { type: 'number', integer: true, min: 1, doc: 'use only the first N training samples (quick runs)' },
  testLimit: { type: 'number', integer: true, min: 1, doc: 'use only the first N samples of the test (and validation) split' },
} as const;

/** Options as code passes them: every field optional, defaults as in {@link shdSchema}. */
export type ShdOptions = SchemaInput<typeof shdSchema>;

/**
 * Opens SHD or SSC: one HDF5 file per split, found in (or downloaded into) `dir`, each sample read
 * from disk when its batch is built, transformed and binned by `@spikeflow/events` (by default
 * 100 frames of 14 ms over 1.4 s, spike counts per channel; a `window` wins over `bins`). Split
 * sizes come from the files. Options are checked against {@link shdSchema} (`CONFIG_INVALID`
 * naming `data.<field>`), defaults filled.
 */
export async function openShd(family: ShdFamily, options: ShdOptions, ctx: DatasetContext): Promise<Dataset> {
  return shdOf(family, parseSchema(shdSchema, options, 'data'), ctx);
}

/** {@link openShd} from parsed options. */
async function shdOf(family: ShdFamily, o: SchemaValues<typeof shdSchema>, ctx: DatasetContext): Promise<Dataset> {
  const dir = o.dir ?? join(ctx.cacheDir, family);
  const classes = SHD_CLASSES[family];
  const binning = binningFromOptions(o, o.bins);
  const { transform, augment } = transformsFromOptions(o);
  const splits: Record<string, ShdFile> = {};
  try {
    for (const [split, name] of Object.entries(SHD_FILES[family])) {
      const path = await fetchShdFile({ dir, name, download: o.download, baseUrl: o.baseUrl, ...(ctx.log ? { log: ctx.log } : {}) });
      const limit = split === 'train' ? o.trainLimit : o.testLimit;
      const file = await ShdFile.open(path, { ...(limit !== undefined ? { limit } : {}), ...(ctx.log ? { log: ctx.log } : {}) });
      splits[split] = file;
      const over = file.labels.findIndex((l) => l >= classes);
      if (over >= 0) {
        throw new SpikeflowError(
          'DATA_INVALID',
          `${path}: sample ${over} has label ${file.labels[over]}, but ${family} has ${classes} classes (0..${classes - 1}); is this the right file?`,
          { path, sample: over },
        );
      }
    }
  } catch (e) {
    for (const f of Object.values(splits)) f.close();
    throw e;
  }
  return createEventDataset({
    name: family,
    sensor: splits['train']!.sensor,
    classes,
    splits,
    binning,
    transform,
    ...(augment ? { augment } : {}),
    close: () => {
      for (const f of Object.values(splits)) f.close();
    },
  });
}

/** `spikeflow data inspect` of an SHD-layout file. */
async function inspect(path: string, format: string): Promise<DataFileSummary> {
  if (format !== 'shd') throw configError('--format', `the shd plugin reads format 'shd' (SHD/SSC HDF5 files), not '${format}'`);
  const f = await ShdFile.open(path, { channels: Number.MAX_SAFE_INTEGER });
  try {
    const s = f.stats();
    return {
      path,
      format,
      samples: s.samples,
      shape: [s.channels],
      dtype: f.timeType,
      classes: s.classes,
      channels: s.channels,
      eventsPerSample: s.eventsPerSample,
      durationSec: s.durationSec,
      labelHistogram: s.labelHistogram,
      nonFiniteTimes: s.nonFiniteTimes,
      extra: f.extra,
    };
  } finally {
    f.close();
  }
}

/** HDF5 files with `spikes/times`, `spikes/units` and `labels` are in the SHD layout. */
async function detect(path: string): Promise<string | undefined> {
  if (!isHdf5(path)) return undefined;
  try {
    (await ShdFile.open(path)).close();
    return 'shd';
  } catch {
    return undefined;
  }
}

/** Spiking Heidelberg Digits (Cramer, Stradmann, Schemmel & Zenke 2020): 20 classes, 700 channels. */
export const shdEntry: DatasetEntry<typeof shdSchema> = {
  name: 'shd',
  description:
    'Spiking Heidelberg Digits: spoken digits 0–9 in English and German as spikes of 700 cochlea channels, 20 classes (HDF5; download: true fetches them)',
  optionsSchema: shdSchema,
  open: (o, ctx) => shdOf('shd', o, ctx),
  formats: ['shd'],
  inspect,
  detect,
};

/** Spiking Speech Commands (Cramer et al. 2020): 35 classes, 700 channels, train/valid/test. */
export const sscEntry: DatasetEntry<typeof shdSchema> = {
  name: 'ssc',
  description: 'Spiking Speech Commands: 35 spoken words as spikes of 700 cochlea channels, train/valid/test (HDF5; download: true fetches them)',
  optionsSchema: shdSchema,
  open: (o, ctx) => shdOf('ssc', o, ctx),
};

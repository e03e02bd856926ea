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
import {
  EventStatsBuilder,
  binningFromOptions,
  checkEvents,
  createEventDataset,
  eventViewSchema,
  transformsFromOptions,
  type EventRecord,
  type EventSource,
  type BinOptions,
  type EventViewOptions,
  type Events,
  type Sensor,
} from '@spikeflow/events';
import { basename, dirname, join } from 'node:path';
import { invalid, naturalOrder, nodeFiles, readWhole, type FileAccess } from './files.js';

/*
 * N-MNIST (Orchard, Jayawant, Cohen & Thakor, "Converting Static Image Datasets to Spiking
 * Neuromorphic Datasets Using Saccades", Frontiers in Neuroscience 9:437, 2015). Each sample is
 * one file of 40-bit events, as the dataset page https://www.garrickorchard.com/datasets/n-mnist
 * describes them: bits 39–32 x, bits 31–24 y, bit 23 polarity (1 ON, 0 OFF), bits 22–0 the time
 * in microseconds. The archives Train.zip and Test.zip unzip to Train/<digit>/<id>.bin and
 * Test/<digit>/<id>.bin (60,000 and 10,000 samples).
 */

/** The ATIS recordings of N-MNIST: 34 × 34 pixels (28 × 28 digits moved by the saccades), ON/OFF. */
export const NMNIST_SENSOR: Sensor = { width: 34, height: 34, polarities: 2 };

/** Bytes per N-MNIST event. */
export const NMNIST_EVENT_BYTES = 5;

/** Where N-MNIST is published (a manual download); quoted in "not found" messages. */
export const NMNIST_HOME =
  'https://www.garrickorchard.com/datasets/n-mnist (the files: Train.zip and Test.zip at https://data.mendeley.com/datasets/468j46mzdv/1)';

/** The folders of the two splits, as the archives unzip. */
export const NMNIST_SPLIT_DIRS = { train: 'Train', test: 'Test' } as const;

const MAX_TIME_US = 2 ** 23 - 1;

/**
 * Decodes the bytes of one N-MNIST sample file into events (times in seconds). `where` names the
 * file and sample in errors: a size that is not a whole number of 5-byte events (a truncated
 * file), and, through `checkEvents`, decreasing times or coordinates outside 34 × 34.
 */
export function decodeNmnist(bytes: Uint8Array, where: string): Events {
  if (bytes.length % NMNIST_EVENT_BYTES !== 0) {
    const n = Math.floor(bytes.length / NMNIST_EVENT_BYTES);
    throw invalid(
      where,
      `${bytes.length} bytes is not a whole number of 5-byte events (${n} events and ${bytes.length - n * NMNIST_EVENT_BYTES} bytes left over): the file is truncated or not an N-MNIST sample; unzip it again from the published archive`,
      { bytes: bytes.length },
    );
  }
  const n = bytes.length / NMNIST_EVENT_BYTES;
  const ev = { t: new Float64Array(n), x: new Int32Array(n), y: new Int32Array(n), p: new Int32Array(n) };
  for (let i = 0, o = 0; i < n; i++, o += NMNIST_EVENT_BYTES) {
    const b2 = bytes[o + 2]!;
    ev.x[i] = bytes[o]!;
    ev.y[i] = bytes[o + 1]!;
    ev.p[i] = b2 >> 7;
    ev.t[i] = (((b2 & 0x7f) << 16) | (bytes[o + 3]! << 8) | bytes[o + 4]!) / 1e6;
  }
  checkEvents(ev, NMNIST_SENSOR, where);
  return ev;
}

/**
 * Encodes events as an N-MNIST sample file (the inverse of {@link decodeNmnist}): times are
 * rounded to whole microseconds and must lie in [0, 2²³) µs (about 8.4 s); x and y must fit a
 * byte and polarity be 0 or 1. The events are written in the order given and not checked against
 * the 34 × 34 sensor, so that tests can write malformed files too.
 */
export function encodeNmnist(events: Events): Uint8Array {
  const n = events.t.length;
  const out = new Uint8Array(n * NMNIST_EVENT_BYTES);
  for (let i = 0, o = 0; i < n; i++, o += NMNIST_EVENT_BYTES) {
    const us = Math.round(events.t[i]! * 1e6);
    const x = events.x[i]!;
    const y = events.y[i]!;
    const p = events.p[i]!;
    if (!(us >= 0 && us <= MAX_TIME_US))
      throw configError(`events.t[${i}]`, `${events.t[i]} s does not fit N-MNIST's 23-bit microsecond time (0 to ${MAX_TIME_US} µs)`);
    if (!(x >= 0 && x <= 255)) throw configError(`events.x[${i}]`, `${x} does not fit a byte`);
    if (!(y >= 0 && y <= 255)) throw configError(`events.y[${i}]`, `${y} does not fit a byte`);
    if (p !== 0 && p !== 1) throw configError(`events.p[${i}]`, `must be 0 (OFF) or 1 (ON), got ${p}`);
    out[o] = x;
    out[o + 1] = y;
    out[o + 2] = (p << 7) | (us >> 16);
    out[o + 3] = (us >> 8) & 0xff;
    out[o + 4] = us & 0xff;
  }
  return out;
}

/** One N-MNIST sample on disk: its file and its digit (the name of the folder it is in). */
export interface NmnistFile {
  readonly path: string;
  /** 0..9, or undefined for a file outside a digit folder. */
  readonly label: number | undefined;
}

const isDigit = (name: string) => /^[0-9]$/.test(name);
const isBin = (name: string) => name.toLowerCase().endsWith('.bin');

/**
 * The samples of one split folder (`Train/` or `Test/`): every `<digit>/<id>.bin`, each digit's
 * files in natural name order, then interleaved round-robin over the digits (the first file of
 * each digit, then the second, …) so that any prefix — `trainLimit`, `testLimit` — holds every
 * digit in nearly equal numbers. Only names are listed; no sample is read.
 */
export async function listNmnistSplit(dir: string, files: FileAccess = nodeFiles): Promise<NmnistFile[]> {
  const perDigit: NmnistFile[][] = [];
  for (const e of await files.list(dir)) {
    if (!e.directory || !isDigit(e.name)) continue;
    const digitDir = join(dir, e.name);
    const names = (await files.list(digitDir))
      .filter((f) => !f.directory && isBin(f.name))
      .map((f) => f.name)
      .sort(naturalOrder);
    perDigit[Number(e.name)] = names.map((n) => ({ path: join(digitDir, n), label: Number(e.name) }));
  }
  const out: NmnistFile[] = [];
  const longest = perDigit.reduce((m, l) => Math.max(m, l?.length ?? 0), 0);
  for (let k = 0; k < longest; k++) for (const l of perDigit) if (l && k < l.length) out.push(l[k]!);
  return out;
}

/** Reads and decodes one sample file; `where` names it and the sample in errors. */
export async function readNmnistFile(file: NmnistFile, files: FileAccess, where: string): Promise<Events> {
  return decodeNmnist(await readWhole(files, file.path), where);
}

/** An {@link EventSource} over listed sample files: sample i reads file i, and nothing else. */
export function nmnistSource(list: readonly NmnistFile[], split: string, files: FileAccess = nodeFiles): EventSource {
  return {
    count: list.length,
    async read(i: number): Promise<EventRecord> {
      const f = list[i];
      if (!f) throw new SpikeflowError('CONFIG_INVALID', `nmnist ${split}: no sample ${i} (the split has ${list.length})`, { path: 'index' });
      const events = await readNmnistFile(f, files, `${f.path} (nmnist ${split} sample ${i})`);
      return { events, label: f.label ?? 0 };
    },
  };
}

const notPublishedHere = (dir: string) =>
  `This plugin does not download N-MNIST: it is published as Train.zip and Test.zip behind ${NMNIST_HOME}, which need a manual download. ` +
  `Unzip both into ${dir} so that it holds Train/<digit>/<id>.bin and Test/<digit>/<id>.bin, or set the data option dir to the folder that holds Train/ and Test/`;

/** Options shared by the event datasets of this plugin: sample caps for quick runs. */
export const limitSchema = {
  trainLimit: { type: 'number', integer: true, min: 1, doc: 'use only the first N training samples (quick runs)' },
  testLimit: { type: 'number', integer: true, min: 1, doc: 'use only the first N test samples (quick runs)' },
} as const;

/**
 * Refuses `bins` together with `window` (`binningFromOptions` would quietly use the window) and
 * returns the binning with `defaultBins` where neither is given.
 */
export function binningOf(o: EventViewOptions, defaultBins: number): BinOptions {
  if (o.bins !== undefined && o.window !== undefined) throw configError('data.bins', `give either bins (${o.bins}) or window (${o.window} s), not both`);
  return binningFromOptions(o, defaultBins);
}

/** Default frames per N-MNIST sample (10 ms each over the default 0.3 s). */
export const NMNIST_DEFAULT_BINS = 30;

/** Options of the `nmnist` dataset (flat, as a config's `data` section holds them). */
export const nmnistSchema = {
  dir: { type: 'string', doc: 'folder holding Train/ and Test/ as unzipped from the published archives (default <cacheDir>/nmnist)' },
  ...eventViewSchema,
  bins: { ...eventViewSchema.bins, doc: `frames per sample (T; default ${NMNIST_DEFAULT_BINS} where no window is given)` },
  maxTime: { ...eventViewSchema.maxTime, default: 0.3, doc: 'seconds: events at or after it are cropped (a sample is three 100 ms saccades, about 0.3 s)' },
  ...limitSchema,
} as const;

/** Options as code passes them: every field optional, defaults as in {@link nmnistSchema}. */
export type NmnistOptions = SchemaInput<typeof nmnistSchema>;

/**
 * Opens N-MNIST from `dir` (default `<cacheDir>/nmnist`): lists the sample files of `Train/` and
 * `Test/` (their digit folders are the labels) and reads each sample's file only when a batch
 * needs it. Batches are `[T, B, 2·34·34]` (fewer channels with `downsample` or `polarity:
 * 'merge'`), targets the digits 0..9; binning and transforms as `@spikeflow/events` documents.
 * Options are checked against {@link nmnistSchema} (`CONFIG_INVALID` naming `data.<field>`),
 * defaults filled. `files` replaces the file system (tests count reads through it).
 */
export async function openNmnist(options: NmnistOptions, ctx: DatasetContext, files: FileAccess = nodeFiles): Promise<Dataset> {
  return nmnistOf(parseSchema(nmnistSchema, options, 'data'), ctx, files);
}

/** {@link openNmnist} from parsed options. */
async function nmnistOf(o: SchemaValues<typeof nmnistSchema>, ctx: DatasetContext, files: FileAccess = nodeFiles): Promise<Dataset> {
  const dir = o.dir ?? join(ctx.cacheDir, 'nmnist');
  const root = await files.stat(dir);
  if (!root?.directory) throw invalid(`nmnist: ${dir}`, `${root ? 'is a file, not a folder' : 'no such folder'}. ${notPublishedHere(dir)}`, { dir });
  const splits: Record<string, EventSource> = {};
  for (const [split, name] of Object.entries(NMNIST_SPLIT_DIRS)) {
    const splitDir = join(dir, name);
    if (!(await files.stat(splitDir))?.directory) {
      const zipped = await files.stat(join(dir, `${name}.zip`));
      throw invalid(
        `nmnist: ${dir}`,
        zipped ? `holds ${name}.zip but no ${name}/ folder: unzip ${name}.zip there first` : `has no ${name}/ folder. ${notPublishedHere(dir)}`,
        { dir },
      );
    }
    const list = await listNmnistSplit(splitDir, files);
    if (list.length === 0)
      throw invalid(`nmnist: ${splitDir}`, `holds no samples: expected ${name}/<digit>/<id>.bin (digit folders 0 to 9). ${notPublishedHere(dir)}`, { dir });
    const limit = split === 'train' ? o.trainLimit : o.testLimit;
    splits[split] = nmnistSource(limit === undefined ? list : list.slice(0, limit), split, files);
  }
  return createEventDataset({
    name: 'nmnist',
    sensor: NMNIST_SENSOR,
    classes: 10,
    splits,
    binning: binningOf(o, NMNIST_DEFAULT_BINS),
    ...transformsFromOptions(o),
  });
}

/**
 * The samples `path` holds: a `.bin` file (its label from a digit folder above it, if any); a
 * folder in the published layout (`Train/` and/or `Test/` with digit folders); a split folder
 * (digit folders); or a digit folder of `.bin` files. Undefined for anything else.
 */
async function samplesAt(path: string, files: FileAccess): Promise<{ list: NmnistFile[]; splits?: Record<string, number> } | undefined> {
  const s = await files.stat(path);
  if (!s) return undefined;
  const parent = basename(dirname(path));
  if (!s.directory) return isBin(path) ? { list: [{ path, label: isDigit(parent) ? Number(parent) : undefined }] } : undefined;
  const entries = await files.list(path);
  const dirs = new Set(entries.filter((e) => e.directory).map((e) => e.name));
  const splitNames = Object.entries(NMNIST_SPLIT_DIRS).filter(([, n]) => dirs.has(n));
  if (splitNames.length) {
    const list: NmnistFile[] = [];
    const splits: Record<string, number> = {};
    for (const [split, n] of splitNames) {
      const l = await listNmnistSplit(join(path, n), files);
      splits[split] = l.length;
      list.push(...l);
    }
    return list.length ? { list, splits } : undefined;
  }
  if ([...dirs].some(isDigit)) {
    const list = await listNmnistSplit(path, files);
    return list.length ? { list } : undefined;
  }
  const own = basename(path);
  const bins = entries
    .filter((e) => !e.directory && isBin(e.name))
    .map((e) => e.name)
    .sort(naturalOrder);
  return bins.length ? { list: bins.map((n) => ({ path: join(path, n), label: isDigit(own) ? Number(own) : undefined })) } : undefined;
}

/**
 * Summarises N-MNIST data at `path` (see {@link samplesAt} for what it may be), reading one
 * sample file at a time: samples, shape `[2, 34, 34]`, events per sample, the longest duration
 * and the digits' histogram. Any bad sample file is a `DATA_INVALID` error naming it.
 */
export async function inspectNmnist(path: string, files: FileAccess = nodeFiles): Promise<DataFileSummary> {
  const found = await samplesAt(path, files);
  if (!found) {
    const exists = await files.stat(path);
    throw invalid(
      path,
      exists
        ? 'is not N-MNIST data: expected a .bin sample file, or a folder holding Train/<digit>/<id>.bin and Test/<digit>/<id>.bin (or one split, or one digit folder)'
        : 'no such file or folder',
      { file: path },
    );
  }
  const stats = new EventStatsBuilder();
  for (let i = 0; i < found.list.length; i++) {
    const f = found.list[i]!;
    const ev = await readNmnistFile(f, files, found.list.length === 1 && f.path === path ? path : `${f.path} (sample ${i} of ${path})`);
    const n = ev.t.length;
    stats.add(n, n ? ev.t[n - 1]! : 0, f.label);
  }
  const s = stats.build();
  const labelled = Object.keys(s.labelHistogram).length > 0;
  return {
    path,
    format: 'nmnist',
    samples: s.samples,
    shape: [NMNIST_SENSOR.polarities, NMNIST_SENSOR.height, NMNIST_SENSOR.width],
    dtype: 'events',
    sensor: { ...NMNIST_SENSOR },
    ...(found.splits ? { splits: found.splits } : {}),
    eventsPerSample: s.eventsPerSample,
    durationSec: s.durationSec,
    ...(labelled ? { classes: s.classes, labelHistogram: s.labelHistogram } : {}),
  };
}

/**
 * `'nmnist'` for a `.bin` file whose size is a whole number of 5-byte events, or a folder in the
 * published layout (`Train/` or `Test/` holding digit folders, or digit folders of `.bin` files);
 * undefined otherwise (never throws).
 */
export async function detectNmnist(path: string, files: FileAccess = nodeFiles): Promise<'nmnist' | undefined> {
  try {
    const s = await files.stat(path);
    if (!s) return undefined;
    if (!s.directory) return isBin(path) && s.size % NMNIST_EVENT_BYTES === 0 ? 'nmnist' : undefined;
    const dirs = (await files.list(path)).filter((e) => e.directory).map((e) => e.name);
    const splitDirs = dirs.filter((d) => d === NMNIST_SPLIT_DIRS.train || d === NMNIST_SPLIT_DIRS.test);
    for (const d of splitDirs) if ((await files.list(join(path, d))).some((e) => e.directory && isDigit(e.name))) return 'nmnist';
    for (const d of dirs.filter(isDigit)) if ((await files.list(join(path, d))).some((e) => !e.directory && isBin(e.name))) return 'nmnist';
    return undefined;
  } catch {
    return undefined;
  }
}

/**
 * N-MNIST (Orchard et al. 2015): MNIST digits recorded by an ATIS event camera moved in three
 * saccades; 34 × 34 pixels, ON/OFF events, 60,000 train and 10,000 test samples, 10 classes.
 */
export const nmnistEntry: DatasetEntry<typeof nmnistSchema> = {
  name: 'nmnist',
  description:
    'N-MNIST: MNIST digits recorded by an event camera (34×34, ON/OFF), binned into frames; reads Train/ and Test/ as unzipped from the published archives',
  optionsSchema: nmnistSchema,
  open: (o, ctx) => nmnistOf(o, ctx),
  formats: ['nmnist'],
  inspect: async (path, format) => {
    if (format !== 'nmnist') throw configError('--format', `the nmnist dataset reads format 'nmnist', not '${format}'`);
    return inspectNmnist(path);
  },
  detect: (path) => detectNmnist(path),
};

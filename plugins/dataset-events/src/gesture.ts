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
  createEventDataset,
  eventViewSchema,
  transformsFromOptions,
  type EventRecord,
  type EventSource,
  type Sensor,
} from '@spikeflow/events';
import { basename, dirname, join } from 'node:path';
import { indexAedat, isAedat31, readAedatInterval, scanAedat, type AedatIndex } from './aedat.js';
import { invalid, nodeFiles, readWhole, type FileAccess } from './files.js';
import { binningOf, limitSchema } from './nmnist.js';

/*
 * DVS128 Gesture (Amir et al., "A Low Power, Fully Event-Based Gesture Recognition System",
 * CVPR 2017): 29 subjects performing 11 gestures under 3 lighting conditions, recorded by a
 * DVS128 (128 × 128 pixels, ON/OFF). The archive DvsGesture.tar.gz extracts to DvsGesture/
 * holding one AEDAT 3.1 recording per subject and lighting, `userXX_<lighting>.aedat`, its
 * segments in `userXX_<lighting>_labels.csv` (header `class,startTime_usec,endTime_usec`, classes
 * 1..11, times in the recording's µs), and the recordings of each split listed in
 * trials_to_train.txt and trials_to_test.txt.
 */

/** The DVS128: 128 × 128 pixels, ON/OFF. */
export const DVS128_SENSOR: Sensor = { width: 128, height: 128, polarities: 2 };

/** The 11 gestures; label = class − 1 (the labels CSVs number them 1..11). */
export const GESTURE_CLASSES = [
  'hand clapping',
  'right hand wave',
  'left hand wave',
  'right arm clockwise',
  'right arm counter-clockwise',
  'left arm clockwise',
  'left arm counter-clockwise',
  'arm roll',
  'air drums',
  'air guitar',
  'other gestures',
] as const;

/** Where DVS Gesture is published (a manual download); quoted in "not found" messages. */
export const DVS_GESTURE_HOME =
  'https://research.ibm.com/interactive/dvsgesture/ (the files: DvsGesture.tar.gz at https://ibm.ent.box.com/s/3hiq58ww1pbbjrinh367ykfdf60xsfm8)';

/** The header line of a labels CSV. */
export const GESTURE_LABELS_HEADER = 'class,startTime_usec,endTime_usec';

/** The list files naming each split's recordings. */
export const GESTURE_TRIALS = { train: 'trials_to_train.txt', test: 'trials_to_test.txt' } as const;

/** One labelled segment of a recording: one sample. */
export interface GestureSegment {
  /** 0..10 (the CSV's class − 1). */
  readonly label: number;
  /** The segment [startUs, endUs) in the recording's full microsecond time. */
  readonly startUs: number;
  readonly endUs: number;
}

/**
 * Parses a labels CSV (`class,startTime_usec,endTime_usec`, then one segment per line; blank
 * lines and CRLF line ends allowed). `DATA_INVALID` naming `where` and the line for a wrong
 * header, a missing or non-numeric field, a number beyond 2^53, a class outside 1..11, a negative
 * time, or a segment that ends before it starts.
 */
export function parseGestureLabels(text: string, where: string): GestureSegment[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const head = lines[0]?.trim().replace(/\s*,\s*/g, ',');
  if (head !== GESTURE_LABELS_HEADER) {
    throw invalid(where, `line 1 is ${JSON.stringify(lines[0]?.slice(0, 60) ?? '')}, not the header ${GESTURE_LABELS_HEADER}: not a DVS Gesture labels file`, {
      line: 1,
    });
  }
  const out: GestureSegment[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    const at = `line ${i + 1}`;
    const fields = line.split(',').map((f) => f.trim());
    if (fields.length !== 3)
      throw invalid(where, `${at} has ${fields.length} fields, not 3 (${GESTURE_LABELS_HEADER}): ${JSON.stringify(line.slice(0, 60))}`, { line: i + 1 });
    fields.forEach((f, k) => {
      const name = GESTURE_LABELS_HEADER.split(',')[k];
      if (!/^[+-]?\d+$/.test(f)) throw invalid(where, `${at}: ${name} is ${JSON.stringify(f.slice(0, 40))}, not a whole number`, { line: i + 1 });
      // Beyond 2^53 a number is inexact (and past ~308 digits Infinity): no recording is that long.
      if (!Number.isSafeInteger(Number(f))) {
        const digits = f.replace(/^[+-]/, '').length;
        throw invalid(where, `${at}: ${name} is ${f.length > 16 ? `${f.slice(0, 12)}… (${digits} digits)` : f}, beyond 2^53 µs`, { line: i + 1 });
      }
    });
    const [cls, start, end] = fields.map(Number) as [number, number, number];
    if (cls < 1 || cls > GESTURE_CLASSES.length) throw invalid(where, `${at}: class ${cls} is outside 1..${GESTURE_CLASSES.length}`, { line: i + 1 });
    if (start < 0 || end < 0) throw invalid(where, `${at}: negative time (${start < 0 ? start : end} µs)`, { line: i + 1 });
    if (end < start) throw invalid(where, `${at}: the segment ends (${end} µs) before it starts (${start} µs)`, { line: i + 1 });
    out.push({ label: cls - 1, startUs: start, endUs: end });
  }
  return out;
}

/** Writes segments as a labels CSV (the inverse of {@link parseGestureLabels}; class = label + 1, CRLF lines). */
export function encodeGestureLabels(segments: readonly GestureSegment[]): string {
  return [GESTURE_LABELS_HEADER, ...segments.map((s) => `${s.label + 1},${s.startUs},${s.endUs}`)].map((l) => `${l}\r\n`).join('');
}

/**
 * The recordings a trials list names (one per line; blank lines skipped; `.aedat` added where
 * missing). Each must be a file name in the list's folder: `DATA_INVALID` naming `where` and the
 * line for a path (a `/` or `\\`, `.` or `..`) or a control character.
 */
export function parseTrials(text: string, where = 'trials list'): string[] {
  const out: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const l = raw.trim();
    if (l === '') return;
    // biome-ignore lint/suspicious/noControlCharactersInRegex: a control character in a file name is what this check refuses
    if (/[/\\\u0000-\u001f\u007f]/.test(l) || l === '.' || l === '..') {
      throw invalid(
        where,
        `line ${i + 1} is ${JSON.stringify(l.slice(0, 60))}, not a recording's file name: the list is damaged; extract DvsGesture.tar.gz again`,
        { line: i + 1 },
      );
    }
    out.push(l.toLowerCase().endsWith('.aedat') ? l : `${l}.aedat`);
  });
  return out;
}

/** The labels CSV of a recording: `userXX_<lighting>.aedat` → `userXX_<lighting>_labels.csv`. */
export function labelsPathOf(recording: string): string {
  return join(dirname(recording), `${basename(recording).replace(/\.aedat$/i, '')}_labels.csv`);
}

const decoder = new TextDecoder();
const readText = async (files: FileAccess, path: string) => decoder.decode(await readWhole(files, path));

/** A recording indexed for reading: its file, its packet index and its labelled segments. */
export interface GestureRecording {
  readonly path: string;
  readonly labelsPath: string;
  readonly index: AedatIndex;
  readonly segments: readonly GestureSegment[];
}

/** Indexes a recording (see `indexAedat`), opening and closing it. */
export async function indexRecording(path: string, segments: readonly GestureSegment[], files: FileAccess = nodeFiles): Promise<GestureRecording> {
  const f = await files.open(path);
  try {
    return { path, labelsPath: labelsPathOf(path), index: await indexAedat(f), segments };
  } finally {
    await f.close();
  }
}

/** The words that name sample `i` in errors: the recording, the segment and its class and times. */
function sampleWhere(rec: GestureRecording, s: number, what: string): string {
  const seg = rec.segments[s]!;
  return `${rec.path} (${what}: segment ${s + 1} of ${basename(rec.labelsPath)}, class ${seg.label + 1}, ${seg.startUs}–${seg.endUs} µs)`;
}

/** Reads segment `s` of an indexed recording: its events, times in seconds after the segment's start. */
export async function readSegment(rec: GestureRecording, s: number, files: FileAccess, what: string): Promise<EventRecord> {
  const seg = rec.segments[s]!;
  const f = await files.open(rec.path);
  try {
    return { events: await readAedatInterval(f, rec.index, seg.startUs, seg.endUs, DVS128_SENSOR, sampleWhere(rec, s, what)), label: seg.label };
  } finally {
    await f.close();
  }
}

/**
 * An {@link EventSource} over the segments of indexed recordings, in order (recording by
 * recording, each in its CSV's order), capped at `limit`. Sample i opens its recording and reads
 * only the packets that overlap its segment.
 */
export function gestureSource(recordings: readonly GestureRecording[], split: string, files: FileAccess = nodeFiles, limit = Infinity): EventSource {
  const rec: number[] = [];
  const seg: number[] = [];
  recordings.forEach((r, k) => {
    r.segments.forEach((_, s) => {
      rec.push(k);
      seg.push(s);
    });
  });
  const count = Math.min(rec.length, limit);
  return {
    count,
    read(i: number) {
      if (!(i >= 0 && i < count))
        throw new SpikeflowError('CONFIG_INVALID', `dvs-gesture ${split}: no sample ${i} (the split has ${count})`, { path: 'index' });
      return readSegment(recordings[rec[i]!]!, seg[i]!, files, `dvs-gesture ${split} sample ${i}`);
    },
  };
}

const notPublishedHere = (dir: string) =>
  `This plugin does not download DVS Gesture: it is published as DvsGesture.tar.gz behind ${DVS_GESTURE_HOME}, which needs a manual download. ` +
  `Extract it (tar xzf DvsGesture.tar.gz) into ${dir} so that ${join(dir, 'DvsGesture')} (or ${dir} itself) holds the userXX_<lighting>.aedat recordings, their userXX_<lighting>_labels.csv files, ` +
  `${GESTURE_TRIALS.train} and ${GESTURE_TRIALS.test}; or set the data option dir to that folder`;

/** The folder holding the trials lists: `dir` itself or its `DvsGesture/` (as the archive extracts). */
async function gestureRoot(dir: string, files: FileAccess): Promise<string> {
  for (const d of [dir, join(dir, 'DvsGesture')]) if (await files.stat(join(d, GESTURE_TRIALS.train))) return d;
  const s = await files.stat(dir);
  if (!s?.directory) throw invalid(`dvs-gesture: ${dir}`, `${s ? 'is a file, not a folder' : 'no such folder'}. ${notPublishedHere(dir)}`, { dir });
  const archive = await files.stat(join(dir, 'DvsGesture.tar.gz'));
  throw invalid(
    `dvs-gesture: ${dir}`,
    archive
      ? `holds DvsGesture.tar.gz but not its contents: extract it there first (tar xzf DvsGesture.tar.gz)`
      : `has no ${GESTURE_TRIALS.train} (nor has ${join(dir, 'DvsGesture')}). ${notPublishedHere(dir)}`,
    { dir },
  );
}

/** Runs `f` over `items` with at most `n` calls in flight; results in order. */
async function mapLimit<T, R>(items: readonly T[], n: number, f: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await f(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

/**
 * The recordings of one split, indexed: the trials list's recordings in order, each with its
 * labels, until `limit` segments are covered (recordings past the limit are neither read nor
 * indexed). `DATA_INVALID` naming the list for a recording or labels file that is missing.
 */
export async function openGestureSplit(
  root: string,
  split: keyof typeof GESTURE_TRIALS,
  files: FileAccess = nodeFiles,
  limit = Infinity,
): Promise<GestureRecording[]> {
  const listPath = join(root, GESTURE_TRIALS[split]);
  if (!(await files.stat(listPath)))
    throw invalid(
      `dvs-gesture: ${root}`,
      `has ${GESTURE_TRIALS.train} but no ${GESTURE_TRIALS[split]}: the extracted archive is incomplete; extract DvsGesture.tar.gz again`,
      { dir: root },
    );
  const wanted: { path: string; segments: GestureSegment[] }[] = [];
  let total = 0;
  for (const name of parseTrials(await readText(files, listPath), listPath)) {
    if (total >= limit) break;
    const path = join(root, name);
    const labels = labelsPathOf(path);
    for (const [p, what] of [
      [path, 'recording'],
      [labels, 'labels file'],
    ] as const) {
      if (!(await files.stat(p)))
        throw invalid(
          listPath,
          `lists ${name}, whose ${what} ${basename(p)} is not in ${root}: the extracted archive is incomplete; extract DvsGesture.tar.gz again`,
          { file: p },
        );
    }
    const segments = parseGestureLabels(await readText(files, labels), labels);
    wanted.push({ path, segments });
    total += segments.length;
  }
  return mapLimit(wanted, 4, (w) => indexRecording(w.path, w.segments, files));
}

/** Default frames per DVS Gesture sample (50 ms each over the default 3 s). */
export const DVS_GESTURE_DEFAULT_BINS = 60;

/** Options of the `dvs-gesture` dataset (flat, as a config's `data` section holds them). */
export const dvsGestureSchema = {
  dir: {
    type: 'string',
    doc: 'folder of the extracted DvsGesture archive: the .aedat recordings, their _labels.csv files, trials_to_train.txt and trials_to_test.txt (default <cacheDir>/dvs-gesture; a DvsGesture/ folder inside it is found too)',
  },
  ...eventViewSchema,
  bins: { ...eventViewSchema.bins, doc: `frames per sample (T; default ${DVS_GESTURE_DEFAULT_BINS} where no window is given)` },
  maxTime: { ...eventViewSchema.maxTime, default: 3, doc: "seconds after a segment's start: later events are cropped (segments last about 6 s)" },
  downsample: { ...eventViewSchema.downsample, default: 4, doc: 'whole factor merging neighbouring pixels (4: 128×128 → 32×32)' },
  ...limitSchema,
} as const;

/** Options as code passes them: every field optional, defaults as in {@link dvsGestureSchema}. */
export type DvsGestureOptions = SchemaInput<typeof dvsGestureSchema>;

/**
 * Opens DVS128 Gesture from `dir` (default `<cacheDir>/dvs-gesture`): reads the trials lists and
 * labels CSVs, indexes each recording once (packet offsets and times, see `indexAedat`), and
 * reads a sample's packets only when a batch needs it. Each labelled segment is a sample, its
 * times in seconds after the segment's start. Batches are `[T, B, 2·32·32]` by default
 * (downsample 4), targets the gestures 0..10 ({@link GESTURE_CLASSES}). Options are checked
 * against {@link dvsGestureSchema} (`CONFIG_INVALID` naming `data.<field>`), defaults filled.
 */
export async function openDvsGesture(options: DvsGestureOptions, ctx: DatasetContext, files: FileAccess = nodeFiles): Promise<Dataset> {
  return dvsGestureOf(parseSchema(dvsGestureSchema, options, 'data'), ctx, files);
}

/** {@link openDvsGesture} from parsed options. */
async function dvsGestureOf(o: SchemaValues<typeof dvsGestureSchema>, ctx: DatasetContext, files: FileAccess = nodeFiles): Promise<Dataset> {
  const root = await gestureRoot(o.dir ?? join(ctx.cacheDir, 'dvs-gesture'), files);
  const splits: Record<string, EventSource> = {};
  for (const split of ['train', 'test'] as const) {
    const limit = (split === 'train' ? o.trainLimit : o.testLimit) ?? Infinity;
    splits[split] = gestureSource(await openGestureSplit(root, split, files, limit), split, files, limit);
  }
  return createEventDataset({
    name: 'dvs-gesture',
    sensor: DVS128_SENSOR,
    classes: GESTURE_CLASSES.length,
    splits,
    binning: binningOf(o, DVS_GESTURE_DEFAULT_BINS),
    ...transformsFromOptions(o),
  });
}

/**
 * Summarises an AEDAT 3.1 recording. With its labels CSV next to it
 * (`userXX_<lighting>_labels.csv`), every segment is a sample, read one at a time; without, the
 * whole recording is one sample, scanned one packet at a time. `DATA_INVALID` for a bad file.
 */
export async function inspectAedat(path: string, files: FileAccess = nodeFiles): Promise<DataFileSummary> {
  if (!(await files.stat(path))) throw invalid(path, 'no such file', { file: path });
  const labelsPath = labelsPathOf(path);
  const hasLabels = path.toLowerCase().endsWith('.aedat') && (await files.stat(labelsPath)) !== undefined;
  const segments = hasLabels ? parseGestureLabels(await readText(files, labelsPath), labelsPath) : undefined;
  const stats = new EventStatsBuilder();
  const f = await files.open(path);
  let index: AedatIndex;
  try {
    index = await indexAedat(f);
    if (segments) {
      const rec: GestureRecording = { path, labelsPath, index, segments };
      for (let s = 0; s < segments.length; s++) {
        const ev = await readAedatInterval(f, index, segments[s]!.startUs, segments[s]!.endUs, DVS128_SENSOR, sampleWhere(rec, s, `sample ${s}`));
        const n = ev.t.length;
        stats.add(n, n ? ev.t[n - 1]! : 0, segments[s]!.label);
      }
    } else {
      let n = 0;
      let lastTime = 0;
      await scanAedat(f, index, DVS128_SENSOR, (ev) => {
        n += ev.t.length;
        if (ev.t.length) lastTime = ev.t[ev.t.length - 1]!;
      });
      stats.add(n, lastTime, undefined);
    }
  } finally {
    await f.close();
  }
  const s = stats.build();
  return {
    path,
    format: 'aedat',
    samples: s.samples,
    shape: [DVS128_SENSOR.polarities, DVS128_SENSOR.height, DVS128_SENSOR.width],
    dtype: 'events',
    sensor: { ...DVS128_SENSOR },
    labels: hasLabels ? labelsPath : null,
    packets: index.packets,
    eventsPerSample: s.eventsPerSample,
    durationSec: s.durationSec,
    ...(segments ? { classes: s.classes, labelHistogram: s.labelHistogram } : {}),
  };
}

/**
 * `'aedat'` for a file that starts with `#!AER-DAT3.1`, or whose name ends in `.aedat` (so that
 * inspecting another AEDAT version says which it is); undefined otherwise (never throws).
 */
export async function detectAedat(path: string, files: FileAccess = nodeFiles): Promise<'aedat' | undefined> {
  try {
    const s = await files.stat(path);
    if (!s || s.directory) return undefined;
    if (path.toLowerCase().endsWith('.aedat')) return 'aedat';
    const f = await files.open(path);
    try {
      return isAedat31(await f.read(0, 16)) ? 'aedat' : undefined;
    } finally {
      await f.close();
    }
  } catch {
    return undefined;
  }
}

/**
 * DVS128 Gesture (Amir et al. 2017): 11 hand and arm gestures by 29 subjects under 3 lighting
 * conditions, recorded by a DVS128 (128 × 128, ON/OFF); each labelled segment is a sample.
 */
export const dvsGestureEntry: DatasetEntry<typeof dvsGestureSchema> = {
  name: 'dvs-gesture',
  description:
    'DVS128 Gesture: 11 gestures recorded by a DVS128 (128×128, ON/OFF), one sample per labelled segment, downsampled and binned into frames; reads the extracted AEDAT 3.1 archive',
  optionsSchema: dvsGestureSchema,
  open: (o, ctx) => dvsGestureOf(o, ctx),
  formats: ['aedat'],
  inspect: async (path, format) => {
    if (format !== 'aedat') throw configError('--format', `the dvs-gesture dataset reads format 'aedat', not '${format}'`);
    return inspectAedat(path);
  },
  detect: (path) => detectAedat(path),
};

import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, readdirSync, renameSync, writeSync, unlinkSync, mkdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';
import type { TensorTree } from './state.js';
import { isPlainObject } from './validate.js';

/**
 * Checkpoint files: one binary file, written atomically, that is only data.
 *
 *     bytes 0..7      magic "SPKFLOW\x02"
 *     bytes 8..11     header length H (uint32, little-endian)
 *     bytes 12..12+H  header: UTF-8 JSON { format: 2, meta, trees, tensors: [{ shape, dtype, offset, length }], payloadBytes }
 *     then            payload: every tensor's little-endian data, back to back
 *     last 32 bytes   SHA-256 of every byte before them (magic, length, header and payload)
 *
 * Reading checks, in this order and before anything is built: the size, the magic, the digest
 * (so any changed byte is refused), then the header field by field — every tensor entry must lie
 * inside the payload with a length that its shape implies, every tree leaf must name an existing
 * tensor — so a malformed file is `CHECKPOINT_INVALID`, never a TypeError, and no size read from
 * the file is allocated before it is checked against the file's own length.
 *
 * The digest detects damage and edits made without recomputing it; it is not a signature. What
 * makes a checkpoint safe to open is that nothing in it is ever executed: readers of the stored
 * run config refuse plugin specifiers that are not installed packages ({@link checkStoredPlugins}).
 *
 * Format 1 (magic "SPKFLOW\x01", written before 2026-12) kept a digest of the payload only, in the
 * header. It is still read, with a warning, and validated the same way.
 */
const MAGIC_PREFIX = 'SPKFLOW';
const FORMAT = 2;
const DIGEST_BYTES = 32;
/** Deepest nesting of a stored tree or of its metadata that is read (deeper is refused, not recursed into). */
const MAX_DEPTH = 64;

// Made when a checkpoint is written or read, not when the module loads: browsers have no Buffer.
const magic = (format: number) => Buffer.from(`${MAGIC_PREFIX}${String.fromCharCode(format)}`, 'latin1');

type Encoded = null | boolean | number | string | { $tensor: number } | Encoded[] | { [k: string]: Encoded };

interface TensorEntry {
  shape: number[];
  dtype: 'float32' | 'int32';
  offset: number;
  length: number;
}

interface Header {
  format: number;
  meta: unknown;
  trees: Record<string, Encoded>;
  tensors: TensorEntry[];
  payloadBytes: number;
  /** Format 1 only: the payload's digest. */
  sha256?: string;
}

/** What a checkpoint holds: JSON metadata and named tensor trees (weights, optimizer state, rule state). */
export interface CheckpointContents<M = unknown> {
  readonly meta: M;
  readonly trees: Readonly<Record<string, TensorTree>>;
}

/** A checkpoint as read: its contents and the format it was stored in. */
export interface LoadedCheckpoint<M = unknown> extends CheckpointContents<M> {
  readonly format: number;
}

export interface CheckpointReadOptions {
  /** Where notices go (an old format read); default: standard error. */
  readonly warn?: (message: string) => void;
}

const defaultWarn = (m: string) => {
  process.stderr.write(`spikeflow: warning: ${m}\n`);
};

function encodeTree(tree: TensorTree, tensors: Tensor[]): Encoded {
  if (tree instanceof tf.Tensor) {
    tensors.push(tree);
    return { $tensor: tensors.length - 1 };
  }
  if (tree === undefined) return null;
  if (tree === null || typeof tree !== 'object') return tree;
  if (Array.isArray(tree)) return tree.map((t) => encodeTree(t as TensorTree, tensors));
  const out: Record<string, Encoded> = {};
  for (const [k, v] of Object.entries(tree as Record<string, TensorTree>)) out[k] = encodeTree(v, tensors);
  return out;
}

/** Sets an own property, whatever its name (`__proto__` included), without touching prototypes. */
function own<T>(out: Record<string, T>, k: string, v: T): void {
  Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
}

/** Rebuilds a stored tree; `tensor(i)` makes (once) the tensor of entry i. */
function decodeTree(e: Encoded, tensor: (i: number) => Tensor): TensorTree {
  if (e === null || typeof e !== 'object') return e;
  if (Array.isArray(e)) return e.map((x) => decodeTree(x, tensor));
  if ('$tensor' in e) return tensor(e.$tensor as number);
  const out: Record<string, TensorTree> = {};
  for (const [k, v] of Object.entries(e)) own(out, k, decodeTree(v as Encoded, tensor));
  return out;
}

/** Writes all of `b` (a write may take less than asked). */
function writeAll(fd: number, b: Uint8Array): void {
  for (let at = 0; at < b.byteLength; ) at += writeSync(fd, b, at, b.byteLength - at);
}

/** Removes temporary files of earlier writers of `path` that were killed before their rename. */
function sweepStale(path: string): void {
  const prefix = `${basename(path)}.tmp-`;
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length));
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
      continue; // a live process may be writing it
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') continue;
    }
    try {
      unlinkSync(join(dirname(path), name));
    } catch {
      /* gone already */
    }
  }
}

/**
 * The bytes of a format-2 checkpoint (a Node `Buffer` at run time; typed as the `Uint8Array` it
 * is, so that the published types need no `@types/node`).
 */
export function encodeCheckpoint(contents: CheckpointContents): Uint8Array {
  const tensors: Tensor[] = [];
  const trees: Record<string, Encoded> = {};
  for (const [k, t] of Object.entries(contents.trees)) trees[k] = encodeTree(t, tensors);
  const chunks: Buffer[] = [];
  const entries: TensorEntry[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (t.dtype !== 'float32' && t.dtype !== 'int32') {
      throw new SpikeflowError('CHECKPOINT_INVALID', `checkpoint: cannot store a ${t.dtype} tensor (float32 and int32 only)`);
    }
    const data = t.dataSync() as Float32Array | Int32Array;
    chunks.push(Buffer.from(Buffer.from(data.buffer, data.byteOffset, data.byteLength)));
    entries.push({ shape: [...t.shape], dtype: t.dtype, offset, length: data.byteLength });
    offset += data.byteLength;
  }
  const header: Header = { format: FORMAT, meta: contents.meta, trees, tensors: entries, payloadBytes: offset };
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(head.byteLength);
  const body = Buffer.concat([magic(FORMAT), len, head, ...chunks]);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

/**
 * Writes a checkpoint atomically: to a temporary file beside `path`, flushed to disk, then renamed
 * over `path`. A crash at any point leaves either the previous checkpoint or the new one. A write
 * that fails (a full disk, permissions) removes its temporary file, keeps the previous checkpoint,
 * and throws `IO_FAILED` saying why.
 */
export function saveCheckpoint(path: string, contents: CheckpointContents): void {
  const bytes = encodeCheckpoint(contents);
  const tmp = `${path}.tmp-${process.pid}`;
  let fd: number | undefined;
  try {
    mkdirSync(dirname(path), { recursive: true });
    try {
      fd = openSync(tmp, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      unlinkSync(tmp); // left by a killed process that had this pid
      fd = openSync(tmp, 'wx');
    }
    writeAll(fd, bytes);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (cause) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        /* closed */
      }
    }
    try {
      unlinkSync(tmp);
    } catch {
      /* never made, or gone */
    }
    const why = (cause as NodeJS.ErrnoException).code === 'ENOSPC' ? 'the disk is full (ENOSPC)' : (cause as Error).message;
    throw new SpikeflowError(
      'IO_FAILED',
      `checkpoint ${path}: could not be written: ${why}. The previous checkpoint there (if any) is unchanged; free space or choose another run directory, then resume.`,
      { path, errno: (cause as NodeJS.ErrnoException).code },
      { cause },
    );
  }
  try {
    const dfd = openSync(dirname(path), 'r');
    fsyncSync(dfd);
    closeSync(dfd);
  } catch {
    /* directories cannot be fsynced on every platform */
  }
  sweepStale(path);
}

function invalid(path: string, why: string, cause?: unknown): SpikeflowError {
  return new SpikeflowError(
    'CHECKPOINT_INVALID',
    `checkpoint ${path}: ${why}; refusing to load it (nothing was loaded). Use an intact checkpoint or start a new run.`,
    { path },
    cause === undefined ? undefined : { cause },
  );
}

const isIndex = (x: unknown, max: number): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= max;

/** Checks that `e` is a stored tree whose tensor leaves name entries `[0, n)`, at most {@link MAX_DEPTH} deep. */
function checkEncoded(e: unknown, n: number, where: string, depth: number, fail: (why: string) => never): void {
  if (depth > MAX_DEPTH) fail(`${where} is nested more than ${MAX_DEPTH} levels deep`);
  if (e === null || typeof e === 'boolean' || typeof e === 'string' || (typeof e === 'number' && Number.isFinite(e))) return;
  if (Array.isArray(e)) {
    e.forEach((x, i) => checkEncoded(x, n, `${where}[${i}]`, depth + 1, fail));
    return;
  }
  if (!isPlainObject(e)) fail(`${where} is not a value a checkpoint stores`);
  if ('$tensor' in e) {
    if (Object.keys(e).length !== 1 || !isIndex(e['$tensor'], n - 1)) fail(`${where} names tensor ${JSON.stringify(e['$tensor'])}, but the file has ${n}`);
    return;
  }
  for (const [k, v] of Object.entries(e)) checkEncoded(v, n, `${where}.${k}`, depth + 1, fail);
}

/** Checks that a JSON value is nested at most {@link MAX_DEPTH} deep. */
function checkDepth(e: unknown, where: string, depth: number, fail: (why: string) => never): void {
  if (depth > MAX_DEPTH) fail(`${where} is nested more than ${MAX_DEPTH} levels deep`);
  if (e !== null && typeof e === 'object') for (const v of Object.values(e)) checkDepth(v, where, depth + 1, fail);
}

/** Checks every field of a parsed header against the payload's length. */
function checkHeader(h: unknown, format: number, payloadBytes: number, fail: (why: string) => never): Header {
  if (!isPlainObject(h)) fail('the header is not a JSON object');
  if (h['format'] !== format) fail(`the header says format ${JSON.stringify(h['format'])}, the magic says ${format}`);
  if (h['payloadBytes'] !== payloadBytes)
    fail(`truncated or padded: the payload has ${payloadBytes} bytes, the header declares ${JSON.stringify(h['payloadBytes'])}`);
  const tensors = h['tensors'];
  if (!Array.isArray(tensors)) fail('the header has no tensor list');
  tensors.forEach((t: unknown, i) => {
    const at = `tensor ${i}`;
    if (!isPlainObject(t)) fail(`${at} is not an object`);
    const { shape, dtype, offset, length } = t;
    if (dtype !== 'float32' && dtype !== 'int32') fail(`${at} has dtype ${JSON.stringify(dtype)} (float32 or int32)`);
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => isIndex(d, 2 ** 31))) fail(`${at} has an invalid shape ${JSON.stringify(shape)}`);
    const size = (shape as number[]).reduce((a, b) => a * b, 1);
    if (!isIndex(offset, payloadBytes) || offset % 4 !== 0) fail(`${at} has an invalid offset ${JSON.stringify(offset)}`);
    if (length !== size * 4 || offset + size * 4 > payloadBytes)
      fail(`${at} (shape [${String(shape)}] at byte ${offset}) does not fit the payload of ${payloadBytes} bytes`);
  });
  const trees = h['trees'];
  if (!isPlainObject(trees)) fail('the header has no trees');
  checkEncoded(trees, tensors.length, 'trees', 0, fail);
  checkDepth(h['meta'], 'meta', 0, fail);
  if (format === 1 && (typeof h['sha256'] !== 'string' || !/^[0-9a-f]{64}$/.test(h['sha256']))) fail('the header has no payload digest');
  return h as unknown as Header;
}

/** A checkpoint file read and validated, its tensors not yet built. */
interface ReadCheckpoint {
  readonly format: number;
  readonly header: Header;
  readonly payload: Buffer;
}

function readValidated(path: string, warn: (message: string) => void): ReadCheckpoint {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (cause) {
    throw new SpikeflowError('CHECKPOINT_INVALID', `checkpoint ${path}: cannot read it (${(cause as Error).message})`, { path }, { cause });
  }
  const fail = (why: string): never => {
    throw invalid(path, why);
  };
  if (bytes.byteLength < 12 || bytes.subarray(0, 7).toString('latin1') !== MAGIC_PREFIX) fail('not a spikeflow checkpoint (bad magic)');
  const format = bytes[7]!;
  if (format !== 1 && format !== FORMAT) fail(`format ${format} is not supported (this spikeflow reads formats 1 and ${FORMAT}); a newer spikeflow wrote it?`);
  const end = format === FORMAT ? bytes.byteLength - DIGEST_BYTES : bytes.byteLength;
  if (end < 12) fail(`truncated: ${bytes.byteLength} bytes`);
  if (format === FORMAT && !createHash('sha256').update(bytes.subarray(0, end)).digest().equals(bytes.subarray(end))) {
    fail('its contents do not match its SHA-256 digest (damaged, truncated or edited)');
  }
  const headLen = bytes.readUInt32LE(8);
  if (12 + headLen > end) fail(`truncated: the header declares ${headLen} bytes, the file has ${end - 12} after the magic`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.subarray(12, 12 + headLen).toString('utf8'));
  } catch (cause) {
    throw invalid(path, 'the header is not valid JSON', cause);
  }
  const payload = bytes.subarray(12 + headLen, end);
  const header = checkHeader(parsed, format, payload.byteLength, fail);
  if (format === 1) {
    if (createHash('sha256').update(payload).digest('hex') !== header.sha256) fail('the payload does not match its SHA-256 digest (corrupt)');
    warn(`checkpoint ${path} is in format 1, whose digest does not cover its header; its weights are read, and the next save writes format ${FORMAT}`);
  }
  return { format, header, payload };
}

/**
 * Reads and fully validates a checkpoint and returns its metadata, building no tensor (so it can be
 * read before a backend is chosen). The same checks as {@link loadCheckpoint}.
 */
export function readCheckpointMeta<M = unknown>(
  path: string,
  { warn = defaultWarn }: CheckpointReadOptions = {},
): { readonly meta: M; readonly format: number } {
  const { header, format } = readValidated(path, warn);
  return { meta: header.meta as M, format };
}

/**
 * Reads and fully validates a checkpoint, then builds its tensors (the caller disposes them).
 * Any damage — a changed byte anywhere, a truncated or padded file, a header field out of range —
 * is `CHECKPOINT_INVALID` and nothing is built.
 */
export function loadCheckpoint<M = unknown>(path: string, { warn = defaultWarn }: CheckpointReadOptions = {}): LoadedCheckpoint<M> {
  const { format, header, payload } = readValidated(path, warn);
  // Only entries a tree names become tensors (an unnamed one would never be disposed).
  const built = new Map<number, Tensor>();
  const tensor = (i: number): Tensor => {
    let t = built.get(i);
    if (!t) {
      const e = header.tensors[i]!;
      const copy = new Uint8Array(payload.subarray(e.offset, e.offset + e.length));
      t = tf.tensor(e.dtype === 'int32' ? new Int32Array(copy.buffer) : new Float32Array(copy.buffer), e.shape, e.dtype);
      built.set(i, t);
    }
    return t;
  };
  const trees: Record<string, TensorTree> = {};
  for (const [k, v] of Object.entries(header.trees)) own(trees, k, decodeTree(v, tensor));
  return { meta: header.meta as M, trees, format };
}

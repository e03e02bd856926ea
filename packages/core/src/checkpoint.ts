import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync, unlinkSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';
import type { TensorTree } from './state.js';

/**
 * Checkpoint files: one binary file, written atomically.
 *
 *     bytes 0..7    magic "SPKFLOW\x01"
 *     bytes 8..11   header length H (uint32, little-endian)
 *     bytes 12..    header: UTF-8 JSON { format, meta, trees, tensors: [{ shape, dtype, offset, length }], payloadBytes, sha256 }
 *     then          payload: every tensor's little-endian data, back to back
 *
 * `sha256` covers the payload; the header is validated as JSON. A file that is truncated, has
 * another magic, a header that does not parse, a payload of the wrong length or a wrong digest is
 * refused with `CHECKPOINT_INVALID` before anything is loaded.
 */
// Made when a checkpoint is written or read, not when the module loads: browsers have no Buffer.
const magic = () => Buffer.from('SPKFLOW\x01', 'latin1');
const FORMAT = 1;

type Encoded = null | boolean | number | string | { $tensor: number } | Encoded[] | { [k: string]: Encoded };

interface Header {
  format: number;
  meta: unknown;
  trees: Record<string, Encoded>;
  tensors: { shape: number[]; dtype: 'float32' | 'int32'; offset: number; length: number }[];
  payloadBytes: number;
  sha256: string;
}

/** What a checkpoint holds: JSON metadata and named tensor trees (weights, optimizer state, rule state). */
export interface CheckpointContents<M = unknown> {
  readonly meta: M;
  readonly trees: Readonly<Record<string, TensorTree>>;
}

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

function decodeTree(e: Encoded, tensors: Tensor[]): TensorTree {
  if (e === null || typeof e !== 'object') return e;
  if (Array.isArray(e)) return e.map((x) => decodeTree(x, tensors));
  if ('$tensor' in e && typeof e.$tensor === 'number') return tensors[e.$tensor]!;
  const out: Record<string, TensorTree> = {};
  for (const [k, v] of Object.entries(e)) out[k] = decodeTree(v as Encoded, tensors);
  return out;
}

/**
 * Writes a checkpoint atomically: to a temporary file beside `path`, flushed to disk, then renamed
 * over `path`. A crash at any point leaves either the previous checkpoint or the new one.
 */
export function saveCheckpoint(path: string, contents: CheckpointContents): void {
  const tensors: Tensor[] = [];
  const trees: Record<string, Encoded> = {};
  for (const [k, t] of Object.entries(contents.trees)) trees[k] = encodeTree(t, tensors);
  const chunks: Buffer[] = [];
  const entries: Header['tensors'] = [];
  let offset = 0;
  for (const t of tensors) {
    if (t.dtype !== 'float32' && t.dtype !== 'int32') {
      throw new SpikeflowError('CHECKPOINT_INVALID', `checkpoint: cannot store a ${t.dtype} tensor (float32 and int32 only)`);
    }
    const data = t.dataSync() as Float32Array | Int32Array;
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    chunks.push(Buffer.from(buf));
    entries.push({ shape: t.shape, dtype: t.dtype, offset, length: buf.byteLength });
    offset += buf.byteLength;
  }
  const payload = Buffer.concat(chunks);
  const header: Header = {
    format: FORMAT,
    meta: contents.meta,
    trees,
    tensors: entries,
    payloadBytes: payload.byteLength,
    sha256: createHash('sha256').update(payload).digest('hex'),
  };
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(head.byteLength);
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    for (const b of [magic(), len, head, payload]) writeSync(fd, b);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
  try {
    const dfd = openSync(dirname(path), 'r');
    fsyncSync(dfd);
    closeSync(dfd);
  } catch {
    /* directories cannot be fsynced on every platform */
  }
}

function invalid(path: string, why: string, cause?: unknown): SpikeflowError {
  return new SpikeflowError(
    'CHECKPOINT_INVALID',
    `checkpoint ${path}: ${why}; refusing to load it (nothing was loaded). Use an intact checkpoint or start a new run.`,
    { path },
    cause === undefined ? undefined : { cause },
  );
}

/** Reads and fully validates a checkpoint, then builds its tensors (the caller disposes them). */
export function loadCheckpoint<M = unknown>(path: string): CheckpointContents<M> {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (cause) {
    throw new SpikeflowError('CHECKPOINT_INVALID', `checkpoint ${path}: cannot read it (${(cause as Error).message})`, { path }, { cause });
  }
  if (bytes.byteLength < 12 || !bytes.subarray(0, 8).equals(magic())) throw invalid(path, 'not a spikeflow checkpoint (bad magic)');
  const headLen = bytes.readUInt32LE(8);
  if (12 + headLen > bytes.byteLength) throw invalid(path, `truncated: header declares ${headLen} bytes, the file has ${bytes.byteLength - 12} after the magic`);
  let header: Header;
  try {
    header = JSON.parse(bytes.subarray(12, 12 + headLen).toString('utf8')) as Header;
  } catch (cause) {
    throw invalid(path, 'the header is not valid JSON', cause);
  }
  if (header.format !== FORMAT) throw invalid(path, `format ${String(header.format)} is not supported (this spikeflow reads format ${FORMAT})`);
  const payload = bytes.subarray(12 + headLen);
  if (payload.byteLength !== header.payloadBytes) {
    throw invalid(path, `truncated or padded: the payload has ${payload.byteLength} bytes, the header declares ${header.payloadBytes}`);
  }
  if (createHash('sha256').update(payload).digest('hex') !== header.sha256) throw invalid(path, 'the payload does not match its SHA-256 digest (corrupt)');
  for (const e of header.tensors) {
    const n = e.shape.reduce((a, b) => a * b, 1);
    if (e.offset + e.length > payload.byteLength || e.length !== n * 4 || e.offset % 4 !== 0) throw invalid(path, 'a tensor entry does not fit the payload');
  }
  const tensors = header.tensors.map((e) => {
    const copy = new Uint8Array(payload.subarray(e.offset, e.offset + e.length));
    const data = e.dtype === 'int32' ? new Int32Array(copy.buffer) : new Float32Array(copy.buffer);
    return tf.tensor(data, e.shape, e.dtype);
  });
  const trees: Record<string, TensorTree> = {};
  for (const [k, v] of Object.entries(header.trees)) trees[k] = decodeTree(v, tensors);
  return { meta: header.meta as M, trees };
}

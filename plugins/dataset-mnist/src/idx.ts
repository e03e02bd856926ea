import { SpikeflowError, type DataFileSummary } from '@spikeflow/core';
import { readFile } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';

/**
 * The IDX format of LeCun, Cortes & Burges' MNIST files (also used by Fashion-MNIST, Xiao et al.
 * 2017), http://yann.lecun.com/exdb/mnist/:
 *
 * ```
 * offset 0   2 bytes  0x00 0x00
 * offset 2   1 byte   element type: 0x08 ubyte, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
 * offset 3   1 byte   number of dimensions n
 * offset 4   4·n bytes  the sizes of the dimensions, big-endian uint32 each
 * offset 4+4n         the data, row-major (last index fastest), big-endian elements
 * ```
 *
 * MNIST images are `[N, 28, 28]` ubyte (0 = background, 255 = ink), labels `[N]` ubyte 0..9.
 * Files are distributed gzipped; a file that starts with the gzip magic `1f 8b` is decompressed first.
 */
export type IdxType = 'ubyte' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';

export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  /** Element type, by name. */
  readonly type: IdxType;
  /** Dimension sizes, outermost first (`[N, 28, 28]` for MNIST images). */
  readonly dims: readonly number[];
  /** All elements, row-major, in native byte order. */
  readonly data: IdxData;
  /** Whether the bytes were gzip-compressed. */
  readonly compressed: boolean;
}

/** IDX element types by their code in byte 2 of the magic number, with element sizes. */
export const IDX_TYPES: ReadonlyMap<number, { readonly type: IdxType; readonly size: number }> = new Map([
  [0x08, { type: 'ubyte', size: 1 }],
  [0x09, { type: 'int8', size: 1 }],
  [0x0b, { type: 'int16', size: 2 }],
  [0x0c, { type: 'int32', size: 4 }],
  [0x0d, { type: 'float32', size: 4 }],
  [0x0e, { type: 'float64', size: 8 }],
]);

/** Where the standard MNIST files can be had; quoted in "file not found" messages. */
export const MNIST_HOME = 'http://yann.lecun.com/exdb/mnist/ (mirror: https://storage.googleapis.com/cvdf-datasets/mnist/)';

function invalid(name: string, message: string, extra: Record<string, unknown> = {}, cause?: unknown): SpikeflowError {
  return new SpikeflowError('DATA_INVALID', `${name}: ${message}`, { file: name, ...extra }, cause === undefined ? undefined : { cause });
}

const hex = (b: number) => `0x${b.toString(16).padStart(2, '0')}`;

/** True when `bytes` start with the gzip magic number `1f 8b` (RFC 1952). */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Parses the bytes of an IDX file (raw or gzipped). `name` is used in error messages. Refuses
 * (`DATA_INVALID`) a bad gzip stream, a bad magic number, an unknown element type, and any
 * disagreement between the header and the file size: fewer data bytes than the dimensions declare
 * (truncated) or more (the header does not describe the file).
 */
export function parseIdx(input: Uint8Array, name: string): IdxArray {
  let bytes = input;
  const compressed = isGzip(input);
  if (compressed) {
    try {
      bytes = gunzipSync(input);
    } catch (cause) {
      throw invalid(
        name,
        `is not a valid gzip stream (${(cause as Error).message}); the file may be truncated or corrupt — delete it and fetch it again`,
        {},
        cause,
      );
    }
  }
  if (bytes.length < 4) throw invalid(name, `is truncated: ${bytes.length} bytes, too short for an IDX header (4-byte magic number)`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw invalid(
      name,
      `is not an IDX file: bad magic number ${[...bytes.subarray(0, 4)].map(hex).join(' ')} (expected 0x00 0x00 <type> <dims>)${compressed ? '' : '; if it is compressed, only gzip is understood'}`,
    );
  }
  const code = bytes[2]!;
  const elem = IDX_TYPES.get(code);
  if (!elem) {
    throw invalid(name, `unknown IDX element type ${hex(code)} (known: ${[...IDX_TYPES].map(([c, t]) => `${hex(c)} ${t.type}`).join(', ')})`, {
      typeCode: code,
    });
  }
  const ndims = bytes[3]!;
  if (ndims === 0) throw invalid(name, 'declares 0 dimensions; an IDX data file has at least one (the sample count)');
  const headerSize = 4 + 4 * ndims;
  if (bytes.length < headerSize) {
    throw invalid(name, `is truncated: the header declares ${ndims} dimensions (${headerSize} header bytes) but the file has only ${bytes.length} bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  let count = 1;
  for (let i = 0; i < ndims; i++) {
    const d = view.getUint32(4 + 4 * i, false);
    dims.push(d);
    count *= d;
  }
  // The data are sized by the header only once it agrees with the file's size; a product beyond
  // 2^53 is inexact, but then far beyond any file.
  const expected = count * elem.size;
  const actual = bytes.length - headerSize;
  const shape = `[${dims.join(', ')}] ${elem.type}`;
  const declared = Number.isSafeInteger(expected) ? String(expected) : 'more than 2^53';
  if (actual < expected) {
    throw invalid(name, `is truncated: the header declares ${shape} = ${declared} data bytes but only ${actual} follow the header (an interrupted download?)`, {
      expectedBytes: expected,
      actualBytes: actual,
    });
  }
  if (actual > expected) {
    throw invalid(
      name,
      `has ${actual - expected} bytes more than its header declares (${shape} = ${expected} data bytes, ${actual} present); the header does not describe this file`,
      {
        expectedBytes: expected,
        actualBytes: actual,
      },
    );
  }
  return { type: elem.type, dims, data: decode(elem.type, view, headerSize, count), compressed };
}

function decode(type: IdxType, view: DataView, offset: number, n: number): IdxData {
  switch (type) {
    case 'ubyte':
      return new Uint8Array(view.buffer, view.byteOffset + offset, n).slice();
    case 'int8':
      return new Int8Array(view.buffer, view.byteOffset + offset, n).slice();
    case 'int16': {
      const out = new Int16Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getInt16(offset + 2 * i, false);
      return out;
    }
    case 'int32': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getInt32(offset + 4 * i, false);
      return out;
    }
    case 'float32': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(offset + 4 * i, false);
      return out;
    }
    case 'float64': {
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(offset + 8 * i, false);
      return out;
    }
  }
}

/**
 * Reads and parses an IDX file (raw or gzipped). A missing file is a `DATA_INVALID` error that
 * names the path and where the MNIST files come from.
 */
export async function readIdx(path: string): Promise<IdxArray> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (cause) {
    const code = (cause as { code?: string }).code;
    if (code === 'ENOENT') {
      throw invalid(
        path,
        `no such file. Get the IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from ${MNIST_HOME}, or let the mnist dataset fetch them with the option download: true`,
        {},
        cause,
      );
    }
    throw invalid(path, `cannot be read (${(cause as Error).message})`, {}, cause);
  }
  return parseIdx(bytes, path);
}

/**
 * Encodes an IDX file (the inverse of {@link parseIdx}); with `gzip` the result is gzipped.
 * Used by tests and for writing derived files.
 */
export function encodeIdx(type: IdxType, dims: readonly number[], values: ArrayLike<number>): Uint8Array {
  const entry = [...IDX_TYPES].find(([, t]) => t.type === type)!;
  const [code, { size }] = entry;
  const count = dims.reduce((a, b) => a * b, 1);
  if (values.length !== count) throw new RangeError(`encodeIdx: ${values.length} values for dims [${dims.join(', ')}] (${count})`);
  const header = 4 + 4 * dims.length;
  const out = new Uint8Array(header + count * size);
  const view = new DataView(out.buffer);
  out[2] = code;
  out[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  for (let i = 0; i < count; i++) {
    const v = values[i]!;
    const at = header + i * size;
    switch (type) {
      case 'ubyte':
        view.setUint8(at, v);
        break;
      case 'int8':
        view.setInt8(at, v);
        break;
      case 'int16':
        view.setInt16(at, v, false);
        break;
      case 'int32':
        view.setInt32(at, v, false);
        break;
      case 'float32':
        view.setFloat32(at, v, false);
        break;
      case 'float64':
        view.setFloat64(at, v, false);
        break;
    }
  }
  return out;
}

/**
 * `spikeflow data inspect` for IDX files: samples (first dimension), the shape of one sample
 * (the other dimensions), the element type, whether it was gzipped, and the value range. A 1-D
 * ubyte file is a labels file: it also gets `classes` (distinct labels) and `labelHistogram`
 * (label → count).
 */
export async function summarizeIdx(path: string): Promise<DataFileSummary> {
  const { type, dims, data, compressed } = await readIdx(path);
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const summary = {
    path,
    format: 'idx',
    samples: dims[0]!,
    shape: dims.slice(1),
    dtype: type,
    compressed,
    ...(data.length ? { min, max } : {}),
  };
  if (dims.length !== 1 || type !== 'ubyte') return summary;
  const counts = new Array<number>(256).fill(0);
  for (let i = 0; i < data.length; i++) counts[data[i]!]!++;
  const labelHistogram: Record<string, number> = {};
  counts.forEach((c, label) => {
    if (c > 0) labelHistogram[String(label)] = c;
  });
  return { ...summary, classes: Object.keys(labelHistogram).length, labelHistogram };
}

import { SpikeflowError } from '@spikeflow/core';
import { openSync, readSync, closeSync, statSync } from 'node:fs';
import h5wasm from 'h5wasm/node';

/** The 8-byte signature every HDF5 file starts with (at byte 0, or 512, 1024, … after a user block). */
const SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

/** Whether the file at `path` carries the HDF5 signature (at 0 or a power-of-two offset from 512). */
export function isHdf5(path: string): boolean {
  return superblockOf(path) !== undefined;
}

/**
 * Where the HDF5 superblock of `path` starts, and the file size its superblock records (the
 * end-of-file address plus the base address; undefined where the superblock does not say): a file
 * shorter than that was cut short. Undefined for a file without the signature.
 */
export function superblockOf(path: string): { readonly at: number; readonly size: number; readonly expected?: number } | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const size = statSync(path).size;
    const head = Buffer.alloc(96);
    for (let at = 0; at + 8 <= size; at = at === 0 ? 512 : at * 2) {
      const got = readSync(fd, head, 0, head.length, at);
      if (SIGNATURE.every((b, i) => head[i] === b)) return { at, size, ...endOfFile(head.subarray(0, got)) };
      if (at >= 1 << 20) break;
    }
    return undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * The file size a superblock records: base address + end-of-file address (HDF5 file format
 * specification, "Superblock": versions 0 and 1 put the addresses after 16 or 20 bytes of fields
 * and the consistency flags, versions 2 and 3 after 12 bytes).
 */
function endOfFile(sb: Buffer): { expected?: number } {
  const version = sb[8];
  const O = version === 0 || version === 1 ? sb[13] : sb[9];
  if (O !== 8 && O !== 4) return {};
  const first = version === 0 ? 24 : version === 1 ? 28 : version === 2 || version === 3 ? 12 : -1;
  if (first < 0 || first + 3 * O > sb.length) return {};
  const addr = (k: number) => (O === 8 ? sb.readBigUInt64LE(first + k * O) : BigInt(sb.readUInt32LE(first + k * O)));
  const undef = O === 8 ? 0xffffffffffffffffn : 0xffffffffn;
  const base = addr(0);
  const eof = addr(2);
  if (base === undef || eof === undef) return {};
  return { expected: Number(base + eof) };
}

/** IEEE 754 half precision (binary16) to a number: subnormals, ±Infinity and NaN included. */
export function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** The element type of a dataset of variable-length numeric arrays. */
export interface VlenType {
  readonly kind: 'float' | 'int' | 'uint';
  /** Bytes per element. */
  readonly size: number;
}

interface H5Metadata {
  readonly type: number;
  readonly size: number;
  readonly signed?: boolean;
  readonly shape?: readonly number[] | null;
  readonly vlen_type?: { readonly type: number; readonly size: number; readonly signed?: boolean; readonly littleEndian?: boolean };
}

interface H5Dataset {
  readonly metadata: H5Metadata;
  readonly shape: readonly number[] | null;
  slice(ranges: [number, number][]): unknown;
  readonly value: unknown;
}

interface H5File {
  readonly file_id: bigint;
  get(path: string): unknown;
  keys(): string[];
  close(): void;
}

interface H5Module {
  readonly HEAPU8: Uint8Array;
  _malloc(n: number): number;
  _free(p: number): void;
  get_dataset_data(file: bigint, path: string, count: bigint[], offset: bigint[], strides: bigint[], ptr: bigint): void;
  reclaim_vlen_memory_count(file: bigint, path: string, attr: string, ptr: bigint, count: bigint[]): void;
}

// HDF5 type classes (H5T_class_t).
const H5T_INTEGER = 0;
const H5T_FLOAT = 1;
const H5T_VLEN = 9;

let module: H5Module | undefined;

async function h5(): Promise<H5Module> {
  module ??= (await (h5wasm as unknown as { ready: Promise<H5Module> }).ready) as H5Module;
  return module;
}

/**
 * An HDF5 file opened for reading through h5wasm (the HDF5 C library compiled to WebAssembly,
 * reading the host file system directly, so a dataset is read slice by slice and never whole).
 * Variable-length numeric arrays are read element by element type, half floats included (h5wasm
 * 0.10 does not decode float16 itself: their raw bytes are decoded here).
 */
export class Hdf5Reader {
  readonly path: string;
  readonly #file: H5File;
  readonly #m: H5Module;

  private constructor(path: string, file: H5File, m: H5Module) {
    this.path = path;
    this.#file = file;
    this.#m = m;
  }

  /** Opens `path`; a missing file, a file that is not HDF5 or one that HDF5 cannot read is a `DATA_INVALID` error naming it. */
  static async open(path: string): Promise<Hdf5Reader> {
    let size: number;
    try {
      size = statSync(path).size;
    } catch {
      throw new SpikeflowError('DATA_INVALID', `${path}: no such file`, { path });
    }
    const sb = superblockOf(path);
    if (!sb) {
      throw new SpikeflowError('DATA_INVALID', `${path}: not an HDF5 file (no HDF5 signature in its ${size} bytes); a gzipped download must be unpacked first`, { path });
    }
    if (sb.expected !== undefined && sb.expected > size) {
      throw new SpikeflowError('DATA_INVALID', `${path}: truncated: its HDF5 superblock records ${sb.expected} bytes, the file has ${size}; download it again`, { path });
    }
    const m = await h5();
    let file: H5File;
    try {
      file = new (h5wasm as unknown as { File: new (p: string, mode: string) => H5File }).File(path, 'r');
    } catch (e) {
      throw new SpikeflowError('DATA_INVALID', `${path}: HDF5 cannot open it (${(e as Error).message}); the file may be truncated: download it again`, { path }, { cause: e });
    }
    return new Hdf5Reader(path, file, m);
  }

  /** The dataset at `name`, or undefined (looked up level by level: HDF5 prints a diagnostic for a missing path). */
  #dataset(name: string): H5Dataset | undefined {
    const parts = name.split('/');
    for (let k = 0; k < parts.length; k++) {
      if (!this.keys(parts.slice(0, k).join('/') || '/').includes(parts[k]!)) return undefined;
    }
    try {
      const d = this.#file.get(name) as H5Dataset | null | undefined;
      return d && typeof (d as { slice?: unknown }).slice === 'function' ? d : undefined;
    } catch {
      return undefined;
    }
  }

  has(name: string): boolean {
    return this.#dataset(name) !== undefined;
  }

  /** Names directly under group `group` (empty where there is no such group). */
  keys(group: string): string[] {
    if (group !== '/' && !this.#groupExists(group)) return [];
    try {
      const g = this.#file.get(group) as { keys?: () => string[] } | null;
      return g?.keys?.() ?? [];
    } catch {
      return [];
    }
  }

  #groupExists(group: string): boolean {
    const parts = group.split('/').filter(Boolean);
    let at = '/';
    for (const p of parts) {
      let names: string[];
      try {
        names = (this.#file.get(at) as { keys?: () => string[] } | null)?.keys?.() ?? [];
      } catch {
        return false;
      }
      if (!names.includes(p)) return false;
      at = at === '/' ? p : `${at}/${p}`;
    }
    return true;
  }

  /** Elements of a one-dimensional dataset (or the first axis of one). */
  length(name: string): number {
    const d = this.#need(name);
    const shape = d.shape ?? [];
    if (shape.length !== 1) throw this.#invalid(`'${name}' has shape [${shape.join(', ')}], expected one dimension`);
    return shape[0]!;
  }

  /** A one-dimensional integer dataset, whole (labels: one value per sample). */
  integers(name: string): Int32Array {
    const d = this.#need(name);
    const md = d.metadata;
    if (md.type !== H5T_INTEGER) throw this.#invalid(`'${name}' holds ${className(md.type)} values, expected integers`);
    const v = d.value as ArrayLike<number | bigint>;
    return Int32Array.from({ length: v.length }, (_, i) => Number(v[i]!));
  }

  /** The element type of a dataset of variable-length numeric arrays; an error where it is not one. */
  vlenType(name: string): VlenType {
    let t = this.#vlenTypes.get(name);
    if (!t) this.#vlenTypes.set(name, (t = this.#readVlenType(name)));
    return t;
  }

  /** The element types found so far: a file is read sample by sample, its types once. */
  readonly #vlenTypes = new Map<string, VlenType>();

  #readVlenType(name: string): VlenType {
    const md = this.#need(name).metadata;
    const base = md.vlen_type;
    if (md.type !== H5T_VLEN || !base || (base.type !== H5T_FLOAT && base.type !== H5T_INTEGER)) {
      throw this.#invalid(`'${name}' is not a dataset of variable-length numeric arrays (HDF5 type class ${className(md.type)})`);
    }
    if (base.littleEndian === false) throw this.#invalid(`'${name}' holds big-endian values, which this reader does not decode`);
    return { kind: base.type === H5T_FLOAT ? 'float' : base.signed ? 'int' : 'uint', size: base.size };
  }

  /**
   * Arrays `[start, start + count)` of a dataset of variable-length numeric arrays, each as a
   * Float64Array (floats of 2, 4 or 8 bytes; integers of 1, 2, 4 or 8 bytes).
   */
  vlenArrays(name: string, start: number, count: number): Float64Array[] {
    const t = this.vlenType(name);
    const m = this.#m;
    const n = BigInt(count);
    const ptr = m._malloc(8 * count);
    if (!ptr) throw this.#invalid(`no memory to read ${count} arrays of '${name}'`);
    try {
      m.get_dataset_data(this.#file.file_id, name, [n], [BigInt(start)], [1n], BigInt(ptr));
      try {
        // hvl_t structs: (length, pointer) as two 32-bit words each in wasm32.
        const pairs = new Uint32Array(m.HEAPU8.buffer, ptr, 2 * count).slice();
        const out: Float64Array[] = [];
        for (let k = 0; k < count; k++) {
          const len = pairs[2 * k]!;
          const at = pairs[2 * k + 1]!;
          out.push(decode(m.HEAPU8.slice(at, at + len * t.size), t, len));
        }
        return out;
      } finally {
        m.reclaim_vlen_memory_count(this.#file.file_id, name, '', BigInt(ptr), [n]);
      }
    } catch (e) {
      if (e instanceof SpikeflowError) throw e;
      throw this.#invalid(`reading arrays ${start}..${start + count - 1} of '${name}' failed (${(e as Error).message}); the file may be truncated`, e);
    } finally {
      m._free(ptr);
    }
  }

  close(): void {
    try {
      this.#file.close();
    } catch {
      // already closed
    }
  }

  #need(name: string): H5Dataset {
    const d = this.#dataset(name);
    if (!d) throw this.#invalid(`has no dataset '${name}'`);
    return d;
  }

  #invalid(message: string, cause?: unknown): SpikeflowError {
    return new SpikeflowError('DATA_INVALID', `${this.path}: ${message}`, { path: this.path }, cause === undefined ? undefined : { cause });
  }
}

function className(type: number): string {
  return ({ 0: 'integer', 1: 'float', 3: 'string', 6: 'compound', 9: 'variable-length' } as Record<number, string>)[type] ?? `class ${type}`;
}

function decode(bytes: Uint8Array, t: VlenType, n: number): Float64Array {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const at = i * t.size;
    if (t.kind === 'float') {
      out[i] = t.size === 2 ? halfToNumber(v.getUint16(at, true)) : t.size === 4 ? v.getFloat32(at, true) : v.getFloat64(at, true);
    } else if (t.size === 1) out[i] = t.kind === 'int' ? v.getInt8(at) : v.getUint8(at);
    else if (t.size === 2) out[i] = t.kind === 'int' ? v.getInt16(at, true) : v.getUint16(at, true);
    else if (t.size === 4) out[i] = t.kind === 'int' ? v.getInt32(at, true) : v.getUint32(at, true);
    else out[i] = Number(t.kind === 'int' ? v.getBigInt64(at, true) : v.getBigUint64(at, true));
  }
  return out;
}

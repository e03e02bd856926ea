import { SpikeflowError } from '@spikeflow/core';

/**
 * HDF5 as a plain tree, read and written with h5wasm (the HDF5 C library in WebAssembly, its files
 * in the module's in-memory file system: the same code runs in Node and in a browser). The NIR
 * layer above works on these trees only.
 */

/** How a dataset's elements are stored. */
export interface H5Type {
  /** `float`, `int`, `string`, or `other` (compound, enum, reference, ...). */
  readonly kind: 'float' | 'int' | 'string' | 'other';
  /** Bytes per element (a variable-length string: the pointer's). */
  readonly size: number;
  /** Strings: variable-length (not fixed-length). */
  readonly vlen?: boolean;
  /** Strings: UTF-8 (not ASCII). */
  readonly utf8?: boolean;
}

export interface H5Dataset {
  readonly kind: 'dataset';
  readonly type: H5Type;
  /** `[]` for a scalar. */
  readonly shape: readonly number[];
  /** Numbers as float64 (int64 beyond ±2⁵³ is refused on reading), strings as they are, row-major. */
  readonly value: Float64Array | readonly string[];
  /** Names of the dataset's HDF5 attributes. */
  readonly attrs: readonly string[];
}

export interface H5Group {
  readonly kind: 'group';
  readonly entries: Readonly<Record<string, H5Entry>>;
  readonly attrs: readonly string[];
}

/** Something else in a file (a link, a named datatype). */
export interface H5Other {
  readonly kind: 'other';
  readonly what: string;
}

export type H5Entry = H5Group | H5Dataset | H5Other;

/** A dataset to write: float32, float64 or int64 numbers, or variable-length UTF-8 strings. */
export interface H5Write {
  readonly dtype: 'float32' | 'float64' | 'int64' | 'string';
  readonly shape: readonly number[];
  readonly value: ArrayLike<number> | readonly string[];
}

/** A group to write: datasets and groups by name. */
export interface H5WriteGroup {
  readonly [name: string]: H5Write | H5WriteGroup;
}

type H5Module = typeof import('h5wasm');

let loaded: Promise<H5Module> | undefined;
let files = 0;

async function h5(): Promise<H5Module> {
  loaded ??= (async () => {
    try {
      const m = await import('h5wasm');
      await m.ready;
      return m;
    } catch (e) {
      loaded = undefined;
      throw new SpikeflowError(
        'BACKEND_UNAVAILABLE',
        `h5wasm (HDF5 in WebAssembly) cannot be loaded (${(e as Error).message}): reinstall @spikeflow/nir`,
        {},
        { cause: e },
      );
    }
  })();
  return loaded;
}

const isWrite = (x: H5Write | H5WriteGroup): x is H5Write => typeof (x as H5Write).dtype === 'string' && 'shape' in x && 'value' in x;

/** Writes `root` as an HDF5 file; returns its bytes. Arrays of more than one element are gzip-compressed. */
export async function writeHdf5(root: H5WriteGroup): Promise<Uint8Array> {
  const m = await h5();
  const name = `/spikeflow-nir-${++files}.h5`;
  const file = new m.File(name, 'w');
  try {
    const fill = (g: import('h5wasm').Group, entries: H5WriteGroup) => {
      for (const [key, e] of Object.entries(entries)) {
        if (!isWrite(e)) {
          fill(g.create_group(key), e);
          continue;
        }
        const n = e.shape.reduce((a, b) => a * b, 1);
        if (e.value.length !== n) throw new Error(`dataset ${key}: ${e.value.length} values for shape [${e.shape}]`);
        const data =
          e.dtype === 'string'
            ? e.shape.length === 0
              ? (e.value as readonly string[])[0]!
              : [...(e.value as readonly string[])]
            : e.dtype === 'float32'
              ? Float32Array.from(e.value as ArrayLike<number>)
              : e.dtype === 'float64'
                ? Float64Array.from(e.value as ArrayLike<number>)
                : BigInt64Array.from(Array.from(e.value as ArrayLike<number>, (v) => BigInt(v)));
        const compress = e.dtype !== 'string' && e.shape.length > 0 && n > 1;
        g.create_dataset({
          name: key,
          data,
          shape: [...e.shape],
          ...(compress ? { compression: 'gzip' as const, compression_opts: 4, chunks: [...e.shape] } : {}),
        });
      }
    };
    fill(file, root);
    file.close();
    return m.FS!.readFile(name);
  } finally {
    try {
      m.FS!.unlink(name);
    } catch {
      // never created
    }
  }
}

/** The 8 bytes an HDF5 file starts with (at 0, or at 512, 1024, … after a user block). */
const SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

function hasSignature(bytes: Uint8Array): boolean {
  for (let at = 0; at + 8 <= bytes.length; at = at === 0 ? 512 : at * 2) if (SIGNATURE.every((b, i) => bytes[at + i] === b)) return true;
  return false;
}

function typeOf(meta: import('h5wasm').Metadata): H5Type {
  if (meta.type === 1) return { kind: 'float', size: meta.size };
  if (meta.type === 0) return { kind: 'int', size: meta.size };
  if (meta.type === 3) return { kind: 'string', size: meta.size, vlen: meta.vlen, utf8: meta.cset === 1 };
  return { kind: 'other', size: meta.size };
}

/**
 * Reads the HDF5 file in `bytes` into a tree. `where` names it in errors. A file that is not
 * HDF5 is `DATA_INVALID`.
 */
export async function readHdf5(bytes: Uint8Array, where: string): Promise<H5Group> {
  if (!hasSignature(bytes))
    throw new SpikeflowError('DATA_INVALID', `${where}: not an HDF5 file (no HDF5 signature); a NIR file is HDF5, as nir.write makes it`, { path: where });
  const m = await h5();
  const name = `/spikeflow-nir-${++files}.h5`;
  m.FS!.writeFile(name, bytes);
  let file: import('h5wasm').File | undefined;
  try {
    try {
      file = new m.File(name, 'r');
    } catch (e) {
      throw new SpikeflowError('DATA_INVALID', `${where}: not an HDF5 file (${(e as Error).message}); a NIR file is HDF5, as nir.write makes it`, {
        path: where,
      });
    }
    const walk = (g: import('h5wasm').Group, path: string): H5Group => {
      const entries: Record<string, H5Entry> = {};
      for (const key of g.keys()) {
        const at = `${path}/${key}`;
        let e: import('h5wasm').Entity | null;
        try {
          e = g.get(key);
        } catch (err) {
          throw new SpikeflowError('DATA_INVALID', `${where}: ${at} cannot be read (${(err as Error).message})`, { path: where, node: at });
        }
        if (e instanceof m.Group) entries[key] = walk(e, at);
        else if (e instanceof m.Dataset) {
          const type = typeOf(e.metadata);
          const shape = e.shape ?? [];
          let value: Float64Array | string[] = new Float64Array(0);
          if (type.kind === 'string') {
            const v = e.value;
            value = (Array.isArray(v) ? v : [v]).map((x) => String(x));
          } else if (type.kind === 'float' || type.kind === 'int') {
            const v = e.value as ArrayLike<number | bigint> | number | bigint;
            const list = typeof v === 'object' ? Array.from(v as ArrayLike<number | bigint>) : [v];
            value = Float64Array.from(list, (x) => {
              if (typeof x === 'bigint' && (x > BigInt(Number.MAX_SAFE_INTEGER) || x < -BigInt(Number.MAX_SAFE_INTEGER)))
                throw new SpikeflowError('DATA_INVALID', `${where}: ${at} holds an integer beyond ±2^53 (${x})`, { path: where, node: at });
              return Number(x);
            });
          }
          entries[key] = { kind: 'dataset', type, shape, value, attrs: Object.keys(e.attrs) };
        } else entries[key] = { kind: 'other', what: e === null ? 'an unresolvable link' : String((e as { type?: unknown }).type ?? 'an object') };
      }
      return { kind: 'group', entries, attrs: Object.keys(g.attrs) };
    };
    return walk(file, '');
  } finally {
    try {
      file?.close();
    } catch {
      // closing a file that failed to open
    }
    m.FS!.unlink(name);
  }
}

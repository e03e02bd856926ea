import { SpikeflowError } from '@spikeflow/core';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { resolve } from 'node:path';

/** The 8-byte signature every HDF5 file starts with (at byte 0, or 512, 1024, … after a user block). */
const SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

/** Whether the file at `path` carries the HDF5 signature (at 0 or a power-of-two offset from 512). */
export function isHdf5(path: string): boolean {
  return superblockOf(path) !== undefined;
}

/** Where a file's superblock is and what it records. */
export interface Superblock {
  /** Byte where the superblock starts (0, or 512, 1024, … after a user block). */
  readonly at: number;
  /** The file's size in bytes. */
  readonly size: number;
  /** The file size the superblock records (base address + end-of-file address), where it says. */
  readonly expected?: number;
  /** Byte that the file's addresses count from (the base address), where the superblock says. */
  readonly base?: number;
  /** Bytes of every address ("size of offsets", 4 or 8) and of every length ("size of lengths"). */
  readonly offsetSize?: number;
  readonly lengthSize?: number;
}

/**
 * Where the HDF5 superblock of `path` starts, the file size its superblock records (the
 * end-of-file address plus the base address; undefined where the superblock does not say): a file
 * shorter than that was cut short; and the sizes of its address and length fields. Undefined for a
 * file without the signature.
 */
export function superblockOf(path: string): Superblock | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const size = statSync(path).size;
    const head = Buffer.alloc(96);
    for (let at = 0; at + 8 <= size; at = at === 0 ? 512 : at * 2) {
      const got = readSync(fd, head, 0, head.length, at);
      if (SIGNATURE.every((b, i) => head[i] === b)) return { at, size, ...fields(head.subarray(0, got)) };
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
 * What a superblock records (HDF5 file format specification, "Superblock"): versions 0 and 1 give
 * the size of offsets O and of lengths L in bytes 13 and 14 and put the addresses (base, free
 * space or extension, end of file) after 24 or 28 bytes; versions 2 and 3 give O and L in bytes 9
 * and 10, the addresses after 12. The file size is base address + end-of-file address.
 */
function fields(sb: Buffer): Omit<Superblock, 'at' | 'size'> {
  const version = sb[8];
  const O = version === 0 || version === 1 ? sb[13] : sb[9];
  const L = version === 0 || version === 1 ? sb[14] : sb[10];
  const sizes = { ...(O === 4 || O === 8 ? { offsetSize: O } : {}), ...(L === 4 || L === 8 ? { lengthSize: L } : {}) };
  if (O !== 8 && O !== 4) return sizes;
  const first = version === 0 ? 24 : version === 1 ? 28 : version === 2 || version === 3 ? 12 : -1;
  if (first < 0 || first + 3 * O > sb.length) return sizes;
  const addr = (k: number) => (O === 8 ? sb.readBigUInt64LE(first + k * O) : BigInt(sb.readUInt32LE(first + k * O)));
  const undef = O === 8 ? 0xffffffffffffffffn : 0xffffffffn;
  const base = addr(0);
  const eof = addr(2);
  if (base === undef || eof === undef) return sizes;
  return { expected: Number(base + eof), base: Number(base), ...sizes };
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

/** What h5wasm's `get_dataset_metadata` reports about a dataset (the fields read here). */
interface H5Metadata {
  readonly type: number;
  readonly size: number;
  readonly signed?: boolean;
  readonly littleEndian?: boolean;
  readonly shape?: readonly number[] | null;
  readonly vlen_type?: { readonly type: number; readonly size: number; readonly signed?: boolean; readonly littleEndian?: boolean };
}

/** The stream objects of Emscripten's file system, as far as they are used here. */
interface EmStream {
  fd: number | null;
  nfd?: number;
  path?: string;
  position?: number;
  node?: unknown;
  stream_ops?: unknown;
  seekable?: boolean;
}

interface EmFS {
  streams: (EmStream | undefined)[];
  read(stream: EmStream, buffer: Uint8Array, offset: number, length: number, position?: number): number;
  ErrnoError: new (errno: number) => Error;
}

/** The low-level functions of one h5wasm instance (its `Module`) used here. */
interface H5Module {
  readonly HEAPU8: Uint8Array;
  readonly FS: EmFS;
  readonly H5F_ACC_RDONLY: number;
  _malloc(n: number): number;
  _free(p: number): void;
  open(path: string, mode: number, trackOrder: boolean, libverLow: number, libverHigh: number): bigint;
  close_file(file: bigint): number;
  get_names(file: bigint, group: string, recursive: boolean): string[];
  get_type(file: bigint, path: string): number;
  get_dataset_metadata(file: bigint, path: string): H5Metadata;
  create_object_reference(file: bigint, path: string): number[];
  get_dataset_data(file: bigint, path: string, count: bigint[] | null, offset: bigint[] | null, strides: bigint[] | null, ptr: bigint): number;
  reclaim_vlen_memory_count(file: bigint, path: string, attr: string, ptr: bigint, count: bigint[]): number;
}

// HDF5 type classes (H5T_class_t) and object kinds (H5G_obj_t).
const H5T_INTEGER = 0;
const H5T_FLOAT = 1;
const H5T_VLEN = 9;
const H5G_DATASET = 1;
const EIO = 29;
const latin1 = new TextDecoder('latin1');

/**
 * One instance of h5wasm (the HDF5 C library compiled to WebAssembly, with its own memory of at
 * most 2 GiB). HDF5's diagnostics, which it writes to stderr, are captured: a call after which HDF5
 * reported an error has failed even where h5wasm returned normally (a group whose links cannot be
 * read lists as empty), and the deepest message names the damage. Every block HDF5 reads passes
 * the file's {@link FileGuard} first.
 *
 * A WebAssembly trap or abort (or any error h5wasm itself does not throw) leaves HDF5's state
 * unknown, and a failed call after which its memory holds more than {@link MEMORY_BUDGET} has
 * grown it for nothing: either way the instance is retired (the host files it held open are
 * closed, its memory left to the garbage collector) and the next file opens in a fresh one.
 */
interface Library {
  readonly m: H5Module;
  /** The file whose read retired the instance, if it was retired. */
  retired?: string;
  /** Diagnostics HDF5 wrote during the current call. */
  diagnostics: string;
  /** The guard of the file the current call reads, and the damage it found. */
  guard: FileGuard | undefined;
  damage: string | undefined;
}

/** A wasm32 HDF5 instance needs little memory to read SHD files: more, after a failed call, was spent on a damaged size. */
const MEMORY_BUDGET = 512 * 2 ** 20;

/** Global heap collections by the byte they start at: the size of each object by its index, or what is wrong with the collection. */
type Heaps = Map<number, ReadonlyMap<number, number> | string>;

/**
 * The checks one file gets before HDF5 parses what it reads, so that damage fails with a message
 * instead of hanging HDF5 or sizing its allocations.
 *
 * - Global heap collections (`GCOL`, where variable-length data lives): HDF5 decodes their 64-bit
 *   object sizes into a 32-bit `size_t` here (wasm32), so a damaged size can truncate to 0 and its
 *   parser then loops forever on the same object. Every block HDF5 reads passes
 *   {@link checkGlobalHeaps}: one holding a collection that does not walk cleanly
 *   ({@link parseGlobalHeap}) fails as an I/O error (EIO), and HDF5 never parses it.
 * - The references of variable-length datasets (`vlens`, located by {@link contiguousStorage}):
 *   each gives a length, and HDF5 allocates length × element size bytes before it looks at the
 *   heap object the reference points to. {@link checkReferences} reads the references of the
 *   arrays about to be read, and refuses one that points to no object, or declares more than its
 *   object holds, before HDF5 is called.
 */
interface FileGuard {
  /** The file, resolved (HDF5's stream names it by the path it was opened with), and its size. */
  readonly path: string;
  readonly size: number;
  readonly base: number;
  readonly offsetSize: number;
  readonly lengthSize: number;
  readonly heaps: Heaps;
  readonly vlens: Map<string, VlenStorage>;
}

/** The contiguous storage of a dataset of variable-length arrays: `count` references of `4 + O + 4` bytes from byte `at`. */
interface VlenStorage {
  readonly at: number;
  readonly count: number;
  /** Bytes of one element of the arrays. */
  readonly elementSize: number;
  /** References checked already. */
  readonly checked: Uint8Array;
}

let current: Promise<Library> | undefined;
let instances = 0;

/** The h5wasm instance in service, loaded (or replaced, after a fault) on demand. */
async function library(): Promise<Library> {
  for (;;) {
    current ??= load();
    const pending = current;
    let lib: Library;
    try {
      lib = await pending;
    } catch (e) {
      if (current === pending) current = undefined;
      throw e;
    }
    if (!lib.retired) return lib;
    if (current === pending) current = undefined;
  }
}

async function load(): Promise<Library> {
  // A private instance (a module URL of its own): its file system gets the guards below, which
  // must not touch an h5wasm that other code in the process uses.
  let m: H5Module;
  try {
    const url = `${import.meta.resolve('h5wasm/node')}?spikeflow-instance=${++instances}`;
    const mod = (await import(/* @vite-ignore */ url)) as { ready: Promise<H5Module> };
    m = await mod.ready;
  } catch (e) {
    throw new SpikeflowError(
      'BACKEND_UNAVAILABLE',
      `h5wasm (HDF5 in WebAssembly) cannot be loaded (${describe(e)}): reinstall @spikeflow/dataset-shd`,
      {},
      { cause: e },
    );
  }
  const lib: Library = { m, diagnostics: '', guard: undefined, damage: undefined };
  captureStderr(lib);
  guardReads(lib);
  return lib;
}

/** Sends what HDF5 writes to stderr (fd 2 of its file system) into `lib.diagnostics`. */
function captureStderr(lib: Library): void {
  const stream = lib.m.FS.streams[2];
  if (!stream) return;
  stream.node = { mode: 0o020000 }; // a character device, for Emscripten's write checks
  stream.seekable = false;
  stream.stream_ops = {
    write(_s: EmStream, buffer: Uint8Array, offset: number, length: number): number {
      if (lib.diagnostics.length < 1 << 16) lib.diagnostics += latin1.decode(buffer.subarray(offset, offset + length));
      return length;
    },
  };
}

/** Runs every read HDF5 makes through the current file's guard; damage found fails the read with EIO. */
function guardReads(lib: Library): void {
  const FS = lib.m.FS;
  const read = FS.read.bind(FS);
  const paths = new WeakMap<EmStream, string>();
  FS.read = (stream, buffer, offset, length, position) => {
    const at = position ?? stream.position ?? 0;
    const n = read(stream, buffer, offset, length, position);
    const guard = lib.guard;
    const nfd = stream.nfd;
    if (!guard || nfd === undefined || n <= 0) return n;
    let path = paths.get(stream);
    if (path === undefined) {
      path = resolve(stream.path ?? '');
      paths.set(stream, path);
    }
    if (path !== guard.path) return n; // another file (an external link): HDF5 checks it alone
    const readAt = (pos: number, len: number) => {
      const b = new Uint8Array(Math.max(0, Math.min(len, guard.size - pos)));
      return b.subarray(0, readSync(nfd, b, 0, b.length, pos));
    };
    const block = new Uint8Array(buffer.buffer, buffer.byteOffset + offset, n); // Emscripten passes HEAP8 (signed)
    let damage: string | undefined;
    try {
      damage = checkGlobalHeaps(block, at, guard, guard.heaps, readAt);
    } catch (e) {
      // Nothing but Emscripten's own errors may cross HDF5's frames: any other fails the read.
      damage = `reading byte ${at} failed (${describe(e)})`;
    }
    if (damage) {
      lib.damage ??= damage;
      throw new FS.ErrnoError(EIO);
    }
    return n;
  };
}

const GCOL = [0x47, 0x43, 0x4f, 0x4c];

/**
 * Checks the global heap collections whose signature lies in `block`, read from file byte `at`
 * (see {@link parseGlobalHeap}); `heaps` keeps what was found, `readAt` reads more of the file.
 * Returns what is wrong, or undefined.
 */
function checkGlobalHeaps(
  block: Uint8Array,
  at: number,
  file: { lengthSize: number; size: number },
  heaps: Heaps,
  readAt: (position: number, length: number) => Uint8Array,
): string | undefined {
  for (let k = indexOf(block, GCOL, 0); k >= 0; k = indexOf(block, GCOL, k + 1)) {
    const heap = globalHeap(at + k, file, heaps, readAt);
    if (typeof heap === 'string') return heap;
  }
  return undefined;
}

/** The collection at `start`, from `heaps` or parsed (and kept there); undefined where `start` holds none. */
function globalHeap(
  start: number,
  file: { lengthSize: number; size: number },
  heaps: Heaps,
  readAt: (position: number, length: number) => Uint8Array,
): ReadonlyMap<number, number> | string | undefined {
  let heap = heaps.get(start);
  if (heap === undefined) {
    heap = parseGlobalHeap(start, file, readAt);
    if (heap !== undefined) heaps.set(start, heap);
  }
  return heap;
}

/**
 * Parses the global heap collection at file byte `start` (HDF5 file format specification,
 * "Global Heap"): the signature `GCOL`, version 1, three zero bytes and the collection size
 * (`lengthSize` bytes), then objects of a 2-byte index, a 2-byte reference count, 4 reserved
 * bytes, a `lengthSize`-byte size and the data padded to 8 bytes; object 0 is the free space, its
 * size counting its header. The collection must lie in the file and every object must advance
 * inside it, as HDF5's parser walks them. Returns the object sizes by index, what is wrong, or
 * undefined where `start` holds no collection of version 1 (HDF5 refuses those itself).
 */
function parseGlobalHeap(
  start: number,
  file: { lengthSize: number; size: number },
  readAt: (position: number, length: number) => Uint8Array,
): ReadonlyMap<number, number> | string | undefined {
  const { lengthSize } = file;
  const headerSize = 8 + lengthSize;
  const objectHeader = 8 + lengthSize;
  const head = readAt(start, headerSize);
  if (head.length < headerSize || GCOL.some((b, i) => head[i] !== b) || head[4] !== 1 || head[5] !== 0 || head[6] !== 0 || head[7] !== 0) return undefined;
  const size = lengthOf(head, 8, lengthSize);
  const where = `the global heap collection at byte ${start}`;
  if (size < headerSize || size > file.size - start) return `${where} declares ${size} bytes, but ${file.size - start} are left in the file`;
  const body = readAt(start, size);
  if (body.length < size) return `${where} declares ${size} bytes, but only ${body.length} could be read`;
  const objects = new Map<number, number>();
  for (let p = headerSize; p < size; ) {
    if (p + objectHeader > size) break; // too small for an object: free space
    const index = body[p]! | (body[p + 1]! << 8);
    const objectSize = lengthOf(body, p + 8, lengthSize);
    const need = index > 0 ? objectHeader + Math.ceil(objectSize / 8) * 8 : objectSize;
    if (need === 0 || need > size - p) {
      return `${where}: object ${index} at byte ${start + p} declares ${objectSize} bytes, but ${size - p} are left in the collection`;
    }
    if (index > 0) objects.set(index, objectSize);
    p += need;
  }
  return objects;
}

/**
 * Checks the references of arrays `[start, start + count)` of the variable-length dataset `name`,
 * as far as they were not checked before: each is a 4-byte length, the address of a global heap
 * collection and a 4-byte object index, and must point to an object of a sound collection that
 * holds length × element size bytes at least. Returns what is wrong, or undefined.
 */
function checkReferences(
  name: string,
  s: VlenStorage,
  start: number,
  count: number,
  guard: FileGuard,
  readAt: (position: number, length: number) => Uint8Array,
): string | undefined {
  const O = guard.offsetSize;
  const h = 8 + O;
  for (let k = Math.max(0, start); k < Math.min(s.count, start + count); k++) {
    if (s.checked[k]) continue;
    const pos = s.at + k * h;
    const ref = readAt(pos, h);
    if (ref.length < h) return `the reference of array ${k} of '${name}' (byte ${pos}) lies beyond the end of the file`;
    const length = lengthOf(ref, 0, 4);
    if (length > 0) {
      const where = `array ${k} of '${name}' (its reference at byte ${pos})`;
      const collection = guard.base + lengthOf(ref, 4, O);
      const index = lengthOf(ref, 4 + O, 4);
      const heap = collection < guard.size ? globalHeap(collection, guard, guard.heaps, readAt) : undefined;
      if (typeof heap === 'string') return heap;
      if (heap === undefined) return `${where} points to byte ${collection}, where the file holds no global heap collection`;
      const size = heap.get(index);
      if (size === undefined) return `${where} points to object ${index} of the global heap collection at byte ${collection}, which holds no such object`;
      if (length * s.elementSize > size) return `${where} declares ${length} values of ${s.elementSize} bytes, but its heap object holds ${size} bytes`;
    }
    s.checked[k] = 1;
  }
  return undefined;
}

/**
 * Where the data of the dataset whose object header is at address `header` lie, if contiguously:
 * its data layout message (version 3 or later, class 1: an address and a size), found in a version
 * 1 object header (HDF5 file format specification, "Version 1 Data Object Header Prefix": version
 * 1, a reserved byte, the message count, the reference count and the header size, padded to 16
 * bytes; then messages of a 2-byte type, a 2-byte size, a flags byte and 3 reserved bytes, their
 * continuation messages (type 0x10: address and length) leading to further blocks). Undefined for
 * anything else (a version 2 header, chunked or compact data): the references are then left
 * unchecked. `readAt` reads the file, `size` is its size.
 */
function contiguousStorage(
  readAt: (position: number, length: number) => Uint8Array,
  geometry: { base: number; offsetSize: number; lengthSize: number },
  header: number,
  size: number,
): { at: number; bytes: number } | undefined {
  const { base, offsetSize: O, lengthSize: L } = geometry;
  const prefix = readAt(base + header, 16);
  if (prefix.length < 16 || prefix[0] !== 1) return undefined;
  let messages = prefix[2]! | (prefix[3]! << 8);
  const blocks: { at: number; bytes: number }[] = [{ at: base + header + 16, bytes: lengthOf(prefix, 8, 4) }];
  for (let b = 0; b < blocks.length && b < 64 && messages > 0; b++) {
    const { at, bytes } = blocks[b]!;
    if (bytes > size) return undefined;
    const chunk = readAt(at, bytes);
    if (chunk.length < bytes) return undefined;
    for (let p = 0; p + 8 <= chunk.length && messages > 0; messages--) {
      const type = chunk[p]! | (chunk[p + 1]! << 8);
      const length = chunk[p + 2]! | (chunk[p + 3]! << 8);
      const data = chunk.subarray(p + 8, p + 8 + length);
      if (data.length < length) return undefined;
      if (type === 0x10 && length >= O + L) blocks.push({ at: base + lengthOf(data, 0, O), bytes: lengthOf(data, O, L) });
      if (type === 0x08) {
        if (data[0]! < 3 || data[1] !== 1 || length < 2 + O + L) return undefined;
        const address = lengthOf(data, 2, O);
        return address === 2 ** (8 * O) - 1 ? undefined : { at: base + address, bytes: lengthOf(data, 2 + O, L) };
      }
      p += 8 + length;
    }
  }
  return undefined;
}

function indexOf(b: Uint8Array, sig: readonly number[], from: number): number {
  for (let i = b.indexOf(sig[0]!, from); i >= 0 && i + sig.length <= b.length; i = b.indexOf(sig[0]!, i + 1)) {
    if (b[i + 1] === sig[1] && b[i + 2] === sig[2] && b[i + 3] === sig[3]) return i;
  }
  return -1;
}

/** A little-endian unsigned number of `n` bytes at `at` (beyond 2⁵³ inexact, which only makes a size too large). */
function lengthOf(b: Uint8Array, at: number, n: number): number {
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = v * 256 + b[at + i]!;
  return v;
}

/** Whether `e` is an error h5wasm throws by design (a plain `Error` from its C++ side or its JS layer). */
function isLibraryError(e: unknown): boolean {
  return e instanceof Error && e.constructor === Error;
}

/** The most specific line of an HDF5 error stack: the message of its deepest frame. */
function deepest(diagnostics: string): string | undefined {
  const frames = [...diagnostics.matchAll(/#\d+: .*? in (\w+)\(\): (.*)$/gm)];
  const last = frames[frames.length - 1];
  return last ? `${last[1]}: ${last[2]!.trim()}` : diagnostics.trim().split('\n')[0]?.slice(0, 200) || undefined;
}

/**
 * An HDF5 file opened for reading through h5wasm (the HDF5 C library compiled to WebAssembly,
 * reading the host file system directly, so a dataset is read slice by slice and never whole).
 * Variable-length numeric arrays are read element by element type, half floats included (h5wasm
 * 0.10 does not decode float16 itself: their raw bytes are decoded here).
 *
 * Every failure is a `DATA_INVALID` error naming the file and what could not be read: HDF5's own
 * errors and diagnostics, WebAssembly faults (after which the next file opens in a fresh HDF5),
 * and sizes no file of this size can hold, which are refused before anything is allocated for
 * them.
 */
export class Hdf5Reader {
  readonly path: string;
  /** The file's size in bytes. */
  readonly size: number;
  readonly #lib: Library;
  readonly #file: bigint;
  readonly #guard: FileGuard;
  #closed = false;

  private constructor(path: string, size: number, lib: Library, file: bigint, guard: FileGuard) {
    this.path = path;
    this.size = size;
    this.#lib = lib;
    this.#file = file;
    this.#guard = guard;
  }

  /** Opens `path`; a missing file, a file that is not HDF5 or one that HDF5 cannot read is a `DATA_INVALID` error naming it. */
  static async open(path: string): Promise<Hdf5Reader> {
    let size: number;
    try {
      const s = statSync(path);
      if (s.isDirectory()) throw new SpikeflowError('DATA_INVALID', `${path}: is a folder, not an HDF5 file`, { path });
      size = s.size;
    } catch (e) {
      if (e instanceof SpikeflowError) throw e;
      throw new SpikeflowError('DATA_INVALID', `${path}: no such file`, { path }, { cause: e });
    }
    const sb = superblockOf(path);
    if (!sb) {
      throw new SpikeflowError(
        'DATA_INVALID',
        `${path}: not an HDF5 file (no HDF5 signature in its ${size} bytes); a gzipped download must be unpacked first`,
        { path },
      );
    }
    if (sb.expected !== undefined && sb.expected > size) {
      throw new SpikeflowError(
        'DATA_INVALID',
        `${path}: truncated: its HDF5 superblock records ${sb.expected} bytes, the file has ${size} (superblock at byte ${sb.at}); download it again`,
        { path, expectedBytes: sb.expected, actualBytes: size },
      );
    }
    const lib = await library();
    const guard: FileGuard = {
      path: resolve(path),
      size,
      base: sb.base ?? sb.at,
      offsetSize: sb.offsetSize ?? 8,
      lengthSize: sb.lengthSize ?? 8,
      heaps: new Map(),
      vlens: new Map(),
    };
    const file = call(lib, path, guard, 'open it', (m) => m.open(path, m.H5F_ACC_RDONLY, false, -1, -1));
    if (file < 0n) throw damaged(path, 'open it', deepest(lib.diagnostics));
    return new Hdf5Reader(path, size, lib, file, guard);
  }

  /** Runs `f` on this file's HDF5, turning every failure into a `DATA_INVALID` error about `what`. */
  #call<T>(what: string, f: (m: H5Module, file: bigint) => T): T {
    if (this.#closed) throw new SpikeflowError('DATA_INVALID', `${this.path}: read after it was closed (${what})`, { path: this.path });
    return call(this.#lib, this.path, this.#guard, what, (m) => f(m, this.#file));
  }

  /** Whether there is a dataset at `name` (looked up level by level: HDF5 reports a missing path as an error). */
  has(name: string): boolean {
    const parts = name.split('/');
    for (let k = 0; k < parts.length; k++) {
      if (!this.keys(parts.slice(0, k).join('/') || '/').includes(parts[k]!)) return false;
    }
    return this.#call(`look up '${name}'`, (m, f) => m.get_type(f, name)) === H5G_DATASET;
  }

  /** Names directly under group `group` (empty where there is no such group). */
  keys(group: string): string[] {
    const parts = group.split('/').filter(Boolean);
    let at = '/';
    for (const p of parts) {
      if (!this.#names(at).includes(p)) return [];
      at = at === '/' ? p : `${at}/${p}`;
    }
    return at === '/' || this.#call(`look up '${at}'`, (m, f) => m.get_type(f, at)) === 0 ? this.#names(at) : [];
  }

  #names(group: string): string[] {
    const names = this.#call(`list the group '${group}'`, (m, f) => m.get_names(f, group, false));
    return Array.isArray(names) ? names.map(String) : [];
  }

  #metadata(name: string): H5Metadata {
    if (!this.has(name)) throw this.#invalid(`has no dataset '${name}'`);
    return this.#call(`read the header of '${name}'`, (m, f) => m.get_dataset_metadata(f, name));
  }

  /** Elements of a one-dimensional dataset. */
  length(name: string): number {
    const shape = this.#metadata(name).shape ?? [];
    if (shape.length !== 1) throw this.#invalid(`'${name}' has shape [${shape.join(', ')}], expected one dimension`);
    return shape[0]!;
  }

  /**
   * A one-dimensional integer dataset, whole (labels: one value per sample), as numbers. Refuses
   * one that declares more bytes than the file holds (`maxLength` more values, where given)
   * before reading it, and values beyond 32 bits.
   */
  integers(name: string, maxLength = Infinity): Int32Array {
    const md = this.#metadata(name);
    if (md.type !== H5T_INTEGER) throw this.#invalid(`'${name}' holds ${className(md.type)} values, expected integers`);
    const shape = md.shape ?? [];
    if (shape.length !== 1) throw this.#invalid(`'${name}' has shape [${shape.join(', ')}], expected one dimension`);
    const n = shape[0]!;
    const size = md.size;
    if (![1, 2, 4, 8].includes(size)) throw this.#invalid(`'${name}' holds ${size}-byte integers; this reader decodes 1, 2, 4 or 8 bytes`);
    if (n > maxLength) throw this.#invalid(`'${name}' declares ${n} values, expected ${maxLength}`);
    if (n * size > this.size)
      throw this.#invalid(
        `'${name}' declares ${n} values of ${size} bytes, more than the file's ${this.size} bytes hold: the file is damaged; download it again`,
      );
    const bytes = this.#read(name, `read '${name}'`, n * size, null);
    const t: VlenType = { kind: md.signed ? 'int' : 'uint', size };
    const v = decode(bytes, t, n);
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const x = v[i]!;
      if (!(x >= -0x80000000 && x <= 0x7fffffff))
        throw this.#invalid(`'${name}'[${i}] is ${x}, beyond the 32-bit integers this reader takes`, undefined, { index: i });
      out[i] = x;
    }
    return out;
  }

  /** Reads `bytes` bytes of `name` (all of it, or the selection `[start, start + count)`) into memory and returns a copy. */
  #read(
    name: string,
    what: string,
    bytes: number,
    slice: { start: number; count: number } | null,
    after?: (heap: Uint8Array, ptr: number) => void,
  ): Uint8Array {
    return this.#call(what, (m, f) => {
      const ptr = m._malloc(Math.max(1, bytes));
      if (!ptr) throw this.#invalid(`no memory (${bytes} bytes) to ${what}`);
      m.HEAPU8.fill(0, ptr, ptr + bytes);
      try {
        const status = slice
          ? m.get_dataset_data(f, name, [BigInt(slice.count)], [BigInt(slice.start)], [1n], BigInt(ptr))
          : m.get_dataset_data(f, name, null, null, null, BigInt(ptr));
        try {
          if (status < 0) throw this.#damaged(what, undefined);
          after?.(m.HEAPU8, ptr);
          return m.HEAPU8.slice(ptr, ptr + bytes);
        } finally {
          if (slice && after) m.reclaim_vlen_memory_count(f, name, '', BigInt(ptr), [BigInt(slice.count)]);
        }
      } finally {
        m._free(ptr);
      }
    });
  }

  /** The element type of a dataset of variable-length numeric arrays; an error where it is not one. */
  vlenType(name: string): VlenType {
    let t = this.#vlenTypes.get(name);
    if (!t) {
      t = this.#readVlenType(name);
      this.#vlenTypes.set(name, t);
    }
    return t;
  }

  /** The element types found so far: a file is read sample by sample, its types once. */
  readonly #vlenTypes = new Map<string, VlenType>();

  #readVlenType(name: string): VlenType {
    const md = this.#metadata(name);
    const base = md.vlen_type;
    if (md.type !== H5T_VLEN || !base || (base.type !== H5T_FLOAT && base.type !== H5T_INTEGER)) {
      throw this.#invalid(`'${name}' is not a dataset of variable-length numeric arrays (HDF5 type class ${className(md.type)})`);
    }
    if (base.littleEndian === false && base.size > 1) throw this.#invalid(`'${name}' holds big-endian values, which this reader does not decode`);
    const float = base.type === H5T_FLOAT;
    if (float ? ![2, 4, 8].includes(base.size) : ![1, 2, 4, 8].includes(base.size)) {
      throw this.#invalid(
        `'${name}' holds ${base.size}-byte ${float ? 'floats' : 'integers'}; this reader decodes ${float ? '2-, 4- or 8-byte floats' : '1-, 2-, 4- or 8-byte integers'}`,
      );
    }
    this.#watch(name, md, base.size);
    return { kind: float ? 'float' : base.signed ? 'int' : 'uint', size: base.size };
  }

  /** Puts the references of the variable-length dataset `name` under the file's guard, where its data lie contiguously (see {@link FileGuard}). */
  #watch(name: string, md: H5Metadata, elementSize: number): void {
    const ref = this.#call(`locate '${name}'`, (m, f) => m.create_object_reference(f, name));
    const header = lengthOf(Uint8Array.from(ref), 0, 8);
    const g = this.#guard;
    const storage = withFile(this.path, this.size, (readAt) => contiguousStorage(readAt, g, header, this.size));
    const count = md.shape?.[0] ?? 0;
    if (!storage || count > this.size || storage.bytes !== count * (8 + g.offsetSize) || storage.at + storage.bytes > this.size) return;
    g.vlens.set(name, { at: storage.at, count, elementSize, checked: new Uint8Array(count) });
  }

  /**
   * Arrays `[start, start + count)` of a dataset of variable-length numeric arrays, each as a
   * Float64Array (floats of 2, 4 or 8 bytes; integers of 1, 2, 4 or 8 bytes).
   */
  vlenArrays(name: string, start: number, count: number): Float64Array[] {
    const t = this.vlenType(name);
    const what = `read arrays ${start}..${start + count - 1} of '${name}'`;
    const out: Float64Array[] = [];
    const storage = this.#guard.vlens.get(name);
    if (storage && !isChecked(storage, start, count)) {
      const damage = withFile(this.path, this.size, (readAt) => checkReferences(name, storage, start, count, this.#guard, readAt));
      if (damage) throw damaged(this.path, what, damage);
    }
    // hvl_t structs: (length, pointer) as two 32-bit words each in wasm32.
    this.#read(name, what, 8 * count, { start, count }, (heap, ptr) => {
      const pairs = new Uint32Array(heap.buffer, ptr, 2 * count);
      for (let k = 0; k < count; k++) {
        const len = pairs[2 * k]!;
        const at = pairs[2 * k + 1]!;
        // The data came from the file: an array larger than the file is damage, never decoded.
        if (len * t.size > this.size)
          throw this.#damaged(what, undefined, `array ${start + k} claims ${len} values of ${t.size} bytes, more than the file holds`);
        if (len > 0 && (at === 0 || at + len * t.size > heap.length)) throw this.#damaged(what, undefined, `array ${start + k} lies outside HDF5's memory`);
        out.push(decode(heap.subarray(at, at + len * t.size), t, len));
      }
    });
    return out;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#lib.retired) return;
    try {
      call(this.#lib, this.path, this.#guard, 'close it', (m) => m.close_file(this.#file));
    } catch {
      // closing a damaged file can report its damage again; the handle is released regardless
    }
  }

  #damaged(what: string, cause: unknown, detail?: string): SpikeflowError {
    return damaged(this.path, what, this.#lib.damage ?? detail ?? deepest(this.#lib.diagnostics), cause);
  }

  #invalid(message: string, cause?: unknown, extra: Record<string, unknown> = {}): SpikeflowError {
    return new SpikeflowError('DATA_INVALID', `${this.path}: ${message}`, { path: this.path, ...extra }, cause === undefined ? undefined : { cause });
  }
}

/**
 * Runs `f` on `lib` for the file `path`: HDF5's diagnostics and the read guard's findings are
 * collected for this call only; any failure becomes a `DATA_INVALID` error saying what could not
 * be done, and a fault of the WebAssembly instance retires it.
 */
function call<T>(lib: Library, path: string, guard: FileGuard, what: string, f: (m: H5Module) => T): T {
  if (lib.retired) {
    throw new SpikeflowError('DATA_INVALID', `${path}: cannot ${what}: HDF5 was restarted after a fault while reading ${lib.retired}; open this file again`, {
      path,
    });
  }
  lib.diagnostics = '';
  lib.damage = undefined;
  lib.guard = guard;
  let out: T;
  try {
    out = f(lib.m);
  } catch (e) {
    if (!isLibraryError(e) && !(e instanceof SpikeflowError)) retire(lib, path);
    else if (lib.m.HEAPU8.length > MEMORY_BUDGET) retire(lib, path);
    if (e instanceof SpikeflowError) throw e;
    throw damaged(path, what, lib.damage ?? deepest(lib.diagnostics) ?? describe(e), e);
  } finally {
    lib.guard = undefined;
  }
  if (lib.damage !== undefined || lib.diagnostics !== '') {
    if (lib.m.HEAPU8.length > MEMORY_BUDGET) retire(lib, path);
    throw damaged(path, what, lib.damage ?? deepest(lib.diagnostics));
  }
  return out;
}

function damaged(path: string, what: string, detail: string | undefined, cause?: unknown): SpikeflowError {
  return new SpikeflowError(
    'DATA_INVALID',
    `${path}: HDF5 cannot ${what}${detail ? ` (${detail})` : ''}: the file is damaged or truncated; download it again`,
    { path, ...(detail ? { hdf5: detail } : {}) },
    cause === undefined ? undefined : { cause },
  );
}

function describe(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message.split('\n')[0]}`;
  return `${typeof e} ${String(e)}`.slice(0, 200);
}

/** Retires a faulted instance: no call goes into it again, and the host files it held open are closed. */
function retire(lib: Library, path: string): void {
  lib.retired = path;
  for (const s of lib.m.FS.streams) {
    if (s && s.fd !== null && s.fd > 2 && s.nfd !== undefined) {
      try {
        closeSync(s.nfd);
      } catch {
        // already closed
      }
    }
  }
}

/** Whether references `[start, start + count)` of `s` were checked already. */
function isChecked(s: VlenStorage, start: number, count: number): boolean {
  for (let k = Math.max(0, start); k < Math.min(s.count, start + count); k++) if (!s.checked[k]) return false;
  return true;
}

/** Runs `f` with positioned reads of the file at `path` (of `size` bytes), open only meanwhile. */
function withFile<T>(path: string, size: number, f: (readAt: (position: number, length: number) => Uint8Array) => T): T {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new SpikeflowError('DATA_INVALID', `${path}: cannot be read (${(e as Error).message})`, { path }, { cause: e });
  }
  try {
    return f((pos, len) => {
      const b = new Uint8Array(Math.max(0, Math.min(len, size - pos)));
      return b.subarray(0, readSync(fd, b, 0, b.length, pos));
    });
  } catch (e) {
    if (e instanceof SpikeflowError) throw e;
    throw new SpikeflowError('DATA_INVALID', `${path}: cannot be read (${(e as Error).message})`, { path }, { cause: e });
  } finally {
    closeSync(fd);
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

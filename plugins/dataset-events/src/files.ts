import { SpikeflowError } from '@spikeflow/core';
import { open as openHandle, readdir, stat as statPath } from 'node:fs/promises';

/** An entry of a directory listing. */
export interface DirEntry {
  readonly name: string;
  readonly directory: boolean;
}

/** A file opened for positioned reads. */
export interface RandomAccessFile {
  readonly path: string;
  /** Size in bytes when it was opened. */
  readonly size: number;
  /** The bytes at [position, position + length), fewer only where the file ends first. */
  read(position: number, length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

/**
 * The file access the readers go through: listings, sizes and positioned reads, never a whole
 * folder at once. {@link nodeFiles} (node:fs) by default; a test or a caller may wrap it, e.g. to
 * count what a pass reads.
 */
export interface FileAccess {
  /** Size and kind of `path`; undefined where nothing is there. */
  stat(path: string): Promise<{ readonly size: number; readonly directory: boolean } | undefined>;
  /** The entries of directory `dir`, in no particular order. */
  list(dir: string): Promise<readonly DirEntry[]>;
  open(path: string): Promise<RandomAccessFile>;
}

/** {@link FileAccess} on the local file system (node:fs/promises). */
export const nodeFiles: FileAccess = {
  async stat(path) {
    try {
      const s = await statPath(path);
      return { size: s.size, directory: s.isDirectory() };
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT' || (e as { code?: string }).code === 'ENOTDIR') return undefined;
      throw unreadable(path, e);
    }
  },
  async list(dir) {
    try {
      return (await readdir(dir, { withFileTypes: true })).map((d) => ({ name: d.name, directory: d.isDirectory() }));
    } catch (e) {
      throw unreadable(dir, e);
    }
  },
  async open(path) {
    let h: Awaited<ReturnType<typeof openHandle>>;
    try {
      h = await openHandle(path, 'r');
    } catch (e) {
      throw unreadable(path, e);
    }
    let size: number;
    try {
      const s = await h.stat();
      // A folder opens for reading on some systems; its reads would fail with EISDIR.
      if (s.isDirectory()) throw new SpikeflowError('DATA_INVALID', `${path}: is a folder, not a file`, { file: path });
      size = s.size;
    } catch (e) {
      await h.close();
      throw e instanceof SpikeflowError ? e : unreadable(path, e);
    }
    return {
      path,
      size,
      async read(position, length) {
        const n = Math.max(0, Math.min(length, size - position));
        const buf = new Uint8Array(n);
        let got = 0;
        try {
          while (got < n) {
            const { bytesRead } = await h.read(buf, got, n - got, position + got);
            if (bytesRead === 0) break;
            got += bytesRead;
          }
        } catch (e) {
          throw unreadable(path, e);
        }
        return got === n ? buf : buf.subarray(0, got);
      },
      close: () => h.close(),
    };
  },
};

function unreadable(path: string, cause: unknown): SpikeflowError {
  const code = (cause as { code?: string }).code;
  const what = code === 'ENOENT' ? 'no such file or directory' : `cannot be read (${(cause as Error).message})`;
  return new SpikeflowError('DATA_INVALID', `${path}: ${what}`, { file: path }, { cause });
}

/** The whole of a (small) file: one sample, a labels CSV, a list of recordings. */
export async function readWhole(files: FileAccess, path: string): Promise<Uint8Array> {
  const f = await files.open(path);
  try {
    return await f.read(0, f.size);
  } finally {
    await f.close();
  }
}

/** A `DATA_INVALID` error: `where` (a file, and a sample where there is one) and what is wrong. */
export function invalid(where: string, message: string, details: Record<string, unknown> = {}): SpikeflowError {
  return new SpikeflowError('DATA_INVALID', `${where}: ${message}`, details);
}

/** Sorts names with their numbers compared as numbers (`2.bin` before `10.bin`). */
export function naturalOrder(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

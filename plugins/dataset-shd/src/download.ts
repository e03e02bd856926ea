import { SpikeflowError } from '@spikeflow/core';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

/**
 * Where the Zenke lab publishes the Heidelberg spiking datasets as gzipped HDF5 files, next to a
 * `md5sums.txt` that lists the MD5 of each (https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/;
 * compneuro.net/datasets/ mirrors it).
 */
export const SHD_BASE_URL = 'https://zenkelab.org/datasets/';

/** The file of each split, per family. */
export const SHD_FILES = {
  shd: { train: 'shd_train.h5', test: 'shd_test.h5' },
  ssc: { train: 'ssc_train.h5', valid: 'ssc_valid.h5', test: 'ssc_test.h5' },
} as const;

export type ShdFamily = keyof typeof SHD_FILES;

export interface FetchShdOptions {
  /** Cache directory of the family's files. */
  readonly dir: string;
  /** The HDF5 file's name (`shd_train.h5`, …). */
  readonly name: string;
  /** Download `<name>.gz` where neither the file nor its `.gz` is in `dir`. */
  readonly download: boolean;
  readonly baseUrl?: string;
  readonly log?: (message: string) => void;
}

/** The MD5 of each file listed in a `md5sums.txt` (`<md5>  <name>` per line). */
export function parseMd5Sums(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const m = /^([0-9a-f]{32})\s+\*?(\S.*)$/i.exec(line.trim());
    if (m) out.set(m[2]!.replace(/^.*\//, ''), m[1]!.toLowerCase());
  }
  return out;
}

/**
 * The path of `name` in `dir`, ready to read: the file itself if present; else its `.gz`,
 * unpacked next to it; else (with `download`) `<baseUrl><name>.gz`, checked against the MD5 that
 * `<baseUrl>md5sums.txt` lists for it, then unpacked. Files appear only complete (written under
 * a temporary name, then renamed). Without `download`, a missing file is a `DATA_INVALID` error
 * that says where to get it.
 */
export async function fetchShdFile(o: FetchShdOptions): Promise<string> {
  const target = join(o.dir, o.name);
  if (existsSync(target)) return target;
  const gz = `${target}.gz`;
  const base = o.baseUrl ?? SHD_BASE_URL;
  if (!existsSync(gz)) {
    if (!o.download) {
      throw new SpikeflowError(
        'DATA_INVALID',
        `${target}: not found. Download ${base}${o.name}.gz (listed with its MD5 in ${base}md5sums.txt) into ${o.dir}, or set download: true in the data section`,
        { path: target },
      );
    }
    await mkdir(o.dir, { recursive: true });
    const sums = parseMd5Sums(await fetchText(`${base}md5sums.txt`));
    const want = sums.get(`${o.name}.gz`);
    if (!want)
      throw new SpikeflowError('DATA_INVALID', `${base}md5sums.txt lists no checksum for ${o.name}.gz; refusing to use an unchecked download`, {
        url: `${base}md5sums.txt`,
      });
    o.log?.(`downloading ${base}${o.name}.gz`);
    const got = await downloadTo(`${base}${o.name}.gz`, gz);
    if (got !== want) {
      await rm(gz, { force: true });
      throw new SpikeflowError(
        'DATA_INVALID',
        `${base}${o.name}.gz: MD5 ${got}, but md5sums.txt lists ${want}; the download was removed, try again or another baseUrl`,
        { url: `${base}${o.name}.gz` },
      );
    }
  }
  o.log?.(`unpacking ${gz}`);
  const part = `${target}.part-${process.pid}`;
  try {
    await pipeline(createReadStream(gz), createGunzip(), createWriteStream(part));
  } catch (e) {
    await rm(part, { force: true });
    throw new SpikeflowError('DATA_INVALID', `${gz}: cannot be unpacked (${(e as Error).message}); delete it and download again`, { path: gz }, { cause: e });
  }
  await rename(part, target);
  return target;
}

async function fetchText(url: string): Promise<string> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new SpikeflowError(
      'DATA_INVALID',
      `${url}: cannot be fetched (${(e as Error).message}); check the network, or download the files by hand`,
      { url },
      { cause: e },
    );
  }
  if (!res.ok) throw new SpikeflowError('DATA_INVALID', `${url}: the server answered ${res.status} ${res.statusText}`, { url });
  return res.text();
}

/** Streams `url` into `path` (complete or not at all); returns the MD5 of what was written. */
async function downloadTo(url: string, path: string): Promise<string> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new SpikeflowError('DATA_INVALID', `${url}: cannot be fetched (${(e as Error).message})`, { url }, { cause: e });
  }
  if (!res.ok || !res.body) throw new SpikeflowError('DATA_INVALID', `${url}: the server answered ${res.status} ${res.statusText}`, { url });
  const md5 = createHash('md5');
  const part = `${path}.part-${process.pid}`;
  try {
    await pipeline(
      Readable.fromWeb(res.body as Parameters<typeof Readable.fromWeb>[0]),
      new Transform({
        transform(chunk: Buffer, _enc, done) {
          md5.update(chunk);
          done(null, chunk);
        },
      }),
      createWriteStream(part),
    );
  } catch (e) {
    await rm(part, { force: true });
    throw new SpikeflowError('DATA_INVALID', `${url}: the download broke off (${(e as Error).message})`, { url }, { cause: e });
  }
  await rename(part, path);
  return md5.digest('hex');
}

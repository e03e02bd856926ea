import { SpikeflowError } from '@spikeflow/core';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The four files of an MNIST-style dataset, by role; each may be stored raw or with `.gz`. */
export const IDX_FILES = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
} as const;

export type IdxRole = keyof typeof IDX_FILES;
export type IdxFamily = 'mnist' | 'fashion-mnist';

/**
 * Default download locations: for MNIST the Google Cloud mirror of LeCun's files that
 * TensorFlow Datasets uses (yann.lecun.com itself often refuses scripted downloads); for
 * Fashion-MNIST Zalando Research's own bucket (Xiao, Rasul & Vollgraf 2017).
 */
export const DEFAULT_BASE_URLS: Readonly<Record<IdxFamily, string>> = {
  mnist: 'https://storage.googleapis.com/cvdf-datasets/mnist/',
  'fashion-mnist': 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',
};

/**
 * SHA-256 of the gzipped distribution files, as recorded by TensorFlow Datasets
 * (tensorflow/datasets, `tensorflow_datasets/url_checksums/mnist.txt` and `fashion_mnist.txt`)
 * and matching the digests other projects pin (e.g. torchvision users, Bazel `http_file` rules).
 * A download whose digest differs is refused, whatever mirror `baseUrl` names.
 */
export const SHA256: Readonly<Record<IdxFamily, Readonly<Record<string, string>>>> = {
  mnist: {
    'train-images-idx3-ubyte.gz': '440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609',
    'train-labels-idx1-ubyte.gz': '3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c',
    't10k-images-idx3-ubyte.gz': '8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6',
    't10k-labels-idx1-ubyte.gz': 'f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6',
  },
  'fashion-mnist': {
    'train-images-idx3-ubyte.gz': '3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84',
    'train-labels-idx1-ubyte.gz': 'a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845',
    't10k-images-idx3-ubyte.gz': '346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073',
    't10k-labels-idx1-ubyte.gz': '67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5',
  },
};

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The path of `base` in `dir`: the raw file if present, else the gzipped one, else undefined. */
export function findIdxFile(dir: string, base: string): string | undefined {
  for (const name of [base, `${base}.gz`]) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Writes `bytes` to `path` atomically: into a temporary file beside it, then renamed over it. */
export async function writeAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

export interface FetchIdxOptions {
  /** Directory the files are looked up in and downloaded into. */
  readonly dir: string;
  /** Download missing files (otherwise a missing file is an error saying how to get it). */
  readonly download: boolean;
  /** URL the `<name>.gz` files are fetched from (`<baseUrl>/<name>.gz`). */
  readonly baseUrl: string;
  /** Expected SHA-256 per gzipped file name; a file with no digest is accepted with a warning. */
  readonly checksums: Readonly<Record<string, string>>;
  /** Dataset name for messages. */
  readonly dataset: string;
  readonly log?: (message: string) => void;
}

/**
 * Finds the four IDX files of a dataset in `dir`, downloading the missing ones when allowed.
 * Each download is checked against its SHA-256 before it is renamed into place, so `dir` never
 * holds a partial or unverified file. Returns the path of each file by role.
 */
export async function fetchIdxFiles(o: FetchIdxOptions): Promise<Record<IdxRole, string>> {
  const found: Partial<Record<IdxRole, string>> = {};
  const missing: IdxRole[] = [];
  for (const [role, base] of Object.entries(IDX_FILES) as [IdxRole, string][]) {
    const p = findIdxFile(o.dir, base);
    if (p) found[role] = p;
    else missing.push(role);
  }
  if (missing.length && !o.download) {
    throw new SpikeflowError(
      'DATA_INVALID',
      `${o.dataset}: missing ${missing.map((r) => IDX_FILES[r]).join(', ')} (raw or .gz) in ${o.dir}. ` +
        `Set the data option download: true to fetch them from ${o.baseUrl}, or put the files there yourself` +
        (o.dataset === 'mnist' ? `; or use source: 'bundled' (10,000 digits shipped with the plugin)` : ''),
      { dir: o.dir, missing: missing.map((r) => IDX_FILES[r]) },
    );
  }
  if (missing.length) await mkdir(o.dir, { recursive: true });
  for (const role of missing) {
    const name = `${IDX_FILES[role]}.gz`;
    const url = new URL(name, o.baseUrl.endsWith('/') ? o.baseUrl : `${o.baseUrl}/`).href;
    o.log?.(`${o.dataset}: downloading ${url}`);
    let bytes: Uint8Array;
    try {
      const res = await fetch(url);
      if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`);
      bytes = new Uint8Array(await res.arrayBuffer());
    } catch (cause) {
      throw new SpikeflowError(
        'DATA_INVALID',
        `${o.dataset}: could not download ${url} (${(cause as Error).message}). Check the data option baseUrl, or put ${name} into ${o.dir} yourself`,
        { url, dir: o.dir },
        { cause },
      );
    }
    const expected = o.checksums[name];
    const actual = sha256(bytes);
    if (expected === undefined) {
      o.log?.(`${o.dataset}: warning: no known SHA-256 for ${name}; accepting ${url} unverified (sha256 ${actual})`);
    } else if (actual !== expected) {
      throw new SpikeflowError(
        'DATA_INVALID',
        `${o.dataset}: ${url} failed its checksum: SHA-256 ${actual}, expected ${expected}. The file was not saved; check the data option baseUrl (the mirror may serve different or damaged files)`,
        { url, expected, actual },
      );
    }
    const dest = join(o.dir, name);
    await writeAtomic(dest, bytes);
    o.log?.(`${o.dataset}: saved ${dest} (${bytes.length} bytes${expected ? ', SHA-256 verified' : ''})`);
    found[role] = dest;
  }
  return found as Record<IdxRole, string>;
}

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { denseInputs, disposeTree, inputShape, isSpikeflowError, tf, type SpikeflowError } from '@spikeflow/core';
import { wasm } from '@spikeflow/backend-wasm';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { IDX_FILES, SHA256, fetchIdxFiles, sha256 } from './download.js';
import { encodeIdx } from './idx.js';
import { openFashionMnist, openMnist } from './mnist.js';

beforeAll(() => wasm.activate());

/** A tiny MNIST-like set: 5 train and 3 test images of 2×3 pixels, gzipped as distributed. */
const files: Record<string, Uint8Array> = {
  [`${IDX_FILES.trainImages}.gz`]: gzipSync(
    encodeIdx(
      'ubyte',
      [5, 2, 3],
      Array.from({ length: 30 }, (_, i) => (i * 37) % 256),
    ),
  ),
  [`${IDX_FILES.trainLabels}.gz`]: gzipSync(encodeIdx('ubyte', [5], [3, 1, 4, 1, 5])),
  [`${IDX_FILES.testImages}.gz`]: gzipSync(
    encodeIdx(
      'ubyte',
      [3, 2, 3],
      Array.from({ length: 18 }, (_, i) => 255 - i),
    ),
  ),
  [`${IDX_FILES.testLabels}.gz`]: gzipSync(encodeIdx('ubyte', [3], [9, 2, 6])),
};
const digests = Object.fromEntries(Object.entries(files).map(([n, b]) => [n, sha256(b)]));

let server: Server;
let base: string;
const requests: string[] = [];
let root: string;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'spikeflow-dl-'));
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const name = (req.url ?? '').split('/').pop()!;
    const body = req.url === `/mirror/${name}` ? files[name] : undefined;
    if (!body) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mirror/`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(root, { recursive: true, force: true });
});

const refusal = async (p: Promise<unknown>): Promise<SpikeflowError> => {
  const err = await p.catch((e: unknown) => e);
  expect(isSpikeflowError(err, 'DATA_INVALID'), String(err)).toBe(true);
  return err as SpikeflowError;
};

describe('download', () => {
  it('fetches missing files from a (loopback) mirror, verifies their SHA-256 and saves them atomically', async () => {
    const dir = join(root, 'ok');
    const log: string[] = [];
    const paths = await fetchIdxFiles({ dir, download: true, baseUrl: base, checksums: digests, dataset: 'mnist', log: (m) => log.push(m) });
    expect(
      Object.values(paths)
        .map((p) => p.slice(dir.length + 1))
        .sort(),
    ).toEqual(Object.keys(files).sort());
    expect(readdirSync(dir).sort()).toEqual(Object.keys(files).sort()); // no temporary files left
    expect(requests.filter((r) => r.startsWith('/mirror/')).length).toBe(4);
    expect(log.filter((m) => m.includes('SHA-256 verified')).length).toBe(4);

    // a second open finds the files and downloads nothing
    const before = requests.length;
    const ds = await openMnist({ source: 'idx', dir, download: true, baseUrl: base }, { cacheDir: root });
    expect(requests.length).toBe(before);
    expect(ds.describe()).toEqual({ steps: 2, channels: 3, outputs: 10, target: 'labels', samples: { train: 5, test: 3 } });
    const n = tf.memory().numTensors;
    for await (const b of ds.batches('test', { batchSize: 3, seed: 0 })) {
      expect(inputShape(b.inputs)).toEqual([2, 3, 3]);
      expect(Array.from(b.targets.dataSync())).toEqual([9, 2, 6]);
      // sample 0, step 1 (row 1) = pixels 3..5 = (255 − 3..5)/255
      const dense = denseInputs(b.inputs);
      const x = dense.arraySync() as number[][][];
      dense.dispose();
      expect(x[1]![0]).toEqual([252, 251, 250].map((v) => Math.fround(v / 255)));
      disposeTree(b);
    }
    expect(tf.memory().numTensors).toBe(n);
  });

  it('refuses a file whose checksum does not match, and saves nothing', async () => {
    const dir = join(root, 'mismatch');
    const err = await refusal(openMnist({ source: 'idx', dir, download: true, baseUrl: base }, { cacheDir: root }));
    // the built-in table holds the real MNIST digests; the served files are tiny fakes
    const name = String(err.details['url']).split('/').pop()!;
    expect(err.message).toContain(`${base}${name} failed its checksum`);
    expect(err.details['expected']).toBe(SHA256.mnist[name]);
    expect(err.details['actual']).toBe(digests[name]);
    expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
  });

  it('accepts a file with no known digest, with a warning', async () => {
    const dir = join(root, 'unknown');
    const log: string[] = [];
    const partial = { ...digests };
    delete partial[`${IDX_FILES.trainImages}.gz`];
    await fetchIdxFiles({ dir, download: true, baseUrl: base.slice(0, -1), checksums: partial, dataset: 'mnist', log: (m) => log.push(m) });
    expect(log.filter((m) => m.includes('warning: no known SHA-256')).length).toBe(1);
    expect(log.find((m) => m.includes('warning'))).toContain('train-images-idx3-ubyte.gz');
    expect(readdirSync(dir).length).toBe(4);
  });

  it('without download, names the missing files, the directory and the ways to get them', async () => {
    const dir = join(root, 'empty');
    const err = await refusal(openMnist({ source: 'idx', dir }, { cacheDir: root }));
    expect(err.message).toContain(
      `missing train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (raw or .gz) in ${dir}`,
    );
    expect(err.message).toContain('download: true');
    expect(err.message).toContain("source: 'bundled'");
    const err2 = await refusal(openFashionMnist({}, { cacheDir: root }));
    expect(err2.message).toContain(join(root, 'fashion-mnist'));
    expect(err2.message).toContain('fashion-mnist.s3-website');
  });

  it('reports an HTTP failure as a download error', async () => {
    const dir = join(root, 'http');
    const err = await refusal(fetchIdxFiles({ dir, download: true, baseUrl: `${base}nothing-here/`, checksums: digests, dataset: 'mnist' }));
    expect(err.message).toContain('could not download');
    expect(err.message).toContain('HTTP 404');
  });

  it('uses raw files when present, and refuses a damaged one naming it', async () => {
    const dir = join(root, 'raw');
    await fetchIdxFiles({ dir, download: true, baseUrl: base, checksums: digests, dataset: 'mnist' });
    writeFileSync(join(dir, IDX_FILES.testLabels), encodeIdx('ubyte', [2], [1, 2]));
    const err = await refusal(openMnist({ source: 'idx', dir }, { cacheDir: root }));
    expect(err.message).toContain(`${join(dir, IDX_FILES.testLabels)}: holds 2 labels but`);
  });
});

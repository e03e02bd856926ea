import { isSpikeflowError } from '@spikeflow/core';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchShdFile, parseMd5Sums } from './download.js';

const h5 = readFileSync(fileURLToPath(new URL('../test-data/shd-f16.h5', import.meta.url)));
const gz = gzipSync(h5);
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');
const tmp = () => mkdtempSync(join(tmpdir(), 'spikeflow-shd-dl-'));

/** A server standing in for zenkelab.org: `/good/` lists the right MD5, `/bad/` a wrong one, `/none/` none. */
let server: Server;
let base: string;
const requests: string[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push(req.url!);
    const [, dir, name] = req.url!.split('/');
    if (name === 'md5sums.txt') {
      const sums = {
        good: `${md5(gz)}  shd_train.h5.gz\n0123456789abcdef0123456789abcdef  shd_test.h5.gz\n`,
        bad: `${'0'.repeat(32)}  shd_train.h5.gz\n`,
        none: `${md5(gz)}  other.h5.gz\n`,
      }[dir!];
      res.end(sums);
    } else if (name === 'shd_train.h5.gz') res.end(gz);
    else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('md5sums.txt', () => {
  it('maps file names to their MD5', () => {
    const m = parseMd5Sums(`${'a'.repeat(32)}  shd_train.h5.gz\r\n${'B'.repeat(32)} *dir/ssc_test.h5.gz\nnot a line\n`);
    expect(Object.fromEntries(m)).toEqual({ 'shd_train.h5.gz': 'a'.repeat(32), 'ssc_test.h5.gz': 'b'.repeat(32) });
  });
});

describe('fetchShdFile', () => {
  it('downloads the .h5.gz, checks its MD5 against md5sums.txt and unpacks it', async () => {
    const dir = tmp();
    const logs: string[] = [];
    const path = await fetchShdFile({ dir, name: 'shd_train.h5', download: true, baseUrl: `${base}/good/`, log: (m) => logs.push(m) });
    expect(path).toBe(join(dir, 'shd_train.h5'));
    expect(md5(readFileSync(path))).toBe(md5(h5));
    expect(logs.some((l) => l.includes('downloading'))).toBe(true);
    // Present now: no second download.
    const before = requests.length;
    await fetchShdFile({ dir, name: 'shd_train.h5', download: true, baseUrl: `${base}/good/` });
    expect(requests.length).toBe(before);
  });

  it('refuses a download whose MD5 differs or is not listed, and leaves nothing behind', async () => {
    for (const [dir, msg] of [
      ['bad', /MD5 [0-9a-f]{32}, but md5sums\.txt lists 0{32}; the download was removed/],
      ['none', /md5sums\.txt lists no checksum for shd_train\.h5\.gz; refusing to use an unchecked download/],
    ] as const) {
      const into = tmp();
      const e: unknown = await fetchShdFile({ dir: into, name: 'shd_train.h5', download: true, baseUrl: `${base}/${dir}/` }).catch((x: unknown) => x);
      expect(isSpikeflowError(e, 'DATA_INVALID')).toBe(true);
      expect((e as Error).message).toMatch(msg);
      expect(readdirSync(into)).toEqual([]);
    }
  });

  it('says where to get a missing file, and reports a server error', async () => {
    const dir = tmp();
    await expect(fetchShdFile({ dir, name: 'shd_test.h5', download: false, baseUrl: `${base}/good/` })).rejects.toThrow(
      `${join(dir, 'shd_test.h5')}: not found. Download ${base}/good/shd_test.h5.gz (listed with its MD5 in ${base}/good/md5sums.txt) into ${dir}, or set download: true in the data section`,
    );
    await expect(fetchShdFile({ dir, name: 'shd_test.h5', download: true, baseUrl: `${base}/good/` })).rejects.toThrow(
      /shd_test\.h5\.gz: the server answered 404/,
    );
  });

  it('unpacks a .gz already in the directory without the network, and refuses a broken one', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'shd_test.h5.gz'), gz);
    const path = await fetchShdFile({ dir, name: 'shd_test.h5', download: false });
    expect(md5(readFileSync(path))).toBe(md5(h5));
    writeFileSync(join(dir, 'ssc_test.h5.gz'), gz.subarray(0, gz.length >> 1));
    await expect(fetchShdFile({ dir, name: 'ssc_test.h5', download: false })).rejects.toThrow(
      /ssc_test\.h5\.gz: cannot be unpacked .*delete it and download again/,
    );
    expect(existsSync(join(dir, 'ssc_test.h5'))).toBe(false);
  });
});

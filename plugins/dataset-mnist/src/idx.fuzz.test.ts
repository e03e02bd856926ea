import { wasm } from '@spikeflow/backend-wasm';
import { disposeTree, isSpikeflowError } from '@spikeflow/core';
import { fuzzReader, fuzzRuns, mutatedBytes } from '@spikeflow/testing';
import fc from 'fast-check';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IDX_FILES, type IdxRole } from './download.js';
import { encodeIdx, parseIdx } from './idx.js';
import { ENCODERS, VARIANTS } from './encode.js';
import { mnistEntry, openMnist } from './mnist.js';
import { loadIdxSet } from './sources.js';

// Fuzzing the IDX reader and the image sets built from IDX files: mutated, truncated and random
// files are read or refused with a SpikeflowError, and no header sizes an allocation unchecked.

beforeAll(() => wasm.activate());

let dir = '';
let cases = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'spikeflow-idx-fuzz-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ramp = (n: number, f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i));

/** A consistent small set: 6 training and 3 test images of 4 × 5 pixels with their labels. */
const SET: Record<IdxRole, Uint8Array> = {
  trainImages: encodeIdx(
    'ubyte',
    [6, 4, 5],
    ramp(120, (i) => (i * 37) % 256),
  ),
  trainLabels: encodeIdx('ubyte', [6], [0, 1, 2, 9, 8, 7]),
  testImages: encodeIdx(
    'ubyte',
    [3, 4, 5],
    ramp(60, (i) => (i * 11) % 256),
  ),
  testLabels: encodeIdx('ubyte', [3], [3, 4, 5]),
};

/** IDX files of every element type, raw and gzipped. */
const FILES = [
  ...Object.values(SET),
  encodeIdx('int8', [2, 3], [-128, -1, 0, 1, 2, 127]),
  encodeIdx('int16', [3, 2], [-32768, -300, 0, 300, 32767, 1]),
  encodeIdx('int32', [2, 2], [-2147483648, -70000, 70000, 2147483647]),
  encodeIdx('float32', [4], [-1.5, 0, 0.25, 3.5]),
  encodeIdx('float64', [1, 1, 2], [Math.PI, -1e300]),
];
const SEEDS = [...FILES, ...FILES.map((b) => new Uint8Array(gzipSync(b)))];

const ROLES = Object.keys(IDX_FILES) as IdxRole[];
const ctx = { cacheDir: '/nonexistent-spikeflow-cache' };

describe('IDX reader fuzzing', () => {
  it(
    'summarises or refuses with a SpikeflowError every file',
    async () => {
      await fuzzReader('mnist idx', mutatedBytes(SEEDS, { keepPrefix: 3 }), async (bytes) => {
        const path = join(dir, `case-${cases++}-idx3-ubyte`);
        writeFileSync(path, bytes);
        try {
          await mnistEntry.inspect!(path, 'idx');
        } finally {
          rmSync(path, { force: true });
        }
      });
    },
    30_000 + 20 * fuzzRuns(),
  );

  it(
    'opens a set with one file damaged (or swapped for another) and reads both splits, or refuses with a SpikeflowError',
    async () => {
      // Mostly the role's own file damaged; sometimes any other file in its place.
      const file = fc
        .constantFrom(...ROLES)
        .chain((role) =>
          fc
            .oneof(
              { weight: 4, arbitrary: mutatedBytes([SET[role], gzipSync(SET[role])], { keepPrefix: 3 }) },
              { weight: 1, arbitrary: mutatedBytes(SEEDS, { keepPrefix: 3 }) },
            )
            .map((bytes) => ({ role, bytes })),
        );
      const damaged = fc
        .record({ file, variant: fc.constantFrom(...VARIANTS), encoder: fc.constantFrom(...ENCODERS) })
        .map(({ file: f, ...o }) => ({ ...f, ...o }));
      await fuzzReader('mnist idx set', damaged, async ({ role, bytes, variant, encoder }) => {
        const d = join(dir, `set-${cases++}`);
        mkdirSync(d);
        try {
          for (const r of ROLES) writeFileSync(join(d, IDX_FILES[r]), r === role ? bytes : SET[r]);
          const ds = await openMnist({ source: 'idx', dir: d, variant, encoder }, ctx);
          for (const split of ds.splits) {
            for await (const b of ds.batches(split, { batchSize: 4, seed: 1 })) disposeTree(b);
          }
        } finally {
          rmSync(d, { recursive: true, force: true });
        }
      });
    },
    30_000 + 50 * fuzzRuns(),
  );
});

/** The SpikeflowError `f` ends in (the test fails on anything else, or on none). */
async function refusal(f: () => unknown): Promise<Error> {
  try {
    await f();
  } catch (e) {
    expect(isSpikeflowError(e, 'DATA_INVALID'), String(e)).toBe(true);
    return e as Error;
  }
  throw new Error('no error');
}

describe('damaged IDX files', () => {
  function setWith(name: string, files: Partial<Record<IdxRole, Uint8Array>>): Record<IdxRole, string> {
    const d = join(dir, name);
    mkdirSync(d, { recursive: true });
    const paths = {} as Record<IdxRole, string>;
    for (const r of ROLES) {
      paths[r] = join(d, IDX_FILES[r]);
      writeFileSync(paths[r], files[r] ?? SET[r]);
    }
    return paths;
  }

  it('refuses images of no pixels, and a split of no images, whose header alone would size every sequence', async () => {
    // [0, 65536, 65536]: no data bytes to check against, but 2^32 pixels per image.
    const none = encodeIdx('ubyte', [0, 65536, 65536], []);
    const noLabels = encodeIdx('ubyte', [0], []);
    setWith('huge', { trainImages: none, trainLabels: noLabels, testImages: none, testLabels: noLabels });
    const e = await refusal(() => openMnist({ source: 'idx', dir: join(dir, 'huge') }, ctx));
    expect(e.message).toMatch(
      /train-images-idx3-ubyte: holds no images \(\[0, 65536, 65536\] ubyte\); its header is damaged or the file is empty: download it again/,
    );
    const e2 = await refusal(() => loadIdxSet(setWith('flat', { trainImages: encodeIdx('ubyte', [6, 0, 5], []) })));
    expect(e2.message).toContain('train-images-idx3-ubyte: holds images of 0×5 pixels');
  });

  it('names the declared size when a header claims more data than any file holds', async () => {
    const b = encodeIdx('float64', [2], [1, 2]);
    new DataView(b.buffer).setUint32(4, 0xffffffff, false);
    const big = encodeIdx('ubyte', [1, 1, 1, 1, 1, 1], [0]);
    for (let k = 0; k < 6; k++) new DataView(big.buffer).setUint32(4 + 4 * k, 0xffffffff, false);
    expect(() => parseIdx(b, 'x')).toThrow('x: is truncated: the header declares [4294967295] float64 = 34359738360 data bytes but only 16 follow the header');
    expect(() => parseIdx(big, 'y')).toThrow(
      /^y: is truncated: the header declares \[4294967295, 4294967295, 4294967295, 4294967295, 4294967295, 4294967295\] ubyte = more than 2\^53 data bytes but only 1 follow the header/,
    );
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSpikeflowError, type SpikeflowError } from '@spikeflow/core';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { encodeIdx, parseIdx, readIdx, summarizeIdx, type IdxType } from './idx.js';
import { loadIdxSet } from './sources.js';
import { mnistEntry } from './mnist.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'spikeflow-idx-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, bytes: Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

async function refusal(p: Promise<unknown> | (() => unknown)): Promise<SpikeflowError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(isSpikeflowError(err, 'DATA_INVALID'), String(err)).toBe(true);
  return err as SpikeflowError;
}

const samples: Record<IdxType, number[]> = {
  ubyte: [0, 1, 127, 128, 255, 7],
  int8: [-128, -1, 0, 1, 127, 5],
  int16: [-32768, -300, 0, 300, 32767, 1],
  int32: [-2147483648, -70000, 0, 70000, 2147483647, 3],
  float32: [-1.5, 0, 0.25, 3.5, -1024, 1e-3],
  float64: [-1.5, Math.PI, 0, 1e300, -1e-300, 0.1],
};

describe('IDX reader', () => {
  it.each(Object.keys(samples) as IdxType[])('reads back %s files, raw and gzipped, big-endian', async (type) => {
    const values = samples[type];
    const bytes = encodeIdx(type, [2, 3], values);
    for (const [name, b] of [
      [`a-${type}`, bytes],
      [`a-${type}.gz`, gzipSync(bytes)],
    ] as const) {
      const idx = await readIdx(write(name, b));
      expect(idx.type).toBe(type);
      expect(idx.dims).toEqual([2, 3]);
      expect(idx.compressed).toBe(name.endsWith('.gz'));
      const expected = type === 'float32' ? values.map(Math.fround) : values;
      expect(Array.from(idx.data)).toEqual(expected);
    }
  });

  it('lays out the header as magic 00 00 <type> <ndims> then big-endian uint32 dims', () => {
    const b = encodeIdx('ubyte', [3, 2, 1], [1, 2, 3, 4, 5, 6]);
    expect(Array.from(b.subarray(0, 16))).toEqual([0, 0, 0x08, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1]);
    expect(parseIdx(encodeIdx('int16', [1], [0x0102]), 'x').data[0]).toBe(0x0102);
    expect(Array.from(encodeIdx('int16', [1], [0x0102]).subarray(8))).toEqual([1, 2]);
  });

  it('refuses a missing file, naming it and how to get the data', async () => {
    const err = await refusal(readIdx(join(dir, 'nope-idx1-ubyte')));
    expect(err.message).toContain(join(dir, 'nope-idx1-ubyte'));
    expect(err.message).toContain('no such file');
    expect(err.message).toContain('download: true');
    expect(err.message).toContain('t10k-images-idx3-ubyte.gz');
  });

  it('refuses a bad magic number', async () => {
    const b = encodeIdx('ubyte', [2], [1, 2]);
    b[0] = 0x12;
    const err = await refusal(() => parseIdx(b, 'bad-magic'));
    expect(err.message).toMatch(/^bad-magic: is not an IDX file: bad magic number 0x12 0x00 0x08 0x01/);
  });

  it('refuses an unknown element type', async () => {
    const b = encodeIdx('ubyte', [2], [1, 2]);
    b[2] = 0x0a;
    const err = await refusal(() => parseIdx(b, 'odd-type'));
    expect(err.message).toContain('odd-type: unknown IDX element type 0x0a');
    expect(err.message).toContain('0x08 ubyte');
  });

  it('refuses a truncated file: data shorter than the header declares, or a cut header', async () => {
    const b = encodeIdx('ubyte', [10, 4], new Array(40).fill(3));
    const err = await refusal(readIdx(write('cut-idx3-ubyte.gz', gzipSync(b.subarray(0, b.length - 5)))));
    expect(err.message).toContain('is truncated: the header declares [10, 4] ubyte = 40 data bytes but only 35 follow the header');
    expect(err.details['expectedBytes']).toBe(40);
    const err2 = await refusal(() => parseIdx(b.subarray(0, 9), 'cut-header'));
    expect(err2.message).toContain('cut-header: is truncated: the header declares 2 dimensions (12 header bytes) but the file has only 9 bytes');
    await refusal(() => parseIdx(new Uint8Array([0, 0]), 'tiny'));
    const int32 = encodeIdx('int32', [3], [1, 2, 3]);
    expect((await refusal(() => parseIdx(int32.subarray(0, int32.length - 1), 'i32'))).message).toContain('[3] int32 = 12 data bytes but only 11');
  });

  it('refuses a header that lies about its size (more bytes than declared)', async () => {
    const b = encodeIdx('ubyte', [4], [1, 2, 3, 4]);
    const longer = new Uint8Array(b.length + 3);
    longer.set(b);
    const err = await refusal(() => parseIdx(longer, 'long'));
    expect(err.message).toContain('long: has 3 bytes more than its header declares ([4] ubyte = 4 data bytes, 7 present)');
  });

  it('refuses a corrupt gzip stream and zero dimensions', async () => {
    const gz = gzipSync(encodeIdx('ubyte', [100], new Array(100).fill(1)));
    const err = await refusal(() => parseIdx(gz.subarray(0, gz.length - 12), 'broken.gz'));
    expect(err.message).toContain('broken.gz: is not a valid gzip stream');
    await refusal(() => parseIdx(new Uint8Array([0, 0, 8, 0, 1]), 'scalar'));
  });
});

describe('IDX image sets', () => {
  function set(name: string, o: { trainImages?: Uint8Array; trainLabels?: Uint8Array; testImages?: Uint8Array; testLabels?: Uint8Array } = {}) {
    const files = {
      trainImages: o.trainImages ?? encodeIdx('ubyte', [3, 2, 2], new Array(12).fill(9)),
      trainLabels: o.trainLabels ?? encodeIdx('ubyte', [3], [0, 1, 9]),
      testImages: o.testImages ?? encodeIdx('ubyte', [1, 2, 2], [1, 2, 3, 4]),
      testLabels: o.testLabels ?? encodeIdx('ubyte', [1], [5]),
    };
    const paths = Object.fromEntries(Object.entries(files).map(([role, b]) => [role, write(`${name}-${role}`, b)]));
    return paths as Record<keyof typeof files, string>;
  }

  it('loads a consistent set', async () => {
    const s = await loadIdxSet(set('ok'));
    expect([s.height, s.width, s.train.count, s.test.count]).toEqual([2, 2, 3, 1]);
    expect(Array.from(s.test.images)).toEqual([1, 2, 3, 4]);
    expect(Array.from(s.train.labels)).toEqual([0, 1, 9]);
    expect(s.lut[255]).toBe(1);
    expect(s.lut[51]).toBeCloseTo(0.2, 7);
  });

  it('refuses an images and a labels file of different lengths', async () => {
    const err = await refusal(loadIdxSet(set('count', { trainLabels: encodeIdx('ubyte', [2], [0, 1]) })));
    expect(err.message).toMatch(/count-trainLabels: holds 2 labels but .*count-trainImages holds 3 images/);
  });

  it('refuses labels outside 0..9, and labels that are not unsigned bytes (outside 0..255)', async () => {
    const err = await refusal(loadIdxSet(set('label', { testLabels: encodeIdx('ubyte', [1], [10]) })));
    expect(err.message).toContain('label-testLabels: label 10 at record 0 is outside 0..9');
    const err2 = await refusal(loadIdxSet(set('wide', { trainLabels: encodeIdx('int16', [3], [0, 1, 300]) })));
    expect(err2.message).toContain('expected labels [N] of unsigned bytes (IDX type 0x08, 1 dimension), got [3] int16');
  });

  it('refuses images that are not [N, H, W] ubyte, and train/test of different sizes', async () => {
    const err = await refusal(loadIdxSet(set('flat', { trainImages: encodeIdx('ubyte', [3, 4], new Array(12).fill(0)) })));
    expect(err.message).toContain('expected images [N, height, width] of unsigned bytes');
    const err2 = await refusal(loadIdxSet(set('size', { testImages: encodeIdx('ubyte', [1, 1, 4], [1, 2, 3, 4]) })));
    expect(err2.message).toContain('holds 1×4 images but');
  });
});

describe('inspect', () => {
  it('summarises a labels file with classes and a label histogram', async () => {
    const p = write('train-labels-idx1-ubyte.gz', gzipSync(encodeIdx('ubyte', [7], [3, 1, 3, 0, 9, 3, 1])));
    expect(await mnistEntry.inspect!(p, 'idx')).toEqual({
      path: p,
      format: 'idx',
      samples: 7,
      shape: [],
      dtype: 'ubyte',
      compressed: true,
      min: 0,
      max: 9,
      classes: 4,
      labelHistogram: { '0': 1, '1': 2, '3': 3, '9': 1 },
    });
  });

  it('summarises an images file with its sample shape', async () => {
    const p = write(
      't10k-images-idx3-ubyte',
      encodeIdx(
        'ubyte',
        [2, 3, 4],
        Array.from({ length: 24 }, (_, i) => i * 10),
      ),
    );
    const s = await summarizeIdx(p);
    expect(s).toEqual({ path: p, format: 'idx', samples: 2, shape: [3, 4], dtype: 'ubyte', compressed: false, min: 0, max: 230 });
    expect(s.labelHistogram).toBeUndefined();
  });

  it('refuses another format and bad files', async () => {
    const err = await mnistEntry.inspect!('x.csv', 'csv').catch((e: unknown) => e);
    expect(isSpikeflowError(err, 'CONFIG_INVALID')).toBe(true);
    await refusal(mnistEntry.inspect!(join(dir, 'missing'), 'idx'));
  });
});

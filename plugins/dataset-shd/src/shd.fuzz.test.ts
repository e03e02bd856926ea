import { isSpikeflowError } from '@spikeflow/core';
import { fuzzReader, fuzzRuns, mutatedBytes, mutate, mutation } from '@spikeflow/testing';
import fc from 'fast-check';
import h5wasm from 'h5wasm/node';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Hdf5Reader, ShdFile, shdEntry } from './index.js';

// Fuzzing the SHD/SSC reader (h5wasm underneath) with damaged HDF5 files: every outcome is a
// reading or a SpikeflowError, every case ends, and HDF5 stays usable for the next file.

const data = fileURLToPath(new URL('../test-data/', import.meta.url));
const SEEDS = ['shd-f16.h5', 'shd-f32.h5', 'shd-f64.h5', 'shd-faults.h5', 'shd-nan.h5', 'shd-short-labels.h5', 'not-shd.h5'];
const seeds = SEEDS.map((n) => new Uint8Array(readFileSync(join(data, n))));

let dir = '';
let cases = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'spikeflow-shd-fuzz-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  vi.restoreAllMocks();
});

/** Writes `bytes` to a fresh file of the test's temporary directory. */
function write(bytes: Uint8Array, name = `case-${cases++}.h5`): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

/** Open file descriptors of this process (Linux), to see that no case leaves one open. */
const openFds = () => {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
};

/**
 * A user's reads of one file: `detect`, `inspect` (every sample, summarised) and the dataset's
 * view (open with 700 channels, every sample read, closed).
 */
async function readAll(path: string): Promise<void> {
  await shdEntry.detect!(path);
  try {
    await shdEntry.inspect!(path, 'shd');
  } finally {
    const f = await ShdFile.open(path);
    try {
      for (let i = 0; i < f.count; i++) f.read(i);
    } finally {
      f.close();
    }
  }
}

/**
 * Edits past the superblock that keep the file's size: without them most cases end at the
 * superblock's size check, and few reach HDF5's object headers, heaps and B-trees.
 */
const inner = fc
  .tuple(
    fc.nat(seeds.length - 1),
    fc.array(
      mutation.filter((m) => m.kind === 'flip' || m.kind === 'set' || m.kind === 'int32'),
      { minLength: 1, maxLength: 4 },
    ),
  )
  .map(([i, ms]) => {
    let b: Uint8Array = seeds[i]!;
    for (const m of ms) b = mutate(b, { ...m, at: 96 + (m.at % (b.length - 100)) });
    return b;
  });

describe('SHD reader fuzzing', () => {
  it(
    'reads or refuses with a SpikeflowError every damaged file, leaves no file open, and reads a good file after',
    async () => {
      const fds = openFds();
      await fuzzReader('shd hdf5', fc.oneof(mutatedBytes(seeds, { keepPrefix: 8 }), inner), async (bytes) => {
        const path = write(bytes);
        try {
          await readAll(path);
        } finally {
          rmSync(path, { force: true });
        }
      });
      const after = openFds();
      if (fds !== undefined && after !== undefined) expect(after).toBeLessThanOrEqual(fds + 2);
      const f = await ShdFile.open(join(data, 'shd-f32.h5'));
      try {
        expect(f.read(11).events.t.length).toBe(4 + 3 * 11);
      } finally {
        f.close();
      }
    },
    60_000 + 200 * fuzzRuns(),
  );
});

// Damage found by the fuzzing, one case each, made from the seeds at the places the file's own
// structures give.

/** The object header address of dataset `name` in the HDF5 file at `path` (h5wasm's object reference). */
async function headerOf(path: string, name: string): Promise<number> {
  const m = (await h5wasm.ready) as unknown as { create_object_reference(file: bigint, name: string): number[] };
  const f = new h5wasm.File(path, 'r');
  try {
    return Number(Buffer.from(m.create_object_reference(f.file_id, name)).readBigUInt64LE(0));
  } finally {
    f.close();
  }
}

/** The byte where the data of message `type` starts in the version 1 object header at `header`. */
function messageAt(b: Buffer, header: number, type: number): number {
  for (let p = header + 16, n = b.readUInt16LE(header + 2); n > 0; n--) {
    if (b.readUInt16LE(p) === type) return p + 8;
    p += 8 + b.readUInt16LE(p + 2);
  }
  throw new Error(`no message ${type} in the object header at ${header}`);
}

/** Where the references of a variable-length dataset lie (its layout message: version 3, contiguous). */
function referencesOf(b: Buffer, header: number): number {
  const layout = messageAt(b, header, 8);
  expect([b[layout], b[layout + 1]]).toEqual([3, 1]);
  return Number(b.readBigUInt64LE(layout + 2));
}

/** The error reading every sample of `path` ends in (the test fails if there is none). */
async function refusal(path: string): Promise<Error> {
  try {
    await readAll(path);
  } catch (e) {
    expect(isSpikeflowError(e, 'DATA_INVALID'), String(e)).toBe(true);
    return e as Error;
  }
  throw new Error(`${path} was read without an error`);
}

describe('damaged SHD files', () => {
  const f16 = join(data, 'shd-f16.h5');

  it('refuses a global heap object whose size, cut to 32 bits, is 0 (HDF5 looped forever on it)', async () => {
    const b = Buffer.from(readFileSync(f16));
    const heap = b.indexOf('GCOL');
    // Object 0, the free space after the objects, gets the size 2^46 (0 in a 32-bit size_t).
    let free = heap + 16;
    while (b.readUInt16LE(free) !== 0) free += 16 + Math.ceil(Number(b.readBigUInt64LE(free + 8)) / 8) * 8;
    b.writeBigUInt64LE(2n ** 46n, free + 8);
    const e = await refusal(write(b));
    expect(e.message).toMatch(
      new RegExp(`the global heap collection at byte ${heap}: object 0 at byte ${free} declares 70368744177664 bytes, but \\d+ are left`),
    );
    expect(e.message).toContain('download it again');
  });

  it('refuses a reference that declares more values than its heap object holds, before HDF5 allocates for it', async () => {
    const b = Buffer.from(readFileSync(f16));
    const refs = referencesOf(b, await headerOf(f16, 'spikes/times'));
    b.writeUInt32LE(0x10000000, refs); // sample 0: 2^28 half floats, 512 MiB
    const path = write(b);
    const f = await ShdFile.open(path);
    try {
      const rss = process.memoryUsage().rss;
      expect(() => f.read(0)).toThrow(
        `array 0 of 'spikes/times' (its reference at byte ${refs}) declares 268435456 values of 2 bytes, but its heap object holds 8 bytes`,
      );
      expect(process.memoryUsage().rss - rss).toBeLessThan(200 * 2 ** 20);
      expect(f.read(1).events.t.length).toBe(7);
    } finally {
      f.close();
    }
  });

  it('refuses a reference to no heap collection, naming the sample', async () => {
    const b = Buffer.from(readFileSync(f16));
    const refs = referencesOf(b, await headerOf(f16, 'spikes/units'));
    b.writeBigUInt64LE(BigInt(b.length + 4096), refs + 3 * 16 + 4); // sample 3 points past the end
    const e = await refusal(write(b));
    expect(e.message).toContain(
      `cannot read arrays 3..3 of 'spikes/units' (array 3 of 'spikes/units' (its reference at byte ${refs + 48}) points to byte ${b.length + 4096}, where the file holds no global heap collection)`,
    );
  });

  it('says what HDF5 found wrong, where it only printed it before (and listed the damaged group as empty)', async () => {
    const b = Buffer.from(readFileSync(f16));
    b.write('HEAX', b.indexOf('HEAP'), 'latin1');
    const e = await refusal(write(b));
    expect(e.message).toMatch(/HDF5 cannot list the group '\/' \(H5HL__\w+: bad local heap signature\): the file is damaged or truncated; download it again/);
  });

  it("refuses sample counts beyond the data the file stores with HDF5's reason, not as a file without the SHD datasets", async () => {
    const b = Buffer.from(readFileSync(f16));
    for (const name of ['spikes/times', 'spikes/units', 'labels']) {
      const space = messageAt(b, await headerOf(f16, name), 1);
      b.writeBigUInt64LE(10n ** 12n, space + 8); // the dimension
      b.writeBigUInt64LE(10n ** 12n, space + 16); // its maximum
    }
    const e = await refusal(write(b));
    expect(e.message).toMatch(/HDF5 cannot read the header of 'spikes\/times' \(H5D__contig_check: invalid dataset size, likely file corruption\)/);
  });

  it('refuses a channel number beyond 32 bits instead of wrapping it into the sensor', async () => {
    const f = await ShdFile.open(f16);
    try {
      const real = f.read(0).events;
      vi.spyOn(Hdf5Reader.prototype, 'vlenArrays').mockImplementation((name) => [
        name === 'spikes/units' ? Float64Array.of(2 ** 32 + 5, 1, 2, 3) : Float64Array.from(real.t),
      ]);
      expect(() => f.read(0)).toThrow('sample 0: event 0 has channel 4294967301, beyond the 32-bit channel numbers this reader takes');
    } finally {
      f.close();
    }
  });
});

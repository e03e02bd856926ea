import fc from 'fast-check';
import { SpikeflowError } from '@spikeflow/core';
import { describe, expect, it } from 'vitest';
import { fuzzReader, mutate, mutatedBytes } from './fuzz.js';

const bytes = (...b: number[]) => Uint8Array.from(b);

describe('fuzz helpers', () => {
  it('mutate edits a copy as each mutation says', () => {
    const src = bytes(1, 2, 3, 4, 5, 6);
    expect([...mutate(src, { kind: 'flip', at: 7, bit: 1 })]).toEqual([1, 0, 3, 4, 5, 6]);
    expect([...mutate(src, { kind: 'set', at: 2, value: 0xff })]).toEqual([1, 2, 255, 4, 5, 6]);
    expect([...mutate(src, { kind: 'int32', at: 5, value: -1, littleEndian: true })]).toEqual([1, 2, 255, 255, 255, 255]);
    expect([...mutate(src, { kind: 'int32', at: 0, value: 0x01020304, littleEndian: false })]).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...mutate(src, { kind: 'truncate', at: 3 })]).toEqual([1, 2, 3]);
    expect([...mutate(src, { kind: 'insert', at: 1, bytes: bytes(9, 9) })]).toEqual([1, 9, 9, 2, 3, 4, 5, 6]);
    expect([...mutate(src, { kind: 'delete', at: 4, length: 10 })]).toEqual([1, 2, 3, 4]);
    expect([...mutate(src, { kind: 'duplicate', at: 1, length: 2 })]).toEqual([1, 2, 3, 2, 3, 4, 5, 6]);
    expect([...src]).toEqual([1, 2, 3, 4, 5, 6]);
    expect([...mutate(bytes(), { kind: 'flip', at: 3, bit: 0 })]).toEqual([]);
    // A Node Buffer (whose slice is a view) is never changed either.
    const buf = Buffer.from([1, 2, 3, 4, 5]);
    for (const m of [
      { kind: 'flip', at: 0, bit: 0 },
      { kind: 'set', at: 1, value: 9 },
      { kind: 'int32', at: 0, value: -1, littleEndian: true },
    ] as const)
      mutate(buf, m);
    expect([...buf]).toEqual([1, 2, 3, 4, 5]);
  });

  it('mutatedBytes draws mutated seeds, unchanged seeds and random bytes', () => {
    const seed = bytes(...Array.from({ length: 40 }, (_, i) => i));
    const drawn = fc.sample(mutatedBytes([seed], { keepPrefix: 4 }), { numRuns: 400, seed: 1 });
    expect(drawn.some((d) => d.length === 40 && d.every((v, i) => v === i))).toBe(true);
    expect(drawn.some((d) => d.length < 40)).toBe(true);
    expect(drawn.some((d) => d.length > 40)).toBe(true);
    expect(drawn.some((d) => d.length === 40 && d.some((v, i) => v !== i))).toBe(true);
  });

  it('fuzzReader counts refusals and fails on any other error, naming the reader', async () => {
    const ok = await fuzzReader(
      'parity',
      fc.nat(),
      (n) => {
        if (n % 2) throw new SpikeflowError('DATA_INVALID', 'odd');
      },
      { runs: 50, seed: 3 },
    );
    expect(ok.cases).toBe(50);
    expect(ok.accepted + ok.refused).toBe(50);
    expect(ok.refused).toBeGreaterThan(0);
    await expect(
      fuzzReader(
        'typed',
        fc.nat(),
        (n) => {
          if (n > 3) throw new TypeError('boom');
        },
        { runs: 50, seed: 3 },
      ),
    ).rejects.toThrow(/typed: threw TypeError: boom, not a SpikeflowError/);
  });
});

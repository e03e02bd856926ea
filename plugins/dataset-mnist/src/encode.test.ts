import { describe, expect, it } from 'vitest';
import { createRng, permutation, rngAt } from '@spikeflow/core';
import { DEFAULT_ENCODER, encodeInto, encodeSequence, encodeWindowInto, encodedSize, sequenceLayout, type EncoderConfig } from './encode.js';

const enc = (o: Partial<EncoderConfig>): EncoderConfig => ({ ...DEFAULT_ENCODER, ...o });

/** A generator that replays fixed draws. */
const replay = (draws: number[]) => {
  let i = 0;
  return () => draws[i++]!;
};

/** Rows of a [T, C] result, for readable expectations. */
const rows = (r: { steps: number; channels: number; data: Float32Array }) =>
  Array.from({ length: r.steps }, (_, t) => Array.from(r.data.subarray(t * r.channels, (t + 1) * r.channels)));

describe('sequence layouts', () => {
  it('row: H steps of W channels in reading order; pixel: H·W steps of 1 channel', () => {
    const row = sequenceLayout('row', 28, 28);
    expect([row.steps, row.channels]).toEqual([28, 28]);
    expect(row.order[5 * 28 + 3]).toBe(5 * 28 + 3);
    const px = sequenceLayout('pixel', 28, 28);
    expect([px.steps, px.channels]).toEqual([784, 1]);
    expect(Array.from(px.order.subarray(0, 5))).toEqual([0, 1, 2, 3, 4]);
  });

  it('permuted: a fixed bijection of the pixels under its seed, core`s permutation', () => {
    const a = sequenceLayout('permuted', 28, 28, 0);
    expect([a.steps, a.channels]).toEqual([784, 1]);
    expect([...a.order].sort((x, y) => x - y)).toEqual(Array.from({ length: 784 }, (_, i) => i));
    expect(a.order).toEqual(sequenceLayout('permuted', 28, 28, 0).order);
    expect(a.order).toEqual(permutation(784, 0));
    expect(a.order).not.toEqual(sequenceLayout('permuted', 28, 28, 1).order);
    expect(a.order).not.toEqual(sequenceLayout('pixel', 28, 28).order);
  });
});

describe('encoders on a hand-made 2×2 image', () => {
  // row variant: T = 2 steps, C = 2 channels
  const img = [1, 0.1, 0.5, 0.75];

  it('direct passes intensities through', () => {
    expect(rows(encodeSequence(enc({ name: 'direct' }), img, 2, 2))).toEqual([
      [1, Math.fround(0.1)],
      [0.5, 0.75],
    ]);
  });

  it('rate: spike iff u < min(1, gain·x), one draw per (t, c) in order', () => {
    // p = [1, 0.1, 0.5, 0.75]; draws 0.99 < 1 → 1; 0.05 < 0.1 → 1; 0.5 !< 0.5 → 0; 0.8 !< 0.75 → 0
    expect(rows(encodeSequence(enc({ name: 'rate' }), img, 2, 2, replay([0.99, 0.05, 0.5, 0.8])))).toEqual([
      [1, 1],
      [0, 0],
    ]);
    // gain 2: p = [1, 0.2, 1, 1] (clipped): draws 0.99 → 1; 0.15 < 0.2 → 1; 0.999 → 1; 0.0 → 1
    expect(rows(encodeSequence(enc({ name: 'rate', rateGain: 2 }), img, 2, 2, replay([0.99, 0.15, 0.999, 0])))).toEqual([
      [1, 1],
      [1, 1],
    ]);
    // black pixels never fire, whatever the draw
    expect(rows(encodeSequence(enc({ name: 'rate', rateGain: 5 }), [0, 0], 1, 2, replay([0, 0])))).toEqual([[0, 0]]);
  });

  it('latency: one spike at sub-step round((1 − x)(L − 1)) for x > threshold; T·L steps', () => {
    const r = encodeSequence(enc({ name: 'latency', latencySteps: 5, latencyThreshold: 0.1 }), img, 2, 2);
    expect([r.steps, r.channels]).toEqual([10, 2]);
    // x = 1 → s = 0; x = 0.1 → not above threshold; x = 0.5 → round(2) = 2; x = 0.75 → round(1) = 1
    expect(rows(r)).toEqual([
      [1, 0],
      [0, 0],
      [0, 0],
      [0, 0],
      [0, 0], // step 0: sub-steps 0..4
      [0, 0],
      [0, 1],
      [1, 0],
      [0, 0],
      [0, 0], // step 1
    ]);
    // L = 1: every spike at the step itself; threshold 0 lets 0.1 fire too
    expect(rows(encodeSequence(enc({ name: 'latency', latencySteps: 1, latencyThreshold: 0 }), img, 2, 2))).toEqual([
      [1, 1],
      [1, 1],
    ]);
    // round half up: x = 0.875, L = 5 → (0.125)(4) = 0.5 → 1
    expect(rows(encodeSequence(enc({ name: 'latency' }), [0.875], 1, 1)).map((r) => r[0])).toEqual([0, 1, 0, 0, 0]);
  });

  it('delta: ON/OFF events when the value moves more than θ from the last event level (starting at 0)', () => {
    const seq = [0, 0.5, 0.55, 0.7, 0.2, 0.2, 0.35];
    const r = encodeSequence(enc({ name: 'delta', deltaThreshold: 0.1 }), seq, 7, 1);
    expect([r.steps, r.channels]).toEqual([7, 2]);
    // levels: 0 → (0.5: +0.5 ON, ref .5) → (0.55: +.05) → (0.7: +.2 ON, ref .7) → (0.2: −.5 OFF, ref .2) → (0.2) → (0.35: +.15 ON)
    expect(rows(r)).toEqual([
      [0, 0],
      [1, 0],
      [0, 0],
      [1, 0],
      [0, 1],
      [0, 0],
      [1, 0],
    ]);
    // two channels in: [ON0, OFF0, ON1, OFF1]; each channel keeps its own level
    expect(rows(encodeSequence(enc({ name: 'delta' }), img, 2, 2))).toEqual([
      [1, 0, 0, 0],
      [0, 1, 1, 0],
    ]);
  });

  it('reports sizes after encoding', () => {
    expect(encodedSize(enc({ name: 'direct' }), 28, 28)).toEqual({ steps: 28, channels: 28 });
    expect(encodedSize(enc({ name: 'rate' }), 784, 1)).toEqual({ steps: 784, channels: 1 });
    expect(encodedSize(enc({ name: 'latency', latencySteps: 4 }), 28, 28)).toEqual({ steps: 112, channels: 28 });
    expect(encodedSize(enc({ name: 'delta' }), 784, 1)).toEqual({ steps: 784, channels: 2 });
  });

  it('a window of steps encoded on its own equals those steps of the whole batch (every encoder, windows of every size)', () => {
    const T = 9;
    const C = 3;
    const B = 2;
    const r = createRng(4);
    // Intensities on a 1/255 grid with exact 0s and 1s, as images give them.
    const seqs = [0, 1].map(() => Float32Array.from({ length: T * C }, () => Math.fround(Math.floor(r() * 4) === 0 ? 0 : Math.floor(r() * 256) / 255)));
    for (const e of [
      enc({ name: 'direct' }),
      enc({ name: 'rate', rateGain: 1.5 }),
      enc({ name: 'latency', latencySteps: 4, latencyThreshold: 0.2 }),
      enc({ name: 'delta', deltaThreshold: 0.15 }),
    ]) {
      const size = encodedSize(e, T, C);
      // The whole batch, as the dataset wrote it: one generator for the batch, drawn sample after sample.
      const whole = new Float32Array(size.steps * B * size.channels);
      const rand = createRng(77);
      seqs.forEach((q, b) => encodeInto(e, q, T, C, whole, b, B, rand));
      const per = B * size.channels;
      for (let from = 0; from < size.steps; from++) {
        for (let to = from + 1; to <= size.steps; to++) {
          const w = new Float32Array((to - from) * per);
          seqs.forEach((q, b) =>
            encodeWindowInto(
              e,
              (i) => q[i]!,
              C,
              w,
              b,
              B,
              from,
              to,
              (p) => rngAt(77, b * T * C + p),
            ),
          );
          expect(Array.from(w), `${e.name} [${from}, ${to})`).toEqual(Array.from(whole.subarray(from * per, to * per)));
        }
      }
    }
  });
});

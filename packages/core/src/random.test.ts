import { describe, expect, it } from 'vitest';
import { createRng, deriveSeed, permutation, shuffleInPlace } from './random.js';

describe('seeded randomness', () => {
  it('createRng is uniform in [0, 1) and reproducible', () => {
    const a = createRng(7);
    const b = createRng(7);
    const xs = Array.from({ length: 2000 }, () => a());
    expect(xs).toEqual(Array.from({ length: 2000 }, () => b()));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean).toBeGreaterThan(0.47);
    expect(mean).toBeLessThan(0.53);
  });

  it('deriveSeed is stable and separates positions', () => {
    expect(deriveSeed(1, 'epoch', 2)).toBe(deriveSeed(1, 'epoch', 2));
    const seeds = new Set(Array.from({ length: 1000 }, (_, e) => deriveSeed(1, 'epoch', e)));
    expect(seeds.size).toBe(1000);
    expect(deriveSeed(1, 'epoch', 12)).not.toBe(deriveSeed(11, 'epoch', 2));
  });

  it('permutation is a fixed bijection under its seed; shuffleInPlace keeps the elements', () => {
    const p = permutation(50, 4);
    expect([...p].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(Array.from(permutation(50, 4))).toEqual(Array.from(p));
    expect(Array.from(permutation(50, 5))).not.toEqual(Array.from(p));
    expect(shuffleInPlace([3, 1, 2], createRng(1)).sort()).toEqual([1, 2, 3]);
  });
});

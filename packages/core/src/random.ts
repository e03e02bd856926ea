/**
 * Seeded randomness for data pipelines and trainers. Every random draw in a spikeflow run derives
 * from the run's seed and a position (epoch, batch, sample), never from hidden generator state,
 * so a run resumed at (epoch, step) draws exactly what the uninterrupted run drew.
 */

/** A uniform [0, 1) generator: mulberry32 (Tommy Ettinger), 32-bit state, fast and well mixed. */
export function createRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Hashes parts (numbers and strings) into one 32-bit seed (FNV-1a over their text, then mixed). */
export function deriveSeed(...parts: readonly (number | string)[]): number {
  let h = 0x811c9dc5;
  for (const ch of parts.join('\u241f')) {
    h ^= ch.codePointAt(0)!;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  return h >>> 0;
}

/** Fisher–Yates shuffle in place with a given generator. */
export function shuffleInPlace<T>(items: T[], rand: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

/** A permutation of 0..n−1 drawn from `seed`. */
export function permutation(n: number, seed: number): Int32Array {
  const p = Array.from({ length: n }, (_, i) => i);
  return Int32Array.from(shuffleInPlace(p, createRng(seed)));
}

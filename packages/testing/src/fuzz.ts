import fc from 'fast-check';
import { isSpikeflowError } from '@spikeflow/core';

/**
 * Fuzzing for readers of files (datasets, checkpoints, configs): mutated, truncated and random
 * inputs, where the only acceptable outcome besides success is a `SpikeflowError`.
 *
 * The number of cases comes from `SPIKEFLOW_FUZZ_RUNS` (default 300, what `pnpm test` runs; the
 * long script `pnpm fuzz` sets 10,000) and the seed from `SPIKEFLOW_FUZZ_SEED` (default fixed, so
 * a test run is reproducible; the long script draws one and prints it). Each reader prints one
 * line `fuzz <reader>: <cases> cases, <accepted> accepted, <refused> refused (seed <seed>)` that
 * the long script sums.
 */

/** Cases per reader: `SPIKEFLOW_FUZZ_RUNS`, else `fallback`. */
export function fuzzRuns(fallback = 300): number {
  const env = process.env['SPIKEFLOW_FUZZ_RUNS'];
  const n = env ? Number(env) : fallback;
  if (!Number.isInteger(n) || n < 1) throw new Error(`SPIKEFLOW_FUZZ_RUNS must be an integer >= 1, got '${env}'`);
  return n;
}

/** The fuzz seed: `SPIKEFLOW_FUZZ_SEED`, else a fixed one. */
export function fuzzSeed(): number {
  const env = process.env['SPIKEFLOW_FUZZ_SEED'];
  const n = env ? Number(env) : 19;
  if (!Number.isInteger(n)) throw new Error(`SPIKEFLOW_FUZZ_SEED must be an integer, got '${env}'`);
  return n;
}

/** One edit of a byte string; positions are taken modulo its length. */
export type Mutation =
  | { readonly kind: 'flip'; readonly at: number; readonly bit: number }
  | { readonly kind: 'set'; readonly at: number; readonly value: number }
  | { readonly kind: 'int32'; readonly at: number; readonly value: number; readonly littleEndian: boolean }
  | { readonly kind: 'truncate'; readonly at: number }
  | { readonly kind: 'insert'; readonly at: number; readonly bytes: Uint8Array }
  | { readonly kind: 'delete'; readonly at: number; readonly length: number }
  | { readonly kind: 'duplicate'; readonly at: number; readonly length: number };

/** Values that break size fields: zero, ±1, sign bits, the largest 32-bit values. */
const INTERESTING_32 = [0, 1, -1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, -0x80000000, 0x10000000, 0x3b9aca00];
const INTERESTING_8 = [0, 1, 0x7f, 0x80, 0xff, 0x20, 0x0a, 0x22, 0x5c, 0x7b, 0x5b];

/** A position, biased towards the first bytes (where headers are). */
const position = fc.oneof({ weight: 3, arbitrary: fc.nat(96) }, { weight: 2, arbitrary: fc.nat() });

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.nat(7) }),
  fc.record({ kind: fc.constant('set' as const), at: position, value: fc.oneof(fc.constantFrom(...INTERESTING_8), fc.nat(255)) }),
  fc.record({
    kind: fc.constant('int32' as const),
    at: position,
    value: fc.oneof(fc.constantFrom(...INTERESTING_32), fc.integer()),
    littleEndian: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: position, bytes: fc.uint8Array({ minLength: 1, maxLength: 32 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: position, length: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ kind: fc.constant('duplicate' as const), at: position, length: fc.integer({ min: 1, max: 64 }) }),
);

/** Applies `m` to a copy of `bytes` (never to `bytes` itself: a Node Buffer's `slice` is a view, so copies are made with `new Uint8Array`). */
export function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  const n = bytes.length;
  const copy = () => new Uint8Array(bytes);
  const at = n === 0 ? 0 : m.at % n;
  switch (m.kind) {
    case 'flip': {
      const out = copy();
      if (n > 0) out[at] = out[at]! ^ (1 << m.bit);
      return out;
    }
    case 'set': {
      const out = copy();
      if (n > 0) out[at] = m.value & 0xff;
      return out;
    }
    case 'int32': {
      const out = copy();
      if (n >= 4) new DataView(out.buffer, out.byteOffset, out.byteLength).setInt32(Math.min(at, n - 4), m.value | 0, m.littleEndian);
      return out;
    }
    case 'truncate':
      return new Uint8Array(bytes.subarray(0, n === 0 ? 0 : m.at % n));
    case 'insert': {
      const out = new Uint8Array(n + m.bytes.length);
      out.set(bytes.subarray(0, at));
      out.set(m.bytes, at);
      out.set(bytes.subarray(at), at + m.bytes.length);
      return out;
    }
    case 'delete': {
      const out = new Uint8Array(n - Math.min(m.length, n - at));
      out.set(bytes.subarray(0, at));
      out.set(bytes.subarray(at + m.length), at);
      return out;
    }
    case 'duplicate': {
      const piece = bytes.subarray(at, at + m.length);
      const out = new Uint8Array(n + piece.length);
      out.set(bytes.subarray(0, at + piece.length));
      out.set(piece, at + piece.length);
      out.set(bytes.subarray(at + piece.length), at + 2 * piece.length);
      return out;
    }
  }
}

/**
 * Inputs made from valid `seeds`: each one of the seeds with 1–8 {@link mutation}s applied
 * (most cases), a seed unchanged, or random bytes (optionally starting with one seed's first
 * `keepPrefix` bytes, so that a magic number check does not stop every random case at once).
 */
export function mutatedBytes(
  seeds: readonly Uint8Array[],
  { keepPrefix = 0, maxRandom = 4096 }: { keepPrefix?: number; maxRandom?: number } = {},
): fc.Arbitrary<Uint8Array> {
  if (seeds.length === 0) throw new Error('mutatedBytes: give at least one seed input');
  const seed = fc.nat(seeds.length - 1).map((i) => new Uint8Array(seeds[i]!));
  const mutated = fc.tuple(seed, fc.array(mutation, { minLength: 1, maxLength: 8 })).map(([s, ms]) => ms.reduce(mutate, s));
  const random = fc.tuple(seed, fc.uint8Array({ maxLength: maxRandom })).map(([s, r]) => {
    const head = s.subarray(0, keepPrefix);
    const out = new Uint8Array(head.length + r.length);
    out.set(head);
    out.set(r, head.length);
    return out;
  });
  return fc.oneof({ weight: 16, arbitrary: mutated }, { weight: 1, arbitrary: seed }, { weight: 3, arbitrary: random });
}

/** Text inputs made from valid `seeds`: the bytes mutated as by {@link mutatedBytes}, decoded as UTF-8 (with replacement characters). */
export function mutatedText(seeds: readonly string[]): fc.Arbitrary<string> {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  return fc.oneof(
    { weight: 6, arbitrary: mutatedBytes(seeds.map((s) => enc.encode(s))).map((b) => dec.decode(b)) },
    { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
    { weight: 1, arbitrary: fc.json() },
  );
}

/** How one fuzz run of a reader ended. */
export interface FuzzCount {
  readonly reader: string;
  readonly cases: number;
  /** Inputs the reader read without an error. */
  readonly accepted: number;
  /** Inputs it refused with a `SpikeflowError`. */
  readonly refused: number;
  readonly seed: number;
}

export interface FuzzOptions {
  /** Cases (default {@link fuzzRuns}). */
  readonly runs?: number;
  /** Seed (default {@link fuzzSeed}). */
  readonly seed?: number;
  /**
   * Bound on one case, in ms (default 10 s): a case that takes longer fails as a hang. It is a
   * liveness check, far above a case's normal time, never a speed figure.
   */
  readonly boundMs?: number;
}

/**
 * Runs `read` on every input from `inputs` and fails (throws, with fast-check's shrunk
 * counterexample and seed) on the first that throws anything but a `SpikeflowError`, or that takes
 * longer than the bound. Prints and returns how many cases were accepted and refused.
 */
export async function fuzzReader<T>(reader: string, inputs: fc.Arbitrary<T>, read: (input: T) => unknown, options: FuzzOptions = {}): Promise<FuzzCount> {
  const runs = options.runs ?? fuzzRuns();
  const seed = options.seed ?? fuzzSeed();
  const boundMs = options.boundMs ?? 10_000;
  let accepted = 0;
  let refused = 0;
  let cases = 0;
  const out = await fc.check(
    fc.asyncProperty(inputs, async (input) => {
      const started = performance.now();
      try {
        await read(input);
        accepted++;
      } catch (e) {
        if (!isSpikeflowError(e)) {
          const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
          throw new Error(`${reader}: threw ${what}, not a SpikeflowError`, { cause: e });
        }
        refused++;
      } finally {
        cases++;
      }
      const ms = performance.now() - started;
      if (ms > boundMs) throw new Error(`${reader}: one case took ${ms.toFixed(0)} ms (bound ${boundMs} ms): a hang or an unbounded loop`);
    }),
    { numRuns: runs, seed },
  );
  if (out.failed) {
    const shown = fc.stringify(out.counterexample);
    const inner = out.errorInstance instanceof Error ? out.errorInstance : new Error(String(out.errorInstance));
    throw new Error(
      `${inner.message}\n  counterexample (shrunk ${out.numShrinks} times): ${shown.length > 2000 ? `${shown.slice(0, 2000)}…` : shown}\n  replay: SPIKEFLOW_FUZZ_SEED=${out.seed} (path ${out.counterexamplePath ?? '-'})`,
      { cause: inner },
    );
  }
  const count = { reader, cases, accepted, refused, seed };
  process.stdout.write(`fuzz ${reader}: ${cases} cases, ${accepted} accepted, ${refused} refused (seed ${seed})\n`);
  return count;
}

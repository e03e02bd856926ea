import { SpikeflowError, permutation } from '@spikeflow/core';

/**
 * How an H×W image becomes a sequence x[t, c] of intensities in [0, 1]:
 *
 * - `row`: T = H steps of C = W channels, x[t, c] = image[t, c] — row t at step t (28 × 28 for MNIST).
 * - `pixel` (sequential MNIST, S-MNIST; Le, Jaitly & Hinton 2015): T = H·W steps of one channel,
 *   x[t, 0] = pixel t in row-major order (784 steps for MNIST).
 * - `permuted` (PS-MNIST, same paper): as `pixel` but x[t, 0] = pixel π(t) for one fixed
 *   permutation π = `permutation(H·W, permutationSeed)` of core's seeded generator — the same π
 *   for every image, split and run with that seed.
 * - `image`: T = `imageSteps` steps of C = H·W channels, x[t, c] = pixel c at every step (the
 *   static image repeated, as conv SNNs read MNIST; a `[H, W, 1]` image in row-major order).
 */
export type Variant = 'row' | 'pixel' | 'permuted' | 'image';
export const VARIANTS: readonly Variant[] = ['row', 'pixel', 'permuted', 'image'];

export interface SequenceLayout {
  readonly steps: number;
  readonly channels: number;
  /** `order[t·channels + c]` = the row-major pixel index shown at step t on channel c. */
  readonly order: Int32Array;
}

export function sequenceLayout(variant: Variant, height: number, width: number, permutationSeed = 0, imageSteps = 1): SequenceLayout {
  const P = height * width;
  switch (variant) {
    case 'image':
      return { steps: imageSteps, channels: P, order: Int32Array.from({ length: imageSteps * P }, (_, i) => i % P) };
    case 'row':
      return { steps: height, channels: width, order: Int32Array.from({ length: P }, (_, i) => i) };
    case 'pixel':
      return { steps: P, channels: 1, order: Int32Array.from({ length: P }, (_, i) => i) };
    case 'permuted':
      return { steps: P, channels: 1, order: permutation(P, permutationSeed) };
  }
}

/**
 * How a sequence x[t, c] ∈ [0, 1] (T steps, C channels) becomes network input:
 *
 * - `direct` (analog input current): y[t, c] = x[t, c]. T and C unchanged.
 * - `rate` (Bernoulli rate code): y[t, c] = 1 if u[t, c] < p[t, c], else 0, with
 *   p = min(1, rateGain · x) and u uniform in [0, 1) from a generator seeded per batch (from the
 *   pass seed and the batch index), drawn for every (b, t, c) in that order. T and C unchanged.
 * - `latency` (time-to-first-spike code): each step t is expanded into L = `latencySteps`
 *   sub-steps, T' = T·L. A value x > `latencyThreshold` fires once, at
 *   y[t·L + s, c] = 1 with s = round((1 − x)·(L − 1)) (round half up): brighter pixels fire
 *   earlier; values at or below the threshold never fire.
 * - `delta` (send-on-delta / threshold-crossing code, as event cameras): two channels per input
 *   channel, ON = 2c and OFF = 2c + 1, T unchanged. A reference level r_c starts at 0; at each
 *   step, if x[t, c] − r_c > θ an ON event fires and r_c ← x[t, c]; if x[t, c] − r_c < −θ an OFF
 *   event fires and r_c ← x[t, c]; otherwise nothing (θ = `deltaThreshold`).
 *
 * Intensities are float32; the thresholds are compared at float32 precision too, so a pixel of
 * intensity 0.1 does not exceed a threshold of 0.1.
 */
export type EncoderName = 'direct' | 'rate' | 'latency' | 'delta';
export const ENCODERS: readonly EncoderName[] = ['direct', 'rate', 'latency', 'delta'];

export interface EncoderConfig {
  readonly name: EncoderName;
  readonly rateGain: number;
  readonly latencySteps: number;
  readonly latencyThreshold: number;
  readonly deltaThreshold: number;
}

export const DEFAULT_ENCODER: EncoderConfig = { name: 'direct', rateGain: 1, latencySteps: 5, latencyThreshold: 0.1, deltaThreshold: 0.1 };

/** Steps and channels after encoding a T × C sequence. */
export function encodedSize(enc: EncoderConfig, steps: number, channels: number): { steps: number; channels: number } {
  switch (enc.name) {
    case 'direct':
    case 'rate':
      return { steps, channels };
    case 'latency':
      return { steps: steps * enc.latencySteps, channels };
    case 'delta':
      return { steps, channels: 2 * channels };
  }
}

/**
 * Encodes one sample's sequence `seq` (`[T, C]` row-major) into column `b` of a time-major batch
 * buffer `out` (`[T', B, C']`, zero-filled beforehand). `rand` is needed by `rate` only.
 */
export function encodeInto(enc: EncoderConfig, seq: Float32Array, T: number, C: number, out: Float32Array, b: number, B: number, rand?: () => number): void {
  switch (enc.name) {
    case 'direct':
      for (let t = 0; t < T; t++) out.set(seq.subarray(t * C, (t + 1) * C), (t * B + b) * C);
      return;
    case 'rate': {
      if (!rand) throw new SpikeflowError('CONFIG_INVALID', 'the rate encoder needs a random generator', {});
      const gain = enc.rateGain;
      for (let t = 0; t < T; t++) {
        const at = (t * B + b) * C;
        for (let c = 0; c < C; c++) {
          const p = Math.min(1, gain * seq[t * C + c]!);
          if (rand() < p) out[at + c] = 1;
        }
      }
      return;
    }
    case 'latency': {
      const L = enc.latencySteps;
      const th = Math.fround(enc.latencyThreshold);
      for (let t = 0; t < T; t++) {
        for (let c = 0; c < C; c++) {
          const x = seq[t * C + c]!;
          if (!(x > th)) continue;
          const s = Math.min(L - 1, Math.max(0, Math.round((1 - x) * (L - 1))));
          out[((t * L + s) * B + b) * C + c] = 1;
        }
      }
      return;
    }
    case 'delta': {
      const C2 = 2 * C;
      const ref = new Float64Array(C);
      const th = Math.fround(enc.deltaThreshold);
      for (let t = 0; t < T; t++) {
        const at = (t * B + b) * C2;
        for (let c = 0; c < C; c++) {
          const x = seq[t * C + c]!;
          const d = x - ref[c]!;
          if (d > th) {
            out[at + 2 * c] = 1;
            ref[c] = x;
          } else if (d < -th) {
            out[at + 2 * c + 1] = 1;
            ref[c] = x;
          }
        }
      }
      return;
    }
  }
}

/**
 * Encodes steps `[from, to)` of the encoded sequence (T' steps, see {@link encodedSize}) of one
 * sample into column `b` of a time-major window `out` (`[to − from, B, C']`, zero-filled
 * beforehand): the same values as {@link encodeInto} gives those steps. The sample's intensity
 * sequence is read through `x(i)` = x[t, c] at i = t·C + c (a batch keeps its images' bytes and
 * looks each value up when a window is made). `rate` draws from `randAt(p)`, a generator that
 * starts at the sample's p-th draw (draws go one per (t, c) in order); `delta` runs its reference
 * levels from step 0 and writes only the window's steps; `latency` reads the steps its window's
 * sub-steps come from.
 */
export function encodeWindowInto(
  enc: EncoderConfig,
  x: (i: number) => number,
  C: number,
  out: Float32Array,
  b: number,
  B: number,
  from: number,
  to: number,
  randAt?: (position: number) => () => number,
): void {
  switch (enc.name) {
    case 'direct':
      for (let t = from; t < to; t++) {
        const at = ((t - from) * B + b) * C;
        for (let c = 0; c < C; c++) out[at + c] = x(t * C + c);
      }
      return;
    case 'rate': {
      if (!randAt) throw new SpikeflowError('CONFIG_INVALID', 'the rate encoder needs a random generator', {});
      const gain = enc.rateGain;
      const rand = randAt(from * C);
      for (let t = from; t < to; t++) {
        const at = ((t - from) * B + b) * C;
        for (let c = 0; c < C; c++) {
          const p = Math.min(1, gain * x(t * C + c));
          if (rand() < p) out[at + c] = 1;
        }
      }
      return;
    }
    case 'latency': {
      const L = enc.latencySteps;
      const th = Math.fround(enc.latencyThreshold);
      for (let t = Math.floor(from / L); t < Math.ceil(to / L); t++) {
        for (let c = 0; c < C; c++) {
          const v = x(t * C + c);
          if (!(v > th)) continue;
          const step = t * L + Math.min(L - 1, Math.max(0, Math.round((1 - v) * (L - 1))));
          if (step >= from && step < to) out[((step - from) * B + b) * C + c] = 1;
        }
      }
      return;
    }
    case 'delta': {
      const C2 = 2 * C;
      const ref = new Float64Array(C);
      const th = Math.fround(enc.deltaThreshold);
      for (let t = 0; t < to; t++) {
        const at = ((t - from) * B + b) * C2;
        for (let c = 0; c < C; c++) {
          const v = x(t * C + c);
          const d = v - ref[c]!;
          if (d > th) {
            if (t >= from) out[at + 2 * c] = 1;
            ref[c] = v;
          } else if (d < -th) {
            if (t >= from) out[at + 2 * c + 1] = 1;
            ref[c] = v;
          }
        }
      }
      return;
    }
  }
}

/** Encodes one `[T, C]` sequence on its own: `data` is `[T', C']` row-major. */
export function encodeSequence(
  enc: EncoderConfig,
  seq: ArrayLike<number>,
  T: number,
  C: number,
  rand?: () => number,
): { steps: number; channels: number; data: Float32Array } {
  const size = encodedSize(enc, T, C);
  const data = new Float32Array(size.steps * size.channels);
  encodeInto(enc, Float32Array.from(seq), T, C, data, 0, 1, rand);
  return { ...size, data };
}

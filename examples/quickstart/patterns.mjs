// Spatio-temporal spike-pattern classification (after the "frozen noise" tasks of Gütig &
// Sompolinsky's tempotron and Zenke & Ganguli's SuperSpike): each class is one random spike
// raster; a sample is its class raster with spikes jittered in time, some deleted and random
// ones added. Every class fires at the same mean rate, so only *when* and *where* spikes occur
// tells the classes apart: the network has to integrate over time.
import { createRng as rng, tf } from '@spikeflow/core';

export function makePatternTask({ classes = 10, channels = 50, steps = 100, rate = 0.02, jitter = 0.5, drop = 0.2, noise = 0.02, seed = 7 } = {}) {
  const r = rng(seed);
  const templates = Array.from({ length: classes }, () => Float32Array.from({ length: steps * channels }, () => (r() < rate ? 1 : 0)));

  /** A batch as time-major spikes [T, B, channels] and labels [B]. */
  function batch(size, batchSeed) {
    const g = rng(batchSeed);
    const x = new Float32Array(steps * size * channels);
    const labels = new Int32Array(size);
    for (let b = 0; b < size; b++) {
      const c = Math.floor(g() * classes);
      labels[b] = c;
      const tpl = templates[c];
      for (let t = 0; t < steps; t++) {
        for (let i = 0; i < channels; i++) {
          if (tpl[t * channels + i] && g() >= drop) {
            const shift = g() < jitter ? Math.round((g() * 2 - 1) * 2) : 0;
            const tt = Math.min(steps - 1, Math.max(0, t + shift));
            x[(tt * size + b) * channels + i] = 1;
          }
          if (g() < noise) x[(t * size + b) * channels + i] = 1;
        }
      }
    }
    return { inputs: tf.tensor3d(x, [steps, size, channels]), targets: tf.tensor1d(labels, 'int32') };
  }
  return { classes, channels, steps, batch };
}

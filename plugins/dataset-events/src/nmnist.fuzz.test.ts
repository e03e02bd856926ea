import { wasm } from '@spikeflow/backend-wasm';
import { disposeTree } from '@spikeflow/core';
import { eventsOf } from '@spikeflow/events';
import { fuzzReader, fuzzRuns, mutatedBytes } from '@spikeflow/testing';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, it } from 'vitest';
import { detectNmnist, encodeNmnist, inspectNmnist, openNmnist } from './index.js';
import { tempDirs } from './test-util.js';

// Fuzzing the N-MNIST reader: damaged, truncated and random sample files are read or refused
// with a SpikeflowError, whether inspected or read by the dataset.

beforeAll(() => wasm.activate());

const freshDir = tempDirs('spikeflow-nmnist-fuzz-');
const ctx = { cacheDir: '/nonexistent-spikeflow-cache' };

/** Valid samples: a few events in time order on the 34 × 34 sensor, one at each corner of the time range. */
const SEEDS = [
  encodeNmnist(eventsOf([0, 0.001, 0.002, 0.15], [0, 33, 5, 17], [0, 33, 30, 2], [0, 1, 1, 0])),
  encodeNmnist(eventsOf([0.1, 0.2, 0.29999, 8.388607], [1, 2, 3, 4], [4, 3, 2, 1], [1, 0, 1, 0])),
  encodeNmnist(
    eventsOf(
      Array.from({ length: 40 }, (_, i) => i * 0.007),
      Array.from({ length: 40 }, (_, i) => i % 34),
      Array.from({ length: 40 }, (_, i) => (i * 7) % 34),
      Array.from({ length: 40 }, (_, i) => i % 2),
    ),
  ),
  new Uint8Array(0),
];

describe('N-MNIST reader fuzzing', () => {
  it(
    'inspects, detects and reads through the dataset every sample file, or refuses it with a SpikeflowError',
    async () => {
      const valid = SEEDS[0]!;
      await fuzzReader('nmnist bin', mutatedBytes(SEEDS, { maxRandom: 1024 }), async (bytes) => {
        const root = freshDir();
        try {
          const file = join(root, 'Train', '3', '00001.bin');
          mkdirSync(join(root, 'Train', '3'), { recursive: true });
          mkdirSync(join(root, 'Test', '7'), { recursive: true });
          writeFileSync(file, bytes);
          writeFileSync(join(root, 'Test', '7', '00002.bin'), valid);
          await detectNmnist(file);
          try {
            await inspectNmnist(file);
          } finally {
            const ds = await openNmnist({ dir: root, bins: 5 }, ctx);
            for (const split of ds.splits) for await (const b of ds.batches(split, { batchSize: 2, seed: 3 })) disposeTree(b);
          }
        } finally {
          rmSync(root, { recursive: true, force: true });
        }
      });
    },
    30_000 + 50 * fuzzRuns(),
  );
});

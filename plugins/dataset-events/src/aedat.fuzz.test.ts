import { wasm } from '@spikeflow/backend-wasm';
import { disposeTree } from '@spikeflow/core';
import { eventsOf } from '@spikeflow/events';
import { fuzzReader, fuzzRuns, mutatedBytes } from '@spikeflow/testing';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { detectAedat, encodeAedat31, encodeGestureLabels, inspectAedat, nodeFiles, openDvsGesture, polarityPackets, type AedatPacket } from './index.js';
import { refusal, tempDirs } from './test-util.js';

// Fuzzing the AEDAT 3.1 reader (DVS Gesture recordings): damaged, truncated and random recordings
// are indexed and read, or refused with a SpikeflowError, whichever way a user reaches them.

beforeAll(() => wasm.activate());

const freshDir = tempDirs('spikeflow-aedat-fuzz-');
const ctx = { cacheDir: '/nonexistent-spikeflow-cache' };

/** Events at whole microseconds from `t0` s, `dt` s apart, on the DVS128. */
const events = (n: number, t0: number, dt: number) =>
  eventsOf(
    Array.from({ length: n }, (_, i) => Math.round((t0 + i * dt) * 1e6) / 1e6),
    Array.from({ length: n }, (_, i) => (i * 17) % 128),
    Array.from({ length: n }, (_, i) => (i * 5) % 128),
    Array.from({ length: n }, (_, i) => i % 2),
  );

/** Two segments of one second, from 1 s and from 3 s. */
const SEGMENTS = [
  { label: 0, startUs: 1_000_000, endUs: 2_000_000 },
  { label: 10, startUs: 3_000_000, endUs: 4_000_000 },
];

/** Recordings of several packet shapes: polarity packets, packets of other types between them, events marked invalid, a time past 2^31 µs. */
const RECORDINGS: AedatPacket[][] = [
  polarityPackets(events(24, 0.9, 0.15), 5),
  [
    { eventType: 2, eventSize: 12, count: 2 },
    ...polarityPackets(events(6, 1.2, 0.5), 4),
    { eventType: 7, eventSize: 4, count: 0 },
    { events: events(3, 3.5, 0.1), valid: [true, false, true] },
  ],
  [{ events: events(2, 2 ** 31 / 1e6 + 0.5, 0.001) }],
  [],
];
const SEEDS = RECORDINGS.map((p, k) => encodeAedat31(p, k === 1 ? { headerLines: ['#Comment: fuzz seed'] } : {}));

describe('AEDAT 3.1 reader fuzzing', () => {
  it(
    'inspects (with and without labels), detects and reads through the dataset every recording, or refuses it with a SpikeflowError',
    async () => {
      await fuzzReader('aedat', mutatedBytes(SEEDS, { keepPrefix: 14 }), async (bytes) => {
        const root = freshDir();
        try {
          const recording = join(root, 'user01_led.aedat');
          writeFileSync(recording, bytes);
          writeFileSync(join(root, 'user01_led_labels.csv'), encodeGestureLabels(SEGMENTS));
          writeFileSync(join(root, 'trials_to_train.txt'), 'user01_led.aedat\n');
          writeFileSync(join(root, 'trials_to_test.txt'), 'user01_led\n');
          const unlabelled = join(root, 'alone.aedat');
          writeFileSync(unlabelled, bytes);
          await detectAedat(recording);
          try {
            await inspectAedat(unlabelled);
          } finally {
            try {
              await inspectAedat(recording);
            } finally {
              const ds = await openDvsGesture({ dir: root, bins: 4 }, ctx);
              for await (const b of ds.batches('test', { batchSize: 2, seed: 1 })) disposeTree(b);
            }
          }
        } finally {
          rmSync(root, { recursive: true, force: true });
        }
      });
    },
    30_000 + 80 * fuzzRuns(),
  );
});

describe('AEDAT files that are not files', () => {
  it('refuses a folder named like a recording with a SpikeflowError, not the error of its read', async () => {
    const d = join(freshDir(), 'user02_led.aedat');
    mkdirSync(d);
    expect((await refusal(inspectAedat(d))).message).toBe(`${d}: is a folder, not a file`);
    expect((await refusal(nodeFiles.open(d))).message).toBe(`${d}: is a folder, not a file`);
    expect(await detectAedat(d)).toBeUndefined();
  });
});

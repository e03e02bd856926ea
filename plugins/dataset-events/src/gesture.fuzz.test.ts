import { wasm } from '@spikeflow/backend-wasm';
import { disposeTree } from '@spikeflow/core';
import { eventsOf } from '@spikeflow/events';
import { fuzzReader, fuzzRuns, mutatedText } from '@spikeflow/testing';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  encodeAedat31,
  encodeGestureLabels,
  inspectAedat,
  openDvsGesture,
  openGestureSplit,
  parseGestureLabels,
  polarityPackets,
  type GestureSegment,
} from './index.js';
import { refusal, tempDirs } from './test-util.js';

// Fuzzing the text files of DVS Gesture: the labels CSVs and the trials lists. Damaged, cut and
// random texts are read or refused with a SpikeflowError, by the parser and through the dataset.

beforeAll(() => wasm.activate());

const freshDir = tempDirs('spikeflow-gesture-fuzz-');
const ctx = { cacheDir: '/nonexistent-spikeflow-cache' };

const SEGMENTS: GestureSegment[] = [
  { label: 0, startUs: 1_000_000, endUs: 2_000_000 },
  { label: 10, startUs: 2_500_000, endUs: 2_600_000 },
  { label: 5, startUs: 2_147_483_000, endUs: 2_147_484_000 },
];
const RECORDING = encodeAedat31(
  polarityPackets(eventsOf([0.9, 1.1, 1.5, 2.55, 2147.4832, 2147.4836], [1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1], [0, 1, 0, 1, 0, 1]), 2),
);

const LABELS = [
  encodeGestureLabels(SEGMENTS),
  '\uFEFFclass, startTime_usec, endTime_usec\n\n 3 , 10, 20 \n\n',
  'class,startTime_usec,endTime_usec\n11,0,0\n1,9007199254740991,9007199254740991\n',
];
const TRIALS = ['user01_led.aedat\r\nuser02_natural\r\n\r\n', 'user02_natural.aedat\nuser01_led\n', ''];

/** A DvsGesture folder of two recordings (the same events), their labels and trials lists. */
function gestureDir(): string {
  const root = freshDir();
  for (const n of ['user01_led', 'user02_natural']) {
    writeFileSync(join(root, `${n}.aedat`), RECORDING);
    writeFileSync(join(root, `${n}_labels.csv`), encodeGestureLabels(SEGMENTS));
  }
  writeFileSync(join(root, 'trials_to_train.txt'), TRIALS[0]!);
  writeFileSync(join(root, 'trials_to_test.txt'), TRIALS[1]!);
  return root;
}

/** Every sample of the split, binned. */
async function readSplit(root: string, split: 'train' | 'test'): Promise<void> {
  const ds = await openDvsGesture({ dir: root, bins: 3 }, ctx);
  for await (const b of ds.batches(split, { batchSize: 4, seed: 2 })) disposeTree(b);
}

describe('DVS Gesture text files fuzzing', () => {
  it(
    'parses every labels CSV or refuses it with a SpikeflowError, alone and beside its recording',
    async () => {
      await fuzzReader('gesture labels csv', mutatedText(LABELS), async (text) => {
        parseGestureLabels(text, 'user01_led_labels.csv');
        const root = gestureDir();
        try {
          writeFileSync(join(root, 'user01_led_labels.csv'), text);
          try {
            await inspectAedat(join(root, 'user01_led.aedat'));
          } finally {
            await readSplit(root, 'train');
          }
        } finally {
          rmSync(root, { recursive: true, force: true });
        }
      });
    },
    30_000 + 80 * fuzzRuns(),
  );

  it(
    'opens every trials list or refuses it with a SpikeflowError',
    async () => {
      await fuzzReader('gesture trials', mutatedText(TRIALS), async (text) => {
        const root = gestureDir();
        try {
          writeFileSync(join(root, 'trials_to_test.txt'), text);
          await openGestureSplit(root, 'test');
          await readSplit(root, 'test');
        } finally {
          rmSync(root, { recursive: true, force: true });
        }
      });
    },
    30_000 + 80 * fuzzRuns(),
  );
});

describe('damaged DVS Gesture text files', () => {
  it('refuses a time beyond 2^53 µs, which would read as an inexact or infinite number', async () => {
    const csv = `class,startTime_usec,endTime_usec\n1,10,20\n2,5,${'9'.repeat(400)}\n`;
    expect((await refusal(() => parseGestureLabels(csv, 'l.csv'))).message).toBe(
      `l.csv: line 3: endTime_usec is ${'9'.repeat(12)}… (400 digits), beyond 2^53 µs`,
    );
  });

  it('refuses a trials list line that is not a file name in the folder (a path, a control character)', async () => {
    const root = gestureDir();
    for (const [line, what] of [
      ['../user01_led.aedat', '"../user01_led.aedat"'],
      ['sub/user01_led', '"sub/user01_led"'],
      ['user01\u0000led', '"user01\\u0000led"'],
    ] as const) {
      writeFileSync(join(root, 'trials_to_test.txt'), `user01_led\n${line}\n`);
      const e = await refusal(openGestureSplit(root, 'test'));
      expect(e.message).toBe(
        `${join(root, 'trials_to_test.txt')}: line 2 is ${what}, not a recording's file name: the list is damaged; extract DvsGesture.tar.gz again`,
      );
    }
  });
});

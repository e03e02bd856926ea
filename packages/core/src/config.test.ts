import { describe, expect, it } from 'vitest';
import { tf, type Variable } from './tf.js';
import { composeRun, parseRunConfig } from './config.js';
import { createRegistry, definePlugin } from './plugin.js';
import { OptimizerRunner } from './optim.js';
import { disposeTree } from './state.js';
import type { Dataset, DatasetEntry } from './dataset.js';
import type { RuleEntry } from './rule.js';
import { iaf, useCpuBackend } from './test-support.js';

useCpuBackend();

const T = 12;
const toyData: DatasetEntry = {
  name: 'toy',
  description: 'toy labels, 40 samples',
  optionsSchema: {},
  open: async (): Promise<Dataset> => ({
    name: 'toy',
    splits: ['train', 'test'],
    describe: () => ({ steps: T, channels: 3, outputs: 2, target: 'labels', samples: { train: 40, test: 8 } }),
    batchCount: (split, { batchSize }) => Math.ceil((split === 'train' ? 40 : 8) / batchSize),
    async *batches() {},
    close: async () => {},
  }),
};

/** A rule entry that declares `perSequence` updates per sequence (it never trains here). */
const ruleEntry = (perSequence?: (steps: number) => number): RuleEntry => ({
  name: 'online',
  description: 'test rule',
  optionsSchema: {},
  create: () => ({
    name: 'online',
    memory: 'O(1)',
    gradient: 'approximate',
    requires: {},
    init: () => null,
    update: (_b, s) => ({ state: s, report: { loss: 0, updates: 0 } }),
    ...(perSequence ? { updatesPerSequence: perSequence } : {}),
  }),
});

/** The learning rate of the composed optimizer at each update: SGD on a unit gradient moves the weight by exactly lr. */
async function learningRates(perSequence: ((steps: number) => number) | undefined, updates: number): Promise<number[]> {
  const registry = createRegistry([
    definePlugin({ meta: { name: 'test', version: '0' }, neurons: [iaf], datasets: [toyData], rules: [ruleEntry(perSequence)] }),
  ]);
  const config = parseRunConfig({
    plugins: [],
    data: { name: 'toy' },
    model: { layers: [{ neuron: 'iaf', size: 4 }], readout: {} },
    rule: { name: 'online' },
    optimizer: { name: 'sgd', lr: 1, schedule: 'cosine' },
    train: { epochs: 2, batchSize: 10 },
  });
  const run = await composeRun(config, registry, { cacheDir: '/nonexistent' });
  const w = tf.variable(tf.scalar(0), true, `lr-probe-${Math.random()}`) as Variable;
  const runner = new OptimizerRunner(run.optimizer, { w });
  const one = tf.scalar(1);
  const lrs: number[] = [];
  for (let i = 0; i < updates; i++) {
    const before = w.dataSync()[0]!;
    runner.apply({ w: one });
    lrs.push(before - w.dataSync()[0]!);
  }
  disposeTree([one, w]);
  runner.dispose();
  run.network.dispose();
  return lrs;
}

describe('composeRun', () => {
  it('spreads a decaying schedule over every update of the run: epochs × batches × the rule’s updates per sequence', async () => {
    // 2 epochs × 4 batches = 8 sequences; a rule updating every 3 steps makes 4 updates each: 32.
    const lrs = await learningRates((steps) => Math.ceil(steps / 3), 33);
    expect(lrs[0]).toBeCloseTo(1, 6);
    expect(lrs[16]).toBeCloseTo(0.5, 5); // the cosine's midpoint at update 16 of 32
    expect(lrs[31]).toBeGreaterThan(0);
    expect(lrs[32]).toBeCloseTo(0, 6);
    // A rule with one update per sequence: 8 updates.
    const plain = await learningRates(undefined, 9);
    expect(plain[4]).toBeCloseTo(0.5, 5);
    expect(plain[8]).toBeCloseTo(0, 6);
  });
});

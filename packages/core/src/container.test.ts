import { describe, expect, it } from 'vitest';
import { tf, type NamedTensorMap } from './tf.js';
import { composeRun, parseRunConfig, type RunConfig } from './config.js';
import { RunTokens, override, resolveRun, resolveToken, runContainer } from './container.js';
import { createRegistry, definePlugin } from './plugin.js';
import { sgd, type Optimizer } from './optim.js';
import { Trainer, type TrainerEvent } from './trainer.js';
import type { Dataset, DatasetEntry } from './dataset.js';
import type { LearningRule, RuleEntry, SequenceBatch } from './rule.js';
import { errorOf, iaf, rejection, useCpuBackend } from './test-support.js';

useCpuBackend();

/** A dataset held in memory: `samples` sequences of T steps, all inputs `value`, labels alternating; it records what it is asked. */
function memoryDataset({ T = 4, channels = 5, outputs = 3, samples = 6, value = 1, shape = undefined as [number, number, number] | undefined } = {}) {
  const log = { batches: [] as number[][], closed: 0 };
  const dataset: Dataset = {
    name: 'memory',
    splits: ['train', 'test'],
    describe: () => ({ steps: T, channels, ...(shape ? { shape } : {}), outputs, target: 'labels', samples: { train: samples, test: samples } }),
    batchCount: (_split, { batchSize }) => Math.ceil(samples / batchSize),
    async *batches(_split, { batchSize, skip = 0 }): AsyncGenerator<SequenceBatch> {
      for (let start = skip * batchSize; start < samples; start += batchSize) {
        const B = Math.min(batchSize, samples - start);
        log.batches.push([T, B, channels]);
        yield {
          inputs: tf.fill([T, B, channels], value),
          targets: tf.tensor1d(
            Array.from({ length: B }, (_, b) => (start + b) % outputs),
            'int32',
          ),
        };
      }
    },
    close: async () => {
      log.closed++;
    },
  };
  return { dataset, log };
}

/** A configured dataset that counts its openings (the overrides below must make it unneeded). */
function countingEntry() {
  const count = { opened: 0 };
  const entry: DatasetEntry = {
    name: 'files',
    description: 'a dataset on disk (test)',
    optionsSchema: { dir: { type: 'string' } },
    open: async () => {
      count.opened++;
      throw new Error('the configured dataset was opened');
    },
  };
  return { entry, count };
}

/** A rule that applies a gradient of ones to every parameter `updates` times per batch (no tape: exact, known updates). */
const onesRule: RuleEntry = {
  name: 'ones',
  description: 'applies unit gradients (test rule)',
  optionsSchema: { updates: { type: 'number', integer: true, min: 1, default: 1 } },
  create: ({ updates }): LearningRule => ({
    name: 'ones',
    memory: 'O(1)',
    gradient: 'approximate',
    requires: {},
    init: () => null,
    updatesPerSequence: () => Number(updates),
    update(_batch, state, ctx) {
      const grads: NamedTensorMap = Object.fromEntries(Object.entries(ctx.network.params).map(([k, v]) => [k, tf.onesLike(v)]));
      for (let i = 0; i < Number(updates); i++) ctx.apply(grads);
      tf.dispose(Object.values(grads));
      return { state, report: { loss: 0.5, updates: Number(updates) } };
    },
  }),
};

function setup(rule: Partial<RunConfig['rule']> = {}, optimizer: RunConfig['optimizer'] = { name: 'sgd', lr: 1 }) {
  const { entry, count } = countingEntry();
  const registry = createRegistry([definePlugin({ meta: { name: '@test/run', version: '0' }, neurons: [iaf], datasets: [entry], rules: [onesRule] })]);
  const config = parseRunConfig({
    plugins: [],
    data: { name: 'files', dir: '/nowhere' },
    model: { layers: [{ neuron: 'iaf', size: 4 }], readout: {} },
    rule: { name: 'ones', ...rule },
    optimizer,
    train: { epochs: 1, batchSize: 2 },
  });
  return { registry, config, count };
}

const ctx = { cacheDir: '/nonexistent' };

describe('a run is composed in its own container', () => {
  it('an in-memory dataset overrides the configured one: nothing is opened, and the network, loss and schedule follow its description', async () => {
    const { registry, config, count } = setup({}, { name: 'sgd', lr: 1, schedule: 'cosine' });
    const memory = memoryDataset({ channels: 5, outputs: 3, samples: 6 });
    const run = await composeRun(config, registry, ctx, { overrides: override(RunTokens.dataset, { useValue: memory.dataset }) });
    try {
      expect(count.opened).toBe(0);
      expect(run.dataset).toBe(memory.dataset);
      expect(run.network.inputs).toBe(5);
      expect(run.network.outputs).toBe(3);
      expect(run.loss.name).toBe('ce_mean'); // the default for label targets
      // The cosine spans 1 epoch × 3 batches of the memory dataset × 1 update: at update 3 its rate is 0.
      const w = tf.variable(tf.scalar(0));
      const lrs = tf.tidy(() => {
        const params = { w };
        let state = run.optimizer.init(params);
        const out: number[] = [];
        for (let i = 0; i < 4; i++) {
          const r = run.optimizer.update({ w: tf.scalar(1) }, state, params);
          out.push(-r.updates['w']!.dataSync()[0]!);
          state = r.state;
        }
        return out;
      });
      w.dispose();
      expect(lrs[0]).toBeCloseTo(1, 6);
      expect(lrs[1]).toBeCloseTo(0.75, 5);
      expect(lrs[3]).toBeCloseTo(0, 6);
      // Training reads the memory dataset's batches.
      const trainer = new Trainer(run, { ...run.trainOptions, evalEvery: 0 });
      await trainer.run();
      trainer.dispose();
      expect(memory.log.batches).toEqual([
        [4, 2, 5],
        [4, 2, 5],
        [4, 2, 5],
      ]);
    } finally {
      run.network.dispose();
      await run.dataset.close();
    }
    expect(memory.log.closed).toBe(1);
  });

  it('a spy optimizer counts the updates while a Trainer trains one batch; the weights move by exactly what it returns', async () => {
    const { registry, config } = setup({ updates: 3 });
    const memory = memoryDataset();
    const calls: string[][] = [];
    const spy = (inner: Optimizer): Optimizer => ({
      name: `spy(${inner.name})`,
      init: (params) => inner.init(params),
      update(grads, state, params) {
        calls.push(Object.keys(grads).sort());
        return inner.update(grads, state, params);
      },
    });
    const run = await composeRun(config, registry, ctx, {
      overrides: [override(RunTokens.dataset, { useValue: memory.dataset }), override(RunTokens.optimizer, { useFactory: () => spy(sgd({ lr: 0.25 })) })],
    });
    try {
      expect(run.optimizer.name).toBe(`spy(${sgd({ lr: 0.25 }).name})`);
      const before = Object.fromEntries(Object.entries(run.network.params).map(([k, v]) => [k, Array.from(v.dataSync())]));
      const trainer = new Trainer(run, { ...run.trainOptions, maxBatchesPerEpoch: 1, evalEvery: 0 });
      const events: number[] = [];
      trainer.on((e) => {
        if (e.type === 'batch') events.push(e.loss);
      });
      await trainer.run();
      trainer.dispose();
      expect(events).toEqual([0.5]);
      // One batch, 3 updates (the rule's option, validated through the registry's entry), each over every parameter.
      const names = Object.keys(run.network.params).sort();
      expect(names.length).toBeGreaterThan(0);
      expect(calls).toEqual([names, names, names]);
      expect(memory.log.batches[0]).toEqual([4, 2, 5]); // (the trainer draws the next batch before it stops, and frees it)
      for (const [k, v] of Object.entries(run.network.params)) {
        const moved = Array.from(v.dataSync()).map((x, i) => x - before[k]![i]!);
        for (const m of moved) expect(m).toBeCloseTo(-0.75, 6); // 3 updates × lr 0.25 × gradient 1
      }
    } finally {
      run.network.dispose();
      await run.dataset.close();
    }
  });

  it('each provider runs once per run: the optimizer’s factory and the run share the rule it resolves', async () => {
    const { registry, config } = setup({ updates: 2 }, { name: 'sgd', lr: 1, schedule: 'cosine' });
    let made = 0;
    const rules: LearningRule[] = [];
    const run = await composeRun(config, registry, ctx, {
      overrides: [
        override(RunTokens.dataset, { useValue: memoryDataset().dataset }),
        override(RunTokens.rule, {
          useFactory: (c) => {
            made++;
            const r = resolveToken(c, RunTokens.registry).rules.get('ones')!.create({ updates: 2 });
            rules.push(r);
            return r;
          },
        }),
      ],
    });
    expect(made).toBe(1); // resolved by the optimizer's factory (updates per sequence) and by the run
    expect(run.rule).toBe(rules[0]);
    run.network.dispose();
  });

  it('logger and clock are providers: ctx.log by default, any clock by override, and the trainer times with it', async () => {
    const { registry, config } = setup();
    const lines: string[] = [];
    let now = 0;
    const run = await composeRun(
      config,
      registry,
      { ...ctx, log: (m) => lines.push(m) },
      {
        overrides: [override(RunTokens.dataset, { useValue: memoryDataset().dataset }), override(RunTokens.clock, { useValue: () => (now += 250) })],
      },
    );
    run.logger('hello');
    expect(lines).toEqual(['hello']);
    expect(run.clock()).toBe(250);
    // Every reading advances the fake clock by 250 ms: the trainer's events are timed by it alone.
    const events: TrainerEvent[] = [];
    const trainer = new Trainer(run, { ...run.trainOptions, epochs: 1, maxBatchesPerEpoch: 1, evalEvery: 0 });
    trainer.on((e) => events.push(e));
    await trainer.run();
    const batch = events.find((e) => e.type === 'batch');
    expect(batch && batch.type === 'batch' ? batch.elapsedMs % 250 : NaN).toBe(0);
    const end = events.find((e) => e.type === 'end');
    expect(end && end.type === 'end' ? end.elapsedMs % 250 : NaN).toBe(0);
    expect(end && end.type === 'end' ? end.elapsedMs : 0).toBeGreaterThan(0);
    run.network.dispose();
    const quiet = await composeRun(config, registry, ctx, { overrides: (c) => c.register(RunTokens.dataset, { useValue: memoryDataset().dataset }) });
    expect(() => quiet.logger('nobody listens')).not.toThrow();
    expect(typeof quiet.clock()).toBe('number');
    quiet.network.dispose();
  });

  it('a failure after the dataset is open closes it and disposes the network; the error names the field', async () => {
    const { registry, config } = setup();
    const memory = memoryDataset();
    const tensors = tf.memory().numTensors;
    const bad = { ...config, loss: 'mse_lats' };
    const e = await rejection(composeRun(bad, registry, ctx, { overrides: override(RunTokens.dataset, { useValue: memory.dataset }) }));
    expect(e.details.path).toBe('loss.name');
    expect(memory.log.closed).toBe(1);
    expect(tf.memory().numTensors).toBe(tensors);
    // Before the network: a model that does not fit the dataset.
    const misfit = memoryDataset({ channels: 7 });
    const e2 = await rejection(
      composeRun({ ...config, model: { ...config.model, inputs: 5 } }, registry, ctx, { overrides: override(RunTokens.dataset, { useValue: misfit.dataset }) }),
    );
    expect(e2.message).toBe("model.inputs: is 5 but dataset 'memory' has 7 input channels per step (omit it to take the dataset's)");
    expect(misfit.log.closed).toBe(1);
    // An input shape whose product is not the dataset's channels.
    const shaped = memoryDataset({ channels: 7 });
    const e3 = await rejection(
      composeRun({ ...config, model: { ...config.model, inputShape: [2, 2, 2] } }, registry, ctx, {
        overrides: override(RunTokens.dataset, { useValue: shaped.dataset }),
      }),
    );
    expect(e3.message).toMatch(/^model\.inputShape: \[2,2,2\] holds 8 features, but dataset 'memory' has 7 input channels per step/);
    expect(shaped.log.closed).toBe(1);
    expect(tf.memory().numTensors).toBe(tensors);
  });

  it("a model whose first layer is spatial takes the dataset's image shape as its inputShape; a dense one stays flat", async () => {
    const { registry, config } = setup();
    const images = () => override(RunTokens.dataset, { useValue: memoryDataset({ channels: 18, shape: [3, 3, 2] }).dataset });
    const conv = { ...config, model: { layers: [{ type: 'conv2d', neuron: 'iaf', channels: 2, kernel: 2 }, { type: 'flatten' }], readout: {} } } as RunConfig;
    const run = await composeRun(conv, registry, ctx, { overrides: images() });
    expect(run.network.model.inputShape).toEqual([3, 3, 2]);
    expect(run.network.model.layers[0]!.conv!.outShape).toEqual([2, 2, 2]);
    run.network.dispose();
    const dense = await composeRun(config, registry, ctx, { overrides: images() });
    expect(dense.network.model.inputShape).toBeUndefined();
    expect(dense.network.inputs).toBe(18);
    dense.network.dispose();
  });

  it('without an override the configured dataset is opened, its options parsed under data', async () => {
    const { registry, config, count } = setup();
    await expect(composeRun(config, registry, ctx)).rejects.toThrow('the configured dataset was opened');
    expect(count.opened).toBe(1);
    const e = await rejection(composeRun({ ...config, data: { name: 'files', dir: 3 } }, registry, ctx));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.details.path).toBe('data.dir');
    expect(count.opened).toBe(1);
    const unknown = await rejection(composeRun({ ...config, data: { name: 'file' } }, registry, ctx));
    expect(unknown.code).toBe('UNKNOWN_NAME');
    expect(unknown.message).toMatch(/^data\.name: unknown dataset 'file'; did you mean 'files'\?/);
  });

  it('runContainer + resolveRun: parts resolve lazily from the container; the network needs an open dataset', async () => {
    const { registry, config } = setup();
    const c = runContainer(config, registry, ctx, { kernels: false });
    expect(resolveToken(c, RunTokens.config)).toBe(config);
    expect(resolveToken(c, RunTokens.rule).name).toBe('ones');
    expect(resolveToken(c, RunTokens.kernels)).not.toBe(registry.kernels);
    const e = errorOf(() => resolveToken(c, RunTokens.network));
    expect(e.details['token']).toBe('RunTokens.dataset');
    c.register(RunTokens.dataset, { useValue: memoryDataset({ channels: 2 }).dataset });
    const run = await resolveRun(c);
    expect(run.network.inputs).toBe(2);
    expect(resolveToken(c, RunTokens.network)).toBe(run.network);
    expect(resolveToken(runContainer(config, registry, ctx), RunTokens.kernels)).toBe(registry.kernels);
    run.network.dispose();
  });
});

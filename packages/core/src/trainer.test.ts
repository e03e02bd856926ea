import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tf, type Tensor } from './tf.js';
import { buildNetwork, type Network } from './network.js';
import { builtinSurrogates } from './surrogates.js';
import { ceMean } from './losses.js';
import { adam, sgd, type Optimizer } from './optim.js';
import { paramGrads, type LearningRule, type SequenceBatch } from './rule.js';
import { forward } from './inference.js';
import { unroll } from './loops.js';
import { inputShape, stepsOf } from './steps.js';
import { Trainer, evaluate, evaluationSeed, fingerprintOf, type TrainerEvent } from './trainer.js';
import type { Dataset } from './dataset.js';
import { loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { disposeTree } from './state.js';
import { isSpikeflowError } from './errors.js';
import { createRng, deriveSeed } from './random.js';
import { fusableIaf, iaf, referenceFusedKernels, useCpuBackend } from './test-support.js';

useCpuBackend();

/** Full BPTT in a few lines, reporting each readout to `observe`. */
const miniBptt: LearningRule<null> = {
  name: 'mini-bptt',
  memory: 'O(T)',
  gradient: 'exact',
  requires: {},
  init: () => null,
  update(batch, state, ctx) {
    const [T, B] = inputShape(batch.inputs) as [number, number];
    const bound = ctx.loss.bind(batch.targets, { steps: T, batch: B, outputs: ctx.network.outputs });
    const { value, grads } = paramGrads(ctx.network, () => {
      const ys: Tensor[] = [];
      unroll(ctx.network, ctx.network.prepare(), ctx.network.init(B), stepsOf(batch.inputs), 0, T, (t, o) => {
        ys.push(o.readout);
        ctx.observe?.(t, o.readout);
      });
      return bound.sequence(ys);
    });
    ctx.apply(grads);
    disposeTree(grads);
    bound.dispose();
    const loss = value.dataSync()[0]!;
    value.dispose();
    return { state, report: { loss, updates: 1 } };
  },
};

/** BPTT over one fused window (what batch normalisation through time needs). */
const miniFused: LearningRule<null> = {
  ...miniBptt,
  name: 'mini-fused',
  update(batch, state, ctx) {
    const [, B] = inputShape(batch.inputs) as [number, number];
    const T = inputShape(batch.inputs)[0]!;
    const bound = ctx.loss.bind(batch.targets, { steps: T, batch: B, outputs: ctx.network.outputs });
    const { value, grads } = paramGrads(ctx.network, () => {
      const o = ctx.network.runWindow(ctx.network.prepare(), ctx.network.init(B), batch.inputs as Tensor);
      return bound.sequence(tf.unstack(o.readout));
    });
    ctx.apply(grads);
    disposeTree(grads);
    bound.dispose();
    const loss = value.dataSync()[0]!;
    value.dispose();
    return { state, report: { loss, updates: 1 } };
  },
};

/** Two classes told apart by which half of 6 channels fires; `poison` makes one batch NaN. */
function toyData(n = 96, poison?: { epoch: number; batch: number }): Dataset {
  const T = 8;
  const C = 6;
  let epoch = -1;
  const seen = new Map<number, number>();
  return {
    name: 'toy',
    splits: ['train', 'test'],
    describe: () => ({ steps: T, channels: C, outputs: 2, target: 'labels', samples: { train: n, test: 32 } }),
    batchCount: (split, { batchSize }) => Math.ceil((split === 'train' ? n : 32) / batchSize),
    async *batches(split, { batchSize, seed, skip = 0 }): AsyncGenerator<SequenceBatch> {
      const total = split === 'train' ? n : 32;
      if (split === 'train') epoch = seen.get(seed) ?? seen.set(seed, seen.size).get(seed)!;
      for (let i = skip; i * batchSize < total; i++) {
        const B = Math.min(batchSize, total - i * batchSize);
        const r = createRng(deriveSeed(seed, split, i));
        const x = new Float32Array(T * B * C);
        const y = new Int32Array(B);
        for (let b = 0; b < B; b++) {
          y[b] = r() < 0.5 ? 0 : 1;
          for (let t = 0; t < T; t++) for (let c = 0; c < C; c++) x[(t * B + b) * C + c] = r() < (Math.floor(c / 3) === y[b] ? 0.6 : 0.05) ? 1 : 0;
        }
        if (poison && split === 'train' && epoch === poison.epoch && i === poison.batch) x.fill(NaN);
        yield { inputs: tf.tensor3d(x, [T, B, C]), targets: tf.tensor1d(y, 'int32') };
      }
    },
    close: async () => {},
  };
}

const network = (seed = 0, dropout = false) =>
  buildNetwork(
    {
      inputs: 6,
      layers: [{ neuron: 'iaf', size: 10, recurrent: true, gain: 2 }, ...(dropout ? [{ type: 'dropout', rate: 0.3 }] : [])],
      readout: { size: 2, kappa: 0.8 },
    },
    { neurons: new Map([['iaf', iaf]]), surrogates: builtinSurrogates },
    { seed },
  );

const parts = (over: { dataset?: Dataset; optimizer?: Optimizer; dropout?: boolean } = {}) => ({
  network: network(0, over.dropout),
  dataset: over.dataset ?? toyData(),
  rule: miniBptt,
  optimizer: over.optimizer ?? adam({ lr: 0.02 }),
  loss: ceMean,
});

/**
 * Trains `make()`'s parts for 2 epochs (batches of 16, seed 2) without interruption, and again with
 * a crash at the checkpoint after step 8 and a resume from it; expects the same weights and buffers
 * at the end, and frees the networks.
 */
async function expectExactResume(make: () => ReturnType<typeof parts>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sf-trainer-'));
  const full = make();
  await new Trainer(full, { epochs: 2, batchSize: 16, seed: 2, evalEvery: 0 }).run();
  const ckpt = join(dir, 'ck.sfck');
  const first = make();
  const t1 = new Trainer(first, { epochs: 2, batchSize: 16, seed: 2, evalEvery: 0, checkpointPath: ckpt, checkpointEvery: 4 });
  t1.on((e) => {
    if (e.type === 'checkpoint' && e.position.step === 8) throw new Error('simulated crash');
  });
  await expect(t1.run()).rejects.toThrow('simulated crash');
  const second = make();
  const t2 = new Trainer(second, { epochs: 2, batchSize: 16, seed: 2, evalEvery: 0, checkpointPath: ckpt });
  expect(t2.resume(ckpt)).toEqual({ epoch: 1, batch: 2, step: 8 });
  await t2.run();
  for (const [k, v] of Object.entries(full.network.variables)) {
    expect(Array.from(second.network.variables[k]!.dataSync()), k).toEqual(Array.from(v.dataSync()));
  }
  for (const n of [full, first, second]) n.network.dispose();
}

describe('Trainer', () => {
  it('trains, emits typed events in order, evaluates, and leaks no tensors across epochs', async () => {
    const p = parts();
    const trainer = new Trainer(p, { epochs: 4, batchSize: 16, seed: 1 });
    const events: TrainerEvent[] = [];
    const counts: number[] = [];
    trainer.on((e) => {
      events.push(e);
      if (e.type === 'epoch') counts.push(tf.memory().numTensors);
    });
    const result = await trainer.run();
    expect(events[0]!.type).toBe('start');
    expect(events.at(-1)!.type).toBe('end');
    expect(events.filter((e) => e.type === 'batch').length).toBe(4 * 6);
    expect(events.filter((e) => e.type === 'eval').length).toBe(4);
    const epochs = events.filter((e): e is Extract<TrainerEvent, { type: 'epoch' }> => e.type === 'epoch');
    expect(epochs[3]!.loss).toBeLessThan(epochs[0]!.loss);
    expect(result.position).toEqual({ epoch: 4, batch: 0, step: 24 });
    expect(result.lastEval!.accuracy).toBeGreaterThan(0.8);
    expect(new Set(counts.slice(1)).size).toBe(1);
    trainer.dispose();
    p.network.dispose();
  });

  it('is deterministic under a seed and differs under another', async () => {
    const curve = async (seed: number) => {
      const p = parts();
      const t = new Trainer(p, { epochs: 1, batchSize: 16, seed, evalEvery: 0 });
      const losses: number[] = [];
      t.on((e) => e.type === 'batch' && losses.push(e.loss));
      await t.run();
      t.dispose();
      p.network.dispose();
      return losses;
    };
    expect(await curve(5)).toEqual(await curve(5));
    expect(await curve(5)).not.toEqual(await curve(6));
  });

  it('stops on a NaN loss naming the step, keeping the last good checkpoint', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sf-trainer-'));
    const ckpt = join(dir, 'ck.sfck');
    const p = parts({ dataset: toyData(96, { epoch: 0, batch: 3 }) });
    const t = new Trainer(p, { epochs: 2, batchSize: 16, seed: 1, checkpointPath: ckpt, checkpointEvery: 1 });
    const err = await t.run().catch((e: unknown) => e);
    expect(isSpikeflowError(err, 'NON_FINITE')).toBe(true);
    expect((err as Error).message).toMatch(/the loss is NaN at epoch 1, batch 4 \(step 4\); the last good checkpoint \(step 3\) is kept/);
    const ck = loadCheckpoint<{ position: { step: number } }>(ckpt);
    expect(ck.meta.position.step).toBe(3);
    disposeTree(ck.trees as never);
    t.dispose();
    p.network.dispose();
  });

  it('stops when a weight becomes NaN, naming the parameter', async () => {
    const nanAt2: Optimizer = {
      name: 'nan-at-2',
      init: () => 0,
      update: (g, s) => ({ updates: Object.fromEntries(Object.entries(g).map(([k, v]) => [k, tf.mul(v, s === 1 ? NaN : -0.01)])), state: (s as number) + 1 }),
    };
    const p = parts({ optimizer: nanAt2 });
    const t = new Trainer(p, { epochs: 1, batchSize: 16, seed: 1 });
    const err = await t.run().catch((e: unknown) => e);
    expect(isSpikeflowError(err, 'NON_FINITE')).toBe(true);
    expect((err as Error).message).toMatch(/parameter 'layers\.0\.W' holds NaN or Inf after epoch 1, batch 2 \(step 2\); no checkpoint was written/);
    t.dispose();
    p.network.dispose();
  });

  it('resumes mid-epoch from a checkpoint to the same weights as an uninterrupted run', async () => {
    await expectExactResume(() => parts({ optimizer: sgd({ lr: 0.05, momentum: 0.9 }) }));
  });

  it('with dropout: every batch draws its masks from the run’s seed and position, so a resumed run ends at the same weights; evaluation runs without', async () => {
    const opt = () => sgd({ lr: 0.05, momentum: 0.9 });
    const full = parts({ optimizer: opt(), dropout: true });
    // The readout's mask the rule's network prepares, batch by batch.
    const seen: string[] = [];
    const update = miniBptt.update;
    const spy: LearningRule<null> = {
      ...miniBptt,
      update(batch, state, ctx) {
        seen.push(ctx.network.prepare().dropout!.readout!.dataSync().join());
        return update.call(this, batch, state, ctx);
      },
    };
    const evals: number[] = [];
    const t0 = new Trainer({ ...full, rule: spy }, { epochs: 2, batchSize: 16, seed: 2, evalEvery: 1 });
    t0.on((e) => e.type === 'eval' && evals.push(e.result.loss));
    await t0.run();
    expect(seen.length).toBe(12);
    expect(new Set(seen).size).toBe(12);
    // Evaluation: the weights as they are, no masks.
    const plain = network(0, false);
    plain.setParams(Object.fromEntries(Object.entries(full.network.params)));
    const again = await evaluate(plain, toyData(), ceMean, 'test', { batchSize: 16, seed: evaluationSeed(2) });
    expect(again.loss).toBeCloseTo(evals.at(-1)!, 5);
    plain.dispose();

    full.network.dispose();
    await expectExactResume(() => parts({ optimizer: opt(), dropout: true }));
  });

  it('with batch normalisation: the running estimates move while training, are checkpointed, and a resumed run ends at the same weights and estimates', async () => {
    const bnNet = () =>
      buildNetwork(
        {
          inputShape: [1, 6, 1],
          layers: [{ type: 'conv2d', neuron: 'iaf-fused', channels: 3, kernel: [1, 3], padding: 'same', batchNorm: true }, { type: 'flatten' }],
          readout: { size: 2, kappa: 0.8 },
        },
        { neurons: new Map([['iaf-fused', fusableIaf]]), surrogates: builtinSurrogates },
        { kernels: referenceFusedKernels() },
      );
    const run = () => ({ network: bnNet(), dataset: toyData(), rule: miniFused, optimizer: sgd({ lr: 0.05, momentum: 0.9 }), loss: ceMean });
    const once = run();
    expect(once.network.fused).toBe(true);
    await new Trainer(once, { epochs: 1, batchSize: 16, seed: 2, evalEvery: 0 }).run();
    expect(Array.from(once.network.buffers['layers.0.bn_var']!.dataSync())).not.toEqual([1, 1, 1]);
    once.network.dispose();
    await expectExactResume(run);
  });

  it('refuses a checkpoint of another model or a foreign file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sf-trainer-'));
    const other = join(dir, 'other.sfck');
    saveCheckpoint(other, { meta: { kind: 'something-else' }, trees: {} });
    const p = parts();
    const t = new Trainer(p, { epochs: 1, batchSize: 16, seed: 0 });
    expect(() => t.resume(other)).toThrow(/not a training-run checkpoint/);
    const mine = join(dir, 'mine.sfck');
    t.save(mine);
    const bigger = buildNetwork(
      { inputs: 6, layers: [{ neuron: 'iaf', size: 11, recurrent: true }], readout: { size: 2 } },
      { neurons: new Map([['iaf', iaf]]), surrogates: builtinSurrogates },
    );
    const t2 = new Trainer({ ...p, network: bigger }, { epochs: 1, batchSize: 16, seed: 0 });
    expect(() => t2.resume(mine)).toThrow(/parameter 'layers\.0\.W' is float32 \[6,10\], this model's is float32 \[6,11\]/);
    t.dispose();
    t2.dispose();
    bigger.dispose();
    p.network.dispose();
  });

  it('checks every field of a run checkpoint before changing anything, naming the field', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sf-trainer-'));
    const p = parts();
    const t = new Trainer(p, { epochs: 1, batchSize: 16, seed: 0 });
    const good = join(dir, 'good.sfck');
    t.save(good);
    const ck = loadCheckpoint<Record<string, unknown>>(good);
    const write = (meta: Record<string, unknown>, trees: Record<string, unknown> = ck.trees) => {
      const path = join(dir, `bad-${Math.random().toString(36).slice(2)}.sfck`);
      saveCheckpoint(path, { meta, trees: trees as never });
      return path;
    };
    const before = Array.from(p.network.params['layers.0.W']!.dataSync());
    const tensors = tf.memory().numTensors;
    const cases: [string, RegExp][] = [
      [write({ ...ck.meta, position: { epoch: -1, batch: 0, step: 0 } }), /meta\.position must be/],
      [write({ ...ck.meta, position: 'start' }), /meta\.position must be/],
      [write({ ...ck.meta, seed: 1.5 }), /meta\.seed must be a non-negative integer/],
      [write({ ...ck.meta, rule: 7 }), /meta\.rule must be a rule name/],
      [write({ ...ck.meta, params: 'all' }), /meta\.params must be a list/],
      [write({ ...ck.meta, optimizerSteps: -3 }), /meta\.optimizerSteps/],
      [write({ ...ck.meta, fingerprint: { threads: [2] } }), /meta\.fingerprint must be an object of strings/],
      [write(ck.meta, { ...ck.trees, params: { 'layers.0.W': 3 } }), /holds no parameter tensors/],
      [write(ck.meta, { ...ck.trees, optimizer: { count: 'x' } }), /optimizer state at optimizer.* is not/],
    ];
    for (const [path, message] of cases) {
      let err: unknown;
      try {
        t.resume(path);
      } catch (e) {
        err = e;
      }
      expect(isSpikeflowError(err, 'CHECKPOINT_INVALID'), `${message}: ${String(err)}`).toBe(true);
      expect((err as Error).message).toMatch(message);
    }
    expect(tf.memory().numTensors).toBe(tensors);
    expect(Array.from(p.network.params['layers.0.W']!.dataSync())).toEqual(before);
    disposeTree(ck.trees as never);
    t.dispose();
    p.network.dispose();
  });

  it('warns when it resumes under another fingerprint, and stores its own', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sf-trainer-'));
    const path = join(dir, 'ck.sfck');
    const p = parts();
    const info = { tfBackend: 'wasm', device: 'cpu', threads: 2, details: { simd: true, kernelThreads: 2, kernels: '0.1.0+abc', other: 'ignored' } };
    const a = fingerprintOf(info);
    expect(a).toEqual({ backend: 'wasm', fastKernels: true, simd: true, kernelThreads: 2, kernels: '0.1.0+abc' });
    expect(fingerprintOf(info, { kernels: false })).toEqual({ backend: 'wasm', fastKernels: false, simd: true });
    new Trainer(p, { epochs: 1, batchSize: 16, seed: 0, fingerprint: a }).save(path);
    const ck = loadCheckpoint<{ fingerprint: unknown }>(path);
    expect(ck.meta.fingerprint).toEqual(a);
    disposeTree(ck.trees as never);
    const warnings = (fingerprint?: Record<string, string | number | boolean>) => {
      const t = new Trainer(p, { epochs: 1, batchSize: 16, seed: 0, ...(fingerprint ? { fingerprint } : {}) });
      const seen: string[] = [];
      t.on((e) => (e.type === 'warning' ? seen.push(e.message) : undefined));
      t.resume(path);
      t.dispose();
      return seen;
    };
    expect(warnings(a)).toEqual([]);
    expect(warnings()).toEqual([]);
    const [w] = warnings({ ...a, kernelThreads: 1 });
    expect(w).toMatch(
      /resuming .*ck\.sfck under another setup .*then: backend wasm, fastKernels true, simd true, kernelThreads 2.*now: .*kernelThreads 1.*no longer bitwise the same/,
    );
    p.network.dispose();
  });

  it("evaluates with the rule's evalParams when it gives some, and restores the weights after", async () => {
    const p = parts();
    // A rule that keeps a copy of the initial weights and asks to be evaluated with them.
    const anchored: LearningRule<Record<string, Tensor>> = {
      ...(miniBptt as unknown as LearningRule<Record<string, Tensor>>),
      name: 'anchored',
      init: (net) => Object.fromEntries(Object.entries(net.params).map(([k, v]) => [k, tf.clone(v)])),
      update(batch, state, ctx) {
        return { state, report: miniBptt.update(batch, null, ctx).report };
      },
      evalParams: (state) => state,
    };
    const trainer = new Trainer({ ...p, rule: anchored }, { epochs: 2, batchSize: 16, seed: 1, evalEvery: 0 });
    const before = await trainer.evaluate();
    await trainer.run();
    const trained = p.network.getParams();
    const withAnchor = await trainer.evaluate();
    expect(withAnchor).toEqual(before);
    expect(p.network.getParams()).toEqual(trained);
    const plain = new Trainer({ ...p, rule: miniBptt }, { epochs: 1, batchSize: 16, seed: 1 });
    expect((await plain.evaluate()).loss).not.toBe(before.loss);
    plain.dispose();
    trainer.dispose();
    p.network.dispose();
  });

  it("prediction 'last' reads the class from the last step's readout, 'sum' from the summed readout", async () => {
    const dataset = toyData();
    const argmax = (v: number[]) => v.indexOf(Math.max(...v));
    // The classes both ways, by hand, over the same test batches; a network on which they differ.
    const byHand = async (net: Network) => {
      const counts = { sum: 0, last: 0, n: 0 };
      for await (const batch of dataset.batches('test', { batchSize: 16, seed: 0, shuffle: false })) {
        const out = forward(net, batch.inputs);
        const y = out.readout.arraySync() as number[][][];
        Array.from(batch.targets.dataSync()).forEach((l, b) => {
          const summed = y[0]![b]!.map((_, k) => y.reduce((acc, yt) => acc + yt[b]![k]!, 0));
          if (argmax(summed) === l) counts.sum++;
          if (argmax(y[y.length - 1]![b]!) === l) counts.last++;
          counts.n++;
        });
        disposeTree([out, batch] as never);
      }
      return counts;
    };
    let seed = 0;
    let net = network(seed);
    let expected = await byHand(net);
    while (expected.sum === expected.last && seed < 20) {
      net.dispose();
      net = network(++seed);
      expected = await byHand(net);
    }
    expect(expected.sum).not.toBe(expected.last);
    const sum = await evaluate(net, dataset, ceMean, 'test', { batchSize: 16 });
    const last = await evaluate(net, dataset, ceMean, 'test', { batchSize: 16, prediction: 'last' });
    expect(sum.accuracy).toBeCloseTo(expected.sum / expected.n, 9);
    expect(last.accuracy).toBeCloseTo(expected.last / expected.n, 9);
    net.dispose();
  });

  it('checks that the model fits the dataset', () => {
    const p = parts({ dataset: { ...toyData(), describe: () => ({ steps: 8, channels: 7, outputs: 2, target: 'labels', samples: {} }) } });
    expect(() => new Trainer(p, { epochs: 1, batchSize: 4, seed: 0 })).toThrow(/model\.inputs is 6 but dataset 'toy' has 7 input channels/);
    p.network.dispose();
  });
});

describe('checkpoints', () => {
  it('round-trips nested tensor trees and metadata, writing atomically', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sf-ck-'));
    const path = join(dir, 'a.sfck');
    const a = tf.tensor2d([
      [1.5, -2],
      [3, 4],
    ]);
    const b = tf.tensor1d([7, 8, 9], 'int32');
    saveCheckpoint(path, { meta: { hello: 'world', n: 3 }, trees: { x: { a, list: [b, 2, null] }, y: a } });
    expect(readFileSync(path).subarray(0, 7).toString('latin1')).toBe('SPKFLOW');
    expect(existsSync(`${path}.tmp-${process.pid}`)).toBe(false);
    const ck = loadCheckpoint<{ hello: string }>(path);
    expect(ck.meta.hello).toBe('world');
    const x = ck.trees['x'] as { a: Tensor; list: [Tensor, number, null] };
    expect(Array.from(x.a.dataSync())).toEqual([1.5, -2, 3, 4]);
    expect(x.a.shape).toEqual([2, 2]);
    expect(x.list[0].dtype).toBe('int32');
    expect(Array.from(x.list[0].dataSync())).toEqual([7, 8, 9]);
    expect(x.list.slice(1)).toEqual([2, null]);
    disposeTree([a, b, ck.trees] as never);
  });

  it('refuses a file it cannot read', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sf-ck-'));
    expect(() => loadCheckpoint(join(dir, 'missing.sfck'))).toThrow(/cannot read it/);
  });
});

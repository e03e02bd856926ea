import { beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import {
  lossNow,
  OptimizerRunner,
  adam,
  buildNetwork,
  builtinSurrogates,
  ceEveryStep,
  ceMean,
  createRegistry,
  forward,
  mseEveryStep,
  disposeTree,
  isSpikeflowError,
  mseLast,
  ruleFromSpec,
  tf,
  type NamedTensorMap,
  type Network,
  type TemporalLoss,
} from '@spikeflow/core';
import { bpttGrads, captureUpdates, checkFixtureDir, describeRule, expectGradsClose, randomBatch, smallNetwork, toyTask } from '@spikeflow/testing';
import lifPlugin, { lif } from '@spikeflow/neuron-lif';
import alifPlugin from '@spikeflow/neuron-alif';
import wasmPlugin, { wasm } from '@spikeflow/backend-wasm';
import cpuPlugin from '@spikeflow/backend-cpu';
import bpttPlugin, { bptt, tbptt } from './index.js';

const setup = () => wasm.activate();
beforeAll(setup);

describeRule('bptt', bptt, { neuron: lif, setup });
describeRule('bptt on a whole-sequence loss (ce_mean)', bptt, { neuron: lif, setup, loss: ceMean });
describeRule('tbptt k=4, accumulate', () => tbptt({ k: 4 }), { neuron: lif, setup });
describeRule('tbptt k=4, per-window', () => tbptt({ k: 4, mode: 'per-window' }), { neuron: lif, setup });

const testingDir = dirname(createRequire(import.meta.url).resolve('@spikeflow/testing/package.json'));
const fixturesDir = join(testingDir, 'fixtures');
const generatedDir = join(testingDir, 'fixtures-generated');
const plugins = [lifPlugin, alifPlugin, bpttPlugin, wasmPlugin, cpuPlugin];

describe('gradient fixtures (PyTorch float64 references)', () => {
  for (const [backend, dir, count] of [
    ['wasm', fixturesDir, 8],
    ['cpu', fixturesDir, 8],
    ['wasm', generatedDir, 5],
    ['cpu', generatedDir, 5],
    ['wasm', join(generatedDir, 'eprop'), 5],
    ['wasm', join(fixturesDir, 'conv'), 5],
    ['cpu', join(fixturesDir, 'conv'), 5],
  ] as const) {
    it(`every fixture in ${dir.split('/').at(-1)} passes on ${backend}: identical spikes, loss/readout/state/grads/tbptt within 1e-4`, async () => {
      const reports = await checkFixtureDir(dir, { backend, plugins });
      expect(reports.length).toBeGreaterThanOrEqual(count);
      for (const r of reports) {
        expect(r.failures, r.name).toEqual([]);
        expect(r.spikeMismatches, r.name).toBe(0);
        expect(r.worst, r.name).toBeLessThan(1e-4);
      }
      await setup();
    });
  }

  it('the spikeflow-fixtures bin passes them and exits 0, and exits 1 when one fails', () => {
    const bin = join(dirname(createRequire(import.meta.url).resolve('@spikeflow/testing/package.json')), 'dist', 'cli.js');
    const ok = spawnSync(process.execPath, [bin, 'check', fixturesDir, '--backend', 'wasm'], { encoding: 'utf8' });
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/fixtures on wasm: (\d+)\/\1 pass/);
    expect(ok.stdout).toContain('rec_alif');
    const strict = spawnSync(process.execPath, [bin, 'check', fixturesDir, '--tolerance', '1e-12'], { encoding: 'utf8' });
    expect(strict.status).toBe(1);
    expect(strict.stdout).toContain('FAIL');
    const missing = spawnSync(process.execPath, [bin, 'check', fixturesDir, '--plugins', '@spikeflow/neuron-nope'], { encoding: 'utf8' });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("'@spikeflow/neuron-nope' is not installed");
    expect(missing.stderr).toContain('pnpm add @spikeflow/neuron-nope');
  });
});

describe('bptt through the fused kernels: the whole sequence as one window of a few kernels', () => {
  const kernels = createRegistry([wasmPlugin, cpuPlugin]).kernels;
  const reg = { neurons: new Map([['lif', lif]]), surrogates: builtinSurrogates };
  const layer = { neuron: 'lif', size: 10, recurrent: true, gain: 2 };
  const configs: [string, Record<string, unknown>, TemporalLoss][] = [
    ['one recurrent layer, ce_mean', { inputs: 6, layers: [layer], readout: { size: 3, kappa: 0.8 } }, ceMean],
    [
      'two layers, no bias, reset detached, triangle surrogate, ce_every_step',
      {
        inputs: 6,
        layers: [
          { ...layer, bias: false, params: { resetDetach: true } },
          { ...layer, size: 7, recurrent: false },
        ],
        readout: { size: 3, kappa: 0.6 },
        surrogate: { name: 'triangle' },
      },
      ceEveryStep,
    ],
    [
      'masked self-connections and a learned decay, mse_last',
      { inputs: 6, layers: [{ ...layer, selfConnections: false, params: { learnBeta: true, beta: 0.8 } }], readout: { size: 3, kappa: 0.9 } },
      mseLast,
    ],
    [
      'feed-forward, instantaneous readout, mse_every_step',
      { inputs: 6, layers: [{ ...layer, recurrent: false }], readout: { size: 3, kappa: 0, bias: false } },
      mseEveryStep,
    ],
  ];
  for (const backend of [wasmPlugin.backends![0]!, cpuPlugin.backends![0]!]) {
    for (const [name, spec, loss] of configs) {
      it(`${name}, on ${backend.name}: loss, every gradient and inference equal the step-by-step path`, async () => {
        await backend.activate();
        const fused = buildNetwork(spec, reg, { seed: 4, kernels });
        const stepwise = buildNetwork(spec, reg, { seed: 4 });
        expect(tf.tidy(() => fused.prepare().fused !== undefined)).toBe(true);
        expect(tf.tidy(() => stepwise.prepare().fused === undefined)).toBe(true);
        const batch = randomBatch({ steps: 13, loss, batch: 5, inputs: 6, outputs: 3, seed: 7 });
        const got = captureUpdates(bptt(), fused, batch, loss);
        const want = bpttGrads(stepwise, batch, loss);
        expect(got.grads).toHaveLength(1);
        expectGradsClose(got.grads[0]!, want, 1e-5);
        const a = forward(fused, batch.inputs, { record: true });
        const b = forward(stepwise, batch.inputs, { record: true });
        expectClose({ y: a.readout.dataSync() as Float32Array }, { y: b.readout.dataSync() as Float32Array });
        a.spikes!.forEach((s, l) => expect(Array.from(s.dataSync()), `spikes of layer ${l}`).toEqual(Array.from(b.spikes![l]!.dataSync())));
        expect(a.spikes!.flatMap((s) => Array.from(s.dataSync())).some((v) => v === 1)).toBe(true);
        expectClose({ v: a.state.layers[0]!.neuron['v']!.dataSync() as Float32Array }, { v: b.state.layers[0]!.neuron['v']!.dataSync() as Float32Array });
        disposeTree([a, b, batch] as never);
        fused.dispose();
        stepwise.dispose();
        await setup();
      });
    }
  }

  // Truncated BPTT: the two-pass path (a whole-sequence loss), windows with per-step terms
  // (summed, or one update each), and a window without a loss term (run without a tape).
  // A whole-sequence loss whose ∂L/∂y_t differs from step to step (ce_mean's is the same at every t).
  const weightedSquares: TemporalLoss = {
    name: 'weighted_squares',
    decomposesOverTime: false,
    hasTerminal: false,
    target: 'any',
    bind: () => ({
      sequence: (ys) => tf.tidy(() => tf.addN(ys.map((y, t) => tf.mul(t + 1, tf.mean(tf.square(tf.sub(y, 0.3)))))) as tf.Scalar),
      dispose: () => {},
    }),
  };
  const truncations: [string, ReturnType<typeof tbptt>, TemporalLoss][] = [
    ['tbptt k=4 on ce_mean (two passes)', tbptt({ k: 4 }), ceMean],
    ['tbptt k=4 on a whole-sequence loss weighted by step (two passes)', tbptt({ k: 4 }), weightedSquares],
    ['tbptt k=5 on ce_every_step (windows, summed)', tbptt({ k: 5 }), ceEveryStep],
    ['tbptt k=4 per-window on mse_every_step', tbptt({ k: 4, mode: 'per-window' }), mseEveryStep],
    ['tbptt k=4 on mse_last (windows without a loss term)', tbptt({ k: 4 }), mseLast],
  ];
  for (const [name, rule, loss] of truncations) {
    it(`${name}: the windows through the fused kernels give the step-by-step path's loss, updates and observed readouts`, async () => {
      await setup();
      const spec = { inputs: 6, layers: [layer, { ...layer, size: 7 }], readout: { size: 3, kappa: 0.8 } };
      const fused = buildNetwork(spec, reg, { seed: 5, kernels });
      const stepwise = buildNetwork(spec, reg, { seed: 5 });
      expect(tf.tidy(() => fused.prepare().fused !== undefined)).toBe(true);
      const batch = randomBatch({ steps: 13, loss, batch: 5, inputs: 6, outputs: 3, seed: 8 });
      const run = (n: Network) => {
        const grads: Record<string, Float32Array>[] = [];
        const seen: [number, number[]][] = [];
        const r = rule.update(batch, rule.init(n), {
          network: n,
          loss,
          apply: (g: NamedTensorMap) => grads.push(Object.fromEntries(Object.entries(g).map(([k, t]) => [k, t.dataSync() as Float32Array]))),
          observe: (t, y) => seen.push([t, Array.from(y.dataSync())]),
        });
        return { grads, seen, loss: lossNow(r.report), updates: r.report.updates };
      };
      const before = tf.memory().numTensors;
      const got = run(fused);
      expect(tf.memory().numTensors).toBe(before);
      const want = run(stepwise);
      expect(got.updates).toBe(want.updates);
      expect(got.grads).toHaveLength(want.grads.length);
      got.grads.forEach((g, i) => expectClose(g, want.grads[i]!, 1e-4));
      expect(got.loss).toBeCloseTo(want.loss, 5);
      expect(got.seen.map(([t]) => t)).toEqual(Array.from({ length: 13 }, (_, t) => t));
      got.seen.forEach(([, y], i) => y.forEach((v, j) => expect(v).toBeCloseTo(want.seen[i]![1][j]!, 5)));
      disposeTree(batch as never);
      fused.dispose();
      stepwise.dispose();
    });
  }

  it('inference runs long sequences window by window (T = 1100 > the 1024-step window) and carries the state across windows', async () => {
    await setup();
    const spec = { inputs: 6, layers: [layer], readout: { size: 3, kappa: 0.8 } };
    const fused = buildNetwork(spec, reg, { seed: 1, kernels });
    const stepwise = buildNetwork(spec, reg, { seed: 1 });
    const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([1100, 2, 6], 0, 1, 'float32', 9), 0.3), 'float32'));
    const a = forward(fused, x, { record: true });
    const b = forward(stepwise, x, { record: true });
    expect(a.readout.shape).toEqual([1100, 2, 3]);
    expectClose({ y: a.readout.dataSync() as Float32Array }, { y: b.readout.dataSync() as Float32Array }, 1e-4);
    expect(Array.from(a.spikes![0]!.dataSync())).toEqual(Array.from(b.spikes![0]!.dataSync()));
    disposeTree([a, b, x] as never);
    fused.dispose();
    stepwise.dispose();
  });
});

function net(seed = 0, layers = 1): Network {
  return smallNetwork(lif, { layers, size: 12, seed });
}

/** Gradients a rule hands to `apply`, captured (weights untouched). */
function captured(rule: ReturnType<typeof bptt>, n: Network, loss: TemporalLoss, steps = 12): { grads: Record<string, Float32Array>[]; loss: number } {
  const batch = toyTask({ steps, batch: 4, seed: 3 });
  const grads: Record<string, Float32Array>[] = [];
  const r = rule.update(batch, rule.init(n), {
    network: n,
    loss,
    apply: (g: NamedTensorMap) => grads.push(Object.fromEntries(Object.entries(g).map(([k, t]) => [k, t.dataSync() as Float32Array]))),
  });
  disposeTree(batch as never);
  return { grads, loss: lossNow(r.report) };
}

function expectClose(a: Record<string, Float32Array>, b: Record<string, Float32Array>, tol = 1e-5) {
  expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
  for (const k of Object.keys(a)) {
    const x = a[k]!;
    const y = b[k]!;
    const scale = Math.max(1e-12, ...Array.from(y, Math.abs));
    for (let i = 0; i < y.length; i++) expect(Math.abs(x[i]! - y[i]!) / scale, k).toBeLessThan(tol);
  }
}

describe('bptt and tbptt', () => {
  it('200 BPTT iterations of a recurrent LIF network leave tf.memory().numTensors unchanged after the first', () => {
    const n = net(1);
    const rule = bptt();
    const runner = new OptimizerRunner(adam({ lr: 1e-3 }), n.params);
    const batch = toyTask({ steps: 20, batch: 8 });
    let state = rule.init(n);
    const counts: number[] = [];
    for (let i = 0; i < 200; i++) {
      state = rule.update(batch, state, { network: n, loss: ceMean, apply: (g) => runner.apply(g) }).state;
      counts.push(tf.memory().numTensors);
    }
    expect(runner.steps).toBe(200);
    expect(Math.max(...counts)).toBe(counts[0]);
    expect(Math.min(...counts)).toBe(counts[0]);
    disposeTree(batch as never);
    runner.dispose();
    n.dispose();
  });

  it('tbptt with k ≥ T equals full BPTT', () => {
    const n = net(2, 2);
    for (const loss of [ceMean, ceEveryStep]) {
      const full = captured(bptt(), n, loss);
      const wide = captured(tbptt({ k: 50 }), n, loss);
      expect(wide.grads.length).toBe(1);
      expectClose(wide.grads[0]!, full.grads[0]!);
      expect(wide.loss).toBeCloseTo(full.loss, 6);
    }
    n.dispose();
  });

  it('per-window gradients at fixed weights sum to the accumulated gradient, one update per window', () => {
    const n = net(3);
    const acc = captured(tbptt({ k: 5 }), n, ceEveryStep, 12);
    const per = captured(tbptt({ k: 5, mode: 'per-window' }), n, ceEveryStep, 12);
    expect(acc.grads.length).toBe(1);
    expect(per.grads.length).toBe(3);
    // What a learning-rate schedule is told: one update per window, one per sequence otherwise.
    expect(tbptt({ k: 5, mode: 'per-window' }).updatesPerSequence!(12)).toBe(3);
    expect(tbptt({ k: 5 }).updatesPerSequence!(12)).toBe(1);
    expect(bptt().updatesPerSequence!(12)).toBe(1);
    const sum: Record<string, Float32Array> = {};
    for (const g of per.grads) for (const [k, v] of Object.entries(g)) sum[k] = sum[k] ? sum[k]!.map((x, i) => x + v[i]!) : Float32Array.from(v);
    expectClose(sum, acc.grads[0]!, 1e-4);
    expect(per.loss).toBeCloseTo(acc.loss, 5);
    n.dispose();
  });

  it('truncation drops exactly the cross-window paths: the gradient differs from full BPTT, and a window that holds no loss term makes no update', () => {
    const n = net(4);
    const full = captured(bptt(), n, ceEveryStep, 12);
    const trunc = captured(tbptt({ k: 3 }), n, ceEveryStep, 12);
    const diff = Math.max(...Object.keys(full.grads[0]!).flatMap((k) => Array.from(full.grads[0]![k]!, (v, i) => Math.abs(v - trunc.grads[0]![k]![i]!))));
    expect(diff).toBeGreaterThan(1e-6);
    // mse_last has a term only at the last step: per-window mode updates once.
    const batch = toyTask({ steps: 12, batch: 4 });
    const targets = tf.ones([4, 2]);
    let updates = 0;
    const rule = tbptt({ k: 5, mode: 'per-window' });
    const r = rule.update({ inputs: batch.inputs, targets }, rule.init(n), { network: n, loss: mseLast, apply: () => updates++ });
    expect(updates).toBe(1);
    expect(r.report.updates).toBe(1);
    disposeTree([batch, targets] as never);
    n.dispose();
  });

  it('per-window mode refuses a loss that does not decompose over time, naming both', () => {
    const n = net();
    const batch = toyTask({ steps: 6, batch: 2 });
    const rule = tbptt({ k: 2, mode: 'per-window' });
    let err: unknown;
    try {
      rule.update(batch, rule.init(n), { network: n, loss: ceMean, apply: () => {} });
    } catch (e) {
      err = e;
    }
    expect(isSpikeflowError(err, 'INCOMPATIBLE')).toBe(true);
    expect((err as Error).message).toMatch(/tbptt.*ce_mean/);
    disposeTree(batch as never);
    n.dispose();
  });

  it('refuses a bad window and is configurable from JSON through its plugin entry', () => {
    expect(() => tbptt({ k: 0 })).toThrow(/rule\.truncation: must be >= 1, got 0/);
    const rules = createRegistry([bpttPlugin]).rules;
    expect(ruleFromSpec({ name: 'bptt', truncation: 5 }, rules).name).toBe('tbptt(k=5, accumulate)');
    expect(() => ruleFromSpec({ name: 'bptt', truncaton: 5 }, rules)).toThrow(/rule\.truncaton: unknown key; did you mean 'truncation'/);
    expect(() => ruleFromSpec({ name: 'bptt', truncation: 0 }, rules)).toThrow(/rule\.truncation: must be >= 1, got 0/);
    expect(() => ruleFromSpec({ name: 'bptt', mode: 'online' }, rules)).toThrow(/rule\.mode: must be one of 'accumulate', 'per-window'/);
    expect(() => ruleFromSpec({ name: 'bpt' }, rules)).toThrow(/rule\.name: unknown rule 'bpt'; did you mean 'bptt'/);
    const entry = createRegistry([bpttPlugin]).rules.get('bptt')!;
    expect(entry.create({ mode: 'accumulate' }).memory).toBe('O(T)');
    const t = entry.create({ truncation: 8, mode: 'per-window' });
    expect(t.memory).toBe('O(k)');
    expect(t.requires.lossDecomposesOverTime).toBe(true);
  });

  it('refuses inputs of the wrong shape with a clear error', () => {
    const n = net();
    const rule = bptt();
    const bad = { inputs: tf.zeros([5, 2, 3]), targets: tf.tensor1d([0, 1], 'int32') };
    expect(() => rule.update(bad, rule.init(n), { network: n, loss: ceMean, apply: () => {} })).toThrow(/time-major \[T, B, 8\].*\[5,2,3\]/);
    disposeTree(bad as never);
    n.dispose();
  });
});

import { beforeAll, describe, expect, it } from 'vitest';
import {
  OptimizerRunner,
  adam,
  applyPools,
  buildNetwork,
  builtinSurrogates,
  ceEveryStep,
  cloneTree,
  disposeTree,
  forward,
  isSpikeflowError,
  mseEveryStep,
  mseLast,
  ruleFromSpec,
  sgd,
  tf,
  type AnyNeuronModel,
  type Network,
  type SequenceBatch,
  type TemporalLoss,
} from '@spikeflow/core';
import { captureUpdates, describeRule, errorOf, expectExactResume, expectGradsClose, randomBatch, smallNetwork, type Grads } from '@spikeflow/testing';
import { addTask } from '@spikeflow/dataset-add-task';
import { lif } from '@spikeflow/neuron-lif';
import { alif } from '@spikeflow/neuron-alif';
import { tbptt } from '@spikeflow/rule-bptt';
import { wasm } from '@spikeflow/backend-wasm';
import { cpu } from '@spikeflow/backend-cpu';
import plugin, { blocksOf, localTbptt, type LocalTbpttState } from './index.js';

const setup = () => wasm.activate();
beforeAll(setup);

describeRule('local-tbptt, k = 4, one block (LIF)', () => localTbptt({ truncation: 4 }), { neuron: lif, setup });
describeRule('local-tbptt, k = 3, two blocks of one layer, per-window (ALIF)', () => localTbptt({ truncation: 3, mode: 'per-window' }), {
  neuron: alif,
  layers: 2,
  setup,
});
describeRule('local-tbptt, k = 5, blocks of two layers (LIF)', () => localTbptt({ truncation: 5, blockSize: 2 }), { neuron: lif, layers: 3, setup });

const neurons = new Map<string, AnyNeuronModel>([
  ['lif', lif],
  ['alif', alif],
]);
const reg = { neurons, surrogates: builtinSurrogates };

const SIZES = [7, 5, 6];

function layerSpec(size: number, neuron: string) {
  return { neuron, size, recurrent: true, gain: 2.5, params: { beta: 0.85 } };
}

function network(layers: number, neuron = 'lif', seed = 1): Network {
  return smallNetwork(neurons.get(neuron)!, {
    inputs: 6,
    layers: SIZES.slice(0, layers),
    outputs: 3,
    gain: 2.5,
    params: { beta: 0.85 },
    surrogate: { name: 'fast_sigmoid', slope: 5 },
    seed,
  });
}

const batch = (T: number, loss: TemporalLoss, seed = 2): SequenceBatch => randomBatch({ steps: T, loss, seed });

/** One block's network alone: `layers` (indices into `net`'s layers) and a readout with `readout` weights. */
function blockNetwork(net: Network, layers: number[], readout: { W: Float32Array | number[]; b: Float32Array | number[] }, neuron = 'lif'): Network {
  const first = layers[0]!;
  const sub = buildNetwork(
    {
      inputs: first === 0 ? 6 : SIZES[first - 1]!,
      layers: layers.map((l) => layerSpec(SIZES[l]!, neuron)),
      readout: { size: 3, kappa: 0.8 },
      surrogate: { name: 'fast_sigmoid', slope: 5 },
    },
    reg,
  );
  const all = net.getParams();
  const values: Record<string, Float32Array | number[]> = { 'readout.W': readout.W, 'readout.b': readout.b };
  layers.forEach((l, i) => {
    for (const w of ['W', 'b', 'W_rec']) values[`layers.${i}.${w}`] = all[`layers.${l}.${w}`]!.values;
  });
  sub.setParams(values);
  return sub;
}

/** Renames a block network's gradient to the full network's names (`layers.i` → `layers.<first + i>`, `readout` → `to`). */
function renamed(g: Grads, first: number, to = 'readout'): Grads {
  return Object.fromEntries(
    Object.entries(g).map(([k, v]) => [
      k.startsWith('readout.') ? k.replace('readout', to) : k.replace(/^layers\.(\d+)/, (_, i) => `layers.${first + Number(i)}`),
      v,
    ]),
  );
}

/** The heads' gradients, read from one SGD step with lr = 1: −(head after − head before). */
function headGrads(before: LocalTbpttState, after: LocalTbpttState): Grads {
  return Object.fromEntries(Object.entries(before.heads).map(([k, w]) => [k, Array.from(w.dataSync()).map((x, i) => x - after.heads[k]!.dataSync()[i]!)]));
}

describe('local truncated BPTT: the gradient of each block’s local loss, truncated to windows of k', () => {
  it('blocks: consecutive layers, the last block may be shorter', () => {
    expect(blocksOf(1, 1)).toEqual([[0, 0]]);
    expect(blocksOf(3, 1)).toEqual([
      [0, 0],
      [1, 1],
      [2, 2],
    ]);
    expect(blocksOf(3, 2)).toEqual([
      [0, 1],
      [2, 2],
    ]);
    expect(blocksOf(2, 5)).toEqual([[0, 1]]);
  });

  for (const mode of ['accumulate', 'per-window'] as const) {
    it(`one block is truncated BPTT (${mode})`, () => {
      const net = network(2);
      const b = batch(11, ceEveryStep);
      const got = captureUpdates(localTbptt({ truncation: 4, blockSize: 2, mode }), net, b, ceEveryStep);
      const want = captureUpdates(tbptt({ k: 4, mode }), net, b, ceEveryStep);
      expect(got.grads).toHaveLength(mode === 'accumulate' ? 1 : 3);
      got.grads.forEach((g, i) => expectGradsClose(g, want.grads[i]!, 1e-5));
      expect(got.loss).toBeCloseTo(want.loss, 5);
      disposeTree(b as never);
      net.dispose();
    });
  }

  for (const backend of ['wasm', 'cpu'] as const) {
    for (const loss of [ceEveryStep, mseEveryStep, mseLast]) {
      it(`two blocks: each block’s parameters (and the head) follow truncated BPTT of the block alone, ${loss.name} (${backend})`, async () => {
        await (backend === 'wasm' ? wasm : cpu).activate();
        const T = 10;
        const k = 4;
        const net = network(2);
        const b = batch(T, loss);
        const rule = localTbptt({ truncation: k, seed: 3 });
        const state = rule.init(net);
        const optimizer = sgd({ lr: 1 });
        const got = captureUpdates(rule, net, b, loss, { state: cloneTree(state), optimizer, keepState: true });
        expect(got.grads).toHaveLength(1);
        const after = got.state as LocalTbpttState;
        const W = Array.from(state.heads['aux.0.W']!.dataSync());
        const bias = Array.from(state.heads['aux.0.b']!.dataSync());
        // Block 0: layer 0 under the head, on the data.
        const first = blockNetwork(net, [0], { W, b: bias });
        const a = renamed(captureUpdates(tbptt({ k }), first, b, loss).grads[0]!, 0, 'aux.0');
        // Block 1: layer 1 under the readout, on layer 0's spikes.
        const spikes = tf.tidy(() => {
          const r = forward(net, b.inputs, { record: true });
          const s0 = r.spikes![0]!;
          disposeTree([r.readout, r.spikes![1]!, r.state] as never);
          return s0;
        });
        const all = net.getParams();
        const second = blockNetwork(net, [1], { W: all['readout.W']!.values, b: all['readout.b']!.values });
        const c = renamed(captureUpdates(tbptt({ k }), second, { inputs: spikes, targets: b.targets }, loss).grads[0]!, 1);
        const layerGrads = Object.fromEntries(Object.entries({ ...a, ...c }).filter(([name]) => !name.startsWith('aux.')));
        expectGradsClose(got.grads[0]!, layerGrads, 2e-5);
        expectGradsClose(headGrads(state, after), Object.fromEntries(Object.entries(a).filter(([name]) => name.startsWith('aux.'))), 2e-5);
        disposeTree([state, after, spikes, b] as never);
        first.dispose();
        second.dispose();
        net.dispose();
        await wasm.activate();
      });
    }
  }

  for (const backend of ['wasm', 'cpu'] as const) {
    it(`a conv network: the conv block's head reads its channels averaged over the map, and each block follows truncated BPTT of the block alone (${backend})`, async () => {
      await (backend === 'wasm' ? wasm : cpu).activate();
      const [T, k, loss] = [8, 3, ceEveryStep];
      const lifParams = { gain: 2.5, params: { beta: 0.85 } };
      const conv = { type: 'conv2d', neuron: 'lif', channels: 3, kernel: 3, padding: 'same', ...lifParams };
      const surrogate = { name: 'fast_sigmoid', slope: 5 };
      const net = buildNetwork(
        {
          inputShape: [6, 6, 2],
          layers: [conv, { type: 'maxpool', size: 2 }, { type: 'flatten' }, { neuron: 'lif', size: 5, recurrent: true, ...lifParams }],
          readout: { size: 3, kappa: 0.8 },
          surrogate,
        },
        reg,
        { seed: 4 },
      );
      const b = randomBatch({ steps: T, loss, inputs: 72, density: 0.3 });
      const rule = localTbptt({ truncation: k, seed: 3 });
      const state = rule.init(net);
      // One head per channel of the conv layer.
      expect(state.heads['aux.0.W']!.shape).toEqual([3, 3]);
      const got = captureUpdates(rule, net, b, loss, { state: cloneTree(state), optimizer: sgd({ lr: 1 }), keepState: true });
      const after = got.state as LocalTbpttState;
      const all = net.getParams();
      // Block 0: the conv layer, its head a readout of the map averaged per channel.
      const first = buildNetwork(
        {
          inputShape: [6, 6, 2],
          layers: [conv, { type: 'avgpool', size: 6 }, { type: 'flatten' }],
          readout: { size: 3, kappa: 0.8 },
          surrogate,
        },
        reg,
      );
      first.setParams({
        'layers.0.W': all['layers.0.W']!.values,
        'layers.0.b': all['layers.0.b']!.values,
        'readout.W': Array.from(state.heads['aux.0.W']!.dataSync()),
        'readout.b': Array.from(state.heads['aux.0.b']!.dataSync()),
      });
      const a = renamed(captureUpdates(tbptt({ k }), first, b, loss).grads[0]!, 0, 'aux.0');
      // Block 1: the dense layer under the readout, on the conv layer's spikes max-pooled.
      const pooled = tf.tidy(() => {
        const r = forward(net, b.inputs, { record: true });
        const s0 = r.spikes![0]!;
        const p = applyPools(tf.reshape(s0, [T * 4, 108]), net.model.layers[1]!.pools);
        return tf.reshape(p, [T, 4, 27]);
      });
      const second = buildNetwork(
        { inputs: 27, layers: [{ neuron: 'lif', size: 5, recurrent: true, ...lifParams }], readout: { size: 3, kappa: 0.8 }, surrogate },
        reg,
      );
      second.setParams({
        'layers.0.W': all['layers.1.W']!.values,
        'layers.0.b': all['layers.1.b']!.values,
        'layers.0.W_rec': all['layers.1.W_rec']!.values,
        'readout.W': all['readout.W']!.values,
        'readout.b': all['readout.b']!.values,
      });
      const c = renamed(captureUpdates(tbptt({ k }), second, { inputs: pooled, targets: b.targets }, loss).grads[0]!, 1);
      const layerGrads = Object.fromEntries(Object.entries({ ...a, ...c }).filter(([name]) => !name.startsWith('aux.')));
      expectGradsClose(got.grads[0]!, layerGrads, 2e-5);
      expectGradsClose(headGrads(state, after), Object.fromEntries(Object.entries(a).filter(([name]) => name.startsWith('aux.'))), 2e-5);
      disposeTree([state, after, pooled, b] as never);
      first.dispose();
      second.dispose();
      net.dispose();
      await wasm.activate();
    });
  }

  it('blocks of two layers: the head reads the block’s last layer; the reported loss is the readout’s', () => {
    const T = 9;
    const net = network(3, 'alif');
    const b = batch(T, ceEveryStep);
    const rule = localTbptt({ truncation: 3, blockSize: 2 });
    const state = rule.init(net);
    expect(Object.keys(state.heads).sort()).toEqual(['aux.0.W', 'aux.0.b']);
    expect(state.heads['aux.0.W']!.shape).toEqual([SIZES[1], 3]);
    const got = captureUpdates(rule, net, b, ceEveryStep, { state: cloneTree(state), optimizer: sgd({ lr: 1 }), keepState: true });
    const after = got.state as LocalTbpttState;
    const first = blockNetwork(net, [0, 1], { W: Array.from(state.heads['aux.0.W']!.dataSync()), b: Array.from(state.heads['aux.0.b']!.dataSync()) }, 'alif');
    const a = renamed(captureUpdates(tbptt({ k: 3 }), first, b, ceEveryStep).grads[0]!, 0, 'aux.0');
    expectGradsClose(
      Object.fromEntries(Object.entries(got.grads[0]!).filter(([name]) => /^layers\.[01]\./.test(name))),
      Object.fromEntries(Object.entries(a).filter(([name]) => name.startsWith('layers.'))),
      2e-5,
    );
    expectGradsClose(headGrads(state, after), Object.fromEntries(Object.entries(a).filter(([name]) => name.startsWith('aux.'))), 2e-5);
    // The reported loss is the network readout's, as evaluation measures it.
    const ys = forward(net, b.inputs);
    const bound = ceEveryStep.bind(b.targets, { steps: T, batch: 4, outputs: 3 });
    const want = tf.tidy(() => bound.sequence(tf.unstack(ys.readout)).dataSync()[0]!);
    expect(got.loss).toBeCloseTo(want, 5);
    bound.dispose();
    disposeTree([state, after, b, ys] as never);
    first.dispose();
    net.dispose();
  });
});

describe('local truncated BPTT: updates and heads', () => {
  it('per-window: an update of the network and of the heads after every window with a loss term', () => {
    const net = network(2);
    const T = 10;
    const rule = localTbptt({ truncation: 4, mode: 'per-window' });
    expect(rule.updatesPerSequence!(T)).toBe(3);
    expect(localTbptt({ truncation: 4 }).updatesPerSequence!(T)).toBe(1);
    const runner = new OptimizerRunner(adam({ lr: 0.01 }), net.params);
    const b = batch(T, ceEveryStep);
    const state = rule.init(net);
    const r = rule.update(b, state, { network: net, loss: ceEveryStep, apply: (g) => runner.apply(g), optimizer: runner.optimizer });
    expect(r.report.updates).toBe(3);
    expect(runner.steps).toBe(3);
    expect(r.state).not.toBe(state);
    // The optimizer's state for the heads counts three updates (every `count` in it is 3).
    const counts: unknown[] = [];
    JSON.stringify(r.state.optimizer, (k, v: unknown) => {
      if (k === 'count') counts.push(v);
      return v instanceof tf.Tensor ? null : v;
    });
    expect(counts.length).toBeGreaterThan(0);
    expect(counts.every((c) => c === 3)).toBe(true);
    // mse_last: only the last window has a term.
    const last = batch(T, mseLast);
    const r2 = rule.update(last, r.state, { network: net, loss: mseLast, apply: (g) => runner.apply(g), optimizer: runner.optimizer });
    expect(r2.report.updates).toBe(1);
    disposeTree([state, r.state, r2.state, b, last] as never);
    runner.dispose();
    net.dispose();
  });

  it('the heads are not the network’s: inference is unchanged by them, and init is seeded', () => {
    const net = network(2);
    const a = localTbptt({ seed: 4 }).init(net);
    const b = localTbptt({ seed: 4 }).init(net);
    const c = localTbptt({ seed: 5 }).init(net);
    expect(Object.keys(net.params).some((k) => k.startsWith('aux'))).toBe(false);
    expect(Array.from(a.heads['aux.0.W']!.dataSync())).toEqual(Array.from(b.heads['aux.0.W']!.dataSync()));
    expect(Array.from(a.heads['aux.0.W']!.dataSync())).not.toEqual(Array.from(c.heads['aux.0.W']!.dataSync()));
    const bound = 1 / Math.sqrt(SIZES[0]!);
    expect(Math.max(...Array.from(a.heads['aux.0.W']!.dataSync()).map(Math.abs))).toBeLessThanOrEqual(bound);
    disposeTree([a, b, c] as never);
    net.dispose();
  });

  it('leaves no tensors behind over several updates', () => {
    const net = network(2);
    const rule = localTbptt({ truncation: 3 });
    const runner = new OptimizerRunner(adam(), net.params);
    const b = batch(8, ceEveryStep);
    let state = rule.init(net);
    const counts: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = rule.update(b, state, { network: net, loss: ceEveryStep, apply: (g) => runner.apply(g), optimizer: runner.optimizer });
      if (r.state !== state) disposeTree(state as never, r.state as never);
      state = r.state;
      counts.push(tf.memory().numTensors);
    }
    expect(new Set(counts.slice(1)).size).toBe(1);
    disposeTree([state, b] as never);
    runner.dispose();
    net.dispose();
  });
});

describe('local truncated BPTT refuses what it cannot do, naming why', () => {
  it('bad options, from TypeScript and from a config', () => {
    const rules = new Map(plugin.rules!.map((e) => [e.name, e]));
    expect(ruleFromSpec({ name: 'local-tbptt', truncation: 7 }, rules).name).toBe('local-tbptt(k=7, blocks of 1, accumulate)');
    for (const bad of [{ truncation: 0 }, { blockSize: 0 }, { blockSize: 1.5 }, { mode: 'online' }, { window: 3 }]) {
      let error: unknown;
      try {
        ruleFromSpec({ name: 'local-tbptt', ...bad }, rules);
      } catch (e) {
        error = e;
      }
      expect(isSpikeflowError(error, 'CONFIG_INVALID')).toBe(true);
      expect(String((error as Error).message)).toContain(`rule.${Object.keys(bad)[0]}`);
    }
    expect(() => localTbptt({ truncation: -1 })).toThrow(/rule\.truncation/);
  });

  it('no optimizer for the heads, or heads that do not fit the network: INCOMPATIBLE, weights untouched', () => {
    const net = network(2);
    const b = batch(6, ceEveryStep);
    const before = net.getParams();
    const rule = localTbptt();
    const state = rule.init(net);
    const other = localTbptt({ blockSize: 2 }).init(net);
    const noOpt = errorOf(() => rule.update(b, state, { network: net, loss: ceEveryStep, apply: () => {} }));
    expect(isSpikeflowError(noOpt, 'INCOMPATIBLE')).toBe(true);
    expect(noOpt.message).toContain("run's optimizer");
    const wrong = errorOf(() => rule.update(b, other, { network: net, loss: ceEveryStep, apply: () => {}, optimizer: adam() }));
    expect(isSpikeflowError(wrong, 'INCOMPATIBLE')).toBe(true);
    expect(wrong.message).toContain('aux.0.W');
    expect(net.getParams()).toEqual(before);
    disposeTree([state, other, b] as never);
    net.dispose();
  });
});

describe('local truncated BPTT in the trainer', () => {
  it('a run stopped mid-epoch resumes to the same weights, heads and head optimizer state, bitwise; the heads learn', async () => {
    const parts = () => ({
      network: buildNetwork({ inputs: 2, layers: [layerSpec(8, 'alif'), layerSpec(6, 'alif')], readout: { size: 1, kappa: 0.5 } }, reg, { seed: 7 }),
      dataset: addTask({ steps: 12, trainSamples: 64, testSamples: 16, seed: 1 }),
      rule: localTbptt({ truncation: 5, mode: 'per-window', seed: 2 }),
      optimizer: adam({ lr: 0.01 }),
      loss: mseLast,
    });
    const a = (await expectExactResume(parts)) as unknown as LocalTbpttState;
    expect(Object.keys(a.heads).sort()).toEqual(['aux.0.W', 'aux.0.b']);
    const net = parts().network;
    const init = localTbptt({ seed: 2 }).init(net);
    const moved = Array.from(a.heads['aux.0.W']!.dataSync()).some((x, i) => Math.abs(x - init.heads['aux.0.W']!.dataSync()[i]!) > 1e-4);
    expect(moved).toBe(true);
    disposeTree([a, init] as never);
    net.dispose();
  });
});

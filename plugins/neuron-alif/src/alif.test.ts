import { beforeAll, describe, expect, it } from 'vitest';
import {
  buildNetwork,
  builtinSurrogates,
  ceEveryStep,
  createRegistry,
  disposeTree,
  forward,
  loadPlugins,
  mseEveryStep,
  tf,
  trainWindows,
  type NamedTensorMap,
  type Network,
  type TemporalLoss,
  type WindowPlan,
} from '@spikeflow/core';
import { describeNeuron } from '@spikeflow/testing';
import wasmPlugin, { wasm } from '@spikeflow/backend-wasm';
import plugin, { alif } from './index.js';

beforeAll(() => wasm.activate());

describeNeuron(alif, {
  configs: [{}, { resetDetach: true, rho: 0.9, betaA: 0.5 }, { learnBeta: true, learnRho: true }],
  setup: () => wasm.activate(),
});

describe('alif', () => {
  it('declares its membrane decay β, and none when β is trainable', () => {
    expect(alif.membraneDecay!({ beta: 0.8, learnBeta: false } as never)).toBe(0.8);
    expect(alif.membraneDecay!({ beta: 0.8, learnBeta: true } as never)).toBeUndefined();
  });

  it('raises its threshold after spikes: a_t = ρ·a_{t−1} + s_{t−1}, s_t = H(v_t − ϑ − β_a·a_t)', () => {
    const net = buildNetwork(
      {
        inputs: 1,
        layers: [{ neuron: 'alif', size: 1, bias: false, params: { beta: 0.9, threshold: 1, rho: 0.8, betaA: 0.6 } }],
        readout: { size: 1, kappa: 0, bias: false },
      },
      { neurons: new Map([['alif', alif]]), surrogates: builtinSurrogates },
    );
    net.setParams({ 'layers.0.W': [0.7], 'readout.W': [1] });
    const T = 30;
    const x = tf.ones([T, 1, 1]);
    const out = forward(net, x, { record: true });
    let v = 0;
    let a = 0;
    let s = 0;
    const expected: number[] = [];
    for (let t = 0; t < T; t++) {
      a = 0.8 * a + s;
      v = 0.9 * v + 0.7 - 1 * s;
      s = v - (1 + 0.6 * a) > 0 ? 1 : 0;
      expected.push(s);
    }
    expect(Array.from(out.spikes![0]!.dataSync())).toEqual(expected);
    const st = out.state.layers[0]!.neuron;
    expect(st['a']!.dataSync()[0]).toBeCloseTo(a, 5);
    expect(st['v']!.dataSync()[0]).toBeCloseTo(v, 5);
    // Adaptation must lengthen inter-spike intervals compared with the same LIF (β_a = 0).
    const lifCount = (() => {
      let vv = 0;
      let ss = 0;
      let n = 0;
      for (let t = 0; t < T; t++) {
        vv = 0.9 * vv + 0.7 - ss;
        ss = vv > 1 ? 1 : 0;
        n += ss;
      }
      return n;
    })();
    expect(expected.reduce((p, c) => p + c, 0)).toBeLessThan(lifCount);
    disposeTree([out, x] as never);
    net.dispose();
  });

  it('is a valid plugin, loadable by package name', async () => {
    const [loaded] = await loadPlugins(['@spikeflow/neuron-alif'], { from: import.meta.url });
    expect(loaded!.meta.name).toBe('@spikeflow/neuron-alif');
    expect(createRegistry([plugin]).neurons.get('alif')).toBe(alif);
  });
});

describe('alif layers run fused: whole windows through the integrate-and-fire kernel with an adaptive threshold', () => {
  const kernels = createRegistry([wasmPlugin]).kernels;
  const reg = { neurons: new Map([['alif', alif]]), surrogates: builtinSurrogates };
  const spec = {
    inputs: 6,
    layers: [
      { neuron: 'alif', size: 10, recurrent: true, gain: 3, params: { learnBeta: true, learnRho: true, betaA: 0.6, rho: 0.9 } },
      { neuron: 'alif', size: 7, recurrent: true, gain: 3, params: { resetDetach: true, betaA: 0.8 } },
    ],
    readout: { size: 3, kappa: 0.8 },
  };
  /** 0/1 inputs `[T, 4, 6]` and targets for `loss`. */
  const batch = (loss: TemporalLoss, T = 13) => ({
    inputs: tf.tidy(() => tf.cast(tf.less(tf.randomUniform([T, 4, 6], 0, 1, 'float32', 3), 0.4), 'float32')),
    targets: loss === ceEveryStep ? tf.tensor1d([0, 1, 2, 1], 'int32') : tf.randomNormal([T, 4, 3], 0, 1, 'float32', 4),
  });
  /** The gradients `plan` gives `net` on `b`, as plain arrays. */
  const gradsOf = (net: Network, b: ReturnType<typeof batch>, loss: TemporalLoss, plan: WindowPlan) => {
    let captured: Record<string, Float32Array> = {};
    trainWindows(
      b,
      {
        network: net,
        loss,
        apply: (g: NamedTensorMap) => (captured = Object.fromEntries(Object.entries(g).map(([k, t]) => [k, t.dataSync().slice() as Float32Array]))),
      },
      plan,
    );
    return captured;
  };
  const expectGradsClose = (got: Record<string, Float32Array>, want: Record<string, Float32Array>) => {
    expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
    for (const [k, w] of Object.entries(want)) {
      const g = got[k]!;
      const scale = Math.max(...Array.from(w, Math.abs));
      expect(scale, `${k}: some gradient`).toBeGreaterThan(0);
      let err = 0;
      for (let i = 0; i < w.length; i++) err = Math.max(err, Math.abs(g[i]! - w[i]!));
      expect(err / scale, k).toBeLessThan(2e-5);
    }
  };

  it('on wasm with the kernels the network runs fused; BPTT gives the step-by-step composite gradient of every parameter (β and ρ learnt), inference its spikes and final state', async () => {
    await wasm.activate();
    const fused = buildNetwork(spec, reg, { seed: 2, kernels });
    const stepwise = buildNetwork(spec, reg, { seed: 2 });
    expect(fused.fused).toBe(true);
    expect(stepwise.fused).toBe(false);
    const b = batch(ceEveryStep);
    const plan: WindowPlan = { window: Infinity, update: 'sequence', objective: 'sequence' };
    const before = tf.memory().numTensors;
    const got = gradsOf(fused, b, ceEveryStep, plan);
    expect(tf.memory().numTensors).toBe(before);
    const want = gradsOf(stepwise, b, ceEveryStep, plan);
    expect(Object.keys(want)).toEqual(expect.arrayContaining(['layers.0.beta', 'layers.0.rho']));
    expectGradsClose(got, want);
    const x = forward(fused, b.inputs, { record: true });
    const y = forward(stepwise, b.inputs, { record: true });
    x.spikes!.forEach((s, l) => expect(Array.from(s.dataSync()), `spikes of layer ${l}`).toEqual(Array.from(y.spikes![l]!.dataSync())));
    expect(x.spikes!.every((s) => s.dataSync().some((v) => v === 1))).toBe(true);
    for (const [l, layer] of y.state.layers.entries()) {
      for (const key of ['v', 'a', 's']) {
        const w = layer.neuron[key]!.dataSync();
        x.state.layers[l]!.neuron[key]!.dataSync().forEach((v, i) => expect(v, `final ${key} of layer ${l}`).toBeCloseTo(w[i]!, 5));
      }
    }
    disposeTree([x, y, b] as never);
    fused.dispose();
    stepwise.dispose();
  });

  it('without the temporal path, a fused window of 13 steps gives the sum of its 13 one-step windows (step by step, the composite ops)', async () => {
    await wasm.activate();
    const fused = buildNetwork(spec, reg, { seed: 3, kernels });
    const stepwise = buildNetwork(spec, reg, { seed: 3 });
    const b = batch(mseEveryStep);
    const got = gradsOf(fused, b, mseEveryStep, { window: Infinity, update: 'sequence', objective: 'steps', temporal: false });
    const want = gradsOf(stepwise, b, mseEveryStep, { window: 1, update: 'sequence', objective: 'steps' });
    expectGradsClose(got, want);
    // And it is another gradient than BPTT's.
    const bptt = gradsOf(fused, b, mseEveryStep, { window: Infinity, update: 'sequence', objective: 'steps' });
    const differs = Array.from(bptt['layers.0.W']!, (v, i) => Math.abs(v - got['layers.0.W']![i]!));
    expect(Math.max(...differs)).toBeGreaterThan(1e-3 * Math.max(...Array.from(bptt['layers.0.W']!, Math.abs)));
    disposeTree(b as never);
    fused.dispose();
    stepwise.dispose();
  });
});

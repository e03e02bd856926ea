import { beforeAll, describe, expect, it } from 'vitest';
import { buildNetwork, builtinSurrogates, createRegistry, disposeTree, forward, loadPlugins, tf } from '@spikeflow/core';
import { describeNeuron } from '@spikeflow/testing';
import { wasm } from '@spikeflow/backend-wasm';
import plugin, { lif } from './index.js';

beforeAll(() => wasm.activate());

describeNeuron(lif, {
  configs: [
    {},
    { resetDetach: true, beta: 0.8, threshold: 0.7 },
    { learnBeta: true, beta: 0.85 },
    { reset: 'zero', beta: 0.8, threshold: 0.6 },
    { reset: 'zero', resetDetach: true, learnBeta: true },
  ],
  setup: () => wasm.activate(),
});

describe('lif', () => {
  it('declares its membrane decay β, and none when β is trainable', () => {
    expect(lif.membraneDecay!({ beta: 0.8, learnBeta: false } as never)).toBe(0.8);
    expect(lif.membraneDecay!({ beta: 0.8, learnBeta: true } as never)).toBeUndefined();
  });

  it('follows v_t = β·v_{t−1} + I_t − ϑ·s_{t−1}, s_t = H(v_t − ϑ) step by step', () => {
    const net = buildNetwork(
      { inputs: 1, layers: [{ neuron: 'lif', size: 1, bias: false, params: { beta: 0.5, threshold: 1 } }], readout: { size: 1, kappa: 0, bias: false } },
      { neurons: new Map([['lif', lif]]), surrogates: builtinSurrogates },
    );
    net.setParams({ 'layers.0.W': [0.8], 'readout.W': [1] });
    const input = [1, 1, 0, 1, 1, 1, 0, 0];
    const x = tf.tensor3d(input.map((v) => [[v]]));
    const out = forward(net, x, { record: true });
    let v = 0;
    let s = 0;
    const expected: number[] = [];
    const volts: number[] = [];
    for (const xi of input) {
      v = 0.5 * v + 0.8 * xi - 1 * s;
      s = v > 1 ? 1 : 0;
      expected.push(s);
      volts.push(v);
    }
    expect(Array.from(out.spikes![0]!.dataSync())).toEqual(expected);
    expect(expected).toContain(1);
    expect(out.state.layers[0]!.neuron['v']!.dataSync()[0]).toBeCloseTo(volts.at(-1)!, 6);
    disposeTree([out, x] as never);
    net.dispose();
  });

  it("resets to zero with reset: 'zero' (v_t = β·v_{t−1}·(1 − s_{t−1}) + I_t), off the fused path", () => {
    const net = buildNetwork(
      {
        inputs: 1,
        layers: [{ neuron: 'lif', size: 1, bias: false, params: { beta: 0.5, threshold: 1, reset: 'zero' } }],
        readout: { size: 1, kappa: 0, bias: false },
      },
      { neurons: new Map([['lif', lif]]), surrogates: builtinSurrogates },
    );
    expect(lif.integrateFire!({ config: { reset: 'zero' } as never, tensors: {} })).toBeUndefined();
    net.setParams({ 'layers.0.W': [1.5], 'readout.W': [1] });
    const input = [1, 1, 0, 1, 1, 1, 0, 0, 1];
    const x = tf.tensor3d(input.map((v) => [[v]]));
    const out = forward(net, x, { record: true });
    let v = 0;
    let s = 0;
    const expected: number[] = [];
    for (const xi of input) {
      v = (s ? 0 : 0.5 * v) + 1.5 * xi;
      s = v > 1 ? 1 : 0;
      expected.push(s);
    }
    expect(Array.from(out.spikes![0]!.dataSync())).toEqual(expected);
    // Differs from the subtractive reset on this input (a spike at 1.5 leaves 0, not 0.5).
    expect(expected).toEqual([1, 1, 0, 1, 1, 1, 0, 0, 1]);
    disposeTree([out, x] as never);
    net.dispose();
  });

  it('makes β a clamped per-neuron parameter with learnBeta', () => {
    const net = buildNetwork(
      { inputs: 2, layers: [{ neuron: 'lif', size: 3, params: { learnBeta: true, beta: 0.7 } }], readout: { size: 1 } },
      { neurons: new Map([['lif', lif]]), surrogates: builtinSurrogates },
    );
    expect(net.params['layers.0.beta']!.shape).toEqual([3]);
    expect(Array.from(net.params['layers.0.beta']!.dataSync())).toEqual([0.7, 0.7, 0.7].map(Math.fround));
    net.setParams({ 'layers.0.beta': [1.5, -0.2, 0.5] });
    const p = tf.tidy(() => Array.from(net.prepare().layers[0]!.neuron['beta']!.dataSync()));
    expect(p).toEqual([1, 0, 0.5]);
    net.dispose();
  });

  it('refuses a bad config naming the field', () => {
    const reg = { neurons: new Map([['lif', lif]]), surrogates: builtinSurrogates };
    const spec = (params: Record<string, unknown>) => ({ inputs: 2, layers: [{ neuron: 'lif', size: 3, params }], readout: { size: 1 } });
    expect(() => buildNetwork(spec({ beta: 1.5 }), reg)).toThrow(/model\.layers\[0\]\.params\.beta: must be <= 1/);
    expect(() => buildNetwork(spec({ treshold: 1 }), reg)).toThrow(/params\.treshold: unknown key; did you mean 'threshold'/);
    expect(() => buildNetwork(spec({ reset: 'none' }), reg)).toThrow(/params\.reset: must be one of 'subtract', 'zero'/);
  });

  it('is a valid plugin, loadable by package name', async () => {
    const [loaded] = await loadPlugins(['@spikeflow/neuron-lif'], { from: import.meta.url });
    expect(loaded!.meta.name).toBe('@spikeflow/neuron-lif');
    expect(createRegistry([plugin]).neurons.get('lif')).toBe(lif);
  });
});

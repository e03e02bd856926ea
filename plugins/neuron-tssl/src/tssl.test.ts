import { beforeAll, describe, expect, it } from 'vitest';
import { buildNetwork, builtinSurrogates, createRegistry, disposeTree, forward, loadPlugins, spikeTimingSequence, tf, type Tensor } from '@spikeflow/core';
import { describeNeuron } from '@spikeflow/testing';
import { wasm } from '@spikeflow/backend-wasm';
import plugin, { tssl } from './index.js';

beforeAll(() => wasm.activate());

describeNeuron(tssl, {
  configs: [{}, { tauM: 8, tauS: 4, threshold: 0.5, filterInput: true }],
  setup: () => wasm.activate(),
});

describe('tssl', () => {
  it('a network of it passes PSPs: each layer reads the PSPs of the one before, the first one the PSP-filtered input, as TSSL-BP runs them', () => {
    const net = buildNetwork(
      {
        inputs: 6,
        layers: [
          { neuron: 'tssl', size: 5, bias: false, gain: 4, params: { filterInput: true } },
          { neuron: 'tssl', size: 3, bias: false, gain: 4 },
        ],
        readout: { kind: 'identity', size: 3 },
      },
      { neurons: new Map([['tssl', tssl]]), surrogates: builtinSurrogates },
      { seed: 3 },
    );
    const [T, B] = [12, 2];
    const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([T, B, 6], 0, 1, 'float32', 5), 0.5), 'float32'));
    const out = forward(net, x, { record: true });
    // By hand: a⁰ = psp(x), x_l = a_{l−1}·W_l, a_l = spikeTimingSequence(x_l).
    const want = tf.tidy(() => {
      let acc: Tensor | undefined;
      let a: Tensor = tf.stack(tf.unstack(x).map((s) => (acc = acc ? tf.add(tf.mul(2 / 3, acc), tf.div(s, 3)) : tf.div(s, 3))));
      const spikes: number[][] = [];
      for (const l of [0, 1]) {
        const cur = tf.reshape(tf.matMul(tf.reshape(a, [T * B, -1]), net.params[`layers.${l}.W`]!), [T, B, -1]);
        const seq = spikeTimingSequence(cur, { tauM: 5, tauS: 3, threshold: 1 });
        spikes.push(Array.from(seq.spikes.dataSync()));
        a = seq.psp;
      }
      return { a: Array.from(a.dataSync()), spikes };
    });
    try {
      expect(want.spikes[1]!.some((s) => s === 1)).toBe(true);
      out.readout.dataSync().forEach((v, i) => expect(v).toBeCloseTo(want.a[i]!, 5));
    } finally {
      disposeTree(out);
      x.dispose();
      net.dispose();
    }
  });

  it('declares its spike-timing equations, and loads as a plugin', async () => {
    expect(tssl.spikeTiming!({ tauM: 5, tauS: 3, threshold: 1, filterInput: false })).toEqual({ tauM: 5, tauS: 3, threshold: 1, filterInput: false });
    const [loaded] = await loadPlugins(['@spikeflow/neuron-tssl'], { from: import.meta.url });
    expect(loaded!.meta.name).toBe('@spikeflow/neuron-tssl');
    expect(createRegistry([plugin]).neurons.get('tssl')).toBe(tssl);
  });
});

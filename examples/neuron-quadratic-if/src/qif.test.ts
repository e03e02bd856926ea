import { beforeAll, describe, expect, it } from 'vitest';
import {
  lossNow,
  OptimizerRunner,
  adam,
  buildNetwork,
  builtinSurrogates,
  ceEveryStep,
  createRegistry,
  disposeTree,
  forward,
  isSpikeflowError,
  loadPlugins,
  tf,
  type NamedTensorMap,
  type NetState,
} from '@spikeflow/core';
import { describeNeuron, toyTask } from '@spikeflow/testing';
import { wasm } from '@spikeflow/backend-wasm';
import plugin, { qif } from './index.js';

beforeAll(() => wasm.activate());

describeNeuron(qif, {
  configs: [{}, { resetDetach: true, a: 0.3 }],
  setup: () => wasm.activate(),
});

const qifOnly = { neurons: new Map([['qif', qif]]), surrogates: builtinSurrogates };

describe('qif', () => {
  it("follows v'_t = v + a·v·(v − v_c) + I_t, v_t = (1 − s_{t−1})·v'_t + s_{t−1}·v_reset, s_t = H(v_t − v_peak) step by step", () => {
    const [a, vc, vPeak, vReset, w] = [0.2, 1, 2, -0.5, 0.6];
    const net = buildNetwork(
      {
        inputs: 1,
        layers: [{ neuron: 'qif', size: 1, bias: false, params: { a, vCritical: vc, vPeak, vReset } }],
        readout: { size: 1, kappa: 0, bias: false },
      },
      qifOnly,
    );
    net.setParams({ 'layers.0.W': [w], 'readout.W': [1] });
    const input = [1, 1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 1, 0, 0];

    // The equations in plain JS (float64).
    let v = 0;
    let s = 0;
    const spikes: number[] = [];
    const volts: number[] = [];
    for (const x of input) {
      const vPre = v + a * v * (v - vc) + w * x;
      v = (1 - s) * vPre + s * vReset;
      s = v > vPeak ? 1 : 0;
      spikes.push(s);
      volts.push(v);
    }
    expect(spikes.filter((k) => k === 1).length).toBe(2);
    expect(volts).toContain(vReset); // a reset happened
    expect(volts[2]).toBeGreaterThan(volts[1]!); // above v_c, v runs away without input
    expect(volts[9]).toBeLessThan(volts[8]!); // below v_c (and above rest), v decays to rest

    // The whole sequence in one call: spikes and the final state.
    const x = tf.tensor3d(input.map((i) => [[i]]));
    const out = forward(net, x, { record: true });
    expect(Array.from(out.spikes![0]!.dataSync())).toEqual(spikes);
    expect(out.state.layers[0]!.neuron['v']!.dataSync()[0]).toBeCloseTo(volts.at(-1)!, 5);
    disposeTree([out, x] as never);

    // Step by step, carrying the state: the whole voltage trace.
    let state: NetState = net.init(1);
    input.forEach((i, t) => {
      const xt = tf.tensor3d([[[i]]]);
      const o = forward(net, xt, { record: true, state });
      expect(o.spikes![0]!.dataSync()[0], `s at t=${t}`).toBe(spikes[t]);
      expect(o.state.layers[0]!.neuron['v']!.dataSync()[0], `v at t=${t}`).toBeCloseTo(volts[t]!, 5);
      disposeTree([state, xt, o.readout, o.spikes] as never);
      state = o.state;
    });
    disposeTree(state as never);
    net.dispose();
  });

  it('is loaded by package name, built from a JSON model spec, and trained with BPTT: the loss falls, no tensor leaks', async () => {
    const plugins = await loadPlugins(['spikeflow-neuron-qif', '@spikeflow/rule-bptt', '@spikeflow/backend-wasm'], { from: import.meta.url });
    expect(plugins.map((p) => p.meta.name)).toEqual(['spikeflow-neuron-qif', '@spikeflow/rule-bptt', '@spikeflow/backend-wasm']);
    const registry = createRegistry(plugins);
    expect([...registry.neurons.keys()]).toEqual(['qif']);

    const spec: unknown = JSON.parse(`{
      "inputs": 8,
      "layers": [{ "neuron": "qif", "size": 16, "recurrent": true, "gain": 2, "params": { "a": 0.1, "resetDetach": true } }],
      "readout": { "size": 2, "kappa": 0.8 }
    }`);
    const net = buildNetwork(spec, { neurons: registry.neurons, surrogates: registry.surrogates.values() }, { kernels: registry.kernels, seed: 1 });
    const rule = registry.rules.get('bptt')!.create({ mode: 'accumulate' });
    const runner = new OptimizerRunner(adam({ lr: 0.02 }), net.params);

    let state = rule.init(net);
    const losses: number[] = [];
    const counts: number[] = [];
    let spikesSeen = 0;
    const inputGrad: number[] = [];
    for (let i = 0; i < 40; i++) {
      const batch = toyTask({ steps: 12, batch: 16, seed: i });
      if (i === 0) {
        const probe = forward(net, batch.inputs, { record: true });
        spikesSeen = tf.tidy(() => tf.sum(probe.spikes![0]!).dataSync()[0]!);
        disposeTree(probe as never);
      }
      const apply = (g: NamedTensorMap) => {
        // The gradient reaches the input weights only through the QIF layer's surrogate spikes.
        if (i === 0) for (const k of ['layers.0.W', 'layers.0.W_rec']) inputGrad.push(tf.tidy(() => tf.max(tf.abs(g[k]!)).dataSync()[0]!));
        runner.apply(g);
      };
      const r = rule.update(batch, state, { network: net, loss: ceEveryStep, apply });
      state = r.state;
      losses.push(lossNow(r.report));
      disposeTree(batch as never);
      counts.push(tf.memory().numTensors);
    }
    expect(spikesSeen).toBeGreaterThan(0); // the QIF layer does spike on the toy inputs
    expect(inputGrad).toHaveLength(2);
    for (const g of inputGrad) expect(g).toBeGreaterThan(0);
    expect(losses.every(Number.isFinite)).toBe(true);
    const first = losses[0]!;
    const last = losses.slice(-5).reduce((x, y) => x + y, 0) / 5;
    expect(last).toBeLessThan(0.6 * first);
    expect(new Set(counts.slice(1)).size).toBe(1);
    expect(runner.steps).toBe(40);
    disposeTree(state);
    runner.dispose();
    net.dispose();
  });

  it('refuses a bad config with a SpikeflowError naming the field', () => {
    const spec = (params: Record<string, unknown>) => ({ inputs: 2, layers: [{ neuron: 'qif', size: 3, params }], readout: { size: 1 } });
    const errorOf = (params: Record<string, unknown>): unknown => {
      try {
        buildNetwork(spec(params), qifOnly).dispose();
      } catch (e) {
        return e;
      }
      return undefined;
    };
    for (const params of [{ vPeak: 0.5 }, { vPeak: 1 }, { vCritical: 3 }]) {
      const e = errorOf(params);
      expect(isSpikeflowError(e, 'CONFIG_INVALID'), JSON.stringify(params)).toBe(true);
      expect((e as Error).message).toMatch(/model\.layers\[0\]\.params\.vPeak: must be > vCritical/);
      expect((e as { details: { path?: string } }).details.path).toBe('model.layers[0].params.vPeak');
    }
    const before = tf.memory().numTensors;
    expect(() => buildNetwork(spec({ vReset: 2 }), qifOnly)).toThrow(/params\.vReset: must be < vPeak \(2\), got 2/);
    expect(tf.memory().numTensors).toBe(before);
    const unknown = errorOf({ vpeak: 3 });
    expect(isSpikeflowError(unknown, 'CONFIG_INVALID')).toBe(true);
    expect((unknown as Error).message).toMatch(/model\.layers\[0\]\.params\.vpeak: unknown key; did you mean 'vPeak'/);
    expect(() => buildNetwork(spec({ a: 0 }), qifOnly)).toThrow(/model\.layers\[0\]\.params\.a: must be > 0, got 0/);
    expect(() => buildNetwork(spec({ resetDetach: 'yes' }), qifOnly)).toThrow(/model\.layers\[0\]\.params\.resetDetach: expected true or false/);
  });

  it('is a valid plugin object providing exactly the qif neuron', () => {
    expect(plugin.meta).toEqual({ name: 'spikeflow-neuron-qif', version: '0.1.0' });
    expect(createRegistry([plugin]).neurons.get('qif')).toBe(qif);
  });
});

import { beforeAll, describe, expect, it } from 'vitest';
import { buildNetwork, builtinSurrogates, createRegistry, disposeTree, forward, isSpikeflowError, loadPlugins, resolveModel, tf } from '@spikeflow/core';
import { describeNeuron } from '@spikeflow/testing';
import { wasm } from '@spikeflow/backend-wasm';
import plugin, { ltc, ltcReadout } from './index.js';

beforeAll(() => wasm.activate());

describeNeuron(ltc, {
  configs: [{}, { threshold: 'fixed' }, { b0: 0.3, beta: 0.5 }],
  setup: () => wasm.activate(),
});

const registries = { neurons: new Map([['ltc', ltc]]), surrogates: builtinSurrogates, readouts: plugin.readouts };
const sigma = (x: number) => 1 / (1 + Math.exp(-x));

describe('ltc', () => {
  it('follows the reference equations step by step (adaptive threshold, LTC readout)', () => {
    const net = buildNetwork({ inputs: 1, layers: [{ neuron: 'ltc', size: 1, recurrent: true }], readout: { size: 1, kind: 'ltc' } }, registries);
    // [I ; u]·W_α + b_α, [I ; b]·W_ρ + b_ρ, [d ; y]·W_κ + b_κ, with 1×1 blocks.
    net.setParams({
      'layers.0.W': [1.3],
      'layers.0.b': [0.05],
      'layers.0.W_rec': [-0.4],
      'layers.0.alpha_W': [0.8, -0.5],
      'layers.0.alpha_b': [-0.2],
      'layers.0.rho_W': [0.3, 1.1],
      'layers.0.rho_b': [0.9],
      'readout.W': [0.7],
      'readout.b': [0.1],
      'readout.W_kappa': [0.5, -0.6],
      'readout.b_kappa': [0.2],
    });
    const xs = [1, 0.2, 0.9, 1, 1, 0, 0.4, 1, 1, 0.7, 0, 1];
    const out = forward(net, tf.tensor3d(xs.map((x) => [[x]])), { record: true });
    let u = 0;
    let s = 0;
    let b = 0;
    let y = 0;
    const spikes: number[] = [];
    const readout: number[] = [];
    for (const x of xs) {
      const I = 1.3 * x + 0.05 - 0.4 * s;
      const alpha = sigma(0.8 * I - 0.5 * u - 0.2);
      const rho = sigma(0.3 * I + 1.1 * b + 0.9);
      b = rho * b + (1 - rho) * s;
      const theta = 0.1 + 1.8 * b;
      const v = (1 - alpha) * u + alpha * I;
      s = v - theta > 0 ? 1 : 0;
      u = (1 - s) * v;
      const d = 0.7 * s + 0.1;
      const kappa = sigma(0.5 * d - 0.6 * y + 0.2);
      y = (1 - kappa) * y + kappa * d;
      spikes.push(s);
      readout.push(y);
    }
    expect(spikes.some((v) => v === 1) && spikes.some((v) => v === 0)).toBe(true);
    expect(Array.from(out.spikes![0]!.dataSync())).toEqual(spikes);
    Array.from(out.readout.dataSync()).forEach((v, t) => expect(v).toBeCloseTo(readout[t]!, 5));
    const st = out.state.layers[0]!.neuron;
    expect(st['u']!.dataSync()[0]).toBeCloseTo(u, 5);
    expect(st['b']!.dataSync()[0]).toBeCloseTo(b, 5);
    disposeTree(out as never);
    net.dispose();
  });

  it('fixed-threshold variant: θ = theta, no adaptation parameters, b stays 0', () => {
    const net = buildNetwork(
      { inputs: 1, layers: [{ neuron: 'ltc', size: 1, bias: false, params: { threshold: 'fixed', theta: 0.5 } }], readout: { size: 1, kappa: 0, bias: false } },
      registries,
    );
    expect(Object.keys(net.params).sort()).toEqual(['layers.0.W', 'layers.0.alpha_W', 'layers.0.alpha_b', 'readout.W']);
    net.setParams({ 'layers.0.W': [1], 'layers.0.alpha_W': [0, 0], 'layers.0.alpha_b': [0], 'readout.W': [1] });
    const xs = [0.3, 0.6, 0.9, 0.1, 1, 1];
    const out = forward(net, tf.tensor3d(xs.map((x) => [[x]])), { record: true });
    let u = 0;
    const expected = xs.map((x) => {
      const v = 0.5 * u + 0.5 * x; // α = σ(0) = 1/2
      const s = v > 0.5 ? 1 : 0;
      u = (1 - s) * v;
      return s;
    });
    expect(Array.from(out.spikes![0]!.dataSync())).toEqual(expected);
    expect(out.state.layers[0]!.neuron['b']!.dataSync()[0]).toBe(0);
    disposeTree(out as never);
    net.dispose();
  });

  it('brings its own surrogate (the multi-Gaussian of the reference code) unless the spec names one', () => {
    const own = resolveModel({ inputs: 2, layers: [{ neuron: 'ltc', size: 3 }], readout: { size: 1 } }, registries);
    expect(own.layers[0]!.surrogate.name).toBe('multi_gaussian');
    expect(own.layers[0]!.surrogate.params).toEqual({ sigma: 0.3, height: 0.15, scale: 6, gamma: 0.5 });
    const model = resolveModel({ inputs: 2, layers: [{ neuron: 'ltc', size: 3 }], readout: { size: 1 }, surrogate: { name: 'sigmoid', slope: 4 } }, registries);
    expect(model.layers[0]!.surrogate.name).toBe('sigmoid');
    const layer = resolveModel({ inputs: 2, layers: [{ neuron: 'ltc', size: 3, surrogate: { name: 'arctan' } }], readout: { size: 1 } }, registries);
    expect(layer.layers[0]!.surrogate.name).toBe('arctan');
  });

  it('gate weights are seeded: same seed, same weights; bounded by 1/√(2·size)', () => {
    const spec = { inputs: 2, layers: [{ neuron: 'ltc', size: 8 }], readout: { size: 2, kind: 'ltc' } };
    const a = buildNetwork(spec, registries, { seed: 3 });
    const b = buildNetwork(spec, registries, { seed: 3 });
    const c = buildNetwork(spec, registries, { seed: 4 });
    const wa = a.params['layers.0.alpha_W']!;
    expect(wa.shape).toEqual([16, 8]);
    expect(a.params['readout.W_kappa']!.shape).toEqual([4, 2]);
    expect(Array.from(wa.dataSync())).toEqual(Array.from(b.params['layers.0.alpha_W']!.dataSync()));
    expect(Array.from(wa.dataSync())).not.toEqual(Array.from(c.params['layers.0.alpha_W']!.dataSync()));
    expect(Array.from(wa.dataSync()).every((v) => Math.abs(v) <= 1 / 4)).toBe(true);
    expect(Array.from(wa.dataSync())).not.toEqual(Array.from(a.params['layers.0.rho_W']!.dataSync()));
    [a, b, c].forEach((n) => n.dispose());
  });

  it("the plugin provides the 'ltc' readout: a learned gate, no fixed leak, no options (a leaky readout's kappa is refused naming the field)", () => {
    expect(plugin.readouts).toEqual([ltcReadout]);
    expect(ltcReadout.leak).toBeUndefined();
    const m = resolveModel({ inputs: 1, layers: [{ neuron: 'ltc', size: 2 }], readout: { size: 3, kind: 'ltc' } }, registries);
    expect(m.readout.readout).toBe(ltcReadout);
    expect(m.readout.leak).toBeUndefined();
    let error: unknown;
    try {
      resolveModel({ inputs: 1, layers: [{ neuron: 'ltc', size: 2 }], readout: { size: 3, kind: 'ltc', kappa: 0.5 } }, registries);
    } catch (e) {
      error = e;
    }
    expect(isSpikeflowError(error, 'CONFIG_INVALID')).toBe(true);
    expect(String((error as Error).message)).toBe(`model.readout.kappa: is an option of the 'leaky' readout, not of 'ltc'; remove it or use "kind": "leaky"`);
  });

  it('refuses an adaptation strength on the fixed-threshold variant, naming the field', () => {
    let error: unknown;
    try {
      resolveModel({ inputs: 1, layers: [{ neuron: 'ltc', size: 2, params: { threshold: 'fixed', beta: 1 } }], readout: { size: 1 } }, registries);
    } catch (e) {
      error = e;
    }
    expect(isSpikeflowError(error, 'CONFIG_INVALID')).toBe(true);
    expect(String(error)).toContain('model.layers[0].params.beta');
  });

  it('is a valid plugin, loadable by package name', async () => {
    const [loaded] = await loadPlugins(['@spikeflow/neuron-ltc'], { from: import.meta.url });
    expect(loaded!.meta.name).toBe('@spikeflow/neuron-ltc');
    expect(createRegistry([plugin]).neurons.get('ltc')).toBe(ltc);
  });
});

describe('gradient fixtures of LTC-SN (PyTorch float64 references)', () => {
  // fixtures-generated/ltc of @spikeflow/testing, written by its tools/make_fixtures.py: adaptive
  // LTC-SN + LTC readout, fixed-threshold LTC-SN read from the membrane (adding problem), LTC-SN
  // then LIF. Dynamic imports keep this block self-contained at the end of the file.
  const load = async () => {
    const [{ createRequire }, { dirname, join }, testing, lif, bptt, backendWasm, backendCpu] = await Promise.all([
      import('node:module'),
      import('node:path'),
      import('@spikeflow/testing'),
      import('@spikeflow/neuron-lif'),
      import('@spikeflow/rule-bptt'),
      import('@spikeflow/backend-wasm'),
      import('@spikeflow/backend-cpu'),
    ]);
    const testingDir = dirname(createRequire(import.meta.url).resolve('@spikeflow/testing/package.json'));
    return {
      dir: join(testingDir, 'fixtures-generated', 'ltc'),
      check: testing.checkFixtureDir,
      plugins: [plugin, lif.default, bptt.default, backendWasm.default, backendCpu.default],
    };
  };

  for (const backend of ['wasm', 'cpu'] as const) {
    it(`every LTC fixture passes on ${backend}: identical spikes, loss/readout/state/grads/tbptt within 1e-4`, async () => {
      const { dir, check, plugins } = await load();
      const reports = await check(dir, { backend, plugins });
      expect(reports.map((r) => r.name).sort()).toEqual(['ltc_adaptive_ltc_readout', 'ltc_fixed_membrane_add', 'ltc_then_lif_ce_every_step']);
      for (const r of reports) {
        expect(r.failures, r.name).toEqual([]);
        expect(r.spikeMismatches, r.name).toBe(0);
        expect(r.worst, r.name).toBeLessThan(1e-4);
      }
      await wasm.activate();
    });
  }
});

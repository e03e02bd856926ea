import { beforeAll, describe, expect, it } from 'vitest';
import { tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';
import { defineNeuron, type AnyNeuronModel } from './neuron.js';
import { builtinSurrogates } from './surrogates.js';
import { configError } from './validate.js';
import { KernelTable } from './kernels.js';
import { disposeTree, treeLeaves } from './state.js';
import { createRng } from './random.js';
import { buildNetwork, detach, type Network } from './network.js';
import { neuronParamTensor } from './params.js';
import { defineReadout, leakyReadout } from './readout.js';
import { resolveModel, type ModelRegistries } from './model.js';
import { splitSteps, stepsOf } from './steps.js';
import { advance, unroll } from './loops.js';
import { checkInputs, forward } from './inference.js';
import { errorOf, iaf, referenceFusedKernels, useCpuBackend, fusableIaf } from './test-support.js';

useCpuBackend();

/** Leaky neuron with a trainable decay clamped to [0, 1], scalar or one per neuron; checks lo < hi. */
const leaky = defineNeuron({
  name: 'leaky',
  description: 'leaky integrate-and-fire with trainable decay (test neuron)',
  configSchema: {
    beta: { type: 'number', default: 0.9, min: 0, max: 1 },
    perNeuron: { type: 'boolean', default: false },
    lo: { type: 'number', default: 0 },
    hi: { type: 'number', default: 1 },
  },
  stateKeys: ['v', 's'],
  validate: (c, path) => {
    if (c.lo >= c.hi) throw configError(`${path}.hi`, `must be > lo (${c.lo}), got ${c.hi}`);
  },
  tensorParams: (c, n) => ({
    beta: { value: c.perNeuron ? new Float32Array(n).fill(c.beta) : c.beta, trainable: true, range: [0, 1] },
  }),
  init: (b, n) => ({ v: tf.zeros([b, n]), s: tf.zeros([b, n]) }),
  step: ({ tensors }, st: { v: Tensor; s: Tensor }, current, { spike }) => {
    const v = tf.sub(tf.add(tf.mul(tensors['beta']!, st.v), current), st.s);
    const s = spike(tf.sub(v, 1));
    return { state: { v, s }, spikes: s };
  },
});

/**
 * A readout with a learned gate (a liquid-time-constant readout's equations): tests the
 * readout contract — options, tensor parameters drawn after W and b, a step that uses them.
 */
const gatedReadout = defineReadout({
  name: 'gated',
  description: 'y_t = y_{t−1} + σ([d_t ; y_{t−1}]·W_κ + b_κ)·(d_t − y_{t−1}) (test readout)',
  optionsSchema: {},
  tensorParams: (_o, size) => ({
    W_kappa: { value: { uniform: 1 / Math.sqrt(2 * size) }, shape: [2 * size, size], trainable: true },
    b_kappa: { value: { uniform: 1 / Math.sqrt(2 * size) }, shape: [size], trainable: true },
  }),
  step: ({ tensors, dense }, y, d) =>
    tf.add(y, tf.mul(tf.sigmoid(tf.add(dense(tf.concat([d, y], 1), tensors['W_kappa']!), tensors['b_kappa']!)), tf.sub(d, y))),
});

const reg: ModelRegistries = {
  neurons: new Map<string, AnyNeuronModel>([
    ['iaf', iaf],
    ['leaky', leaky],
  ]),
  surrogates: builtinSurrogates,
  readouts: [gatedReadout],
};

const spec = (over: Record<string, unknown> = {}, layer: Record<string, unknown> = {}) => ({
  inputs: 3,
  layers: [{ neuron: 'iaf', size: 4, ...layer }],
  readout: { size: 2 },
  ...over,
});

/** A seeded 0/1 input `[T, B, C]`. */
function spikeInput(T: number, B: number, C: number, seed: number, p = 0.5): Tensor {
  const rand = createRng(seed);
  return tf.tensor3d(Array.from({ length: T }, () => Array.from({ length: B }, () => Array.from({ length: C }, () => (rand() < p ? 1 : 0)))));
}

const arr = (t: Tensor) => Array.from(t.dataSync());

describe('resolveModel: errors name the field', () => {
  it('unknown neuron: UNKNOWN_NAME, lists the known neurons, suggests a close one and the install command', () => {
    const e = errorOf(() => resolveModel(spec({}, { neuron: 'iaff' }), reg));
    expect(e.code).toBe('UNKNOWN_NAME');
    expect(e.details.path).toBe('model.layers[0].neuron');
    expect(e.details['name']).toBe('iaff');
    expect(e.message).toContain("model.layers[0].neuron: unknown neuron 'iaff'; did you mean 'iaf'? (known: 'iaf', 'leaky')");
    expect(e.message).toContain('pnpm add @spikeflow/neuron-iaff');
    expect(e.message).toContain('"plugins"');
    const noneInstalled = errorOf(() => resolveModel(spec({}, { neuron: 'adex' }), { neurons: new Map(), surrogates: builtinSurrogates }));
    expect(noneInstalled.message).toContain("unknown neuron 'adex'; (none is known)");
    expect(noneInstalled.message).toContain('pnpm add @spikeflow/neuron-adex');
  });

  it('names the layer index of a later layer', () => {
    const e = errorOf(() =>
      resolveModel(
        spec({
          layers: [
            { neuron: 'iaf', size: 4 },
            { neuron: 'lfi', size: 2 },
          ],
        }),
        reg,
      ),
    );
    expect(e.details.path).toBe('model.layers[1].neuron');
    const size = errorOf(() =>
      resolveModel(
        spec({
          layers: [
            { neuron: 'iaf', size: 4 },
            { neuron: 'iaf', size: 0 },
          ],
        }),
        reg,
      ),
    );
    expect(size.details.path).toBe('model.layers[1].size');
  });

  it('a missing or non-string neuron is CONFIG_INVALID', () => {
    for (const layer of [{ size: 2 }, { neuron: 3, size: 2 }]) {
      const e = errorOf(() => resolveModel({ inputs: 1, layers: [layer], readout: { size: 1 } }, reg));
      expect(e.code).toBe('CONFIG_INVALID');
      expect(e.details.path).toBe('model.layers[0].neuron');
    }
  });

  it('negative, zero, fractional or missing size: CONFIG_INVALID at model.layers[0].size', () => {
    const neg = errorOf(() => resolveModel(spec({}, { size: -3 }), reg));
    expect(neg.code).toBe('CONFIG_INVALID');
    expect(neg.details.path).toBe('model.layers[0].size');
    expect(neg.message).toBe('model.layers[0].size: must be >= 1, got -3');
    expect(errorOf(() => resolveModel(spec({}, { size: 0 }), reg)).details.path).toBe('model.layers[0].size');
    expect(errorOf(() => resolveModel(spec({}, { size: 2.5 }), reg)).message).toBe('model.layers[0].size: expected an integer, got 2.5');
    expect(errorOf(() => resolveModel({ inputs: 1, layers: [{ neuron: 'iaf' }], readout: { size: 1 } }, reg)).message).toMatch(
      /^model\.layers\[0\]\.size: is required/,
    );
  });

  it('a misspelled layer key is refused with a suggestion', () => {
    const e = errorOf(() => resolveModel(spec({}, { recurent: true }), reg));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.details.path).toBe('model.layers[0].recurent');
    expect(e.details['suggestion']).toBe('recurrent');
    expect(e.message).toMatch(/^model\.layers\[0\]\.recurent: unknown key; did you mean 'recurrent'\?/);
  });

  it('bad layer flags and gain', () => {
    expect(errorOf(() => resolveModel(spec({}, { recurrent: 'yes' }), reg)).details.path).toBe('model.layers[0].recurrent');
    expect(errorOf(() => resolveModel(spec({}, { bias: 1 }), reg)).details.path).toBe('model.layers[0].bias');
    expect(errorOf(() => resolveModel(spec({}, { gain: 0 }), reg)).message).toBe('model.layers[0].gain: must be > 0, got 0');
  });

  it('readout: kappa outside [0, 1], bad size, unknown key, missing readout', () => {
    const high = errorOf(() => resolveModel(spec({ readout: { size: 2, kappa: 1.5 } }), reg));
    expect(high.code).toBe('CONFIG_INVALID');
    expect(high.details.path).toBe('model.readout.kappa');
    expect(high.message).toBe('model.readout.kappa: must be <= 1, got 1.5');
    expect(errorOf(() => resolveModel(spec({ readout: { size: 2, kappa: -0.1 } }), reg)).message).toBe('model.readout.kappa: must be >= 0, got -0.1');
    expect(resolveModel(spec({ readout: { size: 2, kappa: 0 } }), reg).readout.options['kappa']).toBe(0);
    expect(resolveModel(spec({ readout: { size: 2, kappa: 1 } }), reg).readout.options['kappa']).toBe(1);
    expect(errorOf(() => resolveModel(spec({ readout: { size: 0 } }), reg)).details.path).toBe('model.readout.size');
    expect(errorOf(() => resolveModel(spec({ readout: { size: 2, kapa: 0.5 } }), reg)).message).toMatch(
      /^model\.readout\.kapa: unknown key; did you mean 'kappa'\?/,
    );
    const missing = errorOf(() => resolveModel({ inputs: 3, layers: [{ neuron: 'iaf', size: 4 }] }, reg));
    expect(missing.details.path).toBe('model.readout');
    expect(missing.message).toBe('model.readout: expected an object, got nothing');
  });

  it('unknown surrogate name or parameter, at model and at layer level', () => {
    const model = errorOf(() => resolveModel(spec({ surrogate: { name: 'fast_sigmod' } }), reg));
    expect(model.code).toBe('UNKNOWN_NAME');
    expect(model.details.path).toBe('model.surrogate.name');
    expect(model.message).toMatch(/^model\.surrogate\.name: unknown surrogate 'fast_sigmod'; did you mean 'fast_sigmoid'\?/);
    const layer = errorOf(() => resolveModel(spec({}, { surrogate: { name: 'gauss' } }), reg));
    expect(layer.code).toBe('UNKNOWN_NAME');
    expect(layer.details.path).toBe('model.layers[0].surrogate.name');
    const param = errorOf(() => resolveModel(spec({}, { surrogate: { name: 'arctan', alpah: 2 } }), reg));
    expect(param.code).toBe('CONFIG_INVALID');
    expect(param.details.path).toBe('model.layers[0].surrogate.alpah');
    expect(param.message).toMatch(/did you mean 'alpha'/);
    expect(errorOf(() => resolveModel(spec({ surrogate: { name: 'sigmoid', slope: -1 } }), reg)).details.path).toBe('model.surrogate.slope');
  });

  it('bad neuron params: unknown key, out of range, not an object, and the neuron’s own validate()', () => {
    const unknown = errorOf(() => resolveModel(spec({}, { params: { treshold: 1 } }), reg));
    expect(unknown.code).toBe('CONFIG_INVALID');
    expect(unknown.details.path).toBe('model.layers[0].params.treshold');
    expect(unknown.message).toMatch(/^model\.layers\[0\]\.params\.treshold: unknown key; did you mean 'threshold'\?/);
    expect(errorOf(() => resolveModel(spec({}, { params: { threshold: 0 } }), reg)).message).toBe('model.layers[0].params.threshold: must be > 0, got 0');
    expect(errorOf(() => resolveModel(spec({}, { params: [1] }), reg)).details.path).toBe('model.layers[0].params');
    const relation = errorOf(() => resolveModel(spec({}, { neuron: 'leaky', params: { lo: 2, hi: 1 } }), reg));
    expect(relation.details.path).toBe('model.layers[0].params.hi');
    expect(relation.message).toBe('model.layers[0].params.hi: must be > lo (2), got 1');
  });

  it('inputs, layers and the model itself', () => {
    expect(errorOf(() => resolveModel(spec({ inputs: 0 }), reg)).details.path).toBe('model.inputs');
    expect(errorOf(() => resolveModel(spec({ inputs: '3' }), reg)).details.path).toBe('model.inputs');
    expect(errorOf(() => resolveModel(spec({ inputs: undefined }), reg)).message).toMatch(/^model\.inputs: is required/);
    expect(errorOf(() => resolveModel(spec({ layers: [] }), reg)).details.path).toBe('model.layers');
    expect(errorOf(() => resolveModel(spec({ layers: { neuron: 'iaf', size: 1 } }), reg)).details.path).toBe('model.layers');
    expect(errorOf(() => resolveModel(spec({ layers: ['iaf'] }), reg)).details.path).toBe('model.layers[0]');
    expect(errorOf(() => resolveModel(spec({ inputz: 3 }), reg)).message).toMatch(/^model\.inputz: unknown key; did you mean 'inputs'\?/);
    expect(errorOf(() => resolveModel(null, reg)).details.path).toBe('model');
  });

  it('uses the path it is given', () => {
    expect(errorOf(() => resolveModel(spec({}, { size: -1 }), reg, 'run.model')).details.path).toBe('run.model.layers[0].size');
  });

  it('fills defaults, chains fan-in, and applies per-layer surrogates', () => {
    const m = resolveModel(
      {
        inputs: 5,
        layers: [
          { neuron: 'iaf', size: 4, params: { threshold: 0.5 } },
          { neuron: 'leaky', size: 3, recurrent: true, bias: false, gain: 2, surrogate: { name: 'triangle', width: 0.5 } },
        ],
        readout: { size: 2 },
      },
      reg,
    );
    expect(m.inputs).toBe(5);
    expect(m.layers.map((l) => [l.index, l.neuron.name, l.size, l.fanIn, l.recurrent, l.bias, l.gain])).toEqual([
      [0, 'iaf', 4, 5, false, true, 1],
      [1, 'leaky', 3, 4, true, false, 2],
    ]);
    expect(m.layers[0]!.config).toEqual({ threshold: 0.5 });
    expect(m.layers[1]!.config).toEqual({ beta: 0.9, perNeuron: false, lo: 0, hi: 1 });
    expect([m.layers[0]!.surrogate.name, m.layers[0]!.surrogate.params]).toEqual(['fast_sigmoid', { slope: 25 }]);
    expect([m.layers[1]!.surrogate.name, m.layers[1]!.surrogate.params]).toEqual(['triangle', { gamma: 0.3, width: 0.5 }]);
    expect(m.readout).toEqual({
      size: 2,
      kind: 'leaky',
      from: 'spikes',
      bias: true,
      gain: 1,
      options: { kappa: 0.9 },
      readout: leakyReadout,
      leak: 0.9,
      synapse: true,
    });
    const withDefault = resolveModel(spec({ surrogate: { name: 'arctan', alpha: 3 } }), reg);
    expect(withDefault.layers[0]!.surrogate.params).toEqual({ alpha: 3 });
  });

  it('a refused spec allocates no tensor', () => {
    const before = tf.memory().numTensors;
    expect(() => buildNetwork(spec({ readout: { size: 2, kappa: 2 } }), reg)).toThrow(SpikeflowError);
    expect(() => buildNetwork(spec({}, { params: { threshold: -1 } }), reg)).toThrow(SpikeflowError);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('Network parameters', () => {
  it('names and shapes: [fan_in, fan_out] matrices, per-layer options respected', () => {
    const net = buildNetwork(
      {
        inputs: 3,
        layers: [
          { neuron: 'iaf', size: 5, recurrent: true },
          { neuron: 'iaf', size: 4, bias: false },
        ],
        readout: { size: 2 },
      },
      reg,
    );
    expect(Object.fromEntries(Object.entries(net.params).map(([k, v]) => [k, v.shape]))).toEqual({
      'layers.0.W': [3, 5],
      'layers.0.b': [5],
      'layers.0.W_rec': [5, 5],
      'layers.1.W': [5, 4],
      'readout.W': [4, 2],
      'readout.b': [2],
    });
    expect(Object.values(net.params).every((v) => v.trainable)).toBe(true);
    expect([net.inputs, net.outputs]).toEqual([3, 2]);
    net.dispose();
    const noBias = buildNetwork(spec({ readout: { size: 2, bias: false } }), reg);
    expect(Object.keys(noBias.params).sort()).toEqual(['layers.0.W', 'layers.0.b', 'readout.W']);
    noBias.dispose();
  });

  it('trainable neuron parameters become named variables (scalar or per neuron); fixed ones do not', () => {
    const a = buildNetwork(spec({}, { neuron: 'leaky', params: { beta: 0.8 } }), reg);
    expect(a.params['layers.0.beta']!.shape).toEqual([]);
    expect(a.params['layers.0.beta']!.dataSync()[0]).toBeCloseTo(0.8, 6);
    expect(a.params['layers.0.threshold']).toBeUndefined();
    a.dispose();
    const b = buildNetwork(spec({}, { neuron: 'leaky', params: { beta: 0.7, perNeuron: true } }), reg);
    expect(b.params['layers.0.beta']!.shape).toEqual([4]);
    expect(arr(b.params['layers.0.beta']!).map((v) => Math.round(v * 1e6) / 1e6)).toEqual([0.7, 0.7, 0.7, 0.7]);
    b.dispose();
  });

  it('prepare() clamps trainable neuron parameters to their range, and refuses a disposed network', () => {
    const net = buildNetwork(spec({}, { neuron: 'leaky', params: { perNeuron: true } }), reg);
    net.setParams({ 'layers.0.beta': [1.7, -0.3, 0.5, 1] });
    const clamped = tf.tidy(() => arr(net.prepare().layers[0]!.neuron['beta']!));
    expect(clamped).toEqual([1, 0, 0.5, 1]);
    expect(arr(net.params['layers.0.beta']!)).toEqual([1.7, -0.3, 0.5, 1].map(Math.fround));
    net.dispose();
    const e = errorOf(() => net.prepare());
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toMatch(/disposed/);
  });

  it('initialisation: uniform within ±gain/√fan_in, seeded', () => {
    const net = buildNetwork(spec({ readout: { size: 3, gain: 0.5 } }, { recurrent: true, gain: 2, size: 16 }), reg, { seed: 3 });
    const bound = (name: string, b: number) => {
      const v = arr(net.params[name]!);
      expect(Math.max(...v.map(Math.abs)), name).toBeLessThanOrEqual(b);
      // Uniform over the interval, not a constant: the values spread over most of it.
      expect(Math.max(...v) - Math.min(...v), name).toBeGreaterThan(b);
    };
    bound('layers.0.W', 2 / Math.sqrt(3));
    bound('layers.0.W_rec', 2 / Math.sqrt(16));
    bound('readout.W', 0.5 / Math.sqrt(16));
    net.dispose();
  });

  it('selfConnections: false masks the diagonal of W_rec: zero at init, no effect on the forward pass, zero gradient', () => {
    const masked = buildNetwork(spec({}, { recurrent: true, selfConnections: false, size: 5 }), reg, { seed: 2 });
    const full = buildNetwork(spec({}, { recurrent: true, size: 5 }), reg, { seed: 2 });
    const wm = arr(masked.params['layers.0.W_rec']!);
    const wf = arr(full.params['layers.0.W_rec']!);
    // Same draws as the unmasked network off the diagonal, zeros on it.
    wm.forEach((w, i) => expect(w + 0).toBe(i % 6 === 0 ? 0 : wf[i]));
    expect(arr(masked.params['layers.0.W']!)).toEqual(arr(full.params['layers.0.W']!));
    // A diagonal that someone sets has no effect on the output and gets no gradient.
    const x = spikeInput(6, 2, 3, 4);
    const before = forward(masked, x);
    masked.setParams({ 'layers.0.W_rec': wm.map((w, i) => (i % 6 === 0 ? 3 : w)) });
    const after = forward(masked, x);
    expect(arr(after.readout)).toEqual(arr(before.readout));
    const g = tf.variableGrads(() => {
      const p = masked.prepare();
      let st = masked.init(2);
      const ys: Tensor[] = [];
      unroll(masked, p, st, stepsOf(x), 0, 6, (_, out) => ys.push(out.readout));
      st = undefined as never;
      return tf.sum(tf.stack(ys)) as tf.Scalar;
    }, [masked.params['layers.0.W_rec']!]);
    const gw = arr(Object.values(g.grads)[0]!);
    expect(gw.filter((_, i) => i % 6 === 0).map((v) => v + 0)).toEqual([0, 0, 0, 0, 0]);
    expect(gw.some((v, i) => i % 6 !== 0 && v !== 0)).toBe(true);
    disposeTree([before, after, g.grads, g.value, x] as never);
    expect(errorOf(() => resolveModel(spec({}, { selfConnections: false }), reg)).message).toMatch(
      /model\.layers\[0\]\.selfConnections: only a recurrent layer/,
    );
    masked.dispose();
    full.dispose();
  });

  it("step reports each layer's input current I_t, and advance frees it", () => {
    const net = buildNetwork(spec({}, { recurrent: true }), reg);
    const x = spikeInput(1, 2, 3, 5);
    const p = net.prepare();
    const st = net.init(2);
    const out = net.step(p, st, stepsOf(x).at(0));
    const want = tf.tidy(() =>
      tf.add(
        tf.add(tf.matMul(stepsOf(x).at(0), net.params['layers.0.W']!), net.params['layers.0.b']!),
        tf.matMul(st.layers[0]!.spikes, net.params['layers.0.W_rec']!),
      ),
    );
    expect(arr(out.currents[0]!)).toEqual(arr(want));
    disposeTree([out.state, out.currents, want, st, x] as never);
    const count = tf.memory().numTensors;
    const s0 = net.init(2);
    const xs = spikeInput(4, 2, 3, 6);
    disposeTree(advance(net, s0, stepsOf(xs), 0, 4) as never);
    disposeTree([s0, xs] as never);
    expect(tf.memory().numTensors).toBe(count);
    net.dispose();
  });

  it('prepare({ synapse }) routes every synaptic product through the hook, naming its site; the default is dense', () => {
    const net = buildNetwork(
      {
        inputs: 3,
        layers: [
          { neuron: 'iaf', size: 4, recurrent: true },
          { neuron: 'iaf', size: 2 },
        ],
        readout: { size: 2 },
      },
      reg,
    );
    const x = spikeInput(1, 2, 3, 7);
    const st = net.init(2);
    const sites: string[] = [];
    // A hook that doubles every product: the readout must show it on every path.
    const hooked = net.step(
      net.prepare({
        synapse: (xx, w, site, dense) => {
          expect(w).toBe(net.params[site.param]);
          sites.push(`${site.layer}/${site.weight}/${site.param}`);
          return tf.mul(dense(xx, w), 2);
        },
      }),
      st,
      stepsOf(x).at(0),
    );
    expect(sites).toEqual(['0/W/layers.0.W', '0/W_rec/layers.0.W_rec', '1/W/layers.1.W', 'readout/W/readout.W']);
    const plain = net.step(net.prepare(), st, stepsOf(x).at(0));
    const want = tf.tidy(() => tf.add(tf.matMul(stepsOf(x).at(0), net.params['layers.0.W']!), net.params['layers.0.b']!));
    expect(arr(plain.currents[0]!)).toEqual(arr(want));
    const twice = tf.tidy(() => tf.add(tf.mul(tf.matMul(stepsOf(x).at(0), net.params['layers.0.W']!), 2), net.params['layers.0.b']!));
    expect(arr(hooked.currents[0]!)).toEqual(arr(twice));
    disposeTree([hooked.state, hooked.currents, plain.state, plain.currents, want, twice, st, x] as never);
    net.dispose();
  });

  it('same seed, same weights; different seed, different weights; default seed is 0', () => {
    const s = spec({}, { recurrent: true });
    const [a, b, c, d] = [buildNetwork(s, reg, { seed: 7 }), buildNetwork(s, reg, { seed: 7 }), buildNetwork(s, reg, { seed: 8 }), buildNetwork(s, reg)];
    const e = buildNetwork(s, reg, { seed: 0 });
    const pa = a.getParams();
    expect(b.getParams()).toEqual(pa);
    expect(d.getParams()).toEqual(e.getParams());
    const pc = c.getParams();
    for (const name of Object.keys(pa)) expect(Array.from(pc[name]!.values), name).not.toEqual(Array.from(pa[name]!.values));
    // Within one network every parameter gets its own draw.
    expect(Array.from(pa['layers.0.b']!.values)).not.toEqual(Array.from(pa['layers.0.W']!.values).slice(0, 4));
    for (const n of [a, b, c, d, e]) n.dispose();
  });

  it('getParams reports shape and values', () => {
    const net = buildNetwork(spec(), reg);
    net.setParams({ 'readout.b': [0.25, -0.5] });
    const p = net.getParams();
    expect(Object.keys(p).sort()).toEqual(['layers.0.W', 'layers.0.b', 'readout.W', 'readout.b']);
    expect(p['layers.0.W']!.shape).toEqual([3, 4]);
    expect(p['layers.0.W']!.values).toBeInstanceOf(Float32Array);
    expect(p['layers.0.W']!.values).toHaveLength(12);
    expect(Array.from(p['readout.b']!.values)).toEqual([0.25, -0.5]);
    net.dispose();
  });

  it('setParams accepts flat arrays, nested arrays, typed arrays and tensors (which it does not dispose)', () => {
    const net = buildNetwork(spec(), reg);
    const W = [
      [1, 2, 3, 4],
      [5, 6, 7, 8],
      [9, 10, 11, 12],
    ];
    net.setParams({ 'layers.0.W': W });
    expect(arr(net.params['layers.0.W']!)).toEqual(W.flat());
    net.setParams({ 'layers.0.W': W.flat().map((v) => -v) });
    expect(arr(net.params['layers.0.W']!)).toEqual(W.flat().map((v) => -v));
    net.setParams({ 'layers.0.b': new Float32Array([0.5, 0.25, 0, -1]) });
    expect(arr(net.params['layers.0.b']!)).toEqual([0.5, 0.25, 0, -1]);
    const t = tf.tensor1d([3, 4]);
    const before = tf.memory().numTensors;
    net.setParams({ 'readout.b': t });
    expect(t.isDisposed).toBe(false);
    expect(arr(net.params['readout.b']!)).toEqual([3, 4]);
    expect(tf.memory().numTensors).toBe(before);
    t.dispose();
    net.dispose();
  });

  it('setParams: a wrong size is SHAPE_MISMATCH, an unknown name UNKNOWN_NAME with a suggestion; nothing changes', () => {
    const net = buildNetwork(spec(), reg);
    const W = arr(net.params['layers.0.W']!);
    const e = errorOf(() => net.setParams({ 'layers.0.W': [1, 2] }));
    expect(e.code).toBe('SHAPE_MISMATCH');
    expect(e.details['name']).toBe('layers.0.W');
    expect(e.message).toBe("setParams: 'layers.0.W' has shape [3,4], got 2 values");
    expect(arr(net.params['layers.0.W']!)).toEqual(W);
    const unknown = errorOf(() => net.setParams({ 'layers.0.w_rec': [1] }));
    expect(unknown.code).toBe('UNKNOWN_NAME');
    expect(unknown.details['name']).toBe('layers.0.w_rec');
    expect(unknown.message).toMatch(/^setParams: no parameter 'layers\.0\.w_rec'; did you mean/);
    net.dispose();
  });

  it('setParams leaks no tensor when it refuses a wrong size or shape, and getParams returns copies', () => {
    const net = buildNetwork(spec(), reg);
    const before = tf.memory().numTensors;
    expect(() => net.setParams({ 'layers.0.W': [1, 2] })).toThrow(SpikeflowError);
    const [fanIn, size] = net.params['layers.0.W']!.shape as [number, number];
    const transposed = Array.from({ length: size }, () => Array.from({ length: fanIn }, () => 0.5));
    if (fanIn !== size) expect(() => net.setParams({ 'layers.0.W': transposed })).toThrow(/has shape \[\d+,\d+\], got shape \[\d+,\d+\]/);
    expect(tf.memory().numTensors).toBe(before);
    const copy = net.getParams()['layers.0.W']!;
    const was = net.params['layers.0.W']!.dataSync()[0];
    copy.values[0] = 99;
    expect(net.params['layers.0.W']!.dataSync()[0]).toBe(was);
    net.dispose();
  });

  it('reads the surrogate list more than once (per-layer surrogates from an iterator)', () => {
    const m = resolveModel(spec({}, { surrogate: { name: 'arctan', alpha: 3 } }), { neurons: reg.neurons, surrogates: builtinSurrogates.values() });
    expect(m.layers[0]!.surrogate.name).toBe('arctan');
  });

  it('build + dispose leaks nothing; dispose is idempotent', () => {
    const before = tf.memory().numTensors;
    const net = buildNetwork(spec({}, { neuron: 'leaky', recurrent: true }), reg);
    expect(tf.memory().numTensors).toBeGreaterThan(before);
    net.dispose();
    net.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('forward', () => {
  let net: Network;
  beforeAll(() => {
    net = buildNetwork(
      {
        inputs: 3,
        layers: [
          { neuron: 'iaf', size: 6, recurrent: true, gain: 3 },
          { neuron: 'leaky', size: 5, gain: 3 },
        ],
        readout: { size: 2 },
      },
      reg,
      { seed: 1 },
    );
  });

  it('returns readout [T, B, O] and, with record, spikes [T, B, H] of 0/1 per layer', () => {
    const x = spikeInput(9, 2, 3, 11);
    const out = forward(net, x, { record: true });
    expect(out.readout.shape).toEqual([9, 2, 2]);
    expect(out.spikes!.map((s) => s.shape)).toEqual([
      [9, 2, 6],
      [9, 2, 5],
    ]);
    const all = out.spikes!.flatMap(arr);
    expect(all.every((v) => v === 0 || v === 1)).toBe(true);
    expect(all).toContain(1);
    expect(all).toContain(0);
    // The final state is that of the last step.
    expect(out.state.readout.shape).toEqual([2, 2]);
    expect(arr(out.state.readout)).toEqual(arr(out.readout).slice(8 * 4));
    expect(arr(out.state.layers[1]!.spikes)).toEqual(arr(out.spikes![1]!).slice(8 * 10));
    disposeTree(out as never);
    const plain = forward(net, x);
    expect(plain.spikes).toBeUndefined();
    disposeTree(plain as never);
    x.dispose();
  });

  it('leaks no tensors after disposeTree(result), with and without record', () => {
    const x = spikeInput(12, 3, 3, 5);
    for (const record of [false, true]) {
      const before = tf.memory().numTensors;
      const out = forward(net, x, { record });
      disposeTree(out as never);
      expect(tf.memory().numTensors, `record=${record}`).toBe(before);
    }
    x.dispose();
  });

  it('continues from a given state exactly, leaving that state to the caller', () => {
    const x = spikeInput(10, 2, 3, 21);
    const [x1, x2] = [x.slice([0, 0, 0], [4, 2, 3]), x.slice([4, 0, 0], [6, 2, 3])];
    const whole = forward(net, x);
    const before = tf.memory().numTensors;
    const first = forward(net, x1);
    const second = forward(net, x2, { state: first.state });
    expect(treeLeaves(first.state as never).every((t) => !t.isDisposed)).toBe(true);
    expect([...arr(first.readout), ...arr(second.readout)]).toEqual(arr(whole.readout));
    disposeTree(first as never);
    disposeTree(second as never);
    expect(tf.memory().numTensors).toBe(before);
    disposeTree([whole as never, x, x1, x2]);
  });

  it('is deterministic and independent of the batch composition', () => {
    const x = spikeInput(8, 3, 3, 4);
    const a = forward(net, x);
    const b = forward(net, x);
    expect(arr(a.readout)).toEqual(arr(b.readout));
    // Sample 1 alone gives the same readout as in the batch.
    const x1 = x.slice([0, 1, 0], [8, 1, 3]);
    const single = forward(net, x1);
    const inBatch = tf.tidy(() => arr(a.readout.slice([0, 1, 0], [8, 1, 2])));
    arr(single.readout).forEach((v, i) => expect(v).toBeCloseTo(inBatch[i]!, 5));
    disposeTree([a as never, b as never, single as never, x, x1]);
  });

  it('checks the input shape before running', () => {
    const before = tf.memory().numTensors;
    const wrongChannels = tf.zeros([7, 2, 5]);
    const e = errorOf(() => forward(net, wrongChannels));
    expect(e.code).toBe('SHAPE_MISMATCH');
    expect(e.message).toBe('inputs must be time-major [T, B, 3] (the model\'s "inputs"), got [7,2,5]');
    expect(e.details['expected']).toEqual([null, null, 3]);
    expect(e.details['actual']).toEqual([7, 2, 5]);
    const rank2 = tf.zeros([7, 3]);
    expect(errorOf(() => checkInputs(net, rank2)).code).toBe('SHAPE_MISMATCH');
    const rank4 = tf.zeros([2, 1, 1, 3]);
    expect(errorOf(() => checkInputs(net, rank4)).code).toBe('SHAPE_MISMATCH');
    const ok = tf.zeros([1, 1, 3]);
    expect(() => checkInputs(net, ok)).not.toThrow();
    tf.dispose([wrongChannels, rank2, rank4, ok]);
    // The refused forward() allocated nothing.
    expect(tf.memory().numTensors).toBe(before);
  });

  it('uses a fast kernel registered for the active backend, and only that backend', () => {
    let calls = 0;
    const kernels = new KernelTable();
    kernels.register({
      kernel: 'spikeflow.dense',
      backend: 'cpu',
      impl: (x, w) => {
        calls++;
        return tf.matMul(x, w);
      },
    });
    const s = spec({}, { recurrent: true });
    const fast = buildNetwork(s, reg, { seed: 2, kernels });
    const ref = buildNetwork(s, reg, { seed: 2 });
    const x = spikeInput(5, 2, 3, 9);
    const a = forward(fast, x);
    // Per step: input dense, recurrent dense, readout dense.
    expect(calls).toBe(5 * 3);
    const b = forward(ref, x);
    expect(arr(a.readout)).toEqual(arr(b.readout));
    const wasmOnly = new KernelTable();
    wasmOnly.register({
      kernel: 'spikeflow.dense',
      backend: 'wasm',
      impl: () => {
        throw new Error('must not run on cpu');
      },
    });
    const other = buildNetwork(s, reg, { seed: 2, kernels: wasmOnly });
    const c = forward(other, x);
    expect(arr(c.readout)).toEqual(arr(b.readout));
    disposeTree([a as never, b as never, c as never, x]);
    for (const n of [fast, ref, other]) n.dispose();
  });
});

describe('neuron tensor parameters of any shape, and a gated readout', () => {
  const gated = defineNeuron({
    name: 'gated',
    description: 'test neuron: v_t = σ([I ; v]·G + g)·I, spikes above 0.5',
    configSchema: {},
    stateKeys: ['v'],
    tensorParams: (_c, size) => ({
      G: { value: { uniform: 0.5 }, shape: [2 * size, size], trainable: true },
      g: { value: 0.25, shape: [size], trainable: false },
      k: { value: new Float32Array([1, 2, 3, 4, 5, 6]), shape: [2, 3], trainable: false },
    }),
    init: (batch, size) => ({ v: tf.zeros([batch, size]) }),
    step({ tensors }, state, current, { spike, dense }) {
      const v = tf.mul(tf.sigmoid(tf.add(dense(tf.concat([current, state['v']!], 1), tensors['G']!), tensors['g']!)), current);
      return { state: { v }, spikes: spike(tf.sub(v, 0.5)) };
    },
  });
  const gatedReg = { neurons: new Map([['gated', gated]]), surrogates: builtinSurrogates };

  it('a matrix parameter is drawn from the seed within its bound; constants take their shape', () => {
    const make = (seed: number) => buildNetwork({ inputs: 2, layers: [{ neuron: 'gated', size: 3 }], readout: { size: 1 } }, gatedReg, { seed });
    const [a, b, c] = [make(1), make(1), make(2)];
    const G = a.params['layers.0.G']!;
    expect(G.shape).toEqual([6, 3]);
    expect(arr(G)).toEqual(arr(b.params['layers.0.G']!));
    expect(arr(G)).not.toEqual(arr(c.params['layers.0.G']!));
    expect(arr(G).every((v) => Math.abs(v) <= 0.5)).toBe(true);
    expect(Object.keys(a.params)).not.toContain('layers.0.g');
    const p = a.prepare();
    expect(p.layers[0]!.neuron['g']!.shape).toEqual([3]);
    expect(p.layers[0]!.neuron['k']!.shape).toEqual([2, 3]);
    [a, b, c].forEach((n) => n.dispose());
  });

  it('a parameter whose values do not fill its shape, or a uniform one without a shape, is PLUGIN_INVALID', () => {
    const bad = errorOf(() => neuronParamTensor({ value: new Float32Array(5), shape: [2, 3], trainable: false }, "gated parameter 'k'"));
    expect(bad.code).toBe('PLUGIN_INVALID');
    expect(bad.message).toBe("gated parameter 'k': 5 values do not fill shape [2,3]");
    expect(errorOf(() => neuronParamTensor({ value: { uniform: 1 }, trainable: true }, 'x')).code).toBe('PLUGIN_INVALID');
  });

  it('a plugin readout (a learned gate): y_t = y_{t−1} + σ([d_t ; y_{t−1}]·W_κ + b_κ)·(d_t − y_{t−1}), step by step', () => {
    const net = buildNetwork({ inputs: 1, layers: [{ neuron: 'iaf', size: 1, bias: false }], readout: { size: 1, kind: 'gated' } }, reg);
    expect(net.params['readout.W_kappa']!.shape).toEqual([2, 1]);
    net.setParams({ 'layers.0.W': [0.7], 'readout.W': [2], 'readout.b': [-0.3], 'readout.W_kappa': [0.4, -1.2], 'readout.b_kappa': [0.1] });
    const xs = [1, 1, 0, 1, 1, 1, 0, 1];
    const x = tf.tensor3d(xs.map((v) => [[v]]));
    const out = forward(net, x);
    const spikes = [0, 1, 0, 1, 0, 1, 0, 1]; // the iaf neuron of the test above
    let y = 0;
    const ref = spikes.map((s) => {
      const d = 2 * s - 0.3;
      const k = 1 / (1 + Math.exp(-(0.4 * d - 1.2 * y + 0.1)));
      y = y + k * (d - y);
      return y;
    });
    arr(out.readout).forEach((r, t) => expect(r, `y at t=${t}`).toBeCloseTo(ref[t]!, 6));
    disposeTree([out as never, x]);
    net.dispose();
  });

  it('a readout from the membrane reads the state field the neuron names (here v of iaf, before the reset)', () => {
    const net = buildNetwork(
      { inputs: 1, layers: [{ neuron: 'iaf', size: 1, bias: false }], readout: { size: 1, kappa: 0, bias: false, from: 'membrane' } },
      reg,
    );
    net.setParams({ 'layers.0.W': [0.7], 'readout.W': [2] });
    const xs = [1, 1, 0, 1, 1, 1, 0, 1];
    const x = tf.tensor3d(xs.map((v) => [[v]]));
    const out = forward(net, x);
    const v = [0.7, 1.4, 0.4, 1.1, 0.8, 1.5, 0.5, 1.2]; // the membrane of the test above
    arr(out.readout).forEach((r, t) => expect(r, `y at t=${t}`).toBeCloseTo(2 * v[t]!, 5));
    disposeTree([out as never, x]);
    net.dispose();
    const noMembrane = { ...gated };
    const e = errorOf(() =>
      resolveModel(
        { inputs: 1, layers: [{ neuron: 'gated', size: 2 }], readout: { size: 1, from: 'membrane' } },
        { ...gatedReg, neurons: new Map([['gated', noMembrane]]) },
      ),
    );
    expect(e.message).toBe(`model.readout.from: neuron 'gated' of the last layer names no membrane state to read; use "from": "spikes"`);
  });

  it("another kind's option is refused naming the field and whose option it is; an unknown kind names the plugins", () => {
    const e = errorOf(() => resolveModel(spec({ readout: { size: 2, kind: 'gated', kappa: 0.5 } }), reg));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toBe(`model.readout.kappa: is an option of the 'leaky' readout, not of 'gated'; remove it or use "kind": "leaky"`);
    const u = errorOf(() => resolveModel(spec({ readout: { size: 2, kind: 'liquid' } }), reg));
    expect(u.code).toBe('UNKNOWN_NAME');
    expect(u.message).toMatch(/^model\.readout\.kind: unknown readout 'liquid'; \(known: 'leaky', 'identity', 'gated'\)\. A readout kind comes from a plugin/);
    expect(errorOf(() => resolveModel(spec({ readout: { size: 2, kind: 'gru' } }), reg)).message).toContain('model.readout.kind');
  });
});

describe('the equations, by hand', () => {
  it('1 input, 1 neuron, fixed weights: readout step by step', () => {
    const net = buildNetwork({ inputs: 1, layers: [{ neuron: 'iaf', size: 1, bias: false }], readout: { size: 1, kappa: 0.5, bias: false } }, reg);
    net.setParams({ 'layers.0.W': [0.7], 'readout.W': [2] });
    const xs = [1, 1, 0, 1, 1, 1, 0, 1];
    const x = tf.tensor3d(xs.map((v) => [[v]]));
    const out = forward(net, x, { record: true });
    // v_t = v_{t−1} + 0.7·x_t − 1·s_{t−1};  s_t = H(v_t − 1);  y_t = 0.5·y_{t−1} + 2·s_t
    let [v, s, y] = [0, 0, 0];
    const ref = { v: [] as number[], s: [] as number[], y: [] as number[] };
    for (const xt of xs) {
      v = v + 0.7 * xt - s;
      s = v > 1 ? 1 : 0;
      y = 0.5 * y + 2 * s;
      ref.v.push(v);
      ref.s.push(s);
      ref.y.push(y);
    }
    // Worked by hand: every membrane value is at least 0.1 from the threshold.
    ref.v.forEach((vt, t) => expect(vt, `v at t=${t}`).toBeCloseTo([0.7, 1.4, 0.4, 1.1, 0.8, 1.5, 0.5, 1.2][t]!, 9));
    expect(ref.s).toEqual([0, 1, 0, 1, 0, 1, 0, 1]);
    expect(ref.y).toEqual([0, 2, 1, 2.5, 1.25, 2.625, 1.3125, 2.65625]);
    expect(arr(out.spikes![0]!)).toEqual(ref.s);
    arr(out.readout).forEach((r, t) => expect(r, `y at t=${t}`).toBeCloseTo(ref.y[t]!, 6));
    expect(out.readout.shape).toEqual([8, 1, 1]);
    // The final neuron state is v_T.
    expect(out.state.layers[0]!.neuron['v']!.dataSync()[0]).toBeCloseTo(1.2, 6);
    disposeTree([out as never, x]);
    net.dispose();
  });

  it('two layers, bias, recurrence, readout bias: every step against plain JS', () => {
    const net = buildNetwork(
      {
        inputs: 1,
        layers: [
          { neuron: 'iaf', size: 1, recurrent: true },
          { neuron: 'iaf', size: 1, bias: false, params: { threshold: 0.9 } },
        ],
        readout: { size: 1, kappa: 0.8 },
      },
      reg,
    );
    const P = { W0: 0.7, b0: 0.05, R0: -0.2, W1: 0.65, Wo: 1.5, bo: -0.1, kappa: 0.8, thr0: 1, thr1: 0.9 };
    net.setParams({ 'layers.0.W': [P.W0], 'layers.0.b': [P.b0], 'layers.0.W_rec': [P.R0], 'layers.1.W': [P.W1], 'readout.W': [P.Wo], 'readout.b': [P.bo] });
    const xs = [1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1];
    const x = tf.tensor3d(xs.map((v) => [[v]]));
    const out = forward(net, x, { record: true });
    let [v0, s0, v1, s1, y] = [0, 0, 0, 0, 0];
    const ref = { y: [] as number[], s0: [] as number[], s1: [] as number[] };
    let margin = Infinity;
    for (const xt of xs) {
      // Layer 0 reads the input and its own previous spikes; layer 1 reads layer 0's spikes of this step.
      v0 = v0 + (xt * P.W0 + P.b0 + s0 * P.R0) - P.thr0 * s0;
      margin = Math.min(margin, Math.abs(v0 - P.thr0));
      s0 = v0 > P.thr0 ? 1 : 0;
      v1 = v1 + s0 * P.W1 - P.thr1 * s1;
      margin = Math.min(margin, Math.abs(v1 - P.thr1));
      s1 = v1 > P.thr1 ? 1 : 0;
      y = P.kappa * y + s1 * P.Wo + P.bo;
      ref.y.push(y);
      ref.s0.push(s0);
      ref.s1.push(s1);
    }
    // The test data keeps every membrane clear of its threshold, so float32 takes the same branches.
    expect(margin).toBeGreaterThan(1e-3);
    expect(ref.s0.filter((s) => s === 1).length).toBeGreaterThanOrEqual(3);
    expect(ref.s1.filter((s) => s === 1).length).toBeGreaterThanOrEqual(2);
    expect(arr(out.spikes![0]!)).toEqual(ref.s0);
    expect(arr(out.spikes![1]!)).toEqual(ref.s1);
    arr(out.readout).forEach((r, t) => expect(r, `y at t=${t}`).toBeCloseTo(ref.y[t]!, 5));
    disposeTree([out as never, x]);
    net.dispose();
  });

  it('a random recurrent network against a plain-JS matrix implementation', () => {
    const [T, B, I, H, O] = [7, 2, 3, 4, 2];
    const net = buildNetwork({ inputs: I, layers: [{ neuron: 'iaf', size: H, recurrent: true, gain: 3 }], readout: { size: O, kappa: 0.7 } }, reg, { seed: 5 });
    const p = net.getParams();
    const W = p['layers.0.W']!.values;
    const b = p['layers.0.b']!.values;
    const R = p['layers.0.W_rec']!.values;
    const Wo = p['readout.W']!.values;
    const bo = p['readout.b']!.values;
    const x = spikeInput(T, B, I, 17, 0.6);
    const xd = arr(x);
    const out = forward(net, x, { record: true });
    const v = new Float64Array(B * H);
    const s = new Float64Array(B * H);
    const y = new Float64Array(B * O);
    const ys: number[] = [];
    const ss: number[] = [];
    let margin = Infinity;
    for (let t = 0; t < T; t++) {
      const sPrev = Float64Array.from(s);
      for (let bb = 0; bb < B; bb++) {
        for (let h = 0; h < H; h++) {
          let cur = b[h]!;
          for (let i = 0; i < I; i++) cur += xd[(t * B + bb) * I + i]! * W[i * H + h]!;
          for (let k = 0; k < H; k++) cur += sPrev[bb * H + k]! * R[k * H + h]!;
          const j = bb * H + h;
          v[j] = v[j]! + cur - sPrev[j]!;
          margin = Math.min(margin, Math.abs(v[j]! - 1));
          s[j] = v[j]! > 1 ? 1 : 0;
        }
        for (let o = 0; o < O; o++) {
          let acc = bo[o]!;
          for (let h = 0; h < H; h++) acc += s[bb * H + h]! * Wo[h * O + o]!;
          y[bb * O + o] = 0.7 * y[bb * O + o]! + acc;
        }
      }
      ys.push(...y);
      ss.push(...s);
    }
    expect(margin).toBeGreaterThan(1e-4);
    expect(ss).toContain(1);
    expect(arr(out.spikes![0]!)).toEqual(ss);
    arr(out.readout).forEach((r, i) => expect(r).toBeCloseTo(ys[i]!, 5));
    disposeTree([out as never, x]);
    net.dispose();
  });
});

describe('time loop helpers', () => {
  it('stepsOf / splitSteps give each step [B, ...] with its values and dtype', () => {
    const x = tf.tensor3d([[[1, 2]], [[3, 4]], [[5, 6]]]);
    const s = stepsOf(x);
    expect(s.length).toBe(3);
    expect(s.shape).toEqual([1, 2]);
    const t1 = s.at(1);
    expect(t1.shape).toEqual([1, 2]);
    expect(arr(t1)).toEqual([3, 4]);
    const parts = splitSteps(x);
    expect(parts.map(arr)).toEqual([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    const ints = tf.tensor2d(
      [
        [1, 2],
        [3, 4],
      ],
      undefined,
      'int32',
    );
    // Inputs are float32 whatever their type; splitSteps keeps the tensor's.
    expect(stepsOf(ints).at(1).dtype).toBe('float32');
    expect(arr(stepsOf(ints).at(1))).toEqual([3, 4]);
    expect(splitSteps(ints).map((t) => t.dtype)).toEqual(['int32', 'int32']);
    const scalar = tf.scalar(1);
    expect(errorOf(() => stepsOf(scalar)).code).toBe('SHAPE_MISMATCH');
    // A window of steps [from, to) as one tensor.
    const w = s.window(1, 3);
    expect(w.shape).toEqual([2, 1, 2]);
    expect(arr(w)).toEqual([3, 4, 5, 6]);
    expect(stepsOf(ints).window(0, 1).dtype).toBe('float32');
    for (const [from, to] of [
      [2, 2],
      [-1, 1],
      [1, 4],
      [0.5, 2],
    ] as const) {
      const e = errorOf(() => s.window(from, to));
      expect(e.code).toBe('SHAPE_MISMATCH');
      expect(e.message).toMatch(/0 <= from < to <= 3/);
    }
    disposeTree([x, t1, parts, ints, scalar, w]);
  });

  it('detach: identity forward, zero gradient', () => {
    const x = tf.tensor1d([1, -2, 3]);
    const d = detach(x);
    expect(arr(d)).toEqual([1, -2, 3]);
    // d/dx [detach(x) · x] = detach(x)
    const g = tf.grad((v: Tensor) => tf.sum(tf.mul(detach(v), v)))(x);
    expect(arr(g)).toEqual([1, -2, 3]);
    disposeTree([x, d, g]);
  });

  it('advance leaves the given state alone and holds only the final state', () => {
    const net = buildNetwork(spec({}, { recurrent: true, neuron: 'leaky' }), reg, { seed: 4 });
    const x = spikeInput(20, 2, 3, 1);
    const s0 = net.init(2);
    const before = tf.memory().numTensors;
    const seen: number[] = [];
    const final = advance(net, s0, stepsOf(x), 0, 20, (t) => {
      seen.push(t);
    });
    expect(seen).toEqual(Array.from({ length: 20 }, (_, t) => t));
    expect(treeLeaves(s0 as never).every((t) => !t.isDisposed)).toBe(true);
    expect(tf.memory().numTensors - before).toBe(new Set(treeLeaves(final as never)).size);
    // The same result as forward() over the same steps.
    const ref = forward(net, x);
    expect(arr(final.readout)).toEqual(arr(ref.state.readout));
    disposeTree([final as never, s0 as never, ref as never, x]);
    net.dispose();
  });

  it('unroll on a gradient tape: gradients reach every parameter through the surrogate', () => {
    const net = buildNetwork(spec({}, { recurrent: true, gain: 3, neuron: 'leaky' }), reg, { seed: 6 });
    const x = spikeInput(6, 2, 3, 2);
    const before = tf.memory().numTensors;
    const vars = Object.values(net.params);
    const { value, grads } = tf.variableGrads(() => {
      const ys: Tensor[] = [];
      unroll(net, net.prepare(), net.init(2), stepsOf(x), 0, 6, (_, o) => ys.push(o.readout));
      return tf.sum(tf.stack(ys)) as tf.Scalar;
    }, vars);
    const byVar = new Map(Object.entries(net.params).map(([k, v]) => [v.name, k]));
    const named = Object.fromEntries(Object.entries(grads).map(([k, g]) => [byVar.get(k)!, g]));
    expect(Object.keys(named).sort()).toEqual(Object.keys(net.params).sort());
    for (const [k, g] of Object.entries(named)) {
      expect(g.shape, k).toEqual(net.params[k]!.shape);
      expect(arr(g).every(Number.isFinite), k).toBe(true);
      expect(
        arr(g).some((v) => v !== 0),
        k,
      ).toBe(true);
    }
    // d Σ_t y_t / d b_out = B · Σ_t Σ_{j ≤ t} κ^j
    let expected = 0;
    for (let t = 0; t < 6; t++) for (let j = 0; j <= t; j++) expected += 0.9 ** j;
    for (const g of arr(named['readout.b']!)) expect(g).toBeCloseTo(2 * expected, 4);
    disposeTree([value, grads]);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    net.dispose();
  });
});

describe('runWindow: a window of steps layer by layer through the fused kernels', () => {
  const fusable = fusableIaf;
  const reg: ModelRegistries = { neurons: new Map([['iaf-fused', fusable]]), surrogates: builtinSurrogates, readouts: [gatedReadout] };
  const spec = {
    inputs: 4,
    layers: [
      { neuron: 'iaf-fused', size: 5, recurrent: true },
      { neuron: 'iaf-fused', size: 3 },
    ],
    readout: { size: 2, kappa: 0.7 },
  };
  const fastTable = referenceFusedKernels;

  it('is used only where every layer declares the integrate-and-fire form, the readout is leaky over spikes, no synapse hook is set and the backend has the kernels', () => {
    const fusedOf = (s: unknown, kernels?: KernelTable, synapse = false) => {
      const n = buildNetwork(s, reg, { kernels });
      const r = tf.tidy(() => n.prepare(synapse ? { synapse: (x, w, _s, dense) => dense(x, w) } : {}).fused !== undefined);
      n.dispose();
      return r;
    };
    expect(fusedOf(spec, fastTable())).toBe(true);
    expect(fusedOf(spec)).toBe(false);
    expect(fusedOf(spec, fastTable(), true)).toBe(false);
    expect(fusedOf({ ...spec, readout: { size: 2, from: 'membrane' } }, fastTable())).toBe(false);
    expect(fusedOf({ ...spec, readout: { size: 2, kind: 'gated' } }, fastTable())).toBe(false);
    const mixed = { neurons: new Map([...reg.neurons, ['iaf', iaf as AnyNeuronModel]]), surrogates: builtinSurrogates };
    const n = buildNetwork({ ...spec, layers: [spec.layers[0], { neuron: 'iaf', size: 3 }] }, mixed, { kernels: fastTable() });
    expect(tf.tidy(() => n.prepare().fused === undefined)).toBe(true);
    const e = errorOf(() => tf.tidy(() => n.runWindow(n.prepare(), n.init(1), tf.zeros([2, 1, 4])).readout));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toMatch(/fusedWindow: these step parameters are not fused/);
    n.dispose();
  });

  it('gives the readout, spikes, final state and parameter gradients of the same steps taken one at a time', () => {
    const net = buildNetwork(spec, reg, { kernels: fastTable(), seed: 3 });
    const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([6, 2, 4], 0, 1, 'float32', 5), 0.5), 'float32'));
    const params = Object.values(net.params);
    const viaWindow = tf.variableGrads(() => {
      const out = net.runWindow(net.prepare(), net.init(2), x);
      return tf.sum(tf.mul(out.readout, out.readout)) as tf.Scalar;
    }, params);
    const viaSteps = tf.variableGrads(() => {
      const p = net.prepare();
      let s = net.init(2);
      const ys: Tensor[] = [];
      for (const xt of tf.unstack(x)) {
        const o = net.step(p, s, xt);
        ys.push(o.readout);
        s = o.state;
      }
      return tf.sum(tf.mul(tf.stack(ys), tf.stack(ys))) as tf.Scalar;
    }, params);
    expect(viaWindow.value.dataSync()[0]).toBeCloseTo(viaSteps.value.dataSync()[0]!, 5);
    for (const [k, g] of Object.entries(viaSteps.grads)) {
      const a = viaWindow.grads[k]!.dataSync();
      g.dataSync().forEach((v, i) => expect(a[i], k).toBeCloseTo(v, 5));
    }
    const w = tf.tidy(() => {
      const o = net.runWindow(net.prepare(), net.init(2), x);
      return [o.spikes[0]!, o.state.layers[1]!.neuron['v']!, o.state.readout];
    });
    const plain = buildNetworkLike(net);
    const fwd = forward(plain, x, { record: true });
    expect(Array.from(w[0]!.dataSync())).toEqual(Array.from(fwd.spikes![0]!.dataSync()));
    expect(w[1]!.dataSync()[0]).toBeCloseTo(fwd.state.layers[1]!.neuron['v']!.dataSync()[0]!, 5);
    disposeTree([viaWindow.value, viaWindow.grads, viaSteps.value, viaSteps.grads, w, fwd, x] as never);
    plain.dispose();
    net.dispose();
  });

  it('forward over two inference windows (1100 steps) gives the readout, spikes and final state of the steps taken one at a time', () => {
    const net = buildNetwork(spec, reg, { kernels: fastTable(), seed: 4 });
    const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([1100, 2, 4], 0, 1, 'float32', 6), 0.3), 'float32'));
    const fused = forward(net, x, { record: true });
    const plain = buildNetworkLike(net);
    const steps = forward(plain, x, { record: true });
    expect(fused.readout.shape).toEqual([1100, 2, 2]);
    for (const [a, b] of [
      [fused.readout, steps.readout],
      [fused.spikes![0]!, steps.spikes![0]!],
      [fused.spikes![1]!, steps.spikes![1]!],
      [fused.state.readout, steps.state.readout],
      [fused.state.layers[0]!.neuron['v']!, steps.state.layers[0]!.neuron['v']!],
    ] as const) {
      const u = b.dataSync();
      a.dataSync().forEach((v, i) => expect(v).toBeCloseTo(u[i]!, 4));
    }
    disposeTree([fused, steps, x] as never);
    plain.dispose();
    net.dispose();
  });

  /** The same network without fast kernels (forward then runs step by step). */
  function buildNetworkLike(net: Network): Network {
    const n = buildNetwork(spec, reg);
    n.setParams(Object.fromEntries(Object.entries(net.params).map(([k, v]) => [k, v])));
    return n;
  }
});

import { beforeAll, describe, expect, it } from 'vitest';
import { tf, type Tensor } from './tf.js';
import { SpikeflowError, isSpikeflowError } from './errors.js';
import { parseSchema, editDistance, closest } from './validate.js';
import { arctan, builtinSurrogates, fastSigmoid, multiGaussian, sigmoid, spikeFn, surrogateFromSpec, triangle } from './surrogates.js';
import { defineNeuron } from './neuron.js';
import { buildNetwork, forward, resolveModel, stepsOf, splitSteps } from './network.js';
import { ceEveryStep, ceMean, lossFromSpec, mseEveryStep, mseLast, builtinLosses } from './losses.js';
import { OptimizerRunner, adam, adamax, clipByGlobalNorm, cosineSchedule, optimizerFromSpec, sgd } from './optim.js';
import { createRegistry, definePlugin, loadPlugins, validatePlugin } from './plugin.js';
import { disposeTree, keepTree, treeLeaves } from './state.js';
import { KernelTable, referenceKernels } from './kernels.js';
import { deriveSeed, permutation } from './random.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const errorOf = (f: () => unknown): SpikeflowError => {
  try {
    f();
  } catch (e) {
    if (isSpikeflowError(e)) return e;
    throw e;
  }
  throw new Error('expected a SpikeflowError');
};

const iaf = defineNeuron({
  name: 'iaf',
  description: 'integrate-and-fire (test neuron)',
  configSchema: { threshold: { type: 'number', default: 1, min: 0, exclusiveMin: true } },
  stateKeys: ['v', 's'],
  tensorParams: (c) => ({ threshold: { value: c.threshold, trainable: false } }),
  init: (b, n) => {
    const z = tf.zeros([b, n]);
    return { v: z, s: z };
  },
  step: ({ tensors }, st: { v: Tensor; s: Tensor }, current, { spike }) => {
    const thr = tensors['threshold']!;
    const v = tf.sub(tf.add(st.v, current), tf.mul(thr, st.s));
    const s = spike(tf.sub(v, thr));
    return { state: { v, s }, spikes: s };
  },
});
const reg = { neurons: new Map([['iaf', iaf]]), surrogates: builtinSurrogates };
const spec = (over: Record<string, unknown> = {}, layer: Record<string, unknown> = {}) => ({
  inputs: 3,
  layers: [{ neuron: 'iaf', size: 4, recurrent: true, ...layer }],
  readout: { size: 2 },
  ...over,
});

describe('config validation names the field', () => {
  it('fills defaults and checks types, ranges, integers and choices', () => {
    const schema = {
      n: { type: 'number', integer: true, min: 1, default: 3 },
      p: { type: 'number', min: 0, max: 1, required: true },
      mode: { type: 'string', oneOf: ['a', 'b'], default: 'a' },
      flag: { type: 'boolean' },
    } as const;
    expect(parseSchema(schema, { p: 0.5 }, 'x')).toEqual({ n: 3, p: 0.5, mode: 'a' });
    expect(() => parseSchema(schema, {}, 'x')).toThrow(/^x\.p: is required/);
    expect(() => parseSchema(schema, { p: 2 }, 'x')).toThrow('x.p: must be <= 1, got 2');
    expect(() => parseSchema(schema, { p: 0.1, n: 1.5 }, 'x')).toThrow('x.n: expected an integer, got 1.5');
    expect(() => parseSchema(schema, { p: 0.1, mode: 'c' }, 'x')).toThrow("x.mode: must be one of 'a', 'b', got 'c'");
    expect(() => parseSchema(schema, { p: '1' }, 'x')).toThrow('x.p: expected a finite number, got "1"');
    expect(() => parseSchema(schema, { p: 0.1, flag: 1 }, 'x')).toThrow('x.flag: expected true or false, got 1');
    const e = errorOf(() => parseSchema(schema, { p: 0.1, mdoe: 'a' }, 'x'));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.details.path).toBe('x.mdoe');
    expect(e.message).toMatch(/unknown key; did you mean 'mode'\?/);
  });

  it('edit distance and suggestions', () => {
    expect(editDistance('recurent', 'recurrent')).toBe(1);
    expect(closest('lfi', ['lif', 'alif'])).toBe('lif');
    expect(closest('zzzzzz', ['lif', 'alif'])).toBeUndefined();
  });

  it('a model spec with an unknown neuron, a negative size or a misspelled key fails naming the field', () => {
    const unknown = errorOf(() => resolveModel(spec({}, { neuron: 'lfi' }), reg));
    expect(unknown.code).toBe('UNKNOWN_NAME');
    expect(unknown.details.path).toBe('model.layers[0].neuron');
    expect(unknown.message).toMatch(/unknown neuron 'lfi'.*'iaf'.*pnpm add @spikeflow\/neuron-lfi/);
    const negative = errorOf(() => resolveModel(spec({}, { size: -3 }), reg));
    expect(negative.details.path).toBe('model.layers[0].size');
    expect(negative.message).toBe('model.layers[0].size: must be >= 1, got -3');
    const typo = errorOf(() => resolveModel(spec({}, { recurent: true }), reg));
    expect(typo.details.path).toBe('model.layers[0].recurent');
    expect(typo.message).toMatch(/did you mean 'recurrent'/);
    expect(errorOf(() => resolveModel(spec({ readout: { size: 2, kappa: 1.5 } }), reg)).details.path).toBe('model.readout.kappa');
    expect(errorOf(() => resolveModel(spec({ surrogate: { name: 'fast_sigmod' } }), reg)).message).toMatch(/unknown surrogate 'fast_sigmod'; did you mean 'fast_sigmoid'/);
    expect(errorOf(() => resolveModel(spec({ surrogate: { name: 'arctan', alpah: 2 } }), reg)).details.path).toBe('model.surrogate.alpah');
    expect(errorOf(() => resolveModel(spec({}, { params: { treshold: 1 } }), reg)).details.path).toBe('model.layers[0].params.treshold');
    expect(errorOf(() => resolveModel(spec({ layers: [] }), reg)).details.path).toBe('model.layers');
    expect(errorOf(() => resolveModel(spec({ inputz: 3 }), reg)).message).toMatch(/inputz: unknown key; did you mean 'inputs'/);
  });

  it('reads the surrogate list more than once (per-layer surrogates from an iterator)', () => {
    const m = resolveModel(spec({}, { surrogate: { name: 'arctan', alpha: 3 } }), { neurons: reg.neurons, surrogates: builtinSurrogates.values() });
    expect(m.layers[0]!.surrogate.name).toBe('arctan');
  });
});

describe('network', () => {
  it('names and shapes its parameters, seeds its initialisation, and runs forward without leaks', () => {
    const a = buildNetwork(spec(), reg, { seed: 1 });
    const b = buildNetwork(spec(), reg, { seed: 1 });
    const c = buildNetwork(spec(), reg, { seed: 2 });
    expect(Object.fromEntries(Object.entries(a.params).map(([k, v]) => [k, v.shape]))).toEqual({
      'layers.0.W': [3, 4],
      'layers.0.b': [4],
      'layers.0.W_rec': [4, 4],
      'readout.W': [4, 2],
      'readout.b': [2],
    });
    expect(Array.from(a.params['layers.0.W']!.dataSync())).toEqual(Array.from(b.params['layers.0.W']!.dataSync()));
    expect(Array.from(a.params['layers.0.W']!.dataSync())).not.toEqual(Array.from(c.params['layers.0.W']!.dataSync()));
    const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([7, 2, 3], 0, 1, 'float32', 3), 0.5), 'float32'));
    const before = tf.memory().numTensors;
    const out = forward(a, x, { record: true });
    expect(out.readout.shape).toEqual([7, 2, 2]);
    expect(out.spikes![0]!.shape).toEqual([7, 2, 4]);
    expect(new Set(out.spikes![0]!.dataSync()).size).toBeLessThanOrEqual(2);
    disposeTree(out as never);
    expect(tf.memory().numTensors).toBe(before);
    expect(() => forward(a, tf.zeros([7, 2, 5]))).toThrow(/time-major \[T, B, 3\].*\[7,2,5\]/);
    expect(() => a.setParams({ 'layers.0.W': [1, 2] })).toThrow(/'layers\.0\.W' has shape \[3,4\], got 2 values/);
    expect(() => a.setParams({ 'layers.0.X': [1] })).toThrow(/no parameter 'layers\.0\.X'/);
    disposeTree(x);
    for (const n of [a, b, c]) n.dispose();
  });

  it('computes the equations by hand: 1 input, 1 neuron, leaky readout', () => {
    const net = buildNetwork({ inputs: 1, layers: [{ neuron: 'iaf', size: 1, bias: false }], readout: { size: 1, kappa: 0.5, bias: false } }, reg);
    net.setParams({ 'layers.0.W': [0.6], 'readout.W': [2] });
    const xs = [1, 1, 0, 1, 1];
    const out = forward(net, tf.tensor3d(xs.map((v) => [[v]])), { record: true });
    let v = 0;
    let s = 0;
    let y = 0;
    const ys: number[] = [];
    for (const x of xs) {
      v = v + 0.6 * x - s;
      s = v > 1 ? 1 : 0;
      y = 0.5 * y + 2 * s;
      ys.push(y);
    }
    expect(Array.from(out.readout.dataSync())).toEqual(ys);
    expect(ys.some((q) => q > 0)).toBe(true);
    disposeTree(out as never);
    net.dispose();
  });

  it('steps a time-major tensor one step at a time', () => {
    const x = tf.tensor3d([[[1, 2]], [[3, 4]], [[5, 6]]]);
    const s = stepsOf(x);
    expect(s.length).toBe(3);
    expect(s.shape).toEqual([1, 2]);
    const parts = splitSteps(x);
    expect(parts.map((p) => Array.from(p.dataSync()))).toEqual([[1, 2], [3, 4], [5, 6]]);
    disposeTree([x, parts]);
  });
});

describe('surrogates', () => {
  const all = [fastSigmoid({ slope: 4 }), sigmoid({ slope: 3 }), arctan({ alpha: 2 }), triangle({ gamma: 0.4, width: 1.5 }), multiGaussian()];
  for (const s of all) {
    it(`${s.name}: backward equals d primitive / dx, Heaviside forward with H(0) = 0, derivative(0) = peak`, () => {
      const pts = [-2.2, -0.8, -0.31, -0.04, 0.03, 0.35, 0.9, 2.4];
      const x = tf.tensor1d(pts);
      const auto = tf.grad((v: Tensor) => tf.sum(s.primitive(v)))(x).dataSync();
      const own = s.derivative(x).dataSync();
      const viaSpike = tf.grad((v: Tensor) => tf.sum(spikeFn(s)(v)))(x).dataSync();
      pts.forEach((_, i) => {
        expect(own[i]).toBeCloseTo(auto[i]!, 4);
        expect(viaSpike[i]).toBeCloseTo(own[i]!, 6);
      });
      expect(Array.from(spikeFn(s)(tf.tensor1d([-1, 0, 1e-6])).dataSync())).toEqual([0, 0, 1]);
      expect(s.derivative(tf.scalar(0)).dataSync()[0]).toBeCloseTo(s.peak, 5);
    });
  }

  it('builds from JSON and refuses bad parameters', () => {
    expect(surrogateFromSpec({ name: 'triangle', gamma: 0.5 }, builtinSurrogates).params).toEqual({ gamma: 0.5, width: 1 });
    expect(() => fastSigmoid({ slope: 0 })).toThrow(/slope must be a finite number > 0/);
    expect(errorOf(() => surrogateFromSpec({ name: 'sigmoid', slope: -1 }, builtinSurrogates)).details.path).toBe('surrogate.slope');
  });
});

describe('losses', () => {
  const T = 4;
  const B = 3;
  const O = 2;
  const ysData = Array.from({ length: T }, (_, t) => Array.from({ length: B }, (_, b) => Array.from({ length: O }, (_, k) => Math.sin(1 + t * 7 + b * 3 + k))));
  const ys = () => ysData.map((y) => tf.tensor2d(y));
  const labels = [0, 1, 1];
  const ce = (logits: number[], label: number) => Math.log(logits.reduce((a, l) => a + Math.exp(l), 0)) - logits[label]!;

  it('match plain JS on small inputs, and decomposable ones sum their step terms', () => {
    const shape = { steps: T, batch: B, outputs: O };
    const mean = (b: number) => [0, 1].map((k) => ysData.reduce((a, y) => a + y[b]![k]!, 0) / T);
    const expected: Record<string, [number, Tensor]> = {
      ce_mean: [labels.reduce((a, l, b) => a + ce(mean(b), l), 0) / B, tf.tensor1d(labels, 'int32')],
      ce_every_step: [ysData.reduce((a, y) => a + labels.reduce((c, l, b) => c + ce(y[b]!, l), 0) / B, 0) / T, tf.tensor1d(labels, 'int32')],
      mse_every_step: [ysData.reduce((a, y, t) => a + y.flat().reduce((c, v, i) => c + (v - 0.1 * (t + i)) ** 2, 0), 0) / (T * B * O), tf.tensor3d(ysData.map((y, t) => y.map((r, b) => r.map((_, k) => 0.1 * (t + b * O + k)))))],
      mse_last: [ysData[T - 1]!.flat().reduce((c, v, i) => c + (v - 0.2 * i) ** 2, 0) / (B * O), tf.tensor2d([[0, 0.2], [0.4, 0.6], [0.8, 1]])],
    };
    for (const loss of [ceMean, ceEveryStep, mseEveryStep, mseLast]) {
      const [value, target] = expected[loss.name]!;
      const bound = loss.bind(target, shape);
      const y = ys();
      expect(bound.sequence(y).dataSync()[0], loss.name).toBeCloseTo(value, 5);
      expect(loss.decomposesOverTime).toBe(loss.name !== 'ce_mean');
      if (bound.step) {
        let sum = 0;
        y.forEach((yt, t) => {
          const term = bound.step!(yt, t);
          expect(term !== null, `${loss.name} t=${t}`).toBe(bound.hasTerm!(t));
          if (term) sum += term.dataSync()[0]!;
        });
        expect(sum).toBeCloseTo(value, 5);
      }
      bound.dispose();
      disposeTree([y, target]);
    }
  });

  it('refuse out-of-range labels and wrong target shapes, and resolve by name', () => {
    const bad = tf.tensor1d([0, 5, 1], 'int32');
    expect(errorOf(() => ceMean.bind(bad, { steps: 2, batch: 3, outputs: 2 })).code).toBe('DATA_INVALID');
    expect(errorOf(() => mseLast.bind(tf.zeros([3, 3]), { steps: 2, batch: 3, outputs: 2 })).code).toBe('SHAPE_MISMATCH');
    const byName = new Map(builtinLosses.map((l) => [l.name, l]));
    expect(lossFromSpec('mse_last', byName)).toBe(mseLast);
    expect(() => lossFromSpec({ name: 'ce_maen' }, byName)).toThrow(/loss\.name: unknown loss 'ce_maen'; did you mean 'ce_mean'/);
    bad.dispose();
  });
});

describe('optimizers', () => {
  const run = (opt: ReturnType<typeof adam>, grads: number[][]) => {
    const w = tf.variable(tf.tensor1d([1, -2]));
    const r = new OptimizerRunner(opt, { w });
    for (const g of grads) {
      const t = tf.tensor1d(g);
      r.apply({ w: t });
      t.dispose();
    }
    const out = Array.from(w.dataSync());
    r.dispose();
    w.dispose();
    return out;
  };
  const grads = [
    [0.5, -1],
    [0.2, 0.3],
    [-0.4, 0.1],
  ];

  it('adam, adamax and sgd (momentum, nesterov) match hand computations', () => {
    const ref = (kind: string) => {
      const w = [1, -2];
      const m = [0, 0];
      const v = [0, 0];
      grads.forEach((g, i) => {
        const n = i + 1;
        g.forEach((gk, k) => {
          if (kind === 'adam') {
            m[k] = 0.9 * m[k]! + 0.1 * gk;
            v[k] = 0.999 * v[k]! + 0.001 * gk * gk;
            w[k]! -= (0.01 * (m[k]! / (1 - 0.9 ** n))) / (Math.sqrt(v[k]! / (1 - 0.999 ** n)) + 1e-8);
          } else if (kind === 'adamax') {
            m[k] = 0.9 * m[k]! + 0.1 * gk;
            v[k] = Math.max(0.999 * v[k]!, Math.abs(gk));
            w[k]! -= (0.01 * (m[k]! / (1 - 0.9 ** n))) / (v[k]! + 1e-8);
          } else {
            m[k] = 0.9 * m[k]! + gk;
            w[k]! -= 0.1 * (kind === 'nesterov' ? gk + 0.9 * m[k]! : m[k]!);
          }
        });
      });
      return w;
    };
    const close = (a: number[], b: number[]) => a.forEach((x, i) => expect(x).toBeCloseTo(b[i]!, 5));
    close(run(adam({ lr: 0.01 }), grads), ref('adam'));
    close(run(adamax({ lr: 0.01 }), grads), ref('adamax'));
    close(run(sgd({ lr: 0.1, momentum: 0.9 }), grads), ref('momentum'));
    close(run(sgd({ lr: 0.1, momentum: 0.9, nesterov: true }), grads), ref('nesterov'));
    close(run(sgd({ lr: 0.1 }), [[1, 1]]), [0.9, -2.1]);
  });

  it('clips by global norm and by value; schedules the learning rate', () => {
    const g = { a: tf.tensor1d([3, 0]), b: tf.tensor1d([0, 4]) };
    const { updates } = clipByGlobalNorm(1).update(g, null, {});
    expect(Array.from(updates['a']!.dataSync())).toEqual([0.6000000238418579, 0]);
    expect(run(sgd({ lr: 1, clipValue: 0.25 }), [[1, -0.1]])).toEqual([0.75, Math.fround(-1.9)]);
    const cos = cosineSchedule(1, 10, 0.1);
    expect(cos(0)).toBeCloseTo(1);
    expect(cos(5)).toBeCloseTo(0.55);
    expect(cos(10)).toBeCloseTo(0.1);
    expect(cos(50)).toBeCloseTo(0.1);
    expect(run(sgd({ lr: (n) => (n === 0 ? 1 : 0) }), [[1, 1], [5, 5]])).toEqual([0, -3]);
    disposeTree([g, updates]);
  });

  it('builds from JSON with errors that name the field, and leaks nothing across updates', () => {
    expect(() => optimizerFromSpec({ name: 'adma' })).toThrow(/optimizer\.name: unknown optimizer 'adma'; did you mean 'adam'/);
    expect(() => optimizerFromSpec({ name: 'adam', lr: -1 })).toThrow(/optimizer\.lr: must be > 0/);
    expect(() => optimizerFromSpec({ name: 'adam', learningRate: 1 })).toThrow(/optimizer\.learningRate: unknown key/);
    expect(() => optimizerFromSpec({ name: 'adam', schedule: 'cosine' })).toThrow(/optimizer\.decaySteps: is required with schedule 'cosine'/);
    const w = tf.variable(tf.ones([3]));
    const r = new OptimizerRunner(optimizerFromSpec({ name: 'adam', lr: 0.1, clipNorm: 1, schedule: 'cosine', decaySteps: 5 }), { w });
    const g = tf.ones([3]);
    r.apply({ w: g });
    const count = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) r.apply({ w: g });
    expect(tf.memory().numTensors).toBe(count);
    expect(() => r.apply({ nope: g })).toThrow(/gradient for unknown parameter 'nope'/);
    disposeTree([w, g]);
    r.dispose();
  });
});

describe('plugins', () => {
  it('validates plugin objects like a strict config', () => {
    expect(() => validatePlugin(undefined, 'p')).toThrow(/plugin 'p': the default export is missing/);
    expect(() => validatePlugin({ neurons: [] }, 'p')).toThrow(/meta must be/);
    expect(() => validatePlugin({ meta: { name: 'p', version: '1' }, nuerons: [] }, 'p')).toThrow(/unknown key 'nuerons' \(did you mean 'neurons'\?\)/);
    expect(() => validatePlugin({ meta: { name: 'p', version: '1' }, neurons: iaf }, 'p')).toThrow(/'neurons' must be an array/);
    expect(validatePlugin(definePlugin({ meta: { name: 'p', version: '1' }, neurons: [iaf] }), 'p').neurons).toEqual([iaf]);
  });

  it('registers contents in a container, with core surrogates and losses, and refuses two providers of one name', () => {
    const a = definePlugin({ meta: { name: 'a', version: '1' }, neurons: [iaf] });
    const r = createRegistry([a]);
    expect(r.neurons.get('iaf')).toBe(iaf);
    expect([...r.surrogates.keys()]).toEqual(expect.arrayContaining(['fast_sigmoid', 'multi_gaussian']));
    expect([...r.losses.keys()]).toEqual(['ce_mean', 'ce_every_step', 'mse_every_step', 'mse_last']);
    const b = definePlugin({ meta: { name: 'b', version: '1' }, neurons: [{ ...iaf }] });
    const e = errorOf(() => createRegistry([a, b]));
    expect(e.code).toBe('PLUGIN_CONFLICT');
    expect(e.message).toMatch(/neuron 'iaf' is provided by both 'a' and 'b'/);
  });

  it('a plugin package that is not installed fails naming the package and the install command', async () => {
    const err = await loadPlugins(['@spikeflow/definitely-not-installed']).catch((e: unknown) => e);
    expect(isSpikeflowError(err, 'PLUGIN_NOT_FOUND')).toBe(true);
    expect((err as Error).message).toMatch(/'@spikeflow\/definitely-not-installed' is not installed.*pnpm add @spikeflow\/definitely-not-installed/);
  });
});

describe('state, kernels, randomness', () => {
  it('disposes shared tensors once and keeps what is asked', () => {
    const a = tf.ones([2]);
    const b = tf.zeros([2]);
    const tree = { x: a, y: [a, b], n: 3 };
    expect(treeLeaves(tree)).toEqual([a, a, b]);
    disposeTree(tree, [b]);
    expect(a.isDisposed).toBe(true);
    expect(b.isDisposed).toBe(false);
    const kept = tf.tidy(() => keepTree({ k: tf.ones([1]) }).k);
    expect(kept.isDisposed).toBe(false);
    disposeTree([b, kept]);
  });

  it('kernel table: reference by default, a registered kernel for its backend only, unknown names refused', () => {
    const table = new KernelTable();
    expect(table.get('spikeflow.dense', 'cpu')).toBe(referenceKernels['spikeflow.dense']);
    const fast = (x: Tensor, w: Tensor) => tf.matMul(x, w);
    table.register({ kernel: 'spikeflow.dense', backend: 'wasm', impl: fast });
    expect(table.get('spikeflow.dense', 'wasm')).toBe(fast);
    expect(table.get('spikeflow.dense', 'cpu')).toBe(referenceKernels['spikeflow.dense']);
    expect(() => table.register({ kernel: 'spikeflow.nope' as 'spikeflow.dense', backend: 'cpu', impl: fast })).toThrow(/not a spikeflow kernel/);
  });

  it('derives stable seeds and permutations', () => {
    expect(deriveSeed(1, 'epoch', 2)).toBe(deriveSeed(1, 'epoch', 2));
    expect(deriveSeed(1, 'epoch', 2)).not.toBe(deriveSeed(1, 'epoch', 3));
    const p = permutation(10, 4);
    expect([...p].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(Array.from(permutation(10, 4))).toEqual(Array.from(p));
  });
});

import { beforeAll, describe, expect, it } from 'vitest';
import {
  OptimizerRunner,
  SpikeflowError,
  adam,
  ceEveryStep,
  ceMean,
  defineNeuron,
  defineRule,
  disposeTree,
  mseEveryStep,
  mseLast,
  trainWindows,
  tf,
  type LearningRule,
  type RuleRequirements,
  type Tensor,
  type TensorTree,
} from '@spikeflow/core';
import { captureUpdates } from './capture.js';
import { toyTask } from './rule-suite.js';
import { batchFor, errorOf, smallNetwork, trainStep } from './kit.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
  // The cpu backend advertises tfjs-node on its first use in Node (as @spikeflow/backend-cpu skips it).
  const backend = tf.backend() as unknown as { firstUse?: boolean };
  if (backend.firstUse === true) backend.firstUse = false;
});

/** A LIF neuron with subtractive reset and ϑ = 1, defined here: the testing package depends on no neuron plugin. */
const lif = defineNeuron({
  name: 'kit-lif',
  description: 'leaky integrate-and-fire (kit tests)',
  configSchema: { beta: { type: 'number', default: 0.9, min: 0, max: 1 } },
  stateKeys: ['v', 's'],
  membrane: 'v',
  spikes: 's',
  tensorParams: (c) => ({ beta: { value: c.beta, trainable: false } }),
  init: (batch, size) => {
    const z = tf.zeros([batch, size]);
    return { v: z, s: z };
  },
  step: ({ tensors }, state: { v: Tensor; s: Tensor }, current, { spike }) => {
    const v = tf.sub(tf.add(tf.mul(tensors['beta']!, state.v), current), state.s);
    const s = spike(tf.sub(v, 1));
    return { state: { v, s }, spikes: s };
  },
});

/** Full BPTT on core's window engine: the whole sequence as one window. */
const bptt = (requires: RuleRequirements = {}) =>
  defineRule({
    name: 'kit-bptt',
    memory: 'O(T)',
    gradient: 'exact',
    requires,
    init: () => ({}),
    update: (batch, state, ctx) => ({ state, report: trainWindows(batch, ctx, { window: Infinity, update: 'sequence', objective: 'sequence' }) }),
  });

const shapes = (net: ReturnType<typeof smallNetwork>) => Object.fromEntries(Object.entries(net.params).map(([k, v]) => [k, v.shape]));
const values = (t: Tensor) => Array.from(t.dataSync());

describe('smallNetwork', () => {
  it("by default is describeRule's toy network: 8 inputs, one recurrent layer of 16, a leaky readout of 2 with κ = 0.8", () => {
    const net = smallNetwork(lif);
    expect(shapes(net)).toEqual({ 'layers.0.W': [8, 16], 'layers.0.b': [16], 'layers.0.W_rec': [16, 16], 'readout.W': [16, 2], 'readout.b': [2] });
    expect(net.model.layers[0]!.gain).toBe(2);
    expect(net.model.readout).toMatchObject({ kind: 'leaky', leak: 0.8 });
    net.dispose();
  });

  it('takes sizes per layer, inputs, outputs, neuron params, readout options and a seed', () => {
    const a = smallNetwork(lif, { layers: [5, 3], inputs: 6, outputs: 4, recurrent: false, params: { beta: 0.5 }, readout: { kappa: 0 }, seed: 7 });
    expect(shapes(a)).toEqual({ 'layers.0.W': [6, 5], 'layers.0.b': [5], 'layers.1.W': [5, 3], 'layers.1.b': [3], 'readout.W': [3, 4], 'readout.b': [4] });
    expect(a.model.layers.map((l) => l.config['beta'])).toEqual([0.5, 0.5]);
    expect(a.model.readout.leak).toBe(0);
    const e = smallNetwork(lif, { layers: [4], inputs: 3, layer: { bias: false, selfConnections: false }, readout: { bias: false } });
    expect(Object.keys(e.params).sort()).toEqual(['layers.0.W', 'layers.0.W_rec', 'readout.W']);
    expect(e.model.layers[0]!.selfConnections).toBe(false);
    e.dispose();
    const b = smallNetwork(lif, { layers: 2, size: 3, inputs: 6, outputs: 4, seed: 7 });
    const c = smallNetwork(lif, { layers: 2, size: 3, inputs: 6, outputs: 4, seed: 7 });
    const d = smallNetwork(lif, { layers: 2, size: 3, inputs: 6, outputs: 4, seed: 8 });
    expect(values(b.params['layers.1.W']!)).toEqual(values(c.params['layers.1.W']!));
    expect(values(b.params['layers.1.W']!)).not.toEqual(values(d.params['layers.1.W']!));
    for (const n of [a, b, c, d]) n.dispose();
  });

  it('refuses a bad neuron param naming the field', () => {
    const e = errorOf(() => smallNetwork(lif, { params: { beta: 2 } }));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toMatch(/model\.layers\[0\]\.params\.beta: must be <= 1/);
  });
});

describe('batchFor', () => {
  it("shapes a random spike batch for the network, with the targets of the loss's kind", () => {
    const net = smallNetwork(lif, { inputs: 5, outputs: 3 });
    const labels = batchFor(net, ceEveryStep, { steps: 7, batch: 6 });
    expect(labels.inputs.shape).toEqual([7, 6, 5]);
    expect(values(labels.inputs).every((x) => x === 0 || x === 1)).toBe(true);
    expect(labels.targets.dtype).toBe('int32');
    expect(values(labels.targets)).toEqual([0, 1, 2, 0, 1, 2]);
    const every = batchFor(net, mseEveryStep, { steps: 7 });
    expect(every.targets.shape).toEqual([7, 4, 3]);
    const last = batchFor(net, mseLast, { steps: 7 });
    expect(last.targets.shape).toEqual([4, 3]);
    const dense = batchFor(net, mseLast, { steps: 7, density: 1 });
    expect(values(dense.inputs).every((x) => x === 1)).toBe(true);
    disposeTree([labels, every, last, dense] as never);
    net.dispose();
  });

  it('is deterministic under its seed', () => {
    const net = smallNetwork(lif);
    const [a, b, c] = [1, 1, 2].map((seed) => batchFor(net, ceEveryStep, { steps: 9, seed }));
    expect(values(a!.inputs)).toEqual(values(b!.inputs));
    expect(values(a!.inputs)).not.toEqual(values(c!.inputs));
    disposeTree([a, b, c] as never);
    net.dispose();
  });
});

describe('trainStep', () => {
  it("applies the rule's gradient through plain SGD (lr 0.05) by default, and records it when asked", () => {
    const net = smallNetwork(lif, { seed: 1 });
    const batch = toyTask({ steps: 10, batch: 4, seed: 3 });
    const rule = bptt();
    const want = captureUpdates(rule, net, batch, ceMean);
    const before = values(net.params['readout.W']!);
    const r = trainStep(rule, net, batch, ceMean, { record: true });
    expect(r.updates).toBe(1);
    expect(r.loss).toBeCloseTo(want.loss, 6);
    expect(r.grads).toEqual(want.grads);
    const g = want.grads[0]!['readout.W']!;
    expect(g.some((x) => x !== 0)).toBe(true);
    values(net.params['readout.W']!).forEach((w, i) => expect(w).toBeCloseTo(before[i]! - 0.05 * g[i]!, 6));
    disposeTree([r.state, batch] as never);
    net.dispose();
  });

  it('hands the state over as the trainer does: a replaced state is freed, a returned one is kept', () => {
    const net = smallNetwork(lif);
    const batch = toyTask({ steps: 4, batch: 2 });
    const counting: LearningRule<{ n: Tensor }> = {
      name: 'counting',
      memory: 'O(1)',
      gradient: 'approximate',
      requires: {},
      init: () => ({ n: tf.scalar(0) }),
      update: (_batch, state) => ({ state: { n: tf.add(state.n, 1) }, report: { loss: 0, updates: 0 } }),
    };
    const s0 = counting.init(net);
    const s1 = trainStep(counting as LearningRule, net, batch, ceEveryStep, { state: s0 }).state as { n: Tensor };
    expect(s0.n.isDisposed).toBe(true);
    expect(values(s1.n)).toEqual([1]);
    const same = bptt();
    const k0 = same.init(net);
    expect(trainStep(same, net, batch, ceEveryStep, { state: k0 }).state).toBe(k0);
    disposeTree([s1, batch] as never);
    net.dispose();
  });

  it("with a runner, its optimizer's state carries over steps; the loss falls on the toy task and no tensor leaks", () => {
    const net = smallNetwork(lif, { seed: 1 });
    const runner = new OptimizerRunner(adam({ lr: 0.02 }), net.params);
    const rule = bptt();
    let state: TensorTree = rule.init(net);
    const losses: number[] = [];
    const counts: number[] = [];
    let observed = 0;
    for (let i = 0; i < 30; i++) {
      const batch = toyTask({ steps: 12, batch: 16, seed: i });
      const r = trainStep(rule, net, batch, ceEveryStep, { state, optimizer: runner, observe: () => observed++ });
      state = r.state;
      losses.push(r.loss);
      disposeTree(batch as never);
      counts.push(tf.memory().numTensors);
    }
    expect(runner.steps).toBe(30);
    expect(observed).toBe(30 * 12);
    expect(losses.slice(-5).reduce((a, b) => a + b, 0) / 5).toBeLessThan(0.6 * losses[0]!);
    expect(new Set(counts.slice(1)).size).toBe(1);
    runner.dispose();
    net.dispose();
  });

  it('a refused update (a requirement core checks) throws through and leaves no tensor behind', () => {
    const net = smallNetwork(lif);
    const batch = toyTask({ steps: 4, batch: 2 });
    const before = tf.memory().numTensors;
    const e = errorOf(() => trainStep(bptt({ lossDecomposesOverTime: true }), net, batch, ceMean));
    expect(e.code).toBe('INCOMPATIBLE');
    expect(e.message).toContain("loss 'ce_mean' does not decompose over time");
    expect(tf.memory().numTensors).toBe(before);
    disposeTree(batch as never);
    net.dispose();
  });
});

describe('errorOf', () => {
  it('returns the SpikeflowError thrown, throws any other error on, and fails when nothing is thrown', () => {
    const e = errorOf(() => {
      throw new SpikeflowError('CLOSED', 'closed');
    });
    expect([e.code, e.message]).toEqual(['CLOSED', 'closed']);
    expect(() =>
      errorOf(() => {
        throw new TypeError('not ours');
      }),
    ).toThrow(TypeError);
    expect(() => errorOf(() => 1)).toThrow(/expected a SpikeflowError/);
  });
});

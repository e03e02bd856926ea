import { beforeAll, describe, expect, it } from 'vitest';
import {
  checkRequirements,
  OptimizerRunner,
  adam,
  buildNetwork,
  builtinSurrogates,
  ceEveryStep,
  ceMseEveryStep,
  detach,
  disposeTree,
  isSpikeflowError,
  mseEveryStep,
  mseLast,
  paramGrads,
  ruleFromSpec,
  stepsOf,
  tf,
  type AnyNeuronModel,
  type Network,
  type Scalar,
  type SequenceBatch,
  type Tensor,
  type TemporalLoss,
} from '@spikeflow/core';
import { bpttGrads, captureUpdates, describeRule, expectGradsClose, gradsOf, maxGradDiff, randomBatch, smallNetwork, type Grads } from '@spikeflow/testing';
import { lif } from '@spikeflow/neuron-lif';
import { alif } from '@spikeflow/neuron-alif';
import { ltc, ltcReadout } from '@spikeflow/neuron-ltc';
import { wasm } from '@spikeflow/backend-wasm';
import { cpu } from '@spikeflow/backend-cpu';
import plugin, { ottt } from './index.js';

const setup = () => wasm.activate();
beforeAll(setup);

describeRule('ottt_A (LIF)', () => ottt(), { neuron: lif, setup });
describeRule('ottt_O (ALIF, detached reset)', () => ottt({ mode: 'online' }), { neuron: alif, neuronParams: { resetDetach: true }, setup });
describeRule('ottt_A, explicit decay, OTTT loss mix (LIF)', () => ottt({ decay: 0.7 }), { neuron: lif, loss: ceMseEveryStep(0.05), setup });

const neurons = new Map<string, AnyNeuronModel>([
  ['lif', lif],
  ['alif', alif],
  ['ltc', ltc],
]);

interface Net {
  readonly layers: number;
  readonly recurrent: boolean;
  readonly kappa: number;
  readonly resetDetach: boolean;
  readonly beta?: number;
}

const BETA = 0.85;
const THRESHOLD = 1;
const SLOPE = 5;

function network(n: Net, seed = 1): Network {
  return smallNetwork(lif, {
    inputs: 6,
    layers: n.layers,
    size: 7,
    outputs: 3,
    recurrent: n.recurrent,
    gain: 2.5,
    params: { beta: n.beta ?? BETA, threshold: THRESHOLD, resetDetach: n.resetDetach },
    readout: { kappa: n.kappa },
    surrogate: { name: 'fast_sigmoid', slope: SLOPE },
    seed,
  });
}

const batch = (T: number, loss: TemporalLoss, seed = 2): SequenceBatch => randomBatch({ steps: T, loss, seed });

/** Heaviside forward, the fast-sigmoid derivative 1/(1 + k|x|)² backward. */
const spike = tf.customGrad(((x: Tensor, save: tf.GradSaveFunc) => {
  save([x]);
  return {
    value: tf.cast(tf.greater(x, 0), 'float32'),
    gradFunc: (dy: Tensor, [u]: Tensor[]) => tf.mul(dy, tf.div(1, tf.square(tf.add(1, tf.mul(SLOPE, tf.abs(u!)))))),
  };
}) as never) as unknown as (x: Tensor) => Tensor;

/** Value `x·W`, gradient to W of `aᵀ·dy` (a: the trace), to x of `dy·Wᵀ`: written with stop-gradients only. */
const traced = (x: Tensor, a: Tensor, w: Tensor) => tf.add(tf.matMul(x, w), tf.sub(tf.matMul(detach(tf.sub(a, x)), w), detach(tf.matMul(tf.sub(a, x), w))));
/** Value `b`, gradient `c·dy` (c: the trace of a constant input 1). */
const tracedBias = (b: Tensor, c: number) => tf.add(b, tf.sub(tf.mul(b, c - 1), detach(tf.mul(b, c - 1))));

/**
 * OTTT by its definition, written out for LIF layers on one tape over the whole sequence: BPTT
 * with every temporal path detached — the membrane and the reset spikes carried into a step, the
 * recurrent spikes, the readout's trace — and every synapse's weight gradient taken against its
 * presynaptic trace â_t = λ·â_{t−1} + x_t (λ = β for the layers, κ for the readout).
 */
function otttByDefinition(net: Network, b: SequenceBatch, loss: TemporalLoss, n: Net, lambda = n.beta ?? BETA): Grads {
  const [T, B] = b.inputs.shape as [number, number];
  const bound = loss.bind(b.targets, { steps: T, batch: B, outputs: net.outputs });
  const xs = stepsOf(b.inputs);
  const P = net.params;
  const { value, grads } = paramGrads(net, () => {
    const beta = n.beta ?? BETA;
    let v = Array.from({ length: n.layers }, () => tf.zeros([B, 7]));
    let s = Array.from({ length: n.layers }, () => tf.zeros([B, 7]));
    let y: Tensor = tf.zeros([B, 3]);
    const trW = new Map<string, Tensor>();
    const trace = (name: string, x: Tensor, l: number) => {
      const prev = trW.get(name);
      const a = prev ? tf.add(tf.mul(prev, l), detach(x)) : detach(x);
      trW.set(name, a);
      return a;
    };
    let c = 0;
    let cOut = 0;
    const terms: Scalar[] = [];
    for (let t = 0; t < T; t++) {
      c = lambda * c + 1;
      cOut = n.kappa * cOut + 1;
      let input = xs.at(t);
      const nv: Tensor[] = [];
      const ns: Tensor[] = [];
      for (let i = 0; i < n.layers; i++) {
        let I = tf.add(traced(input, trace(`${i}.W`, input, lambda), P[`layers.${i}.W`]!), tracedBias(P[`layers.${i}.b`]!, c));
        if (n.recurrent) I = tf.add(I, traced(detach(s[i]!), trace(`${i}.W_rec`, s[i]!, lambda), P[`layers.${i}.W_rec`]!));
        const vi = tf.sub(tf.add(tf.mul(beta, detach(v[i]!)), I), tf.mul(THRESHOLD, detach(s[i]!)));
        const si = spike(tf.sub(vi, THRESHOLD));
        nv.push(vi);
        ns.push(si);
        input = si;
      }
      v = nv;
      s = ns;
      y = tf.add(tf.add(tf.mul(n.kappa, detach(y)), traced(input, trace('out', input, n.kappa), P['readout.W']!)), tracedBias(P['readout.b']!, cOut));
      const term = bound.step!(y, t);
      if (term) terms.push(term);
    }
    return tf.addN(terms) as Scalar;
  });
  value.dispose();
  const out = gradsOf(grads);
  disposeTree(grads);
  bound.dispose();
  return out;
}

const pick = (g: Grads, f: (k: string) => boolean): Grads => Object.fromEntries(Object.entries(g).filter(([k]) => f(k)));

describe('OTTT_A is exact where theory says so', () => {
  for (const backend of ['wasm', 'cpu'] as const) {
    for (const loss of [ceEveryStep, mseEveryStep, ceMseEveryStep(0.05)]) {
      it(`one LIF layer, reset detached, readout without a leak, ${loss.name}: equals BPTT (${backend})`, async () => {
        await (backend === 'wasm' ? wasm : cpu).activate();
        const n: Net = { layers: 1, recurrent: false, kappa: 0, resetDetach: true };
        const net = network(n);
        const b = batch(10, loss);
        const got = captureUpdates(ottt(), net, b, loss);
        expect(got.grads).toHaveLength(1);
        expectGradsClose(got.grads[0]!, bpttGrads(net, b, loss), 2e-5);
        disposeTree(b as never);
        net.dispose();
        await wasm.activate();
      });
    }
  }

  it('the test has teeth: a wrong trace decay, or the instantaneous input (SLTT), is not BPTT', () => {
    const n: Net = { layers: 1, recurrent: false, kappa: 0, resetDetach: true };
    const net = network(n);
    const b = batch(10, ceEveryStep);
    const full = bpttGrads(net, b, ceEveryStep);
    for (const decay of [0, 0.6, 0.95]) {
      const got = captureUpdates(ottt({ decay }), net, b, ceEveryStep).grads[0]!;
      expect(maxGradDiff(got, full, (k) => k.startsWith('layers.'))).toBeGreaterThan(1e-3);
      expectGradsClose(
        pick(got, (k) => k.startsWith('readout.')),
        pick(full, (k) => k.startsWith('readout.')),
        2e-5,
      );
    }
    disposeTree(b as never);
    net.dispose();
  });

  it('under a leaky readout: the readout’s gradient is still BPTT’s (its trace decays with κ), the layer’s drops the readout’s memory', () => {
    const n: Net = { layers: 1, recurrent: false, kappa: 0.8, resetDetach: true };
    const net = network(n);
    const b = batch(10, ceEveryStep);
    const got = captureUpdates(ottt(), net, b, ceEveryStep).grads[0]!;
    const full = bpttGrads(net, b, ceEveryStep);
    const isReadout = (k: string) => k.startsWith('readout.');
    expectGradsClose(pick(got, isReadout), pick(full, isReadout), 2e-5);
    expect(maxGradDiff(got, full, (k) => !isReadout(k))).toBeGreaterThan(1e-3);
    expectGradsClose(got, otttByDefinition(net, b, ceEveryStep, n), 2e-5);
    disposeTree(b as never);
    net.dispose();
  });
});

describe('OTTT equals BPTT with the dropped temporal paths detached', () => {
  const cases: [string, Net, TemporalLoss][] = [
    ['two LIF layers, reset detached, leaky readout, CE every step', { layers: 2, recurrent: false, kappa: 0.8, resetDetach: true }, ceEveryStep],
    ['two recurrent LIF layers, reset attached, MSE every step', { layers: 2, recurrent: true, kappa: 0.6, resetDetach: false }, mseEveryStep],
    ['one recurrent LIF layer, MSE on the last step only', { layers: 1, recurrent: true, kappa: 0.9, resetDetach: false }, mseLast],
  ];
  for (const [what, n, loss] of cases) {
    it(what, () => {
      const net = network(n);
      const b = batch(9, loss);
      const got = captureUpdates(ottt(), net, b, loss);
      expect(got.grads).toHaveLength(1);
      expectGradsClose(got.grads[0]!, otttByDefinition(net, b, loss, n), 2e-5);
      expect(maxGradDiff(got.grads[0]!, bpttGrads(net, b, loss))).toBeGreaterThan(1e-4);
      disposeTree(b as never);
      net.dispose();
    });
  }

  it('an explicit decay replaces β in every layer’s trace', () => {
    const n: Net = { layers: 2, recurrent: true, kappa: 0.7, resetDetach: true };
    const net = network(n);
    const b = batch(8, ceEveryStep);
    expectGradsClose(captureUpdates(ottt({ decay: 0.5 }), net, b, ceEveryStep).grads[0]!, otttByDefinition(net, b, ceEveryStep, n, 0.5), 2e-5);
    disposeTree(b as never);
    net.dispose();
  });
});

describe('OTTT_O', () => {
  it('updates after every step; the first update is step 0’s gradient, and the weights move between steps', () => {
    const n: Net = { layers: 1, recurrent: true, kappa: 0.8, resetDetach: false };
    const net = network(n);
    const T = 6;
    const b = batch(T, ceEveryStep);
    const A = captureUpdates(ottt(), net, b, ceEveryStep).grads[0]!;
    const runner = new OptimizerRunner(adam({ lr: 0.05 }), net.params);
    const applied: Grads[] = [];
    const seen: number[] = [];
    const r = ottt({ mode: 'online' }).update(
      b,
      {},
      {
        network: net,
        loss: ceEveryStep,
        apply: (g) => {
          applied.push(gradsOf(g));
          runner.apply(g);
        },
        observe: (t) => seen.push(t),
      },
    );
    expect(r.report.updates).toBe(T);
    expect(seen).toEqual([0, 1, 2, 3, 4, 5]);
    expect(ottt({ mode: 'online' }).updatesPerSequence!(T)).toBe(T);
    expect(ottt().updatesPerSequence!(T)).toBe(1);
    // Step 0 alone: the first online update; the sum of online updates is not OTTT_A's (the weights moved).
    // (ce_every_step divides each term by T: step 0 of a one-step sequence weighs T times more.)
    const b0 = { inputs: tf.slice(b.inputs, 0, 1), targets: b.targets };
    const net0 = network(n);
    const alone = captureUpdates(ottt(), net0, b0, ceEveryStep).grads[0]!;
    expectGradsClose(applied[0]!, Object.fromEntries(Object.entries(alone).map(([k, g]) => [k, g.map((x) => x / T)])), 2e-5);
    const summed = Object.fromEntries(
      Object.keys(A).map((k) => [k, applied.reduce((acc, g) => acc.map((x, i) => x + g[k]![i]!), new Array(A[k]!.length).fill(0) as number[])]),
    );
    expect(maxGradDiff(summed, A)).toBeGreaterThan(1e-4);
    runner.dispose();
    b0.inputs.dispose();
    disposeTree(b as never);
    net0.dispose();
    net.dispose();
  });
});

describe('OTTT configuration and refusals', () => {
  it('comes from a config through the plugin; bad options are refused naming the field', () => {
    const rules = new Map(plugin.rules!.map((e) => [e.name, e]));
    expect(ruleFromSpec({ name: 'ottt' }, rules).name).toBe('ottt(A)');
    const r = ruleFromSpec({ name: 'ottt', mode: 'online', decay: 0.5 }, rules);
    expect(r.name).toBe('ottt(O, λ=0.5)');
    expect([r.memory, r.gradient]).toEqual(['O(1)', 'approximate']);
    for (const bad of [{ mode: 'A' }, { decay: 1.5 }, { decay: -1 }, { lambda: 0.5 }]) {
      let error: unknown;
      try {
        ruleFromSpec({ name: 'ottt', ...bad }, rules);
      } catch (e) {
        error = e;
      }
      expect(isSpikeflowError(error, 'CONFIG_INVALID')).toBe(true);
      expect(String((error as Error).message)).toContain(`rule.${Object.keys(bad)[0]}`);
    }
  });

  it('a neuron without a fixed decay needs an explicit one: core checks the declared requirement, INCOMPATIBLE naming the rule and the layer', () => {
    const spec = (params: Record<string, unknown>, neuron = 'lif') => ({ inputs: 4, layers: [{ neuron, size: 5, params }], readout: { size: 2 } });
    const reg = { neurons, surrogates: builtinSurrogates };
    const learnt = buildNetwork(spec({ learnBeta: true }), reg);
    expect(ottt().requires.neuron).toEqual(['membraneDecay']);
    expect(ottt({ decay: 0.9 }).requires.neuron).toBeUndefined();
    let error: unknown;
    try {
      checkRequirements(ottt(), learnt, ceEveryStep);
    } catch (e) {
      error = e;
    }
    expect(isSpikeflowError(error, 'INCOMPATIBLE')).toBe(true);
    expect(String((error as Error).message)).toMatch(
      /^rule 'ottt\(A\)' cannot train this run: model\.layers\[0\]\.neuron: it needs a fixed membrane decay.*neuron 'lif'/,
    );
    expect(() => checkRequirements(ottt({ decay: 0.9 }), learnt, ceEveryStep)).not.toThrow();
    // The first update checks it too, before any step runs.
    const b = batch(3, ceEveryStep);
    expect(() => captureUpdates(ottt(), learnt, b, ceEveryStep)).toThrow(/model\.layers\[0\]\.neuron/);
    disposeTree(b as never);
    learnt.dispose();
    const liquid = buildNetwork(spec({}, 'ltc'), reg);
    expect(() => checkRequirements(ottt(), liquid, ceEveryStep)).toThrow(/neuron 'ltc'/);
    liquid.dispose();
  });

  it('trains an LTC-SN layer and an ltc readout with an explicit decay (their own parameters get the instantaneous gradient)', () => {
    const net = buildNetwork(
      { inputs: 6, layers: [{ neuron: 'ltc', size: 5 }], readout: { size: 3, kind: 'ltc' } },
      { neurons, surrogates: builtinSurrogates, readouts: [ltcReadout] },
    );
    const b = batch(5, ceEveryStep);
    const got = captureUpdates(ottt({ decay: 0.8 }), net, b, ceEveryStep).grads[0]!;
    for (const k of Object.keys(net.params)) expect(got[k], k).toBeDefined();
    expect(Object.values(got).every((g) => g.every(Number.isFinite))).toBe(true);
    disposeTree(b as never);
    net.dispose();
  });
});

import { beforeAll, describe, expect, it } from 'vitest';
import {
  checkRequirements,
  IntegrateFireLayer,
  KernelTable,
  LeakyReadout,
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
  referenceKernels,
  ruleFromSpec,
  inputShape,
  stepsOf,
  tf,
  type AnyNeuronModel,
  type Network,
  type Scalar,
  type SequenceBatch,
  type Tensor,
  type TemporalLoss,
} from '@spikeflow/core';
import {
  bpttGrads,
  captureUpdates,
  describeRule,
  expectGradsClose,
  gradsOf,
  maxGradDiff,
  randomBatch,
  smallNetwork,
  streamed,
  type Grads,
} from '@spikeflow/testing';
import { lif } from '@spikeflow/neuron-lif';
import { alif } from '@spikeflow/neuron-alif';
import { ltc, ltcReadout } from '@spikeflow/neuron-ltc';
import { wasm } from '@spikeflow/backend-wasm';
import { cpu } from '@spikeflow/backend-cpu';
import plugin, { ottt, type OtttOptions } from './index.js';

const setup = () => wasm.activate();
beforeAll(setup);

/** The fast kernels of the wasm and cpu backends: a network built with them runs fused on either. */
const fast = new KernelTable();
for (const r of [...(wasm.kernels ?? []), ...(cpu.kernels ?? [])]) fast.register(r);

/** Core's composite references registered as the fused kernels: the fused path, traces included, on the references. */
const references = new KernelTable();
for (const backend of ['wasm', 'cpu'])
  for (const kernel of [IntegrateFireLayer, LeakyReadout] as const) references.register({ kernel, backend, impl: referenceKernels[kernel] as never });

/** How OTTT_A runs a network: step by step through the synapse hook (no fast kernels), or fused in windows of `window` steps with the traces in the kernels' weight gradients. */
interface Path {
  readonly name: string;
  readonly kernels?: KernelTable;
  readonly window?: number;
}

const stepByStep: Path = { name: 'step by step' };
/** Every path the exactness tests take: step by step, and fused in windows of 1, 4 (the last one shorter) and the whole sequence. */
const paths: readonly Path[] = [
  stepByStep,
  { name: 'fused, windows of 1', kernels: fast, window: 1 },
  { name: 'fused, windows of 4', kernels: fast, window: 4 },
  { name: 'fused, one window', kernels: fast, window: 1000 },
];

/** OTTT_A's one update on `path` (a network of `n` built for it, the same weights on every path). */
function otttOn(path: Path, n: Net, b: SequenceBatch, loss: TemporalLoss, options: OtttOptions = {}): Grads {
  const net = network(n, 1, path.kernels);
  try {
    expect(net.fused, path.name).toBe(path.kernels !== undefined);
    const got = captureUpdates(ottt({ ...options, ...(path.window ? { window: path.window } : {}) }), net, b, loss);
    expect(got.grads).toHaveLength(1);
    return got.grads[0]!;
  } finally {
    net.dispose();
  }
}

/** `(wasm)` or `(cpu)`, activated. */
const on = async (backend: 'wasm' | 'cpu') => (backend === 'wasm' ? wasm : cpu).activate();

describeRule('ottt_A (LIF)', () => ottt(), { neuron: lif, setup });
describeRule('ottt_O (ALIF, detached reset)', () => ottt({ mode: 'online' }), { neuron: alif, neuronParams: { resetDetach: true }, setup });
describeRule('ottt_A, explicit decay, OTTT loss mix (LIF)', () => ottt({ decay: 0.7 }), { neuron: lif, loss: ceMseEveryStep(0.05), setup });
describeRule('ottt_A, fused windows of 8 (LIF)', () => ottt({ window: 8 }), { neuron: lif, setup, kernels: fast, memorySteps: [32, 128] });
describeRule('ottt_A, fused windows of 5 (ALIF)', () => ottt({ window: 5 }), { neuron: alif, setup, kernels: fast });

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

function network(n: Net, seed = 1, kernels?: KernelTable): Network {
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
    ...(kernels ? { kernels } : {}),
  });
}

const batch = (T: number, loss: TemporalLoss, seed = 2): SequenceBatch<Tensor> => randomBatch({ steps: T, loss, seed });

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
  const [T, B] = inputShape(b.inputs) as [number, number];
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
      it(`one LIF layer, reset detached, readout without a leak, ${loss.name}: equals BPTT, step by step and fused in windows of 1, 4 and the whole sequence (${backend})`, async () => {
        await on(backend);
        const n: Net = { layers: 1, recurrent: false, kappa: 0, resetDetach: true };
        const net = network(n);
        const b = batch(10, loss);
        const want = bpttGrads(net, b, loss);
        for (const path of paths) expectGradsClose(otttOn(path, n, b, loss), want, 2e-5);
        disposeTree(b as never);
        net.dispose();
        await wasm.activate();
      });
    }
  }

  it('the test has teeth: a wrong trace decay, or the instantaneous input (SLTT), is not BPTT (step by step and fused)', () => {
    const n: Net = { layers: 1, recurrent: false, kappa: 0, resetDetach: true };
    const net = network(n);
    const b = batch(10, ceEveryStep);
    const full = bpttGrads(net, b, ceEveryStep);
    for (const [decay, path] of [0, 0.6, 0.95].flatMap((d) => [stepByStep, paths[2]!].map((p) => [d, p] as const))) {
      const got = otttOn(path, n, b, ceEveryStep, { decay });
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

  for (const backend of ['wasm', 'cpu'] as const) {
    it(`under a leaky readout: the readout’s gradient is still BPTT’s (its trace decays with κ), the layer’s drops the readout’s memory; every path (${backend})`, async () => {
      await on(backend);
      const n: Net = { layers: 1, recurrent: false, kappa: 0.8, resetDetach: true };
      const net = network(n);
      const b = batch(10, ceEveryStep);
      const full = bpttGrads(net, b, ceEveryStep);
      const definition = otttByDefinition(net, b, ceEveryStep, n);
      const isReadout = (k: string) => k.startsWith('readout.');
      for (const path of paths) {
        const got = otttOn(path, n, b, ceEveryStep);
        expectGradsClose(pick(got, isReadout), pick(full, isReadout), 2e-5);
        expect(maxGradDiff(got, full, (k) => !isReadout(k))).toBeGreaterThan(1e-3);
        expectGradsClose(got, definition, 2e-5);
      }
      disposeTree(b as never);
      net.dispose();
      await wasm.activate();
    });
  }
});

describe('OTTT equals BPTT with the dropped temporal paths detached', () => {
  const cases: [string, Net, TemporalLoss][] = [
    ['two LIF layers, reset detached, leaky readout, CE every step', { layers: 2, recurrent: false, kappa: 0.8, resetDetach: true }, ceEveryStep],
    ['two recurrent LIF layers, reset attached, MSE every step', { layers: 2, recurrent: true, kappa: 0.6, resetDetach: false }, mseEveryStep],
    ['one recurrent LIF layer, MSE on the last step only', { layers: 1, recurrent: true, kappa: 0.9, resetDetach: false }, mseLast],
  ];
  for (const backend of ['wasm', 'cpu'] as const) {
    for (const [what, n, loss] of cases) {
      it(`${what}: step by step and fused in windows of 1, 4 and the whole sequence (${backend})`, async () => {
        await on(backend);
        const net = network(n);
        const b = batch(9, loss);
        const want = otttByDefinition(net, b, loss, n);
        const full = bpttGrads(net, b, loss);
        for (const path of paths) {
          const got = otttOn(path, n, b, loss);
          expectGradsClose(got, want, 2e-5);
          expect(maxGradDiff(got, full)).toBeGreaterThan(1e-4);
        }
        disposeTree(b as never);
        net.dispose();
        await wasm.activate();
      });
    }

    it(`an explicit decay replaces β in every layer’s trace, on every path (${backend})`, async () => {
      await on(backend);
      const n: Net = { layers: 2, recurrent: true, kappa: 0.7, resetDetach: true };
      const net = network(n);
      const b = batch(8, ceEveryStep);
      const want = otttByDefinition(net, b, ceEveryStep, n, 0.5);
      for (const path of paths) expectGradsClose(otttOn(path, n, b, ceEveryStep, { decay: 0.5 }), want, 2e-5);
      disposeTree(b as never);
      net.dispose();
      await wasm.activate();
    });
  }
});

describe('OTTT_A on fused windows: the traces in the kernels’ weight gradients', () => {
  it('on core’s composite references registered as the fused kernels, the gradient of the definition (windows of 3)', () => {
    const n: Net = { layers: 2, recurrent: true, kappa: 0.6, resetDetach: false };
    const net = network(n);
    const b = batch(8, mseEveryStep);
    expectGradsClose(
      otttOn({ name: 'fused on the references', kernels: references, window: 3 }, n, b, mseEveryStep),
      otttByDefinition(net, b, mseEveryStep, n),
      2e-5,
    );
    disposeTree(b as never);
    net.dispose();
  });

  for (const backend of ['wasm', 'cpu'] as const) {
    it(`two recurrent ALIF layers (an adaptive threshold, ρ trained): fused windows of 1, 3 and the whole sequence equal the steps one at a time (${backend})`, async () => {
      await on(backend);
      const alifNet = (kernels?: KernelTable) =>
        smallNetwork(alif, {
          inputs: 6,
          layers: 2,
          size: 7,
          outputs: 3,
          gain: 2.5,
          params: { learnRho: true },
          surrogate: { name: 'fast_sigmoid', slope: SLOPE },
          seed: 4,
          ...(kernels ? { kernels } : {}),
        });
      const b = batch(10, ceEveryStep, 6);
      const stepped = alifNet();
      const want = captureUpdates(ottt(), stepped, b, ceEveryStep).grads[0]!;
      expect(want['layers.0.rho']).toBeDefined();
      stepped.dispose();
      for (const window of [1, 3, 100]) {
        const net = alifNet(fast);
        expect(net.fused).toBe(true);
        expectGradsClose(captureUpdates(ottt({ window }), net, b, ceEveryStep).grads[0]!, want, 2e-5);
        net.dispose();
      }
      disposeTree(b as never);
      await wasm.activate();
    });
  }

  it('a step source (a dataset’s batch, made a window at a time) gives the same gradient as the tensor', () => {
    const n: Net = { layers: 2, recurrent: true, kappa: 0.8, resetDetach: false };
    const b = batch(11, ceEveryStep);
    const lazy = streamed(b);
    const path = paths[2]!;
    expect(otttOn(path, n, lazy, ceEveryStep)).toEqual(otttOn(path, n, b, ceEveryStep));
    expect(lazy.inputs.calls.length).toBeGreaterThan(0);
    disposeTree(b as never);
  });

  it('OTTT_O on a network that runs fused steps through the synapse hook: the same updates as without the fast kernels', () => {
    const n: Net = { layers: 1, recurrent: true, kappa: 0.8, resetDetach: false };
    const b = batch(5, ceEveryStep);
    const run = (kernels?: KernelTable) => {
      const net = network(n, 1, kernels);
      const got = captureUpdates(ottt({ mode: 'online' }), net, b, ceEveryStep).grads;
      net.dispose();
      return got;
    };
    const fused = run(fast);
    const stepped = run();
    expect(fused).toHaveLength(5);
    fused.forEach((g, t) => expectGradsClose(g, stepped[t]!, 1e-6));
    disposeTree(b as never);
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
    // Its traces follow the layers' inputs before any dropout mask: a model with dropout is refused.
    const dropped = buildNetwork(
      {
        inputs: 4,
        layers: [
          { neuron: 'lif', size: 5 },
          { type: 'dropout', rate: 0.2 },
        ],
        readout: { size: 2 },
      },
      reg,
    );
    expect(() => checkRequirements(ottt(), dropped, ceEveryStep)).toThrow(/model\.layers\[1\]: .*does not apply dropout masks/);
    dropped.dispose();
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

describe('OTTT_A on convolutional networks (fused): the trace of each step’s input in the filter gradient', () => {
  /** A LIF conv layer on 5×5×2 maps, pooled, optionally a dense LIF layer, and a readout. */
  const convNet = (o: { resetDetach: boolean; dense: boolean; pool: 'maxpool' | 'avgpool'; kappa: number }, kernels?: KernelTable) =>
    buildNetwork(
      {
        inputShape: [5, 5, 2],
        layers: [
          {
            type: 'conv2d',
            neuron: 'lif',
            channels: 3,
            kernel: 3,
            padding: 'same',
            gain: 2.5,
            params: { beta: BETA, threshold: THRESHOLD, resetDetach: o.resetDetach },
          },
          { type: o.pool, size: 2 },
          { type: 'flatten' },
          ...(o.dense ? [{ neuron: 'lif', size: 7, gain: 2.5, params: { beta: BETA, threshold: THRESHOLD, resetDetach: o.resetDetach } }] : []),
        ],
        readout: { size: 3, kappa: o.kappa },
        surrogate: { name: 'fast_sigmoid', slope: SLOPE },
      },
      { neurons, surrogates: builtinSurrogates },
      { seed: 3, ...(kernels ? { kernels } : {}) },
    );
  const convBatch = (T: number, loss: TemporalLoss) => randomBatch({ steps: T, loss, inputs: 50, seed: 5 });

  /** `conv(x, W)` whose filter gradient is taken against the trace `a` (value and input gradient as `conv(x, W)`), with stop-gradients only. */
  const tracedConv = (x: Tensor, a: Tensor, w: Tensor) => {
    const c = (t: Tensor, k: Tensor) => tf.conv2d(tf.reshape(t, [-1, 5, 5, 2]) as tf.Tensor4D, k as tf.Tensor4D, 1, 'same');
    return tf.reshape(tf.add(c(x, w), tf.sub(c(detach(tf.sub(a, x)), w), detach(c(tf.sub(a, x), w)))), [x.shape[0]!, -1]);
  };

  /** OTTT by its definition on a conv layer (average pooled) and a dense layer, both LIF, step by step on one tape (see `otttByDefinition`). */
  function convByDefinition(net: Network, b: SequenceBatch, loss: TemporalLoss, kappa: number): Grads {
    const [T, B] = inputShape(b.inputs) as [number, number];
    const bound = loss.bind(b.targets, { steps: T, batch: B, outputs: 3 });
    const xs = stepsOf(b.inputs);
    const P = net.params;
    const { value, grads } = paramGrads(net, () => {
      let v1: Tensor = tf.zeros([B, 75]);
      let s1: Tensor = tf.zeros([B, 75]);
      let v2: Tensor = tf.zeros([B, 7]);
      let s2: Tensor = tf.zeros([B, 7]);
      let y: Tensor = tf.zeros([B, 3]);
      const tr = new Map<string, Tensor>();
      const trace = (name: string, x: Tensor, l: number) => {
        const prev = tr.get(name);
        const a = prev ? tf.add(tf.mul(prev, l), detach(x)) : detach(x);
        tr.set(name, a);
        return a;
      };
      let c = 0;
      let cOut = 0;
      const terms: Scalar[] = [];
      for (let t = 0; t < T; t++) {
        c = BETA * c + 1;
        cOut = kappa * cOut + 1;
        const x = xs.at(t);
        // conv2d: the bias per channel, its gradient c_t·Σ g over the positions.
        const I1 = tf.add(tf.reshape(tracedConv(x, trace('conv', x, BETA), P['layers.0.W']!), [B, 25, 3]), tracedBias(P['layers.0.b']!, c));
        v1 = tf.sub(tf.add(tf.mul(BETA, detach(v1)), tf.reshape(I1, [B, 75])), tf.mul(THRESHOLD, detach(s1)));
        s1 = spike(tf.sub(v1, THRESHOLD));
        const pooled = tf.reshape(tf.avgPool(tf.reshape(s1, [B, 5, 5, 3]) as tf.Tensor4D, 2, 2, 'valid'), [B, 12]);
        const I2 = tf.add(traced(pooled, trace('dense', pooled, BETA), P['layers.1.W']!), tracedBias(P['layers.1.b']!, c));
        v2 = tf.sub(tf.add(tf.mul(BETA, detach(v2)), I2), tf.mul(THRESHOLD, detach(s2)));
        s2 = spike(tf.sub(v2, THRESHOLD));
        y = tf.add(tf.add(tf.mul(kappa, detach(y)), traced(s2, trace('out', s2, kappa), P['readout.W']!)), tracedBias(P['readout.b']!, cOut));
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

  for (const backend of ['wasm', 'cpu'] as const) {
    it(`one LIF conv layer, reset detached, max pooling into a readout without a leak: equals BPTT in windows of 1, 4 and the whole sequence (${backend})`, async () => {
      await on(backend);
      const net = convNet({ resetDetach: true, dense: false, pool: 'maxpool', kappa: 0 }, fast);
      expect(net.fused).toBe(true);
      const b = convBatch(9, ceEveryStep);
      const want = bpttGrads(net, b, ceEveryStep);
      expect(Math.max(...Object.values(want['layers.0.W']!).map(Math.abs))).toBeGreaterThan(1e-3);
      for (const window of [1, 4, 100]) expectGradsClose(captureUpdates(ottt({ window }), net, b, ceEveryStep).grads[0]!, want, 2e-5);
      // Spikes as bytes: a bool input trains bitwise as its float32 twin.
      const bytes = { ...b, inputs: tf.cast(b.inputs as Tensor, 'bool') };
      expect(captureUpdates(ottt({ window: 4 }), net, bytes, ceEveryStep).grads[0]).toEqual(captureUpdates(ottt({ window: 4 }), net, b, ceEveryStep).grads[0]);
      bytes.inputs.dispose();
      // Teeth: a trace decaying otherwise is not BPTT.
      expect(maxGradDiff(captureUpdates(ottt({ decay: 0.5 }), net, b, ceEveryStep).grads[0]!, want, (k) => k.startsWith('layers.'))).toBeGreaterThan(1e-3);
      disposeTree(b as never);
      net.dispose();
      await wasm.activate();
    });

    it(`a conv layer, average pooling, a dense layer and a leaky readout, reset attached: the gradient of OTTT's definition in windows of 1, 3 and the whole sequence (${backend})`, async () => {
      await on(backend);
      const net = convNet({ resetDetach: false, dense: true, pool: 'avgpool', kappa: 0.8 }, fast);
      const b = convBatch(8, mseEveryStep);
      const want = convByDefinition(net, b, mseEveryStep, 0.8);
      const full = bpttGrads(net, b, mseEveryStep);
      for (const window of [1, 3, 100]) {
        const got = captureUpdates(ottt({ window }), net, b, mseEveryStep).grads[0]!;
        expectGradsClose(got, want, 2e-5);
        expect(maxGradDiff(got, full)).toBeGreaterThan(1e-4);
      }
      disposeTree(b as never);
      net.dispose();
      await wasm.activate();
    });
  }

  it('refuses conv layers it cannot trace: online mode, no fast kernels, batch normalisation, SEW blocks — naming the way out', () => {
    const b = convBatch(3, ceEveryStep);
    const refusal = (rule: ReturnType<typeof ottt>, net: Network) => {
      let error: unknown;
      try {
        captureUpdates(rule, net, b, ceEveryStep);
      } catch (e) {
        error = e;
      }
      net.dispose();
      expect(isSpikeflowError(error, 'INCOMPATIBLE'), String(error)).toBe(true);
      return String((error as Error).message);
    };
    const o = { resetDetach: false, dense: false, pool: 'maxpool' as const, kappa: 0 };
    expect(refusal(ottt({ mode: 'online' }), convNet(o, fast))).toMatch(/model\.layers\[0\]\.type: it trains dense layers only/);
    expect(refusal(ottt(), convNet(o))).toMatch(/does not run fused on this backend; use LIF or ALIF neurons .* fast kernels/);
    const spatial = (layer: object) =>
      buildNetwork(
        { inputShape: [5, 5, 2], layers: [layer, { type: 'flatten' }], readout: { size: 3 } },
        { neurons, surrogates: builtinSurrogates },
        { kernels: fast },
      );
    expect(refusal(ottt(), spatial({ type: 'conv2d', neuron: 'lif', channels: 2, kernel: 3, batchNorm: true }))).toMatch(
      /batch-normalised.*remove "batchNorm"/,
    );
    expect(refusal(ottt(), spatial({ type: 'sew_block', neuron: 'lif', connect: 'ADD' }))).toMatch(/sew_block.*use conv2d layers/);
    disposeTree(b as never);
  });
});

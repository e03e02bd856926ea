import { beforeAll, describe, expect, it } from 'vitest';
import {
  KernelTable,
  OptimizerRunner,
  adam,
  buildNetwork,
  builtinSurrogates,
  ceEveryStep,
  detach,
  disposeTree,
  isSpikeflowError,
  mseEveryStep,
  mseLast,
  paramGrads,
  ruleFromSpec,
  inputShape,
  stepsOf,
  tf,
  treeMap,
  type AnyNeuronModel,
  type NetState,
  type Network,
  type Scalar,
  type SequenceBatch,
  type TemporalLoss,
} from '@spikeflow/core';
import {
  bpttGrads,
  captureUpdates,
  describeRule,
  expectExactResume,
  expectGradsClose,
  gradsOf,
  maxGradDiff,
  randomBatch,
  smallNetwork,
  sumGrads,
  toyTask,
  type Grads,
} from '@spikeflow/testing';
import { lif } from '@spikeflow/neuron-lif';
import { alif } from '@spikeflow/neuron-alif';
import { wasm } from '@spikeflow/backend-wasm';
import { cpu } from '@spikeflow/backend-cpu';
import { addTask } from '@spikeflow/dataset-add-task';
import plugin, { sltt, slttSteps } from './index.js';

const setup = () => wasm.activate();
beforeAll(setup);

/** The fast kernels of the wasm and cpu backends: a network built with them runs fused on either. */
const fast = new KernelTable();
for (const r of [...(wasm.kernels ?? []), ...(cpu.kernels ?? [])]) fast.register(r);

describeRule('sltt, windows of 8 (LIF)', () => sltt({ window: 8 }), { neuron: lif, setup, memorySteps: [32, 128] });
describeRule('sltt, fused windows of 8 (ALIF)', () => sltt({ window: 8 }), { neuron: alif, setup, kernels: fast, memorySteps: [32, 128] });
describeRule('sltt-3, online (ALIF)', () => sltt({ k: 3, mode: 'online' }), { neuron: alif, setup });

const neurons = new Map<string, AnyNeuronModel>([
  ['lif', lif],
  ['alif', alif],
]);

interface Net {
  readonly neuron: 'lif' | 'alif';
  readonly layers: number;
  readonly recurrent: boolean;
  readonly beta?: number;
  readonly kappa?: number;
  readonly resetDetach?: boolean;
}

function network(n: Net, seed = 1, kernels?: KernelTable): Network {
  return smallNetwork(neurons.get(n.neuron)!, {
    ...(kernels ? { kernels } : {}),
    inputs: 6,
    layers: n.layers,
    size: 7,
    outputs: 3,
    recurrent: n.recurrent,
    gain: 2.5,
    params: { beta: n.beta ?? 0.85, resetDetach: n.resetDetach ?? false },
    readout: { kappa: n.kappa ?? 0.8 },
    surrogate: { name: 'fast_sigmoid', slope: 5 },
    seed,
  });
}

const batch = (T: number, loss: TemporalLoss, seed = 2): SequenceBatch => randomBatch({ steps: T, loss, seed });

/**
 * BPTT on one tape over the whole sequence, with the state carried into every step detached
 * (every neuron state field, the previous spikes, the readout's trace): the gradient SLTT claims.
 * Only the terms of `steps` (default all) enter the loss.
 */
function detachedStateBptt(net: Network, b: SequenceBatch, loss: TemporalLoss, steps?: readonly number[]): Grads {
  const [T, B] = inputShape(b.inputs) as [number, number];
  const bound = loss.bind(b.targets, { steps: T, batch: B, outputs: net.outputs });
  const xs = stepsOf(b.inputs);
  const use = new Set(steps ?? Array.from({ length: T }, (_, t) => t));
  const { value, grads } = paramGrads(net, () => {
    const p = net.prepare();
    let s: NetState = net.init(B);
    const terms: Scalar[] = [];
    for (let t = 0; t < T; t++) {
      const out = net.step(p, treeMap(s as never, (x) => detach(x)) as NetState, xs.at(t));
      const term = use.has(t) ? bound.step!(out.readout, t) : null;
      if (term) terms.push(term);
      s = out.state;
    }
    return tf.addN(terms) as Scalar;
  });
  value.dispose();
  const out = gradsOf(grads);
  disposeTree(grads);
  bound.dispose();
  return out;
}

describe('SLTT equals BPTT with the temporal dependencies detached', () => {
  const cases: [string, Net, TemporalLoss][] = [
    ['one recurrent LIF layer, CE every step', { neuron: 'lif', layers: 1, recurrent: true }, ceEveryStep],
    ['two LIF layers, MSE every step', { neuron: 'lif', layers: 2, recurrent: false }, mseEveryStep],
    ['two recurrent ALIF layers, CE every step', { neuron: 'alif', layers: 2, recurrent: true }, ceEveryStep],
    ['one ALIF layer, MSE on the last step only', { neuron: 'alif', layers: 1, recurrent: false }, mseLast],
  ];
  for (const backend of ['wasm', 'cpu'] as const) {
    for (const [what, n, loss] of cases) {
      it(`${what} (${backend})`, async () => {
        await (backend === 'wasm' ? wasm : cpu).activate();
        const net = network(n);
        const b = batch(9, loss);
        const want = detachedStateBptt(net, b, loss);
        // Step by step and through the fused kernels (the same weights), one step at a time, in windows of 4 (the last one
        // shorter) and in one window of the whole sequence: the same gradient.
        const fused = network(n, 1, fast);
        expect([net.fused, fused.fused]).toEqual([false, true]);
        for (const on of [net, fused]) {
          for (const window of [1, 4, 64]) {
            const w = captureUpdates(sltt({ window }), on, b, loss);
            expect(w.grads).toHaveLength(1);
            expectGradsClose(w.grads[0]!, want, 2e-5);
          }
        }
        fused.dispose();
        const got = captureUpdates(sltt(), net, b, loss);
        // The dropped temporal paths matter on these networks: full BPTT differs.
        if (loss !== mseLast || n.recurrent) expect(maxGradDiff(got.grads[0]!, bpttGrads(net, b, loss))).toBeGreaterThan(1e-3);
        disposeTree(b as never);
        net.dispose();
        await wasm.activate();
      });
    }
  }

  it('on a conv network (conv2d, max pooling, a SEW block, a dense layer), stepped through composite ops, on wasm and cpu', async () => {
    const spec = {
      inputShape: [6, 6, 2],
      layers: [
        { type: 'conv2d', neuron: 'lif', channels: 3, kernel: 3, padding: 'same', gain: 3, params: { beta: 0.85 } },
        { type: 'sew_block', neuron: 'alif', connect: 'IAND', gain: 3, params: { beta: 0.85 } },
        { type: 'maxpool', size: 2 },
        { type: 'flatten' },
        { neuron: 'lif', size: 5, gain: 2.5, params: { beta: 0.85 } },
      ],
      readout: { size: 3, kappa: 0.8 },
      surrogate: { name: 'fast_sigmoid', slope: 5 },
    };
    for (const backend of [wasm, cpu]) {
      await backend.activate();
      const net = buildNetwork(spec, { neurons, surrogates: builtinSurrogates }, { seed: 1 });
      const b = randomBatch({ steps: 6, loss: ceEveryStep, inputs: 72 });
      const want = detachedStateBptt(net, b, ceEveryStep);
      for (const window of [1, 4]) {
        const w = captureUpdates(sltt({ window }), net, b, ceEveryStep);
        expectGradsClose(w.grads[0]!, want, 2e-5);
      }
      expect(maxGradDiff(want, bpttGrads(net, b, ceEveryStep))).toBeGreaterThan(1e-3);
      disposeTree(b as never);
      net.dispose();
    }
    await wasm.activate();
  });

  it('without temporal dependencies (β = 0, reset detached, no recurrence, κ = 0) it is full BPTT; with a leak it is not', () => {
    for (const beta of [0, 0.9]) {
      const net = network({ neuron: 'lif', layers: 2, recurrent: false, beta, kappa: 0, resetDetach: true });
      const b = batch(8, ceEveryStep, 5);
      const got = captureUpdates(sltt(), net, b, ceEveryStep).grads[0]!;
      const full = bpttGrads(net, b, ceEveryStep);
      if (beta === 0) expectGradsClose(got, full, 2e-5);
      else expect(maxGradDiff(got, full)).toBeGreaterThan(1e-3);
      disposeTree(b as never);
      net.dispose();
    }
  });

  it('reports the sum of the per-step losses, SLTT-K’s forward-only steps included', () => {
    const net = network({ neuron: 'lif', layers: 1, recurrent: true });
    const b = batch(7, ceEveryStep);
    const got = captureUpdates(sltt(), net, b, ceEveryStep);
    expect(captureUpdates(sltt({ k: 2 }), net, b, ceEveryStep).loss).toBeCloseTo(got.loss, 5);
    const T = 7;
    const bound = ceEveryStep.bind(b.targets, { steps: T, batch: 4, outputs: 3 });
    const want = tf.tidy(() => {
      const ys: tf.Tensor[] = [];
      let s = net.init(4);
      const xs = stepsOf(b.inputs);
      const p = net.prepare();
      for (let t = 0; t < T; t++) {
        const out = net.step(p, s, xs.at(t));
        s = out.state;
        ys.push(out.readout);
      }
      return bound.sequence(ys).dataSync()[0]!;
    });
    expect(got.loss).toBeCloseTo(want, 5);
    bound.dispose();
    disposeTree(b as never);
    net.dispose();
  });
});

describe('SLTT-K', () => {
  it('draws K distinct steps per sequence from (seed, sequence) alone; K ≥ T is every step', () => {
    const a = slttSteps(20, 5, 3, 0);
    expect(a).toHaveLength(5);
    expect(new Set(a).size).toBe(5);
    expect(a.every((t) => Number.isInteger(t) && t >= 0 && t < 20)).toBe(true);
    expect([...a].sort((x, y) => x - y)).toEqual(a);
    expect(slttSteps(20, 5, 3, 0)).toEqual(a);
    expect(slttSteps(20, 5, 3, 1)).not.toEqual(a);
    expect(slttSteps(20, 5, 4, 0)).not.toEqual(a);
    expect(slttSteps(6, 9, 0, 0)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(slttSteps(6, undefined, 0, 0)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('touches exactly K steps: its gradient is the sum of those steps’ terms and of no others; the next sequence draws anew', () => {
    const net = network({ neuron: 'lif', layers: 1, recurrent: true });
    const T = 10;
    const K = 3;
    const b = batch(T, ceEveryStep);
    const perStep = Array.from({ length: T }, (_, t) => detachedStateBptt(net, b, ceEveryStep, [t]));
    const rule = sltt({ k: K, seed: 7 });
    let state = rule.init(net);
    for (let sequence = 0; sequence < 3; sequence++) {
      const chosen = slttSteps(T, K, 7, sequence);
      const got = captureUpdates(rule, net, b, ceEveryStep, { state, keepState: true });
      state = got.state as typeof state;
      expect(state).toEqual({ sequences: sequence + 1 });
      expectGradsClose(got.grads[0]!, sumGrads(...chosen.map((t) => perStep[t]!)), 2e-5);
      // Another step in place of the last chosen one gives another gradient.
      const other = [...Array(T).keys()].find((t) => !chosen.includes(t))!;
      expect(maxGradDiff(got.grads[0]!, sumGrads(...chosen.slice(0, -1).map((t) => perStep[t]!), perStep[other]!))).toBeGreaterThan(1e-4);
    }
    disposeTree(b as never);
    net.dispose();
  });

  it('online: one update per chosen step, each the gradient of that step at the weights it saw', () => {
    const net = network({ neuron: 'alif', layers: 1, recurrent: true });
    const T = 8;
    const b = batch(T, ceEveryStep);
    const chosen = slttSteps(T, 3, 0, 0);
    const first = detachedStateBptt(net, b, ceEveryStep, [chosen[0]!]);
    const runner = new OptimizerRunner(adam({ lr: 0.01 }), net.params);
    const seen: number[] = [];
    const applied: Grads[] = [];
    const r = sltt({ k: 3, mode: 'online' }).update(
      b,
      { sequences: 0 },
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
    expect(r.report.updates).toBe(3);
    expect(applied).toHaveLength(3);
    expect(seen).toEqual([...Array(T).keys()]);
    expectGradsClose(applied[0]!, first, 2e-5);
    expect(sltt({ k: 3, mode: 'online' }).updatesPerSequence!(T)).toBe(3);
    expect(sltt({ mode: 'online' }).updatesPerSequence!(T)).toBe(T);
    expect(sltt().updatesPerSequence!(T)).toBe(1);
    runner.dispose();
    disposeTree(b as never);
    net.dispose();
  });
});

describe('SLTT-K in the trainer', () => {
  it('a run stopped mid-epoch resumes to the same weights and the same draws, bitwise', async () => {
    const parts = () => ({
      network: buildNetwork(
        { inputs: 2, layers: [{ neuron: 'alif', size: 10, recurrent: true }], readout: { size: 1, kappa: 0.5 } },
        { neurons, surrogates: builtinSurrogates },
        { seed: 7 },
      ),
      dataset: addTask({ steps: 12, trainSamples: 64, testSamples: 16, seed: 1 }),
      rule: sltt({ k: 4, seed: 5 }),
      optimizer: adam({ lr: 0.01 }),
      loss: mseLast,
    });
    // Two epochs of 4 batches: the straight run has seen 8 sequences, and so has the resumed one.
    expect(await expectExactResume(parts)).toEqual({ sequences: 8 });
  });
});

describe('SLTT configuration', () => {
  it('comes from a config through the plugin, and bad options are refused naming the field', () => {
    const rules = new Map(plugin.rules!.map((e) => [e.name, e]));
    const r = ruleFromSpec({ name: 'sltt', k: 4, mode: 'online' }, rules);
    expect(r.name).toBe('sltt-4(online)');
    expect(r.memory).toBe('O(1)');
    expect(r.gradient).toBe('approximate');
    for (const bad of [{ k: 0 }, { k: 1.5 }, { mode: 'sometimes' }, { window: 0 }, { truncation: 3 }]) {
      let error: unknown;
      try {
        ruleFromSpec({ name: 'sltt', ...bad }, rules);
      } catch (e) {
        error = e;
      }
      expect(isSpikeflowError(error, 'CONFIG_INVALID')).toBe(true);
      expect(String((error as Error).message)).toContain(`rule.${Object.keys(bad)[0]}`);
    }
    expect(() => sltt({ k: 0 })).toThrow(/rule\.k/);
  });

  it('refuses a loss that does not decompose over time before touching the network', () => {
    const net = network({ neuron: 'lif', layers: 1, recurrent: true });
    const b = toyTask({ steps: 5, batch: 2, channels: 6 });
    const before = net.getParams();
    let error: unknown;
    try {
      captureUpdates(sltt(), net, b, { ...ceEveryStep, name: 'ce_mean', decomposesOverTime: false });
    } catch (e) {
      error = e;
    }
    expect(isSpikeflowError(error, 'INCOMPATIBLE')).toBe(true);
    expect(net.getParams()).toEqual(before);
    disposeTree(b as never);
    net.dispose();
  });
});

import { beforeAll, describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  IntegrateFireEligibility,
  KernelTable,
  OptimizerRunner,
  adam,
  buildNetwork,
  builtinSurrogates,
  ceEveryStep,
  ceMean,
  createRng,
  detach,
  disposeTree,
  isSpikeflowError,
  mseEveryStep,
  mseLast,
  paramGrads,
  ruleFromSpec,
  sgd,
  inputShape,
  stepsOf,
  tf,
  type AnyNeuronModel,
  type Backend,
  type KernelRegistration,
  type KernelSignatures,
  type LearningRule,
  type NamedTensorMap,
  type Network,
  type Scalar,
  type SequenceBatch,
  type Tensor,
  type TemporalLoss,
} from '@spikeflow/core';
import { addTask } from '@spikeflow/dataset-add-task';
import {
  captureUpdates,
  describeRule,
  expectExactResume,
  expectGradsClose,
  fixtureModelSpec,
  fixtureParams,
  isTsslFixture,
  readFixtures,
  relativeError,
  toyTask,
  type Grads,
} from '@spikeflow/testing';
import { lif } from '@spikeflow/neuron-lif';
import { alif } from '@spikeflow/neuron-alif';
import { ltc, ltcReadout } from '@spikeflow/neuron-ltc';
import { bptt } from '@spikeflow/rule-bptt';
import { wasm } from '@spikeflow/backend-wasm';
import { cpu } from '@spikeflow/backend-cpu';
import plugin, { eprop, type EpropOptions } from './index.js';
import { bellecEprop, type RefProblem } from './bellec-reference.test-helper.js';

const setup = () => wasm.activate();
beforeAll(setup);

// Memory is flat once a sequence has a window with traces both carried in and out (3+ windows).
describeRule('eprop, symmetric feedback, window 8 (LIF)', () => eprop({ window: 8 }), { neuron: lif, setup, memorySteps: [32, 128] });
describeRule('eprop, random feedback, online every 4 steps (ALIF)', () => eprop({ feedback: 'random', window: 4, mode: 'online' }), { neuron: alif, setup });
describeRule('eprop, adaptive feedback, rate regulariser, window 5 (ALIF, detached reset)', () => eprop({ feedback: 'adaptive', window: 5, rateReg: 0.5 }), {
  neuron: alif,
  neuronParams: { resetDetach: true },
  setup,
});

const neurons = new Map<string, AnyNeuronModel>([
  ['lif', lif],
  ['alif', alif],
  ['ltc', ltc],
]);

/** How many sets of traces the fused kernel made (each e-prop update through it makes one). */
let fusedRuns = 0;

/** Every fast kernel the wasm and cpu backends register, the fused e-prop kernel counting its runs. */
const fusedKernels = new KernelTable();
for (const r of [...wasm.kernels!, ...cpu.kernels!]) {
  if (r.kernel !== IntegrateFireEligibility) {
    fusedKernels.register(r);
    continue;
  }
  const make = r.impl as KernelSignatures[typeof IntegrateFireEligibility];
  fusedKernels.register({
    kernel: IntegrateFireEligibility,
    backend: r.backend,
    impl: (spec: Parameters<typeof make>[0]) => {
      fusedRuns++;
      return make(spec);
    },
  } as KernelRegistration);
}

/** Where e-prop runs: the generic path (no fast kernels), or the fused kernel on the wasm or cpu backend. */
interface Path {
  readonly name: string;
  readonly backend: Backend;
  readonly kernels?: KernelTable;
}
const generic: Path = { name: 'generic', backend: wasm };
const paths: readonly Path[] = [
  generic,
  { name: 'fused (wasm)', backend: wasm, kernels: fusedKernels },
  { name: 'fused (cpu)', backend: cpu, kernels: fusedKernels },
];

/** Runs `body` on `path`'s backend (then back to wasm), and checks that the fused kernel ran exactly where the path has it. */
async function onPath(path: Path, body: () => void | Promise<void>): Promise<void> {
  await path.backend.activate();
  const before = fusedRuns;
  try {
    await body();
  } finally {
    await setup();
  }
  if (path.kernels) expect(fusedRuns, 'the fused kernel ran').toBeGreaterThan(before);
  else expect(fusedRuns, 'the fused kernel did not run').toBe(before);
}

interface Draw {
  readonly neuron: 'lif' | 'alif';
  readonly recurrent: boolean;
  readonly loss: 'ce_every_step' | 'mse_every_step';
  readonly T?: number;
  readonly resetDetach?: boolean;
  readonly surrogate?: 'triangle' | 'fast_sigmoid';
}

/**
 * A random problem (weights, input spikes, targets) for which float64 and float32 agree on every
 * spike: redrawn until no membrane comes within 1e-3 of its threshold in the float64 reference.
 */
function drawProblem(d: Draw, seed: number): RefProblem {
  const [T, B, I, H, O] = [d.T ?? 14, 3, 6, 5, 3];
  const triangle = (x: number) => 0.3 * Math.max(0, 1 - Math.abs(x));
  const fastSigmoid = (x: number) => 1 / (1 + 10 * Math.abs(x)) ** 2;
  for (let attempt = 0; attempt < 500; attempt++) {
    const r = createRng(seed * 1000 + attempt);
    const u = (scale: number) => (r() * 2 - 1) * scale;
    const mat = (rows: number, cols: number, scale: number) => Array.from({ length: rows }, () => Array.from({ length: cols }, () => u(scale)));
    const p: RefProblem = {
      T,
      B,
      I,
      H,
      O,
      neuron: d.neuron,
      beta: 0.85,
      threshold: 1,
      rho: 0.9,
      betaA: 0.6,
      kappa: 0.8,
      W: mat(I, H, 1.4),
      b: Array.from({ length: H }, () => u(0.3)),
      ...(d.recurrent ? { Wrec: mat(H, H, 0.8) } : {}),
      Wout: mat(H, O, 0.8),
      bout: Array.from({ length: O }, () => u(0.1)),
      x: Array.from({ length: T }, () => Array.from({ length: B }, () => Array.from({ length: I }, () => (r() < 0.4 ? 1 : 0)))),
      loss: d.loss,
      labels: Array.from({ length: B }, () => Math.floor(r() * O)),
      targets: Array.from({ length: T }, () => mat(B, O, 1)),
      psi: d.surrogate === 'fast_sigmoid' ? fastSigmoid : triangle,
    };
    const ref = bellecEprop(p);
    if (ref.margin > 1e-3 && ref.spikeRate > 0.05 && ref.spikeRate < 0.7) return p;
  }
  throw new Error('no usable draw');
}

/** The spikeflow network of a drawn problem, with its weights (and the fast kernels of `kernels`). */
function networkOf(p: RefProblem, d: Draw, kernels?: KernelTable): Network {
  const net = buildNetwork(
    {
      inputs: p.I,
      layers: [
        {
          neuron: p.neuron,
          size: p.H,
          recurrent: Boolean(p.Wrec),
          params: { beta: p.beta, threshold: p.threshold, resetDetach: d.resetDetach ?? true, ...(p.neuron === 'alif' ? { rho: p.rho, betaA: p.betaA } : {}) },
        },
      ],
      readout: { size: p.O, kappa: p.kappa },
      surrogate: d.surrogate === 'fast_sigmoid' ? { name: 'fast_sigmoid', slope: 10 } : { name: 'triangle', gamma: 0.3, width: 1 },
    },
    { neurons, surrogates: builtinSurrogates },
    kernels ? { kernels } : {},
  );
  net.setParams({
    'layers.0.W': p.W.flat(),
    'layers.0.b': p.b,
    ...(p.Wrec ? { 'layers.0.W_rec': p.Wrec.flat() } : {}),
    'readout.W': p.Wout.flat(),
    'readout.b': p.bout,
  });
  return net;
}

function batchOf(p: RefProblem): SequenceBatch {
  return {
    inputs: tf.tensor3d(p.x),
    targets: p.loss === 'ce_every_step' ? tf.tensor1d(p.labels!, 'int32') : tf.tensor3d(p.targets!),
  };
}

const lossOf = (p: RefProblem): TemporalLoss => (p.loss === 'ce_every_step' ? ceEveryStep : mseEveryStep);

/** The gradients a rule hands to the optimizer in one update call (one map per `apply`); frees the states. */
const captured = (rule: LearningRule, net: Network, batch: SequenceBatch, loss: TemporalLoss, state = rule.init(net)) =>
  captureUpdates(rule, net, batch, loss, { state });

/**
 * BPTT on the same network with the recurrent spike path detached (s_{t−1} enters the current
 * as a constant), by automatic differentiation; with `feedback`, the readout's backward pass
 * sends dy·Bᵀ to the spikes instead of dy·W_outᵀ.
 */
function detachedRecurrentBptt(net: Network, batch: SequenceBatch, loss: TemporalLoss, feedback?: Tensor): Grads {
  const [T, B] = inputShape(batch.inputs) as [number, number];
  const bound = loss.bind(batch.targets, { steps: T, batch: B, outputs: net.outputs });
  const xs = stepsOf(batch.inputs);
  const layer = net.model.layers[0]!;
  const readIn = feedback
    ? (tf.customGrad(((s: Tensor, w: Tensor, save: tf.GradSaveFunc) => {
        save([s]);
        return {
          value: tf.matMul(s, w),
          gradFunc: (dy: Tensor, saved: Tensor[]) => [tf.matMul(dy, feedback, false, true), tf.matMul(saved[0]!, dy, true, false)],
        };
      }) as never) as unknown as (s: Tensor, w: Tensor) => Tensor)
    : (s: Tensor, w: Tensor) => tf.matMul(s, w);
  const { value, grads } = paramGrads(net, () => {
    const p = net.prepare();
    const lp = p.layers[0]!;
    let neuron = net.init(B).layers[0]!.neuron;
    let y: Tensor = tf.zeros([B, net.outputs]);
    const terms: Scalar[] = [];
    for (let t = 0; t < T; t++) {
      let cur = tf.add(tf.matMul(xs.at(t), lp.W), lp.b!);
      if (lp.W_rec) cur = tf.add(cur, tf.matMul(detach(neuron['s']!), lp.W_rec));
      const out = layer.neuron.step({ config: layer.config, tensors: lp.neuron }, neuron, cur, lp.ctx);
      neuron = out.state;
      y = tf.add(tf.mul(net.model.readout.leak!, y), tf.add(readIn(out.spikes, p.readout.W!), p.readout.b!));
      const term = bound.step!(y, t);
      if (term) terms.push(term);
    }
    return tf.addN(terms) as Scalar;
  });
  value.dispose();
  bound.dispose();
  const out = Object.fromEntries(Object.entries(grads).map(([k, v]) => [k, Array.from(v.dataSync())]));
  disposeTree(grads);
  return out;
}

const draws: Draw[] = [
  { neuron: 'lif', recurrent: true, loss: 'ce_every_step' },
  { neuron: 'alif', recurrent: true, loss: 'mse_every_step' },
  { neuron: 'alif', recurrent: true, loss: 'ce_every_step', T: 25 },
  { neuron: 'lif', recurrent: false, loss: 'mse_every_step' },
];

describe.each(paths)("e-prop against a float64 per-step implementation of Bellec et al.'s traces ($name)", (path) => {
  draws.forEach((d, i) => {
    for (const feedback of ['symmetric', 'random'] as const) {
      it(`${d.neuron}, ${d.recurrent ? 'recurrent' : 'feed-forward'}, ${d.loss}, T = ${d.T ?? 14}, ${feedback} feedback: windows 1, 3 and T give the reference gradient`, () =>
        onPath(path, () => {
          const p = drawProblem(d, 10 + i);
          const net = networkOf(p, d, path.kernels);
          const batch = batchOf(p);
          const rule0 = eprop({ feedback, seed: 3 });
          const s0 = rule0.init(net);
          const B = feedback === 'random' ? (s0['feedback']!.arraySync() as number[][]) : undefined;
          disposeTree(s0);
          const ref = bellecEprop({ ...p, ...(B ? { feedback: B } : {}) });
          for (const window of [1, 3, p.T]) {
            const { grads } = captured(eprop({ feedback, window, seed: 3 }), net, batch, lossOf(p));
            expect(grads.length).toBe(1);
            expectGradsClose(grads[0]!, ref.grads);
          }
          disposeTree(batch as never);
          net.dispose();
        }));
    }
  });

  it('with the firing-rate regulariser: the reference plus Σ_t r·e_t, r = c_reg·(f̂ − f_target)/(T·B) from the previous sequence', () =>
    onPath(path, () => {
      const d: Draw = { neuron: 'alif', recurrent: true, loss: 'ce_every_step' };
      const p = drawProblem(d, 31);
      const net = networkOf(p, d, path.kernels);
      const batch = batchOf(p);
      const rule = eprop({ window: 4, rateReg: 2, rateTarget: 0.05 });
      // First sequence: f̂ = f_target (no pull), and the state learns the observed rate.
      const s0 = rule.init(net);
      let stateAfter: Record<string, Tensor | undefined> = {};
      const first: Grads[] = [];
      const r = rule.update(batch, s0, {
        network: net,
        loss: ceEveryStep,
        apply: (g) => first.push(Object.fromEntries(Object.entries(g).map(([k, v]) => [k, Array.from(v.dataSync())]))),
      });
      stateAfter = r.state;
      expectGradsClose(first[0]!, bellecEprop(p).grads);
      const rate = Array.from(stateAfter['rate']!.dataSync());
      expect(rate.reduce((a, b) => a + b, 0) / rate.length).toBeCloseTo(bellecEprop(p).spikeRate, 5);
      // Second sequence (same weights): the pull of the observed rates.
      const second = captured(rule, net, batch, ceEveryStep, r.state).grads[0]!;
      const reg = rate.map((f) => (2 * (f - 0.05)) / (p.T * p.B));
      expectGradsClose(second, bellecEprop({ ...p, reg }).grads);
      disposeTree([s0, batch] as never);
      net.dispose();
    }));
});

describe('e-prop is exact where theory says so', () => {
  for (const neuron of ['lif', 'alif'] as const) {
    for (const resetDetach of [true, false]) {
      it(`${neuron} without recurrent weights (reset ${resetDetach ? 'detached' : 'attached'}), per-step loss, symmetric feedback: equals BPTT on wasm and cpu, generic and fused`, async () => {
        for (const path of [...paths, { ...generic, name: 'generic (cpu)', backend: cpu }]) {
          await onPath(path, () => {
            for (const loss of ['ce_every_step', 'mse_every_step'] as const) {
              const d: Draw = { neuron, recurrent: false, loss, resetDetach, surrogate: 'fast_sigmoid' };
              const p = drawProblem(d, neuron === 'lif' ? 41 : 42);
              const net = networkOf(p, d, path.kernels);
              const batch = batchOf(p);
              const want = captured(bptt(), net, batch, lossOf(p)).grads[0]!;
              for (const window of [1, 5, p.T]) expectGradsClose(captured(eprop({ window }), net, batch, lossOf(p)).grads[0]!, want);
              disposeTree(batch as never);
              net.dispose();
            }
          });
        }
      });
    }
  }

  for (const neuron of ['lif', 'alif'] as const) {
    it.each(paths)(`${neuron} with recurrent weights: equals BPTT with the recurrent spike path detached, and differs from full BPTT ($name)`, (path) =>
      onPath(path, () => {
        const d: Draw = { neuron, recurrent: true, loss: 'mse_every_step', resetDetach: false, surrogate: 'fast_sigmoid', T: 20 };
        const p = drawProblem(d, neuron === 'lif' ? 51 : 52);
        const net = networkOf(p, d, path.kernels);
        const batch = batchOf(p);
        const want = detachedRecurrentBptt(net, batch, mseEveryStep);
        for (const window of [1, 6, p.T]) expectGradsClose(captured(eprop({ window }), net, batch, mseEveryStep).grads[0]!, want);
        // Random feedback: the same, with B in the readout's backward pass.
        const rule = eprop({ feedback: 'random', window: 7, seed: 9 });
        const s = rule.init(net);
        const wantRandom = detachedRecurrentBptt(net, batch, mseEveryStep, s['feedback']);
        expectGradsClose(captured(rule, net, batch, mseEveryStep, s).grads[0]!, wantRandom);
        // The dropped paths matter: full BPTT differs in W_rec.
        const full = captured(bptt(), net, batch, mseEveryStep).grads[0]!;
        expect(relativeError(full['layers.0.W_rec']!, want['layers.0.W_rec']!)).toBeGreaterThan(1e-2);
        disposeTree(batch as never);
        net.dispose();
      }),
    );
  }
});

const testingDir = dirname(createRequire(import.meta.url).resolve('@spikeflow/testing/package.json'));

describe.each(paths)('e-prop fixtures (PyTorch float64: BPTT with the recurrent spike path detached; $name)', (path) => {
  it('every fixture in fixtures-generated/eprop gives its expected e-prop gradient, for symmetric and random feedback, windows 1, 4 and T', async () => {
    const fixtures = (await readFixtures(join(testingDir, 'fixtures-generated', 'eprop'))).map(({ fixture }) => {
      if (isTsslFixture(fixture)) throw new Error(`${fixture.name}: a TSSL-BP fixture among the e-prop ones`);
      return { fixture };
    });
    expect(fixtures.length).toBeGreaterThanOrEqual(4);
    await onPath(path, () => {
      for (const { fixture: f } of fixtures) {
        const extra = (f.expected as unknown as { eprop: { grads: never; random: { feedback: number[][]; grads: never } } }).eprop;
        const net = buildNetwork(fixtureModelSpec(f), { neurons, surrogates: builtinSurrogates }, path.kernels ? { kernels: path.kernels } : {});
        net.setParams(fixtureParams(f.params) as never);
        const batch: SequenceBatch = {
          inputs: tf.tensor3d(f.inputs as number[][][]),
          targets: f.loss.name.startsWith('ce') ? tf.tensor1d(f.targets as number[], 'int32') : tf.tensor(f.targets as number[]),
        };
        const loss = f.loss.name === 'ce_every_step' ? ceEveryStep : f.loss.name === 'mse_every_step' ? mseEveryStep : mseLast;
        const flat = (g: never) => Object.fromEntries(Object.entries(fixtureParams(g)).map(([k, v]) => [k, (v as number[]).flat(2) as number[]]));
        const want = flat(extra.grads);
        if (!f.layers[0]!.recurrent) expectGradsClose(want, flat(f.expected.grads as never), 1e-12);
        for (const window of [1, 4, f.sizes.steps]) {
          const got = captured(eprop({ window }), net, batch, loss);
          expectGradsClose(got.grads[0]!, want);
          expect(Math.abs(got.loss - f.expected.loss) / Math.abs(f.expected.loss)).toBeLessThan(1e-5);
        }
        const rule = eprop({ feedback: 'random', window: 4 });
        const s = rule.init(net);
        s['feedback']!.dispose();
        const state = { feedback: tf.tensor2d(extra.random.feedback) };
        expectGradsClose(captured(rule, net, batch, loss, state).grads[0]!, flat(extra.random.grads), 1e-4);
        disposeTree(batch as never);
        net.dispose();
      }
    });
  });
});

describe.each(paths)('e-prop updates ($name)', (path) => {
  const d: Draw = { neuron: 'alif', recurrent: true, loss: 'ce_every_step', T: 12 };

  it('online mode: one update per window, the first from the first window alone', () =>
    onPath(path, () => {
      const p = drawProblem(d, 61);
      const net = networkOf(p, d, path.kernels);
      const batch = batchOf(p);
      const initial = net.getParams();
      const runner = new OptimizerRunner(sgd({ lr: 0.5 }), net.params);
      const rule = eprop({ window: 5, mode: 'online' });
      expect(rule.updatesPerSequence!(12)).toBe(3);
      const seen: Grads[] = [];
      const st = rule.init(net);
      const r = rule.update(batch, st, {
        network: net,
        loss: ceEveryStep,
        apply: (g) => {
          seen.push(Object.fromEntries(Object.entries(g).map(([k, v]) => [k, Array.from(v.dataSync())])));
          runner.apply(g);
        },
      });
      expect(r.report.updates).toBe(3);
      expect(seen.length).toBe(3);
      // The first window's gradient is e-prop's on the first 5 steps (loss terms scaled by 1/T of the whole sequence).
      net.setParams(Object.fromEntries(Object.entries(initial).map(([k, v]) => [k, v.values])));
      const head: SequenceBatch = { inputs: tf.tensor3d(p.x.slice(0, 5)), targets: batch.targets };
      const five = captured(eprop({ window: 5 }), net, head, ceEveryStep).grads[0]!;
      for (const [k, v] of Object.entries(five))
        expect(
          relativeError(
            seen[0]![k]!,
            v.map((x) => (x * 5) / 12),
          ),
          k,
        ).toBeLessThan(1e-4);
      // The weights moved between windows: the later updates are not those of the accumulated run.
      const acc = captured(eprop({ window: 5 }), net, batch, ceEveryStep).grads[0]!;
      expect(relativeError(seen[1]!['layers.0.W']!, acc['layers.0.W']!)).toBeGreaterThan(1e-3);
      disposeTree([r.state, batch, head.inputs] as never);
      runner.dispose();
      net.dispose();
    }));

  it('random feedback stays fixed; adaptive feedback takes every change of W_out and decays: B ← (1 − d)·B + ΔW_out', () =>
    onPath(path, () => {
      const p = drawProblem(d, 62);
      const net = networkOf(p, d, path.kernels);
      const batch = batchOf(p);
      const runner = new OptimizerRunner(adam({ lr: 0.05 }), net.params);
      const ctx = { network: net, loss: ceEveryStep, apply: (g: NamedTensorMap) => runner.apply(g) };
      const random = eprop({ feedback: 'random', seed: 4 });
      const r0 = random.init(net);
      const b0 = Array.from(r0['feedback']!.dataSync());
      const r1 = random.update(batch, r0, ctx);
      expect(Array.from(r1.state['feedback']!.dataSync())).toEqual(b0);
      if (r1.state !== r0) disposeTree(r0, r1.state);
      disposeTree(r1.state);

      const adaptive = eprop({ feedback: 'adaptive', seed: 4, window: 4, mode: 'online', feedbackDecay: 0.1 });
      let state = adaptive.init(net);
      expect(Array.from(state['feedback']!.dataSync())).toEqual(b0);
      let B = Float64Array.from(b0);
      for (let it = 0; it < 2; it++) {
        const before: number[][] = [];
        const after: number[][] = [];
        const r = adaptive.update(batch, state, {
          network: net,
          loss: ceEveryStep,
          apply: (g) => {
            before.push(Array.from(net.params['readout.W']!.dataSync()));
            runner.apply(g);
            after.push(Array.from(net.params['readout.W']!.dataSync()));
          },
        });
        expect(r.report.updates).toBe(3);
        for (let u = 0; u < 3; u++) B = B.map((x, i) => 0.9 * x + after[u]![i]! - before[u]![i]!);
        const got = Array.from(r.state['feedback']!.dataSync());
        expect(relativeError(got, B)).toBeLessThan(1e-5);
        disposeTree(state, r.state);
        state = r.state;
      }
      disposeTree([state, batch] as never);
      runner.dispose();
      net.dispose();
    }));

  it('leaves no tensors behind, whatever the mode and feedback', () =>
    onPath(path, () => {
      const p = drawProblem(d, 63);
      const net = networkOf(p, d, path.kernels);
      const batch = batchOf(p);
      const runner = new OptimizerRunner(adam({ lr: 0.01 }), net.params);
      for (const o of [
        {},
        { feedback: 'random', window: 5 },
        { feedback: 'adaptive', window: 3, mode: 'online' },
        { rateReg: 1, window: 4 },
      ] as EpropOptions[]) {
        const rule = eprop(o);
        let state = rule.init(net);
        const counts: number[] = [];
        for (let i = 0; i < 3; i++) {
          const r = rule.update(batch, state, { network: net, loss: ceEveryStep, apply: (g) => runner.apply(g) });
          if (r.state !== state) disposeTree(state, r.state);
          state = r.state;
          counts.push(tf.memory().numTensors);
        }
        expect(new Set(counts).size, JSON.stringify(o)).toBe(1);
        disposeTree(state);
      }
      disposeTree(batch as never);
      runner.dispose();
      net.dispose();
    }));
});

/** `@spikeflow/kernels` as the wasm backend loads it (the same module instance: this package does not depend on it). */
async function kernelsModule(): Promise<{ releaseKernelMemory(): number; activeThreads(): number; kernelMemoryBytes(): number }> {
  const fromBackend = createRequire(createRequire(import.meta.url).resolve('@spikeflow/backend-wasm/package.json'));
  return import(pathToFileURL(fromBackend.resolve('@spikeflow/kernels')).href);
}

describe('the fused kernel', () => {
  const spec = (neuron: 'lif' | 'alif', resetDetach: boolean, o: { inputs?: number; size?: number } = {}) => ({
    inputs: o.inputs ?? 40,
    layers: [{ neuron, size: o.size ?? 24, recurrent: true, selfConnections: false, gain: 2, params: { resetDetach } }],
    readout: { size: 5, kappa: 0.85 },
    surrogate: { name: 'fast_sigmoid', slope: 5 },
  });
  const build = (s: ReturnType<typeof spec>, kernels?: KernelTable, map = neurons) =>
    buildNetwork(s, { neurons: map, surrogates: builtinSurrogates }, { seed: 5, ...(kernels ? { kernels } : {}) });
  const gradsOf = (g: NamedTensorMap) => Object.fromEntries(Object.entries(g).map(([k, v]) => [k, Array.from(v.dataSync())]));

  it.each([
    ['lif', false],
    ['lif', true],
    ['alif', false],
    ['alif', true],
  ] as const)(
    '%s (reset detached: %s): the gradients of the generic path, accumulated, online with adaptive feedback, with the rate regulariser',
    (neuron, resetDetach) =>
      onPath(paths[1]!, () => {
        const batch = toyTask({ steps: 45, batch: 6, channels: 40 });
        for (const o of [{ window: 7 }, { window: 45, feedback: 'random', rateReg: 0.3 }] as EpropOptions[]) {
          const [gen, fus] = [build(spec(neuron, resetDetach)), build(spec(neuron, resetDetach), fusedKernels)];
          const rule = eprop(o);
          expectGradsClose(
            captured(rule, fus, batch, ceEveryStep, rule.init(fus)).grads[0]!,
            captured(rule, gen, batch, ceEveryStep, rule.init(gen)).grads[0]!,
          );
          gen.dispose();
          fus.dispose();
        }
        // Online, adaptive feedback: every update of two sequences, the weights moving between windows.
        const updates = (net: Network) => {
          const runner = new OptimizerRunner(sgd({ lr: 0.2 }), net.params);
          const rule = eprop({ window: 10, mode: 'online', feedback: 'adaptive', rateReg: 0.3 });
          let state = rule.init(net);
          const seen: Grads[] = [];
          for (let i = 0; i < 2; i++) {
            const r = rule.update(batch, state, {
              network: net,
              loss: ceEveryStep,
              apply: (g) => {
                seen.push(gradsOf(g));
                runner.apply(g);
              },
            });
            disposeTree(state, r.state);
            state = r.state;
          }
          disposeTree(state);
          runner.dispose();
          net.dispose();
          return seen;
        };
        const [want, got] = [updates(build(spec(neuron, resetDetach))), updates(build(spec(neuron, resetDetach), fusedKernels))];
        expect(got.length).toBe(10);
        got.forEach((g, i) => expectGradsClose(g, want[i]!, 2e-4));
        disposeTree(batch as never);
      }),
  );

  it('runs where the layer has an integrate-and-fire form and the backend registers the kernel, once per sequence; else the generic path runs', () => {
    const batch = toyTask({ steps: 20, batch: 3, channels: 40 });
    const once = (net: Network) => {
      const before = fusedRuns;
      const g = captured(eprop({ window: 6 }), net, batch, ceEveryStep).grads[0]!;
      net.dispose();
      return { runs: fusedRuns - before, g };
    };
    const fused = once(build(spec('lif', false), fusedKernels));
    expect(fused.runs).toBe(1);
    // The same neuron without the form, and the kernels without this one: the generic path, the same gradients.
    const formless = new Map(neurons).set('lif', { ...lif, integrateFire: undefined } as AnyNeuronModel);
    const noForm = once(build(spec('lif', false), fusedKernels, formless));
    const table = new KernelTable();
    for (const r of wasm.kernels!) if (r.kernel !== IntegrateFireEligibility) table.register(r);
    const noKernel = once(build(spec('lif', false), table));
    expect([noForm.runs, noKernel.runs]).toEqual([0, 0]);
    expectGradsClose(fused.g, noForm.g);
    expectGradsClose(fused.g, noKernel.g);
    disposeTree(batch as never);
  });

  it('bit-identical gradients and weights on 1 and 2 kernel threads (LIF and adaptive, online, adaptive feedback)', async () => {
    const kernels = await kernelsModule();
    const saved = process.env['SPIKEFLOW_THREADS'];
    const batch = toyTask({ steps: 48, batch: 48, channels: 100 });
    const runWith = (threads: number) => {
      process.env['SPIKEFLOW_THREADS'] = String(threads);
      kernels.releaseKernelMemory();
      const out: number[][] = [];
      for (const neuron of ['lif', 'alif'] as const) {
        const net = build(spec(neuron, neuron === 'alif', { inputs: 100, size: 64 }), fusedKernels);
        const runner = new OptimizerRunner(sgd({ lr: 0.1 }), net.params);
        const rule = eprop({ window: 16, mode: 'online', feedback: 'adaptive', rateReg: 0.2 });
        let state = rule.init(net);
        for (let i = 0; i < 2; i++) {
          const r = rule.update(batch, state, {
            network: net,
            loss: ceEveryStep,
            apply: (g) => {
              out.push(...Object.values(gradsOf(g)));
              runner.apply(g);
            },
          });
          disposeTree(state, r.state);
          state = r.state;
        }
        out.push(...Object.values(net.getParams()).map((v) => Array.from(v.values)));
        disposeTree(state);
        runner.dispose();
        net.dispose();
      }
      expect(kernels.activeThreads()).toBe(threads);
      return out;
    };
    try {
      const one = runWith(1);
      const two = runWith(2);
      expect(two).toEqual(one);
    } finally {
      if (saved === undefined) delete process.env['SPIKEFLOW_THREADS'];
      else process.env['SPIKEFLOW_THREADS'] = saved;
      kernels.releaseKernelMemory();
      disposeTree(batch as never);
    }
  });

  it("memory does not grow with T: the kernels' memory and the peak of tensors are the same at T = 64 and T = 256", async () => {
    const kernels = await kernelsModule();
    const bytes: number[] = [];
    const peaks: number[] = [];
    for (const T of [64, 256]) {
      const batch = toyTask({ steps: T, batch: 8, channels: 40 });
      const net = build(spec('alif', false), fusedKernels);
      const rule = eprop({ window: 16 });
      const state = rule.init(net);
      kernels.releaseKernelMemory();
      const start = tf.memory().numBytes;
      const info = await tf.profile(() => {
        const r = rule.update(batch, state, { network: net, loss: ceEveryStep, apply: () => {} });
        disposeTree(r.state);
      });
      bytes.push(kernels.kernelMemoryBytes());
      peaks.push(info.peakBytes - start);
      disposeTree([state, batch] as never);
      net.dispose();
    }
    expect(bytes[0]).toBeGreaterThan(0);
    expect(bytes[1]).toBe(bytes[0]);
    expect(peaks[1]).toBeLessThanOrEqual(1.1 * peaks[0]!);
  });
});

describe('e-prop refuses what it cannot train, with errors that say why', () => {
  const build = (spec: Record<string, unknown>) =>
    buildNetwork(
      { inputs: 3, readout: { size: 2 }, layers: [{ neuron: 'lif', size: 4, recurrent: true }], ...spec },
      { neurons, surrogates: builtinSurrogates, readouts: [ltcReadout] },
    );
  const refusal = (net: Network, loss: TemporalLoss = ceEveryStep): unknown => {
    const batch = toyTask({ steps: 4, batch: 2, channels: net.inputs });
    const rule = eprop();
    let error: unknown;
    try {
      const s = rule.init(net);
      rule.update(batch, s, { network: net, loss, apply: () => {} });
    } catch (e) {
      error = e;
    }
    disposeTree(batch as never);
    net.dispose();
    return error;
  };

  it.each([
    [
      {
        layers: [
          { neuron: 'lif', size: 4 },
          { neuron: 'lif', size: 3 },
        ],
      },
      /^rule 'eprop.*' cannot train this run: model\.layers: it trains networks of 1 layer, this one has 2/,
    ],
    [{ layers: [{ neuron: 'ltc', size: 4 }] }, /model\.layers\[0\]\.neuron: it needs the capability 'localJacobians'.*neuron 'ltc' does not declare it/],
    [{ layers: [{ neuron: 'lif', size: 4, params: { learnBeta: true } }] }, /trainable neuron parameters \(layers\.0\.beta\)/],
    [{ readout: { size: 2, kind: 'ltc' } }, /model\.readout\.kind: .*"kind": "leaky"/],
    [{ readout: { size: 2, from: 'membrane' } }, /model\.readout\.from: .*"from": "spikes"/],
    [
      {
        layers: [
          { type: 'dropout', rate: 0.2 },
          { neuron: 'lif', size: 4, recurrent: true },
        ],
      },
      /model\.layers\[0\]: it computes its gradient from the layers' inputs itself and does not apply dropout masks/,
    ],
  ])('%j', (spec, message) => {
    const error = refusal(build(spec));
    expect(isSpikeflowError(error, 'INCOMPATIBLE')).toBe(true);
    expect(String((error as Error).message)).toMatch(message);
  });

  it('a loss that does not decompose over time', () => {
    const error = refusal(build({}), ceMean);
    expect(isSpikeflowError(error, 'INCOMPATIBLE')).toBe(true);
    expect(String((error as Error).message)).toContain("loss 'ce_mean' does not decompose over time");
  });

  it('bad options, from TypeScript and from a config', () => {
    for (const [o, field] of [
      [{ window: 0 }, 'rule.window'],
      [{ feedback: 'mirror' }, 'rule.feedback'],
      [{ mode: 'per-step' }, 'rule.mode'],
      [{ feedbackDecay: 1 }, 'rule.feedbackDecay'],
      [{ rateTarget: 2 }, 'rule.rateTarget'],
    ] as const) {
      expect(() => eprop(o as EpropOptions)).toThrow(field);
    }
    const rules = new Map(plugin.rules!.map((r) => [r.name, r]));
    expect(() => ruleFromSpec({ name: 'eprop', feedbak: 'random' }, rules)).toThrow(/rule\.feedbak: unknown key.*feedback/);
    expect(() => ruleFromSpec({ name: 'eprop', feedback: 'mirror' }, rules)).toThrow(/rule\.feedback/);
    const rule = ruleFromSpec({ name: 'eprop', feedback: 'adaptive', window: 28, mode: 'online' }, rules);
    expect(rule.name).toBe('eprop(adaptive, window=28, online)');
    expect(rule.memory).toBe('O(1)');
  });

  it('an update without the state init made (random feedback, rate regulariser)', () => {
    const net = build({});
    const batch = toyTask({ steps: 4, batch: 2, channels: 3 });
    expect(() => eprop({ feedback: 'random' }).update(batch, {}, { network: net, loss: ceEveryStep, apply: () => {} })).toThrow(
      /no feedback matrix.*rule\.init/,
    );
    expect(() => eprop({ rateReg: 1 }).update(batch, {}, { network: net, loss: ceEveryStep, apply: () => {} })).toThrow(/no rate estimate.*rule\.init/);
    disposeTree(batch as never);
    net.dispose();
  });
});

describe.each(paths.slice(0, 2))('e-prop in the trainer ($name)', (path) => {
  const parts = () => ({
    network: buildNetwork(
      {
        inputs: 2,
        layers: [{ neuron: 'alif', size: 10, recurrent: true, selfConnections: false, params: { resetDetach: true } }],
        readout: { size: 1, kappa: 0.5 },
      },
      { neurons, surrogates: builtinSurrogates },
      { seed: 7, ...(path.kernels ? { kernels: path.kernels } : {}) },
    ),
    dataset: addTask({ steps: 12, trainSamples: 64, testSamples: 16, seed: 1 }),
    rule: eprop({ feedback: 'adaptive', window: 5, mode: 'online', rateReg: 0.5 }),
    optimizer: adam({ lr: 0.01 }),
    loss: mseLast,
  });

  it('a run stopped mid-epoch resumes from its checkpoint to the same weights, feedback matrix and rate estimate, bitwise', async () => {
    const before = fusedRuns;
    const a = (await expectExactResume(parts)) as Record<string, Tensor>;
    if (path.kernels) expect(fusedRuns).toBeGreaterThan(before);
    else expect(fusedRuns).toBe(before);
    expect(Object.keys(a).sort()).toEqual(['feedback', 'rate']);
    // The feedback matrix moved away from its random start (it follows W_out).
    const net = parts().network;
    const init = eprop({ feedback: 'adaptive' }).init(net);
    expect(relativeError(Array.from(a['feedback']!.dataSync()), Array.from(init['feedback']!.dataSync()))).toBeGreaterThan(1e-3);
    disposeTree([a, init] as never);
    net.dispose();
  });
});

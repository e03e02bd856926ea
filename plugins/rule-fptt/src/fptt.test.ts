import { beforeAll, describe, expect, it } from 'vitest';
import {
  OptimizerRunner,
  adam,
  buildNetwork,
  builtinSurrogates,
  ceEveryStep,
  cosineSchedule,
  ceMean,
  createRegistry,
  disposeTree,
  isSpikeflowError,
  mseEveryStep,
  mseLast,
  ruleFromSpec,
  sgd,
  tf,
  type AnyNeuronModel,
  type LearningRule,
  type NamedTensorMap,
  type Network,
  type SequenceBatch,
  type TemporalLoss,
  type Variable,
} from '@spikeflow/core';
import { describeRule, expectExactResume, toyTask } from '@spikeflow/testing';
import { lif } from '@spikeflow/neuron-lif';
import { ltc, ltcReadout } from '@spikeflow/neuron-ltc';
import { bptt, tbptt } from '@spikeflow/rule-bptt';
import wasmPlugin, { wasm } from '@spikeflow/backend-wasm';
import { addTask } from '@spikeflow/dataset-add-task';
import plugin, { fptt, initAnchor, objectiveGrads, updateAnchor, type FpttForm, type FpttState } from './index.js';

const setup = () => wasm.activate();
beforeAll(setup);

describeRule('fptt K=3, terminal schedule, LTC-SN', () => fptt({ window: 3 }), { neuron: ltc, setup });
describeRule('fptt K=1, per-step schedule, LTC-SN', () => fptt({ schedule: 'per-step' }), { neuron: ltc, setup });
describeRule('fptt K=4, textbook form, LIF', () => fptt({ window: 4, form: 'textbook', alpha: 0.5 }), { neuron: lif, setup });
describeRule('fptt K=2 on ce_mean (terminal)', () => fptt({ window: 2 }), { neuron: ltc, setup, loss: ceMean });

describe('the anchor updates, pinned on a convex quadratic by hand', () => {
  // ℓ_t(W) = ½·a_t·‖W − c_t‖², W ∈ R², plain SGD with learning rate η: each step of the rule is
  // one optimizer step on its regularised objective. The trajectory below is written out from
  // the update equations with plain numbers.
  const a = [1, 2, 0.5, 1.5, 1, 3];
  const c = [
    [1, -1],
    [0.5, 2],
    [-1, 0],
    [2, 1],
    [0, 0.5],
    [1, 1],
  ];
  const eta = 0.2;
  const alpha = 0.5;
  const beta = 0.3;
  const W0 = [0.3, -0.2];
  const grad = (t: number, w: number[]) => w.map((wi, i) => a[t]! * (wi - c[t]![i]!));

  function byHand(form: FpttForm): { w: number[][]; wbar: number[][] } {
    let w = [...W0];
    let wbar = [...W0];
    let aux = [0, 0]; // λ (dual) or ∇ℓ_{t−1}(W_t) (textbook)
    const ws: number[][] = [];
    const wbars: number[][] = [];
    for (let t = 0; t < a.length; t++) {
      const g = grad(t, w);
      const total = w.map((wi, i) => g[i]! + alpha * (wi - wbar[i]!) - (form === 'dual' ? aux[i]! : 0.5 * aux[i]!));
      w = w.map((wi, i) => wi - eta * total[i]!);
      if (form === 'dual') {
        aux = aux.map((l, i) => l - alpha * (w[i]! - wbar[i]!));
        wbar = wbar.map((b, i) => (1 - beta) * b + beta * w[i]! - (beta / alpha) * aux[i]!);
      } else {
        const gNew = grad(t, w);
        wbar = wbar.map((b, i) => 0.5 * (b + w[i]!) - gNew[i]! / (2 * alpha));
        aux = gNew;
      }
      ws.push(w);
      wbars.push(wbar);
    }
    return { w: ws, wbar: wbars };
  }

  function withTheRule(form: FpttForm): { w: number[][]; wbar: number[][] } {
    const W = tf.variable(tf.tensor1d(W0), true, `fptt-quadratic-${form}`) as Variable;
    const params = { W };
    const runner = new OptimizerRunner(sgd({ lr: eta }), params);
    const lossGrads = (t: number): NamedTensorMap => ({ W: tf.tidy(() => tf.mul(a[t]!, tf.sub(W, tf.tensor1d(c[t]!)))) });
    let state: FpttState = initAnchor(params);
    const ws: number[][] = [];
    const wbars: number[][] = [];
    for (let t = 0; t < a.length; t++) {
      const g = lossGrads(t);
      const total = objectiveGrads(params, g, state, { alpha, beta, form });
      runner.apply(total);
      disposeTree([g, total]);
      const atNew = form === 'textbook' ? lossGrads(t) : undefined;
      const next = updateAnchor(params, state, { alpha, beta, form }, atNew);
      disposeTree([state as never, atNew ?? {}]);
      state = next;
      ws.push(Array.from(W.dataSync()));
      wbars.push(Array.from(state.wbar['W']!.dataSync()));
    }
    disposeTree(state as never);
    runner.dispose();
    W.dispose();
    return { w: ws, wbar: wbars };
  }

  for (const form of ['dual', 'textbook'] as const) {
    it(`${form} form: W and W̄ follow the hand-computed trajectory`, () => {
      const ref = byHand(form);
      const got = withTheRule(form);
      for (let t = 0; t < a.length; t++) {
        for (let i = 0; i < 2; i++) {
          expect(got.w[t]![i], `W[${i}] after step ${t}`).toBeCloseTo(ref.w[t]![i]!, 5);
          expect(got.wbar[t]![i], `W̄[${i}] after step ${t}`).toBeCloseTo(ref.wbar[t]![i]!, 5);
        }
      }
    });
  }

  it('the two forms shift the anchor by different amounts', () => {
    expect(byHand('dual').wbar[3]).not.toEqual(byHand('textbook').wbar[3]);
  });

  it('the first dual step, worked out: W₁ = W₀ − η·∇ℓ₀(W₀), λ₁ = −α(W₁ − W₀), W̄₁ = W₀ + β(W₁ − W₀) − (β/α)λ₁', () => {
    // With W̄₀ = W₀ and λ₀ = 0 the regulariser has no gradient at W₀.
    const W1 = [0.3 - 0.2 * 1 * (0.3 - 1), -0.2 - 0.2 * 1 * (-0.2 + 1)]; // [0.44, -0.36]
    expect(W1[0]).toBeCloseTo(0.44, 12);
    expect(W1[1]).toBeCloseTo(-0.36, 12);
    const lambda1 = [-0.5 * 0.14, -0.5 * -0.16];
    const wbar1 = [0.3 + 0.3 * 0.14 - 0.6 * lambda1[0]!, -0.2 + 0.3 * -0.16 - 0.6 * lambda1[1]!];
    const got = withTheRule('dual');
    expect(got.w[0]![0]).toBeCloseTo(W1[0]!, 6);
    expect(got.w[0]![1]).toBeCloseTo(W1[1]!, 6);
    expect(got.wbar[0]![0]).toBeCloseTo(wbar1[0]!, 6);
    expect(got.wbar[0]![1]).toBeCloseTo(wbar1[1]!, 6);
  });
});

const registries = {
  neurons: new Map<string, AnyNeuronModel>([
    ['ltc', ltc],
    ['lif', lif],
  ]),
  surrogates: builtinSurrogates,
  readouts: [ltcReadout],
};
const network = (seed = 0, kind: 'ltc' | 'leaky' = 'ltc'): Network =>
  buildNetwork({ inputs: 8, layers: [{ neuron: 'ltc', size: 12, recurrent: true }], readout: kind === 'ltc' ? { size: 2, kind } : { size: 2 } }, registries, {
    seed,
  });

/** The gradients a rule hands to `apply` during one update, in order. */
function appliedGrads(rule: LearningRule, net: Network, batch: SequenceBatch, loss: TemporalLoss): Record<string, number[]>[] {
  const seen: Record<string, number[]>[] = [];
  const state = rule.update(batch, rule.init(net), {
    network: net,
    loss,
    apply: (g) => seen.push(Object.fromEntries(Object.entries(g).map(([k, v]) => [k, Array.from(v.dataSync())]))),
  }).state;
  disposeTree(state);
  return seen;
}

function expectClose(a: Record<string, number[]>, b: Record<string, number[]>, scale = 1, rel = 1e-5): void {
  for (const [k, v] of Object.entries(b)) {
    const got = a[k]!;
    const tol = rel * Math.max(1e-3, ...v.map(Math.abs));
    v.forEach((x, i) => expect(Math.abs(got[i]! - scale * x), `${k}[${i}]`).toBeLessThanOrEqual(tol * Math.max(1, scale)));
  }
}

describe('fptt through the fused kernels', () => {
  const lifNet = (kernels?: ReturnType<typeof createRegistry>['kernels']) =>
    buildNetwork(
      { inputs: 8, layers: [{ neuron: 'lif', size: 12, recurrent: true, gain: 2 }], readout: { size: 2, kappa: 0.8 } },
      { neurons: new Map([['lif', lif]]), surrogates: builtinSurrogates },
      { seed: 6, ...(kernels ? { kernels } : {}) },
    );
  for (const [name, rule, loss] of [
    ['terminal schedule, 3 chunks, mse_last', () => fptt({ parts: 3 }), mseLast],
    ['per-step schedule, K = 4, ce_every_step', () => fptt({ window: 4, schedule: 'per-step' }), ceEveryStep],
    ['textbook form, K = 5, ce_every_step (each chunk twice)', () => fptt({ window: 5, form: 'textbook', alpha: 0.5 }), ceEveryStep],
  ] as const) {
    it(`${name}: a LIF network's chunks run as windows of the fused kernels and give the step-by-step updates`, async () => {
      await setup();
      const fused = lifNet(createRegistry([wasmPlugin]).kernels);
      const stepwise = lifNet();
      expect(tf.tidy(() => fused.prepare().fused !== undefined)).toBe(true);
      const toy = toyTask({ steps: 13, batch: 4, seed: 4 });
      const batch = loss === mseLast ? { inputs: toy.inputs, targets: tf.randomNormal([4, 2], 0, 1, 'float32', 3) } : toy;
      if (batch !== toy) toy.targets.dispose();
      // The fused path leaves no more tensors behind than the step-by-step one (the initial
      // anchor, which appliedGrads does not dispose, is left by both).
      const count = tf.memory().numTensors;
      const f = appliedGrads(rule(), fused, batch, loss);
      const afterFused = tf.memory().numTensors;
      const b = appliedGrads(rule(), stepwise, batch, loss);
      expect(afterFused - count).toBe(tf.memory().numTensors - afterFused);
      expect(f.length).toBe(b.length);
      f.forEach((g, i) => expectClose(g, b[i]!, 1, 1e-4));
      disposeTree(batch as never);
      fused.dispose();
      stepwise.dispose();
    });
  }
});

describe("fptt's update fused with Adam's step (RuleContext.applyAnchored)", () => {
  const bits = (t: tf.Tensor) => Array.from(new Uint32Array(Float32Array.from(t.dataSync() as Float32Array).buffer));
  for (const [name, optimizer, fusedUpdates] of [
    ['Adam at a constant rate', () => adam({ lr: 0.01 }), 6],
    ['Adam at a cosine rate', () => adam({ lr: cosineSchedule(0.01, 5) }), 6],
    ['Adam with gradient clipping (not fused: the rule pulls, applies and moves the anchor itself)', () => adam({ lr: 0.01, clipNorm: 0.5 }), 0],
    ['SGD (not fused)', () => sgd({ lr: 0.05 }), 0],
  ] as const) {
    it(`${name}: two sequences end on the same weights, W̄, λ and optimizer state, bit for bit, as through apply alone`, async () => {
      await setup();
      const kernels = createRegistry([wasmPlugin]).kernels;
      const run = (fuse: boolean) => {
        const net = buildNetwork(
          { inputs: 8, layers: [{ neuron: 'lif', size: 12, recurrent: true, gain: 2 }], readout: { size: 2, kappa: 0.8 } },
          { neurons: new Map([['lif', lif]]), surrogates: builtinSurrogates },
          { seed: 6, kernels },
        );
        const runner = new OptimizerRunner(optimizer(), net.params, { kernels });
        const rule = fptt({ window: 4 });
        let state = rule.init(net);
        let fused = 0;
        const batch = toyTask({ steps: 12, batch: 4, seed: 2 });
        for (let i = 0; i < 2; i++) {
          const next = rule.update(batch, state, {
            network: net,
            loss: ceEveryStep,
            apply: (g) => runner.apply(g),
            ...(fuse
              ? {
                  applyAnchored: (g: NamedTensorMap, a: Parameters<OptimizerRunner['applyAnchored']>[1]) => {
                    const r = runner.applyAnchored(g, a);
                    if (r) fused++;
                    return r;
                  },
                }
              : {}),
          }).state;
          disposeTree(state);
          state = next;
        }
        const out = {
          params: Object.fromEntries(Object.entries(net.params).map(([k, v]) => [k, bits(v)])),
          wbar: Object.fromEntries(Object.entries(state.wbar).map(([k, v]) => [k, bits(v)])),
          lambda: Object.fromEntries(Object.entries(state.aux).map(([k, v]) => [k, bits(v)])),
          optimizer: JSON.stringify(flatten(runner.state)),
          steps: runner.steps,
          fused,
        };
        disposeTree([state, batch] as never);
        runner.dispose();
        net.dispose();
        return out;
      };
      const fused = run(true);
      const plain = run(false);
      expect(fused.fused).toBe(fusedUpdates);
      expect(plain.fused).toBe(0);
      expect({ ...fused, fused: 0 }).toEqual(plain);
      expect(fused.steps).toBe(6);
    });
  }
});

/** A tensor tree as numbers' bits (for an exact comparison of optimizer states). */
function flatten(tree: unknown): unknown {
  if (tree instanceof tf.Tensor) return Array.from(new Uint32Array(Float32Array.from(tree.dataSync() as Float32Array).buffer));
  if (Array.isArray(tree)) return tree.map(flatten);
  if (tree && typeof tree === 'object') return Object.fromEntries(Object.entries(tree).map(([k, v]) => [k, flatten(v)]));
  return tree;
}

describe('fptt against BPTT', () => {
  it('one chunk (K = T): the update is the BPTT gradient of the terminal loss', () => {
    const net = network(1);
    const toy = toyTask({ steps: 10, batch: 4 });
    toy.targets.dispose();
    const batch = { inputs: toy.inputs, targets: tf.randomNormal([4, 2], 0, 1, 'float32', 3) };
    const f = appliedGrads(fptt({ window: 10 }), net, batch, mseLast);
    const b = appliedGrads(bptt(), net, batch, mseLast);
    expect(f.length).toBe(1);
    expectClose(f[0]!, b[0]!);
    disposeTree(batch as never);
    net.dispose();
  });

  it('per-step schedule: the first update is the first window of per-window truncated BPTT', () => {
    const net = network(2);
    const batch = toyTask({ steps: 12, batch: 4, seed: 2 });
    const f = appliedGrads(fptt({ window: 4, schedule: 'per-step' }), net, batch, ceEveryStep);
    const b = appliedGrads(tbptt({ k: 4, mode: 'per-window' }), net, batch, ceEveryStep);
    expect(f.length).toBe(3);
    expectClose(f[0]!, b[0]!);
    disposeTree(batch as never);
    net.dispose();
  });

  it('terminal schedule: chunk p of P is weighted (p+1)/P — the first of 3 chunks gets 1/3 of its BPTT gradient', () => {
    const net = network(3);
    const batch = toyTask({ steps: 12, batch: 4, seed: 5 });
    const f = appliedGrads(fptt({ parts: 3 }), net, batch, ceEveryStep);
    expect(f.length).toBe(3);
    // BPTT on the first 4 steps, scored by the terminal loss of their last readout alone (a loss
    // whose sequence() is ce_every_step's terminal() at the last step).
    const first4 = { inputs: tf.slice(batch.inputs, [0, 0, 0], [4, 4, 8]), targets: batch.targets };
    const terminalOnly: TemporalLoss = {
      ...ceEveryStep,
      name: 'last_ce',
      bind(target, shape) {
        const inner = ceEveryStep.bind(target, shape);
        return { sequence: (ys) => inner.terminal!(ys[ys.length - 1]!), dispose: () => inner.dispose() };
      },
    };
    const b = appliedGrads(bptt(), net, first4, terminalOnly);
    expectClose(f[0]!, b[0]!, 1 / 3);
    disposeTree([batch, first4.inputs] as never);
    net.dispose();
  });

  it('the textbook form makes a second pass at the updated weights, and differs from the dual form after the first update', () => {
    const run = (form: FpttForm) => {
      const net = network(4);
      const rule = fptt({ window: 3, form, alpha: 0.5 });
      const runner = new OptimizerRunner(adam({ lr: 0.01 }), net.params);
      let state = rule.init(net);
      const batch = toyTask({ steps: 9, batch: 4, seed: 1 });
      for (let i = 0; i < 2; i++) state = rule.update(batch, state, { network: net, loss: ceEveryStep, apply: (g) => runner.apply(g) }).state;
      const w = Array.from(net.params['layers.0.W']!.dataSync());
      disposeTree([state, batch] as never);
      runner.dispose();
      net.dispose();
      return w;
    };
    expect(run('dual')).not.toEqual(run('textbook'));
  });
});

describe('fptt details', () => {
  it('evalWith W̄ hands the anchor to the trainer; the default evaluates W', () => {
    const net = network(5);
    const withBar = fptt({ window: 2, evalWith: 'Wbar' });
    const state = withBar.init(net);
    expect(withBar.evalParams!(state)).toBe(state.wbar);
    expect(Object.keys(state.wbar).sort()).toEqual(Object.keys(net.params).sort());
    expect(fptt().evalParams).toBeUndefined();
    disposeTree(state as never);
    net.dispose();
  });

  it('a terminal schedule refuses a loss with per-step targets; a per-step schedule refuses ce_mean', () => {
    const net = network(6);
    const runner = new OptimizerRunner(adam(), net.params);
    const batch = toyTask({ steps: 4, batch: 2 });
    const tryUpdate = (rule: LearningRule, loss: TemporalLoss) => {
      try {
        rule.update(batch, rule.init(net), { network: net, loss, apply: (g) => runner.apply(g) });
      } catch (e) {
        return e;
      }
      return undefined;
    };
    const e1 = tryUpdate(fptt(), mseEveryStep);
    expect(isSpikeflowError(e1, 'INCOMPATIBLE')).toBe(true);
    expect(String(e1)).toContain("loss 'mse_every_step' has one target per step");
    const e2 = tryUpdate(fptt({ schedule: 'per-step' }), ceMean);
    expect(isSpikeflowError(e2, 'INCOMPATIBLE')).toBe(true);
    expect(String(e2)).toContain("loss 'ce_mean' does not decompose over time");
    disposeTree(batch as never);
    runner.dispose();
    net.dispose();
  });

  it('from a JSON spec: options validated and named; window and parts exclusive', () => {
    const rules = createRegistry([plugin]).rules;
    const rule = ruleFromSpec({ name: 'fptt', window: 10, alpha: 0.5 }, rules);
    expect(rule.name).toBe('fptt(K=10, dual, terminal)');
    expect(rule.memory).toBe('O(k)');
    expect(ruleFromSpec({ name: 'fptt', parts: 10 }, rules).memory).toBe('O(T)');
    // Updates per sequence, for learning-rate schedules: one per chunk.
    expect(rule.updatesPerSequence!(200)).toBe(20);
    expect(rule.updatesPerSequence!(205)).toBe(21);
    expect(ruleFromSpec({ name: 'fptt', parts: 10 }, rules).updatesPerSequence!(205)).toBe(10);
    expect(fptt().updatesPerSequence!(7)).toBe(7);
    const bad = (spec: unknown) => {
      try {
        ruleFromSpec(spec, rules);
      } catch (e) {
        return e as Error;
      }
      throw new Error('no error');
    };
    expect(bad({ name: 'fptt', window: 4, parts: 2 }).message).toContain('either "window"');
    expect(bad({ name: 'fptt', alpha: 0 }).message).toContain('rule.alpha');
    expect(bad({ name: 'fptt', form: 'primal' }).message).toContain('rule.form');
  });
});

describe('fptt in the trainer', () => {
  const parts = () => ({
    network: buildNetwork(
      { inputs: 2, layers: [{ neuron: 'ltc', size: 10, recurrent: true, params: { threshold: 'fixed' } }], readout: { size: 1, from: 'membrane', kappa: 0 } },
      registries,
      { seed: 7 },
    ),
    dataset: addTask({ steps: 12, trainSamples: 64, testSamples: 16, seed: 1 }),
    rule: fptt({ window: 4, alpha: 0.2 }),
    optimizer: adam({ lr: 0.01, clipNorm: 1 }),
    loss: mseLast,
  });

  it('a run stopped mid-epoch resumes from its checkpoint to the same weights and the same W̄ and λ, bitwise', async () => {
    // The rule's state (W̄, λ) goes through the checkpoint too: both runs end with the same trees.
    const a = (await expectExactResume(parts)) as FpttState;
    const net = parts().network;
    expect(Object.keys(a.wbar).sort()).toEqual(Object.keys(net.params).sort());
    disposeTree(a as never);
    net.dispose();
  });
});

import { describe, expect, it } from 'vitest';
import { tf, type Scalar, type Tensor } from './tf.js';
import { builtinSurrogates } from './surrogates.js';
import { buildNetwork, detach, type Network } from './network.js';
import { stepsOf } from './steps.js';
import { unroll } from './loops.js';
import type { NetState } from './step.js';
import { ceEveryStep, ceMean, mseEveryStep, mseLast } from './losses.js';
import { disposeTree, treeMap } from './state.js';
import { checkRequirements, defineRule, paramGrads, ruleFromSpec, stepwise, type LearningRule, type RuleEntry } from './rule.js';
import { errorOf, iaf, useCpuBackend } from './test-support.js';

useCpuBackend();

const reg = { neurons: new Map([['iaf', iaf]]), surrogates: builtinSurrogates };

const makeRule = (name: string, online: boolean, options: unknown = {}): LearningRule => ({
  name,
  memory: online ? 'O(1)' : 'O(T)',
  gradient: 'exact',
  requires: online ? { lossDecomposesOverTime: true } : {},
  init: () => ({ options }) as never,
  update: (_b, s) => ({ state: s, report: { loss: 0, updates: 0 } }),
});

describe('checkRequirements: declared requirements, one error format', () => {
  const net = buildNetwork({ inputs: 3, layers: [{ neuron: 'iaf', size: 4 }], readout: { size: 2 } }, reg);
  const two = buildNetwork(
    {
      inputs: 3,
      layers: [
        { neuron: 'iaf', size: 4 },
        { neuron: 'iaf', size: 3 },
      ],
      readout: { size: 2, from: 'membrane' },
    },
    reg,
  );

  it('an online rule with a loss that does not decompose is INCOMPATIBLE naming the rule, the field and both names', () => {
    const e = errorOf(() => checkRequirements(makeRule('eprop', true), net, ceMean));
    expect(e.code).toBe('INCOMPATIBLE');
    expect(e.details).toEqual({ rule: 'eprop', path: 'loss' });
    expect(e.message).toMatch(/^rule 'eprop' cannot train this run: loss: it updates from per-step losses, but loss 'ce_mean' does not decompose over time/);
    expect(e.message).toContain('ce_every_step, mse_every_step, mse_last');
  });

  it('accepts decomposable losses, and any loss for a whole-sequence rule', () => {
    expect(() => checkRequirements(makeRule('eprop', true), net, ceEveryStep)).not.toThrow();
    expect(() => checkRequirements(makeRule('eprop', true), net, mseLast)).not.toThrow();
    expect(() => checkRequirements(makeRule('bptt', false), net, ceMean)).not.toThrow();
  });

  it('a rule that scores chunk ends against the sequence target refuses a loss with per-step targets', () => {
    const rule: LearningRule = { ...makeRule('fptt', false), requires: { lossHasTerminal: true } };
    const e = errorOf(() => checkRequirements(rule, net, mseEveryStep));
    expect(e.details).toEqual({ rule: 'fptt', path: 'loss' });
    expect(e.message).toContain('ce_mean, ce_every_step, mse_last');
    expect(() => checkRequirements(rule, net, ceMean)).not.toThrow();
    expect(() => checkRequirements(rule, net, mseLast)).not.toThrow();
  });

  it('layer count, neuron capabilities, fixed neuron parameters and the readout, each naming its field', () => {
    const rule = (requires: LearningRule['requires']): LearningRule => ({ ...makeRule('r', false), requires });
    const fields: [LearningRule['requires'], Network, string | undefined][] = [
      [{ layers: 1 }, net, undefined],
      [{ layers: 1 }, two, 'model.layers'],
      [{ neuron: ['spikes', 'membrane'] }, two, undefined],
      [{ neuron: ['localJacobians'] }, net, 'model.layers[0].neuron'],
      [{ neuron: ['membraneDecay'] }, two, 'model.layers[0].neuron'],
      [{ fixedNeuronParams: true }, net, undefined],
      [{ readout: { leak: true, from: 'spikes' } }, net, undefined],
      [{ readout: { from: 'spikes' } }, two, 'model.readout.from'],
    ];
    for (const [requires, network, path] of fields) {
      if (path === undefined) {
        expect(() => checkRequirements(rule(requires), network, ceEveryStep), JSON.stringify(requires)).not.toThrow();
        continue;
      }
      const e = errorOf(() => checkRequirements(rule(requires), network, ceEveryStep));
      expect(e.code).toBe('INCOMPATIBLE');
      expect(e.details).toEqual({ rule: 'r', path });
      expect(e.message.startsWith(`rule 'r' cannot train this run: ${path}: it `)).toBe(true);
    }
    expect(errorOf(() => checkRequirements(rule({ neuron: ['localJacobians'] }), net, ceEveryStep)).message).toContain("neuron 'iaf' does not declare it");
  });

  it('defineRule checks once per network and loss, on the first update, before the rule runs', () => {
    let runs = 0;
    const rule = defineRule({
      ...makeRule('once', false),
      requires: { layers: 1 },
      update: (_b, s) => {
        runs += 1;
        return { state: s, report: { loss: 0, updates: 0 } };
      },
    });
    const batch = { inputs: tf.zeros([2, 1, 3]), targets: tf.tensor1d([0], 'int32') };
    const ctx = (network: Network) => ({ network, loss: ceEveryStep, apply: () => {} });
    expect(errorOf(() => rule.update(batch, {}, ctx(two))).details).toEqual({ rule: 'once', path: 'model.layers' });
    expect(runs).toBe(0);
    rule.update(batch, {}, ctx(net));
    rule.update(batch, {}, ctx(net));
    expect(runs).toBe(2);
    // The check of a pair is remembered: a second failing call for `two` throws again (never cached as passed).
    expect(() => rule.update(batch, {}, ctx(two))).toThrow(/model\.layers/);
    disposeTree(batch);
  });
});

describe('ruleFromSpec', () => {
  const created: unknown[] = [];
  const bptt: RuleEntry = {
    name: 'bptt',
    description: 'test entry',
    optionsSchema: {
      truncation: { type: 'number', integer: true, min: 1, doc: 'window' },
      detachReset: { type: 'boolean', default: false },
    },
    create: (options) => {
      created.push(options);
      return makeRule('bptt', false, options);
    },
  };
  const rules = new Map<string, RuleEntry>([['bptt', bptt]]);

  it('validates the options and passes them, defaults filled, to the entry', () => {
    created.length = 0;
    const r = ruleFromSpec({ name: 'bptt', truncation: 50 }, rules);
    expect(r.name).toBe('bptt');
    expect(created).toEqual([{ truncation: 50, detachReset: false }]);
    ruleFromSpec({ name: 'bptt' }, rules);
    expect(created[1]).toEqual({ detachReset: false });
  });

  it('an unknown rule is UNKNOWN_NAME with a suggestion and the install command', () => {
    const e = errorOf(() => ruleFromSpec({ name: 'bpt' }, rules));
    expect(e.code).toBe('UNKNOWN_NAME');
    expect(e.details.path).toBe('rule.name');
    expect(e.details['name']).toBe('bpt');
    expect(e.message).toMatch(/^rule\.name: unknown rule 'bpt'; did you mean 'bptt'\?/);
    expect(e.message).toContain('pnpm add @spikeflow/rule-bpt');
    expect(errorOf(() => ruleFromSpec({ name: 'eprop' }, new Map(), 'run.rule')).details.path).toBe('run.rule.name');
  });

  it('a missing name or a non-object spec is CONFIG_INVALID', () => {
    const e = errorOf(() => ruleFromSpec({ truncation: 3 }, rules));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.details.path).toBe('rule.name');
    expect(e.message).toContain('installed: bptt');
    expect(errorOf(() => ruleFromSpec({}, new Map())).message).toContain('installed: none');
    expect(errorOf(() => ruleFromSpec('bptt', rules)).details.path).toBe('rule');
  });

  it('unknown and bad options name the field', () => {
    const typo = errorOf(() => ruleFromSpec({ name: 'bptt', truncaton: 5 }, rules));
    expect(typo.code).toBe('CONFIG_INVALID');
    expect(typo.details.path).toBe('rule.truncaton');
    expect(typo.message).toMatch(/did you mean 'truncation'/);
    expect(errorOf(() => ruleFromSpec({ name: 'bptt', truncation: 0 }, rules)).message).toBe('rule.truncation: must be >= 1, got 0');
  });
});

describe('paramGrads', () => {
  it('keys gradients by parameter name; parameters that do not reach the loss are absent', () => {
    const net = buildNetwork({ inputs: 2, layers: [{ neuron: 'iaf', size: 3 }], readout: { size: 2 } }, reg, { seed: 1 });
    const before = tf.memory().numTensors;
    const { value, grads } = paramGrads(net, () => tf.sum(tf.mul(net.params['readout.W']!, 2)) as Scalar);
    expect(Object.keys(grads)).toEqual(['readout.W']);
    expect(grads['readout.W']!.shape).toEqual([3, 2]);
    expect(Array.from(grads['readout.W']!.dataSync())).toEqual([2, 2, 2, 2, 2, 2]);
    expect(value.dataSync()[0]).toBeCloseTo(2 * Array.from(net.params['readout.W']!.dataSync()).reduce((a, b) => a + b, 0), 5);
    disposeTree([value, grads]);
    expect(tf.memory().numTensors).toBe(before);
    net.dispose();
  });

  it('through an unrolled sequence: every parameter, matching tf.variableGrads', () => {
    const net = buildNetwork({ inputs: 2, layers: [{ neuron: 'iaf', size: 4, recurrent: true, gain: 3 }], readout: { size: 2 } }, reg, {
      seed: 2,
    });
    const x = tf.tidy(() => tf.cast(tf.greater(tf.randomUniform([6, 3, 2], 0, 1, 'float32', 4), 0.4), 'float32'));
    const loss = () => {
      const ys: Tensor[] = [];
      unroll(net, net.prepare(), net.init(3), stepsOf(x), 0, 6, (_, o) => ys.push(o.readout));
      return tf.mean(tf.square(tf.stack(ys))) as Scalar;
    };
    const before = tf.memory().numTensors;
    const mine = paramGrads(net, loss);
    expect(Object.keys(mine.grads).sort()).toEqual(Object.keys(net.params).sort());
    const names = Object.keys(net.params);
    const theirs = tf.variableGrads(
      loss,
      names.map((k) => net.params[k]!),
    );
    for (const k of names) {
      const t = theirs.grads[net.params[k]!.name]!;
      expect(Array.from(mine.grads[k]!.dataSync()), k).toEqual(Array.from(t.dataSync()));
      expect(
        Array.from(t.dataSync()).some((v) => v !== 0),
        k,
      ).toBe(true);
    }
    expect(mine.value.dataSync()[0]).toBe(theirs.value.dataSync()[0]);
    disposeTree([mine.value, mine.grads, theirs.value, theirs.grads]);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    net.dispose();
  });
});

describe("stepwise: windows of one step on core's engine", () => {
  const spec = { inputs: 3, layers: [{ neuron: 'iaf', size: 5, recurrent: true }], readout: { size: 2, kappa: 0.7 } };

  it('accumulated, it sums to BPTT with every state detached between steps; online and forward-only steps; the loss read at once or as a promise; nothing leaks', async () => {
    const net = buildNetwork(spec, reg, { seed: 3 });
    const T = 6;
    const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([T, 2, 3], 0, 1, 'float32', 5), 0.6), 'float32'));
    const targets = tf.tensor1d([0, 1], 'int32');
    const bound = ceEveryStep.bind(targets, { steps: T, batch: 2, outputs: 2 });
    const xs = stepsOf(x);

    // Reference: one tape over all steps, the state detached between steps.
    const ref = paramGrads(net, () => {
      const terms: Scalar[] = [];
      unroll(net, net.prepare(), net.init(2), xs, 0, T, (t, out) => terms.push(bound.step!(out.readout, t)!));
      return tf.addN(terms) as Scalar;
    });
    const refDetached = paramGrads(net, () => {
      const p = net.prepare();
      let s: NetState = net.init(2);
      const terms: Scalar[] = [];
      for (let t = 0; t < T; t++) {
        const out = net.step(p, treeMap(s as never, (v) => detach(v)) as NetState, xs.at(t));
        terms.push(bound.step!(out.readout, t)!);
        s = out.state;
      }
      return tf.addN(terms) as Scalar;
    });
    const before = tf.memory().numTensors;
    const seen: number[] = [];
    const applied: Record<string, Float32Array>[] = [];
    const ctx = {
      network: net,
      loss: ceEveryStep,
      apply: (g: Record<string, Tensor>) => applied.push(Object.fromEntries(Object.entries(g).map(([k, v]) => [k, v.dataSync() as Float32Array]))),
      observe: (t: number) => seen.push(t),
    };
    const report = stepwise({ inputs: x, targets }, ctx, { online: false });
    expect(seen).toEqual([0, 1, 2, 3, 4, 5]);
    expect(report.updates).toBe(1);
    expect(report.loss).toBeCloseTo(refDetached.value.dataSync()[0]!, 5);
    let differs = false;
    for (const [k, g] of Object.entries(refDetached.grads)) {
      const got = applied[0]![k]!;
      g.dataSync().forEach((v, i) => expect(got[i]!).toBeCloseTo(v, 5));
      differs ||= g.dataSync().some((v, i) => Math.abs(v - ref.grads[k]!.dataSync()[i]!) > 1e-4);
    }
    // The temporal paths matter on this network: full BPTT differs.
    expect(differs).toBe(true);
    // Online: one update per step, each the gradient of that step's term alone (the first equals the reference's first term).
    const online: Record<string, Float32Array>[] = [];
    const r2 = stepwise(
      { inputs: x, targets },
      { ...ctx, apply: (g: Record<string, Tensor>) => online.push(Object.fromEntries(Object.entries(g).map(([k, v]) => [k, v.dataSync() as Float32Array]))) },
      { online: true },
    );
    expect(r2.updates).toBe(T);
    expect(online).toHaveLength(T);
    // Steps that run forward only are scored, not differentiated.
    const scored = stepwise({ inputs: x, targets }, { ...ctx, apply: () => {} }, { online: true, backward: (t) => t === 2 });
    expect(scored.updates).toBe(1);
    expect(scored.loss).toBeCloseTo(report.loss as number, 5);
    expect(tf.memory().numTensors).toBe(before);
    // Asked for asynchronous reads, the same loss comes as a promise; its tensor is freed once read.
    const deferred = stepwise({ inputs: x, targets }, { ...ctx, apply: () => {}, asyncReads: true }, { online: false });
    expect(deferred.loss).toBeInstanceOf(Promise);
    expect(await deferred.loss).toBe(report.loss);
    expect(tf.memory().numTensors).toBe(before);
    disposeTree([ref.grads, ref.value, refDetached.grads, refDetached.value, x, targets] as never);
    bound.dispose();
    net.dispose();
  });
});

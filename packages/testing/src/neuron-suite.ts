import { describe, expect, it } from 'vitest';
import {
  detach,
  disposeTree,
  tidy,
  neuronParamTensor,
  parseSchema,
  referenceKernels,
  fastSigmoid,
  spikeFn,
  spikeTimingSequence,
  tf,
  triangle,
  type AnyNeuronModel,
  type NeuronParams,
  type NeuronState,
  type NeuronStepContext,
  type Surrogate,
  type Schema,
  type Tensor,
} from '@spikeflow/core';

export interface NeuronSuiteOptions {
  /** Configs (a model spec's `params`) to run the battery on; default `[{}]` (all defaults). */
  readonly configs?: readonly Record<string, unknown>[];
  readonly batch?: number;
  readonly size?: number;
  /** Activates a backend before the suite (e.g. `() => wasm.activate()`). */
  readonly setup?: () => Promise<void>;
}

type Config = Record<string, string | number | boolean>;

/** The config as a model spec would give it: validated (a typo in a test config fails), defaults filled. */
function validated(model: AnyNeuronModel, raw: Record<string, unknown>): Config {
  const config = parseSchema(model.configSchema as Schema, raw, `${model.name}.params`) as Config;
  model.validate?.(config, `${model.name}.params`);
  return config;
}

function makeParams(model: AnyNeuronModel, config: Config, size: number): { params: NeuronParams<Config>; dispose: () => void } {
  const tensors: Record<string, Tensor> = {};
  let seed = 100;
  for (const [k, p] of Object.entries(model.tensorParams(config, size))) tensors[k] = neuronParamTensor(p, `${model.name}.${k}`, seed++);
  return { params: { config, tensors }, dispose: () => disposeTree(tensors) };
}

/** A state a few steps into a run: varied membrane values, some spikes. */
function warmState(model: AnyNeuronModel, params: NeuronParams<Config>, batch: number, size: number, ctx: NeuronStepContext): NeuronState {
  let state = model.init(batch, size, params.config) as NeuronState;
  for (let t = 0; t < 3; t++) {
    const current = tf.randomUniform([batch, size], -0.5, 2.5, 'float32', 11 + t);
    const next = model.step(params, state, current, ctx).state as NeuronState;
    disposeTree(state, next);
    current.dispose();
    state = next;
  }
  return state;
}

/**
 * The neuron battery every neuron plugin runs (`describeNeuron(lif)` in its tests): shapes, purity,
 * state in / state out, no tensor leaks, spikes through the surrogate only, gradient flow to
 * trainable parameters.
 */
export function describeNeuron(model: AnyNeuronModel, { configs = [{}], batch = 3, size = 5, setup }: NeuronSuiteOptions = {}): void {
  describe(`neuron conformance: ${model.name}`, () => {
    it('has a name, a description, state keys and a config schema with defaults that validate', async () => {
      await setup?.();
      expect(model.name).toMatch(/^[a-z][a-z0-9_-]*$/);
      expect(model.description.length).toBeGreaterThan(0);
      expect(model.stateKeys.length).toBeGreaterThan(0);
      for (const spec of Object.values(model.configSchema as Schema)) expect(['number', 'boolean', 'string']).toContain(spec.type);
    });

    for (const raw of configs) {
      const label = JSON.stringify(raw);
      const dense = (x: Tensor, w: Tensor) => tf.matMul(x, w);
      const fs = fastSigmoid({ slope: 25 });
      const ctx: NeuronStepContext = { spike: spikeFn(fs), surrogate: fs, detach, dense };

      it(`init and step keep shapes and state keys (${label})`, async () => {
        await setup?.();
        const config = validated(model, raw);
        const { params, dispose } = makeParams(model, config, size);
        const state = model.init(batch, size, config) as NeuronState;
        expect(Object.keys(state).sort()).toEqual([...model.stateKeys].sort());
        for (const k of model.stateKeys) expect(state[k]!.shape).toEqual([batch, size]);
        const current = tf.randomUniform([batch, size], 0, 3, 'float32', 1);
        const out = model.step(params, state, current, ctx);
        expect(Object.keys(out.state).sort()).toEqual([...model.stateKeys].sort());
        for (const k of model.stateKeys) expect(out.state[k]!.shape).toEqual([batch, size]);
        expect(out.spikes.shape).toEqual([batch, size]);
        const spikes = Array.from(out.spikes.dataSync());
        if (model.spikeTiming?.(config)) {
          // A spike-timing neuron passes on its PSP, a_t = r·a_{t−1} + o_t/τ_s: in [0, 1), 1/τ_s at a first spike.
          expect(spikes.every((s) => s >= 0 && s < 1)).toBe(true);
          expect(spikes.some((s) => s > 0)).toBe(true);
        } else {
          expect(spikes.every((s) => s === 0 || s === 1)).toBe(true);
          expect(spikes.some((s) => s === 1)).toBe(true);
        }
        // The fields it names are state fields; the spike field holds the step's spikes.
        for (const key of [model.spikes, model.membrane]) if (key !== undefined) expect(model.stateKeys).toContain(key);
        if (model.spikes !== undefined) expect(Array.from(out.state[model.spikes]!.dataSync())).toEqual(spikes);
        disposeTree([state, out, current]);
        dispose();
      });

      it(`step is pure: same inputs give the same outputs, and the input state is neither changed nor disposed (${label})`, async () => {
        await setup?.();
        const config = validated(model, raw);
        const { params, dispose } = makeParams(model, config, size);
        const state = warmState(model, params, batch, size, ctx);
        const before = Object.fromEntries(model.stateKeys.map((k) => [k, Array.from(state[k]!.dataSync())]));
        const current = tf.randomUniform([batch, size], -0.5, 2.5, 'float32', 7);
        const a = model.step(params, state, current, ctx);
        const b = model.step(params, state, current, ctx);
        for (const k of model.stateKeys) {
          expect(state[k]!.isDisposed).toBe(false);
          expect(Array.from(state[k]!.dataSync())).toEqual(before[k]);
          expect(Array.from(a.state[k]!.dataSync())).toEqual(Array.from(b.state[k]!.dataSync()));
        }
        expect(Array.from(a.spikes.dataSync())).toEqual(Array.from(b.spikes.dataSync()));
        expect(current.isDisposed).toBe(false);
        disposeTree([state, a, b, current]);
        dispose();
      });

      it(`step leaks no tensors (${label})`, async () => {
        await setup?.();
        const config = validated(model, raw);
        const { params, dispose } = makeParams(model, config, size);
        const state = warmState(model, params, batch, size, ctx);
        const current = tf.randomUniform([batch, size], 0, 2, 'float32', 3);
        const base = tf.memory().numTensors;
        for (let i = 0; i < 5; i++) {
          const out = tidy(() => model.step(params, state, current, ctx));
          disposeTree(out, state);
        }
        expect(tf.memory().numTensors).toBe(base);
        disposeTree([state, current]);
        dispose();
      });

      it(`spikes go through the surrogate: the backward pass equals autodiff of the surrogate's smooth primitive (${label})`, async () => {
        await setup?.();
        const config = validated(model, raw);
        const { params, dispose } = makeParams(model, config, size);
        const surrogate: Surrogate = triangle({ gamma: 0.5, width: 2 });
        const sharp: NeuronStepContext = { spike: spikeFn(surrogate), surrogate, detach, dense };
        const smooth: NeuronStepContext = { spike: (x) => surrogate.primitive(x), surrogate, detach, dense };
        const state = warmState(model, params, batch, size, sharp);
        const current = tf.randomUniform([batch, size], -0.5, 2.5, 'float32', 5);
        const gradOf = (c: NeuronStepContext) => tf.grad((i: Tensor) => tf.sum(model.step(params, state, i, c).spikes))(current);
        const gSharp = gradOf(sharp);
        const gSmooth = gradOf(smooth);
        expect(tf.max(tf.abs(gSharp)).dataSync()[0]).toBeGreaterThan(0);
        const a = gSharp.dataSync();
        const b = gSmooth.dataSync();
        for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(b[i]!, 5);
        disposeTree([state, current, gSharp, gSmooth]);
        dispose();
      });

      if (model.membraneDecay) {
        it(`the declared membrane decay is ∂v_t/∂v_{t−1} of the step (${label})`, async () => {
          await setup?.();
          const config = validated(model, raw);
          const decay = model.membraneDecay!(config);
          const { params, dispose } = makeParams(model, config, size);
          if (decay !== undefined) {
            expect(model.membrane, 'a neuron that declares a membrane decay names its membrane').toBeDefined();
            const key = model.membrane!;
            const state = warmState(model, params, batch, size, ctx);
            const current = tf.randomUniform([batch, size], -0.5, 2.5, 'float32', 9);
            const g = tf.grad((v: Tensor) => tf.sum(model.step(params, { ...state, [key]: v }, current, ctx).state[key]!))(state[key]!);
            for (const x of g.dataSync()) expect(x).toBeCloseTo(decay, 5);
            disposeTree([state, current, g]);
          }
          dispose();
        });
      }

      if (model.spikeTiming) {
        it(`the spike-timing equations it declares are its steps: core's spikeTimingSequence gives its outputs and membrane over 8 steps (${label})`, async () => {
          await setup?.();
          const config = validated(model, raw);
          const k = model.spikeTiming!(config);
          if (k !== undefined) {
            const { params, dispose } = makeParams(model, config, size);
            const T = 8;
            const currents = tf.randomUniform([T, batch, size], -0.5, 2.5, 'float32', 11);
            let state = model.init(batch, size, config) as NeuronState;
            const outs: Tensor[] = [];
            const membranes: Tensor[] = [];
            for (const c of tf.unstack(currents)) {
              const out = model.step(params, state, c, ctx);
              outs.push(out.spikes);
              state = out.state;
              if (model.membrane) membranes.push(state[model.membrane]!);
            }
            // With filterInput, the sequence's input is the PSP-filtered current.
            const r = 1 - 1 / k.tauS;
            let filtered = currents;
            if (k.filterInput) {
              let acc: Tensor | undefined;
              filtered = tf.stack(tf.unstack(currents).map((c) => (acc = acc ? tf.add(tf.mul(r, acc), tf.mul(1 - r, c)) : tf.mul(1 - r, c))));
            }
            const seq = spikeTimingSequence(filtered, k);
            const got = tf.stack(outs).dataSync();
            seq.psp.dataSync().forEach((v, i) => expect(got[i]!, `PSP [${i}]`).toBeCloseTo(v, 5));
            expect(Array.from(seq.spikes.dataSync()).some((v) => v === 1)).toBe(true);
            if (model.membrane) {
              // The state keeps the membrane after the reset: the sequence's u_t where no spike, 0 at a spike.
              const u = seq.membrane.dataSync();
              const o = seq.spikes.dataSync();
              const mine = tf.stack(membranes).dataSync();
              u.forEach((v, i) => expect(mine[i]!, `membrane [${i}]`).toBeCloseTo(o[i] ? 0 : v, 5));
            }
            dispose();
          }
        });
      }

      if (model.integrateFire) {
        it(`the integrate-and-fire kernel it declares runs exactly its steps: spikes, final state and gradients (currents, initial state, trainable parameters) over 6 steps (${label})`, async () => {
          await setup?.();
          const config = validated(model, raw);
          const { params, dispose } = makeParams(model, config, size);
          const k = model.integrateFire!(params);
          if (k !== undefined) {
            const c: NeuronStepContext = { ...ctx, surrogate: fastSigmoid({ slope: 3 }), spike: spikeFn(fastSigmoid({ slope: 3 })) };
            const init = warmState(model, params, batch, size, c);
            const vKey = model.membrane;
            const sKey = model.spikes;
            const aKey = k.adaptation ? model.adaptation : undefined;
            expect(vKey, 'a neuron with the fused form names its membrane field').toBeDefined();
            expect(sKey, 'a neuron with the fused form names its spike field').toBeDefined();
            if (k.adaptation) expect(aKey, 'a neuron whose fused form has an adaptive threshold names its adaptation field').toBeDefined();
            const fields = [vKey!, sKey!, ...(aKey ? [aKey] : [])];
            expect(Object.keys(init).sort(), 'the fused form runs on a state of exactly its membrane and spike (and adaptation) fields').toEqual(
              [...fields].sort(),
            );
            const keys = model.stateKeys as readonly string[];
            const trainable = Object.entries(model.tensorParams(config, size))
              .filter(([, t]) => t.trainable)
              .map(([key]) => key);
            const currents = tf.randomUniform([6, batch, size], -0.5, 2.5, 'float32', 31);
            const dy = tf.randomNormal([6, batch, size], 0, 1, 'float32', 32);
            // (currents, the state before by stateKeys, the trainable parameters) → spikes [6, B, H] and the final state.
            const unpack = (xs: Tensor[]) => ({
              cu: xs[0]!,
              state: Object.fromEntries(keys.map((key, i) => [key, xs[1 + i]!])) as NeuronState,
              ps: { config, tensors: { ...params.tensors, ...Object.fromEntries(trainable.map((key, i) => [key, xs[1 + keys.length + i]!])) } },
            });
            const byKernel = (...xs: Tensor[]) => {
              const { cu, state, ps } = unpack(xs);
              const r = referenceKernels['spikeflow.integrateFireSequence'](
                cu,
                { v: state[vKey!]!, s: state[sKey!]!, ...(aKey ? { a: state[aKey]! } : {}) },
                undefined,
                { ...model.integrateFire!(ps)!, surrogate: c.surrogate },
              );
              return { spikes: r.spikes, final: { [vKey!]: r.final.v, [sKey!]: r.final.s, ...(aKey ? { [aKey]: r.final.a! } : {}) } as NeuronState };
            };
            const bySteps = (...xs: Tensor[]) => {
              const { cu, state: first, ps } = unpack(xs);
              let state = first;
              const out: Tensor[] = [];
              for (const x of tf.unstack(cu)) {
                const next = model.step(ps, state, x, c);
                out.push(next.spikes);
                state = next.state as NeuronState;
              }
              return { spikes: tf.stack(out), final: state };
            };
            const inputs = [currents, ...keys.map((key) => init[key]!), ...trainable.map((key) => params.tensors[key]!)];
            const a = tf.tidy(() => byKernel(...inputs));
            const b = tf.tidy(() => bySteps(...inputs));
            expect(Array.from(a.spikes.dataSync())).toEqual(Array.from(b.spikes.dataSync()));
            expect(Array.from(a.spikes.dataSync()).some((x) => x === 1)).toBe(true);
            for (const key of fields) {
              const want = b.final[key]!.dataSync();
              a.final[key]!.dataSync().forEach((x, i) => expect(x, `final ${key} at ${i}`).toBeCloseTo(want[i]!, 5));
            }
            // 0·Σx keeps every input on the tape (tfjs refuses inputs that do not reach the output).
            const loss =
              (f: typeof byKernel) =>
              (...xs: Tensor[]) =>
                tf.add(tf.sum(tf.mul(f(...xs).spikes, dy)), tf.mul(0, tf.addN(xs.map((x) => tf.sum(x)))));
            const ga = tf.grads(loss(byKernel))(inputs);
            const gb = tf.grads(loss(bySteps))(inputs);
            const names = ['currents', ...keys.map((key) => `the initial ${key}`), ...trainable];
            gb.forEach((g, i) => {
              const want = g.dataSync();
              if (i === 0) expect(Math.max(...Array.from(want, Math.abs))).toBeGreaterThan(0);
              // Parameters sum over the batch and the steps: float32 agrees to fewer absolute digits there.
              ga[i]!.dataSync().forEach((x, j) => expect(x, `gradient of ${names[i]} at ${j}`).toBeCloseTo(want[j]!, i === 0 ? 5 : 4));
            });
            disposeTree([a, b, ga, gb, currents, dy, init]);
          }
          dispose();
        });
      }

      const capability = model.localJacobians;
      if (capability) {
        it(`declared local Jacobians equal automatic differentiation of the step (${label})`, async () => {
          await setup?.();
          const config = validated(model, raw);
          const { params, dispose } = makeParams(model, config, size);
          // A wide surrogate so that most entries are non-zero.
          const surrogate = triangle({ gamma: 0.7, width: 3 });
          const c: NeuronStepContext = { spike: spikeFn(surrogate), surrogate, detach, dense };
          const prev = warmState(model, params, batch, size, c);
          const current = tf.randomUniform([batch, size], -0.5, 2.5, 'float32', 21);
          const keys = model.stateKeys as readonly string[];
          const next = model.step(params, prev, current, c);
          expect(model.spikes, 'a neuron with local Jacobians names its spike field (learning signals enter there)').toBeDefined();
          expect(next.spikes.dataSync()).toEqual(next.state[model.spikes!]!.dataSync());
          const J = capability.jacobians(params, prev, next.state, current, c);
          expect(J.state.length).toBe(keys.length);
          expect(J.current.length).toBe(keys.length);
          const full = (e: Tensor | number | null) => tf.tidy(() => tf.add(tf.zeros([batch, size]), e ?? 0));
          let nonZero = 0;
          keys.forEach((k, row) => {
            // The step is local, so one vector-Jacobian product with a ones seed gives every neuron's own derivative.
            const inputs = [...keys.map((kk) => prev[kk]!), current];
            const grads = tf.grads((...xs: Tensor[]) => {
              const st = Object.fromEntries(keys.map((kk, i) => [kk, xs[i]!]));
              // 0·Σx keeps every input on the tape (tfjs refuses inputs that do not reach the output).
              return tf.add(tf.sum(model.step(params, st, xs[keys.length]!, c).state[k]!), tf.mul(0, tf.addN(xs.map((x) => tf.sum(x)))));
            })(inputs);
            const declared = [...J.state[row]!, J.current[row]!];
            declared.forEach((e, col) => {
              const want = Array.from(grads[col]!.dataSync());
              const gotT = full(e);
              const got = Array.from(gotT.dataSync());
              gotT.dispose();
              for (let i = 0; i < want.length; i++) {
                expect(got[i], `∂${k}/∂${col < keys.length ? keys[col] : 'I'} at ${i}`).toBeCloseTo(want[i]!, 5);
                if (want[i] !== 0) nonZero++;
              }
            });
            disposeTree(grads);
          });
          expect(nonZero).toBeGreaterThan(0);
          disposeTree([prev, current, next.state, J]);
          dispose();
        });
      }

      const trainable = Object.entries(model.tensorParams(validated(model, raw), size)).filter(([, p]) => p.trainable);
      if (trainable.length) {
        it(`gradients reach its trainable parameters ${trainable.map(([k]) => k).join(', ')} over two steps (${label})`, async () => {
          await setup?.();
          const config = validated(model, raw);
          const { params, dispose } = makeParams(model, config, size);
          const state = warmState(model, params, batch, size, ctx);
          const c1 = tf.randomUniform([batch, size], 0, 2, 'float32', 8);
          const c2 = tf.randomUniform([batch, size], 0, 2, 'float32', 9);
          for (const [key] of trainable) {
            const g = tf.grad((p: Tensor) => {
              const ps = { config, tensors: { ...params.tensors, [key]: p } };
              const s1 = model.step(ps, state, c1, ctx);
              const s2 = model.step(ps, s1.state, c2, ctx);
              return tf.add(tf.sum(s1.spikes), tf.sum(s2.spikes));
            })(params.tensors[key]!);
            expect(g.shape).toEqual(params.tensors[key]!.shape);
            expect(tf.max(tf.abs(g)).dataSync()[0]).toBeGreaterThan(0);
            g.dispose();
          }
          disposeTree([state, c1, c2]);
          dispose();
        });
      }
    }
  });
}

/**
 * Checks a surrogate: `derivative` equals autodiff of `primitive` at `points`, the spike op
 * steps at 0 (H(0) = 0) and back-propagates `derivative`, and `derivative(0) = peak`.
 */
export function checkSurrogate(s: Surrogate, points: readonly number[] = [-2.3, -0.71, -0.3, -0.05, 0.02, 0.4, 0.77, 1.9]): void {
  const x = tf.tensor1d(points as number[]);
  const zero = tf.scalar(0);
  try {
    const auto = tf.grad((v: Tensor) => tf.sum(s.primitive(v)))(x);
    const own = s.derivative(x);
    const viaSpike = tf.grad((v: Tensor) => tf.sum(spikeFn(s)(v)))(x);
    const a = auto.dataSync();
    const o = own.dataSync();
    const v = viaSpike.dataSync();
    for (let i = 0; i < points.length; i++) {
      expect(o[i]).toBeCloseTo(a[i]!, 4);
      expect(v[i]).toBeCloseTo(o[i]!, 6);
    }
    const fwd = spikeFn(s)(tf.tensor1d([-1, 0, 1e-6, 1]));
    expect(Array.from(fwd.dataSync())).toEqual([0, 0, 1, 1]);
    const d0 = s.derivative(zero);
    expect(d0.dataSync()[0]).toBeCloseTo(s.peak, 5);
    disposeTree([auto, own, viaSpike, fwd, d0]);
  } finally {
    x.dispose();
    zero.dispose();
  }
}

/** A test per surrogate: `describeSurrogates([fastSigmoid({slope: 25}), ...])`. */
export function describeSurrogates(surrogates: readonly Surrogate[]): void {
  describe('surrogate conformance', () => {
    for (const s of surrogates) it(`${s.name}(${JSON.stringify(s.params)}): backward = d primitive/dx, H(0) = 0, peak`, () => checkSurrogate(s));
  });
}

import { describe, expect, it } from 'vitest';
import { tf, type Tensor } from './tf.js';
import { referenceKernels, type IntegrateFireSequenceParams } from './kernels.js';
import { defineNeuron, type AnyNeuronModel } from './neuron.js';
import { fusedStateKeys } from './fused.js';
import { buildNetwork, type Network } from './network.js';
import { builtinSurrogates, fastSigmoid } from './surrogates.js';
import { disposeTree } from './state.js';
import type { ModelRegistries } from './model.js';
import type { NetState } from './step.js';
import { errorOf, referenceFusedKernels, useCpuBackend } from './test-support.js';

useCpuBackend();

const sequence = referenceKernels['spikeflow.integrateFireSequence'];
const f = Math.fround;

/** Random window inputs: currents [T, B, H], a state a few steps into a run, β and ρ per neuron, W_rec. */
function inputs(T: number, B: number, H: number) {
  return {
    currents: tf.randomNormal([T, B, H], 0.5, 0.8, 'float32', 1),
    v: tf.randomNormal([B, H], 0, 0.5, 'float32', 2),
    s: tf.tidy(() => tf.cast(tf.less(tf.randomUniform([B, H], 0, 1, 'float32', 3), 0.3), 'float32')),
    a: tf.randomUniform([B, H], 0, 1.5, 'float32', 4),
    beta: tf.randomUniform([H], 0.6, 0.95, 'float32', 5),
    rho: tf.randomUniform([H], 0.7, 0.98, 'float32', 6),
    wRec: tf.randomNormal([H, H], 0, 0.4, 'float32', 7),
  };
}

describe('spikeflow.integrateFireSequence (the composite reference): an adaptive threshold', () => {
  it('a_t = ρ·a_{t−1} + s_{t−1}, spikes where v_t > ϑ + β_a·a_t: spikes and final state of a plain float32 loop', () => {
    const [T, B, H] = [9, 2, 5];
    const x = inputs(T, B, H);
    const p: IntegrateFireSequenceParams = {
      beta: x.beta,
      threshold: 0.8,
      resetDetach: false,
      surrogate: fastSigmoid(),
      adaptation: { rho: x.rho, strength: 0.7 },
    };
    const r = sequence(x.currents, { v: x.v, s: x.s, a: x.a }, x.wRec, p);
    const c = x.currents.arraySync() as number[][][];
    const w = x.wRec.arraySync() as number[][];
    const beta = Array.from(x.beta.dataSync());
    const rho = Array.from(x.rho.dataSync());
    let v = x.v.arraySync() as number[][];
    let s = x.s.arraySync() as number[][];
    let a = x.a.arraySync() as number[][];
    const spikes: number[] = [];
    let fired = 0;
    for (let t = 0; t < T; t++) {
      const next = { v: [] as number[][], s: [] as number[][], a: [] as number[][] };
      for (let b = 0; b < B; b++) {
        next.v.push([]);
        next.s.push([]);
        next.a.push([]);
        for (let j = 0; j < H; j++) {
          let rec = 0;
          for (let k = 0; k < H; k++) rec = f(rec + f(s[b]![k]! * w[k]![j]!));
          const vt = f(f(f(beta[j]! * v[b]![j]!) + f(c[t]![b]![j]! + rec)) - f(f(0.8) * s[b]![j]!));
          const at = f(f(rho[j]! * a[b]![j]!) + s[b]![j]!);
          const st = vt > f(f(0.8) + f(f(0.7) * at)) ? 1 : 0;
          next.v[b]!.push(vt);
          next.a[b]!.push(at);
          next.s[b]!.push(st);
          spikes.push(st);
          fired += st;
        }
      }
      ({ v, s, a } = next);
    }
    expect(fired).toBeGreaterThan(0);
    expect(fired).toBeLessThan(T * B * H);
    expect(Array.from(r.spikes.dataSync())).toEqual(spikes);
    const close = (t: Tensor | undefined, want: number[][]) => t!.dataSync().forEach((y, i) => expect(y).toBeCloseTo(want.flat()[i]!, 5));
    close(r.final.v, v);
    close(r.final.a, a);
    close(r.final.s, s);
    disposeTree([r, x]);
  });

  it('refuses an adaptive threshold without the adaptation in the initial state', () => {
    const x = inputs(2, 1, 3);
    const e = errorOf(() =>
      sequence(x.currents, { v: x.v, s: x.s }, undefined, {
        beta: x.beta,
        threshold: 1,
        resetDetach: false,
        surrogate: fastSigmoid(),
        adaptation: { rho: x.rho, strength: 1 },
      }),
    );
    expect(e.code).toBe('SHAPE_MISMATCH');
    expect(e.message).toMatch(/an adaptive threshold needs the adaptation a in the initial state/);
    disposeTree(x);
  });
});

describe('spikeflow.integrateFireSequence (the composite reference) without the temporal path', () => {
  for (const resetDetach of [false, true]) {
    it(`the gradient of a window is the sum of its one-step windows' gradients, each from the state the window reached; the initial state gets none (reset ${resetDetach ? 'detached' : 'attached'})`, () => {
      const [T, B, H] = [6, 3, 4];
      const x = inputs(T, B, H);
      const dy = tf.randomNormal([T, B, H], 0, 1, 'float32', 9);
      const params = (beta: Tensor, rho: Tensor, temporal?: false): IntegrateFireSequenceParams => ({
        beta,
        threshold: 0.8,
        resetDetach,
        surrogate: fastSigmoid({ slope: 3 }),
        adaptation: { rho, strength: 0.5 },
        ...(temporal === false ? { temporal } : {}),
      });
      // (currents, W_rec, β, ρ, v0, s0, a0) → Σ_t ⟨s_t, dy_t⟩ of the whole window without the temporal path.
      const whole = tf.grads((cu: Tensor, w: Tensor, beta: Tensor, rho: Tensor, v: Tensor, s: Tensor, a: Tensor) =>
        tf.sum(tf.mul(sequence(cu, { v, s, a }, w, params(beta, rho, false)).spikes, dy)),
      )([x.currents, x.wRec, x.beta, x.rho, x.v, x.s, x.a]);
      // The states the window passes through (values), then each step on its own from them.
      const states = [{ v: x.v, s: x.s, a: x.a }];
      const cs = tf.unstack(x.currents);
      const dys = tf.unstack(dy);
      for (let t = 0; t < T - 1; t++) {
        const r = sequence(tf.expandDims(cs[t]!, 0), states[t]!, x.wRec, params(x.beta, x.rho));
        states.push(r.final as { v: Tensor; s: Tensor; a: Tensor });
        r.spikes.dispose();
      }
      const sums = [tf.zeros([T, B, H]), tf.zerosLike(x.wRec), tf.zerosLike(x.beta), tf.zerosLike(x.rho)];
      const steps: Tensor[] = [];
      for (let t = 0; t < T; t++) {
        const g = tf.grads((c: Tensor, w: Tensor, beta: Tensor, rho: Tensor) =>
          tf.sum(tf.mul(sequence(tf.expandDims(c, 0), states[t]!, w, params(beta, rho)).spikes, tf.expandDims(dys[t]!, 0))),
        )([cs[t]!, x.wRec, x.beta, x.rho]);
        steps.push(g[0]!);
        for (let i = 1; i < 4; i++) sums[i] = tf.add(sums[i]!, g[i]!);
      }
      sums[0] = tf.stack(steps);
      const names = ['currents', 'W_rec', 'β', 'ρ'];
      sums.forEach((want, i) => {
        const w = want.dataSync();
        expect(Math.max(...Array.from(w, Math.abs)), names[i]).toBeGreaterThan(0);
        whole[i]!.dataSync().forEach((y, j) => expect(y, `${names[i]} at ${j}`).toBeCloseTo(w[j]!, 5));
      });
      for (const i of [4, 5, 6]) expect(Array.from(whole[i]!.dataSync()).every((y) => y === 0)).toBe(true);
      disposeTree([x, dy, whole, states.slice(1), cs, dys, sums, steps]);
    });
  }

  it('spikeflow.leakyScan without the temporal path: the same values, ∂d_t = ∂y_t and no gradient to y0', () => {
    const d = tf.randomNormal([5, 2, 3], 0, 1, 'float32', 1);
    const y0 = tf.randomNormal([2, 3], 0, 1, 'float32', 2);
    const dy = tf.randomNormal([5, 2, 3], 0, 1, 'float32', 3);
    const scan = referenceKernels['spikeflow.leakyScan'];
    const a = scan(d, y0, 0.7);
    const b = scan(d, y0, 0.7, { temporal: false });
    expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
    const [gd, gy] = tf.grads((x: Tensor, y: Tensor) => tf.sum(tf.mul(scan(x, y, 0.7, { temporal: false }), dy)))([d, y0]);
    expect(Array.from(gd!.dataSync())).toEqual(Array.from(dy.dataSync()));
    expect(Array.from(gy!.dataSync()).every((v) => v === 0)).toBe(true);
    disposeTree([d, y0, dy, a, b, gd, gy]);
  });
});

/** Integrate-and-fire with an adaptive threshold and a trainable per-neuron ρ (test neuron, core's kernel equation). */
const adaptive = defineNeuron({
  name: 'adaptive',
  description: 'integrate-and-fire with an adaptive threshold (test neuron)',
  configSchema: { strength: { type: 'number', default: 0.6, min: 0 } },
  stateKeys: ['v', 'a', 's'],
  membrane: 'v',
  spikes: 's',
  adaptation: 'a',
  tensorParams: (_c, size) => ({
    beta: { value: 0.85, trainable: false },
    rho: { value: new Float32Array(size).fill(0.9), trainable: true, range: [0, 1] },
  }),
  integrateFire: ({ config, tensors }) => ({
    beta: tensors['beta']!,
    threshold: 1,
    resetDetach: false,
    adaptation: { rho: tensors['rho']!, strength: config.strength },
  }),
  init: (batch, size) => {
    const z = tf.zeros([batch, size]);
    return { v: z, a: z, s: z };
  },
  step: ({ config, tensors }, st: { v: Tensor; a: Tensor; s: Tensor }, current, { spike }) => {
    const a = tf.add(tf.mul(tensors['rho']!, st.a), st.s);
    const v = tf.sub(tf.add(tf.mul(tensors['beta']!, st.v), current), tf.mul(1, st.s));
    const s = spike(tf.sub(v, tf.add(1, tf.mul(config.strength, a))));
    return { state: { v, a, s }, spikes: s };
  },
});

describe('fused windows of layers with an adaptive threshold', () => {
  const unnamed = { ...adaptive, name: 'unnamed', adaptation: undefined } as unknown as AnyNeuronModel;
  const reg: ModelRegistries = {
    neurons: new Map([
      ['adaptive', adaptive as unknown as AnyNeuronModel],
      ['unnamed', unnamed],
    ]),
    surrogates: builtinSurrogates,
  };
  const spec = {
    inputs: 4,
    layers: [
      { neuron: 'adaptive', size: 6, recurrent: true, gain: 3 },
      { neuron: 'adaptive', size: 3, gain: 3, params: { strength: 0.3 } },
    ],
    readout: { size: 2, kappa: 0.7 },
  };
  const fastTable = referenceFusedKernels;

  it('carry the adaptation field the neuron names; a neuron whose fused form adapts but names no adaptation field runs step by step', () => {
    expect(fusedStateKeys(adaptive as unknown as AnyNeuronModel, true)).toEqual({ v: 'v', s: 's', a: 'a' });
    // Its state is not exactly the membrane and spikes: no fused form without the adaptation.
    expect(fusedStateKeys(adaptive as unknown as AnyNeuronModel)).toBeUndefined();
    expect(fusedStateKeys(unnamed, true)).toBeUndefined();
    const net = buildNetwork(spec, reg, { kernels: fastTable() });
    expect(net.fused).toBe(true);
    const other = buildNetwork({ ...spec, layers: [{ neuron: 'unnamed', size: 6 }] }, reg, { kernels: fastTable() });
    expect(other.fused).toBe(false);
    net.dispose();
    other.dispose();
  });

  for (const temporal of [true, false]) {
    it(`give the readout, spikes, final state (with a) and parameter gradients of the same steps taken one at a time${temporal ? '' : ', without the temporal path'}`, () => {
      const net = buildNetwork(spec, reg, { kernels: fastTable(), seed: 3 });
      const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([7, 2, 4], 0, 1, 'float32', 5), 0.5), 'float32'));
      const params = Object.values(net.params);
      const names = new Map(Object.entries(net.params).map(([k, v]) => [v.name, k]));
      const viaWindow = tf.variableGrads(() => {
        const p = net.prepare({ temporal });
        expect(p.fused).toBeDefined();
        const out = net.runWindow(p, net.init(2), x);
        return tf.sum(tf.mul(out.readout, out.readout)) as tf.Scalar;
      }, params);
      const viaSteps = tf.variableGrads(() => {
        const p = { ...net.prepare({ temporal }), fused: undefined };
        let s = net.init(2);
        const ys: Tensor[] = [];
        for (const xt of tf.unstack(x)) {
          const o = net.step(p, s, xt);
          ys.push(o.readout);
          s = o.state;
        }
        return tf.sum(tf.mul(tf.stack(ys), tf.stack(ys))) as tf.Scalar;
      }, params);
      expect(Object.keys(viaSteps.grads)).toContain(net.params['layers.0.rho']!.name);
      expect(viaWindow.value.dataSync()[0]).toBeCloseTo(viaSteps.value.dataSync()[0]!, 5);
      for (const [k, g] of Object.entries(viaSteps.grads)) {
        const a = viaWindow.grads[k]!.dataSync();
        expect(Math.max(...Array.from(g.dataSync(), Math.abs)), names.get(k)).toBeGreaterThan(0);
        g.dataSync().forEach((v, i) => expect(a[i], k).toBeCloseTo(v, 5));
      }
      const [w, s] = tf.tidy(() => {
        const end = net.runWindow(net.prepare(), net.init(2), x).state;
        const p = { ...net.prepare(), fused: undefined };
        let st = net.init(2);
        for (const xt of tf.unstack(x)) st = net.step(p, st, xt).state;
        return [end, st] as never;
      }) as [NetState, NetState];
      for (const l of [0, 1]) {
        for (const key of ['v', 'a', 's']) {
          const want = s.layers[l]!.neuron[key]!.dataSync();
          w.layers[l]!.neuron[key]!.dataSync().forEach((v, i) => expect(v, `${key} of layer ${l}`).toBeCloseTo(want[i]!, 5));
        }
      }
      disposeTree([viaWindow.value, viaWindow.grads, viaSteps.value, viaSteps.grads, w, s, x] as never);
      net.dispose();
    });
  }

  it('a step without the temporal path passes no gradient to the state it starts from (any neuron, the readout too)', () => {
    const net: Network = buildNetwork(spec, reg, { seed: 1 });
    const x = tf.ones([2, 4]);
    const st = net.init(2);
    const p = net.prepare({ temporal: false });
    const leaves = [...st.layers.flatMap((l) => [...Object.values(l.neuron), l.spikes]), st.readout];
    const g = tf.grads((...xs: Tensor[]) => {
      let i = 0;
      const state = {
        layers: st.layers.map((l) => ({ neuron: Object.fromEntries(Object.keys(l.neuron).map((k) => [k, xs[i++]!])), spikes: xs[i++]! })),
        readout: xs[i++]!,
      };
      return tf.sum(net.step(p, state, x).readout);
    })(leaves);
    for (const t of g) expect(Array.from(t.dataSync()).every((v) => v === 0)).toBe(true);
    disposeTree([g, x, st]);
    net.dispose();
  });
});

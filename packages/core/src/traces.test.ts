import { describe, expect, it } from 'vitest';
import { tf, type Tensor } from './tf.js';
import { checkPresynapticTraces, referenceKernels, tracedProductReference, type PresynapticTraces } from './kernels.js';
import { buildNetwork } from './network.js';
import { builtinSurrogates, fastSigmoid } from './surrogates.js';
import { disposeTree } from './state.js';
import { errorOf, iaf, useCpuBackend } from './test-support.js';

useCpuBackend();

/** `[T][B][n]` as nested arrays. */
const nested = (t: Tensor) => t.arraySync() as number[][][];
const matrix = (t: Tensor) => t.arraySync() as number[][];

function maxRel(got: Tensor, want: number[][] | number[]): number {
  const g = Array.from(got.dataSync());
  const w = (want as (number | number[])[]).flat() as number[];
  const scale = Math.max(...w.map(Math.abs), 1e-12);
  return Math.max(...g.map((x, i) => Math.abs(x - w[i]!))) / scale;
}

/** 0/1 with probability `p`, some entries scaled (analog inputs). */
const input = (shape: number[], seed: number) =>
  tf.tidy(() =>
    tf.mul(tf.cast(tf.less(tf.randomUniform(shape, 0, 1, 'float32', seed), 0.4), 'float32'), tf.randomUniform(shape, 0.5, 1.5, 'float32', seed + 1)),
  );

describe('presynaptic traces in the composite references (OTTT)', () => {
  it('the traced product: W gets Σ_τ x_τᵀ·ĝ_τ + λ·â_{t0−1}ᵀ·ĝ_{t0} (g filtered backward in time), b gets Σ_t c_t·Σ_b g_t, x gets g·Wᵀ; the value is x·W + b', () => {
    const [T, B, I, O] = [5, 3, 4, 6];
    const lambda = 0.7;
    const c0 = 2.5;
    const x = input([T, B, I], 1);
    const w = tf.randomNormal([I, O], 0, 1, 'float32', 3);
    const b = tf.randomNormal([O], 0, 1, 'float32', 4);
    const a0 = tf.randomUniform([B, I], 0, 2, 'float32', 5);
    const dy = tf.randomNormal([T, B, O], 0, 1, 'float32', 6);
    const traces: PresynapticTraces = { decay: lambda, input: a0, bias: c0 };
    const y = tracedProductReference(x, w, b, traces);
    const [dx, dw, db] = tf.grads((xx: Tensor, ww: Tensor, bb: Tensor) => tf.sum(tf.mul(tracedProductReference(xx, ww, bb, traces), dy)))([x, w, b]);
    // Plain loops in float64.
    const X = nested(x);
    const W = matrix(w);
    const bv = Array.from(b.dataSync());
    const A0 = matrix(a0);
    const G = nested(dy);
    const Gh = G.map((row) => row.map((r) => [...r]));
    for (let t = T - 2; t >= 0; t--) for (let r = 0; r < B; r++) for (let j = 0; j < O; j++) Gh[t]![r]![j]! += lambda * Gh[t + 1]![r]![j]!;
    const wantW = Array.from({ length: I }, (_, i) =>
      Array.from({ length: O }, (_, j) => {
        let acc = 0;
        for (let r = 0; r < B; r++) {
          for (let t = 0; t < T; t++) acc += X[t]![r]![i]! * Gh[t]![r]![j]!;
          acc += lambda * A0[r]![i]! * Gh[0]![r]![j]!;
        }
        return acc;
      }),
    );
    let c = c0;
    const wantB = new Array<number>(O).fill(0);
    for (let t = 0; t < T; t++) {
      c = lambda * c + 1;
      for (let r = 0; r < B; r++) for (let j = 0; j < O; j++) wantB[j]! += c * G[t]![r]![j]!;
    }
    const wantX = X.map((row, t) => row.map((_, r) => Array.from({ length: I }, (_, i) => W[i]!.reduce((s, wij, j) => s + wij * G[t]![r]![j]!, 0))));
    const wantY = X.map((row) => row.map((xr) => Array.from({ length: O }, (_, j) => bv[j]! + xr.reduce((s, xi, i) => s + xi * W[i]![j]!, 0))));
    expect(maxRel(y, wantY.flat())).toBeLessThan(1e-5);
    expect(maxRel(dw!, wantW)).toBeLessThan(1e-5);
    expect(maxRel(db!, wantB)).toBeLessThan(1e-5);
    expect(maxRel(dx!, wantX.flat())).toBeLessThan(1e-5);
    // Without a trace before the window (a sequence's first), the start terms vanish.
    const [dw0] = tf.grads((ww: Tensor) => tf.sum(tf.mul(tracedProductReference(x, ww, undefined, { decay: lambda }), dy)))([w]);
    const wantW0 = wantW.map((row, i) => row.map((v, j) => v - lambda * A0.reduce((s, a, r) => s + a[i]! * Gh[0]![r]![j]!, 0)));
    expect(maxRel(dw0!, wantW0)).toBeLessThan(1e-5);
    disposeTree([x, w, b, a0, dy, y, dx, dw, db, dw0]);
  });

  it('W_rec in the integrate-and-fire window: Σ_t â_tᵀ·∂L/∂I_t with â_t = λ·â_{t−1} + s_{t−1} from the trace before the window, with and without the temporal path', () => {
    const [T, B, H] = [6, 2, 5];
    const lambda = 0.8;
    for (const temporal of [true, false]) {
      const currents = tf.randomNormal([T, B, H], 0.6, 0.8, 'float32', 11);
      const v = tf.randomNormal([B, H], 0, 0.5, 'float32', 12);
      const s = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([B, H], 0, 1, 'float32', 13), 0.4), 'float32'));
      const wRec = tf.randomNormal([H, H], 0, 0.5, 'float32', 14);
      const r0 = tf.randomUniform([B, H], 0, 2, 'float32', 15);
      const dy = tf.randomNormal([T, B, H], 0, 1, 'float32', 16);
      const p = {
        beta: tf.scalar(0.85),
        threshold: 1,
        resetDetach: false,
        surrogate: fastSigmoid({ slope: 4 }),
        traces: { decay: lambda, recurrent: r0 },
        ...(temporal ? {} : { temporal: false }),
      };
      const run = (c: Tensor, wr: Tensor) => referenceKernels['spikeflow.integrateFireSequence'](c, { v, s }, wr, p);
      const out = run(currents, wRec);
      const [dc, dwr] = tf.grads((c: Tensor, wr: Tensor) => tf.sum(tf.mul(run(c, wr).spikes, dy)))([currents, wRec]);
      const S = nested(out.spikes);
      const dC = nested(dc!);
      let a = matrix(r0);
      let prev = matrix(s);
      const want = Array.from({ length: H }, () => new Array<number>(H).fill(0));
      for (let t = 0; t < T; t++) {
        a = a.map((row, r) => row.map((x, i) => lambda * x + prev[r]![i]!));
        for (let r = 0; r < B; r++) for (let i = 0; i < H; i++) for (let j = 0; j < H; j++) want[i]![j]! += a[r]![i]! * dC[t]![r]![j]!;
        prev = S[t]!;
      }
      expect(maxRel(dwr!, want), `temporal ${temporal}`).toBeLessThan(1e-5);
      disposeTree([currents, v, s, wRec, r0, dy, out, dc, dwr, p.beta]);
    }
  });

  it('spikeflow.decayedSum: â ← λ·â + x_j over the window from the trace before it (zero where absent)', () => {
    const x = input([4, 2, 3], 21);
    const before = tf.randomUniform([2, 3], 0, 1, 'float32', 23);
    const X = nested(x);
    for (const [decay, from] of [
      [0.6, true],
      [0.6, false],
      [0, true],
      [1, true],
    ] as const) {
      let a = from && decay > 0 ? matrix(before) : X[0]!.map((r) => r.map(() => 0));
      for (const xt of X) a = a.map((row, r) => row.map((v, i) => decay * v + xt[r]![i]!));
      const got = referenceKernels['spikeflow.decayedSum'](x, decay, from ? before : undefined);
      expect(maxRel(got, a), `λ ${decay}, before ${from}`).toBeLessThan(1e-6);
      got.dispose();
    }
    disposeTree([x, before]);
  });

  it('refuses traces that do not fit: λ outside [0, 1] (CONFIG_INVALID), a trace of the wrong shape (SHAPE_MISMATCH naming it)', () => {
    const a = tf.zeros([3, 4]);
    expect(errorOf(() => checkPresynapticTraces('k', { decay: 1.5 }, 3, { input: 4 })).code).toBe('CONFIG_INVALID');
    const e = errorOf(() => checkPresynapticTraces('spikeflow.integrateFireLayer', { decay: 0.5, recurrent: a }, 3, { input: 4, recurrent: 5 }));
    expect(e.code).toBe('SHAPE_MISMATCH');
    expect(e.message).toMatch(/^spikeflow\.integrateFireLayer: the recurrent trace before the window must be \[3, 5\].*got \[3,4\]/);
    expect(() => checkPresynapticTraces('k', { decay: 0.5, input: a }, 3, { input: 4 })).not.toThrow();
    const x = tf.zeros([2, 3, 5]);
    expect(errorOf(() => referenceKernels['spikeflow.decayedSum'](x, 0.5, a)).code).toBe('SHAPE_MISMATCH');
    disposeTree([a, x]);
  });

  it('Network.prepare takes traces only where the network runs fused, one entry per layer', () => {
    const spec = { inputs: 3, layers: [{ neuron: 'iaf', size: 4 }], readout: { size: 2 } };
    const net = buildNetwork(spec, { neurons: new Map([['iaf', iaf]]), surrogates: builtinSurrogates });
    expect(net.fused).toBe(false);
    const e = errorOf(() => net.prepare({ temporal: false, traces: { layers: [{ decay: 0.5 }] } }));
    expect(e.code).toBe('INCOMPATIBLE');
    expect(e.message).toMatch(/presynaptic traces run in the fused kernels only.*does not run fused/);
    net.dispose();
  });
});

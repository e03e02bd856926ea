import { beforeAll, describe, expect, it } from 'vitest';
import {
  disposeTree,
  fastSigmoid,
  integrateFireEligibilityReference,
  isSpikeflowError,
  tf,
  triangle,
  type EligibilitySpec,
  type EligibilityTraces,
} from '@spikeflow/core';
import { integrateFireEligibility } from './eprop.js';
import { eventDense, leakyScan } from './kernels.js';
import { useWasm } from './test-support.js';
import { keep, kernelMemoryBytes } from './wasm.js';

beforeAll(useWasm);

interface Case {
  readonly name: string;
  readonly B?: number;
  readonly I?: number;
  readonly H?: number;
  readonly recurrent?: boolean;
  readonly bias?: boolean;
  readonly resetDetach?: boolean;
  readonly adaptive?: boolean;
  readonly perNeuronBeta?: boolean;
  readonly surrogate?: 'fast' | 'triangle';
  readonly windows?: readonly number[];
  readonly analog?: boolean;
}

function specOf(c: Case): EligibilitySpec {
  const H = c.H ?? 9;
  return {
    batch: c.B ?? 3,
    inputs: c.I ?? 11,
    size: H,
    recurrent: c.recurrent ?? true,
    bias: c.bias ?? true,
    kappa: 0.8,
    neuron: {
      beta: c.perNeuronBeta ? tf.linspace(0.7, 0.95, H) : tf.scalar(0.85),
      threshold: 1,
      resetDetach: c.resetDetach ?? true,
      surrogate: c.surrogate === 'triangle' ? triangle({ width: 0.8 }) : fastSigmoid({ slope: 3 }),
      ...(c.adaptive ? { adaptation: { rho: tf.linspace(0.8, 0.97, H), strength: 0.6 } } : {}),
    },
  };
}

/**
 * Runs the traces over windows of the given lengths, with random weights that change between
 * windows (online updates), random learning signals, and a carried signal from the second window
 * on. Returns every output, flattened in order (spikes, final state, gradients).
 */
function run(make: (s: EligibilitySpec) => EligibilityTraces, c: Case): number[] {
  const spec = specOf(c);
  const { batch: B, inputs: I, size: H } = spec;
  const traces = make(spec);
  const out: number[] = [];
  const windows = c.windows ?? [4, 1, 5, 3];
  let seed = 100;
  windows.forEach((n, k) => {
    const r = tf.tidy(() => {
      const u = tf.randomUniform([n, B, I], 0, 1, 'float32', seed++);
      const x = c.analog ? tf.where(tf.less(u, 0.6), tf.zerosLike(u), tf.mul(u, 2)) : tf.cast(tf.less(u, 0.4), 'float32');
      const w = tf.randomNormal([I, H], 0.25, 0.6, 'float32', seed++);
      const b = spec.bias ? tf.randomNormal([H], 0.1, 0.2, 'float32', seed++) : undefined;
      const wRec = spec.recurrent ? tf.randomNormal([H, H], 0, 0.5, 'float32', seed++) : undefined;
      const f = traces.forward(x, w, b, wRec);
      const m = tf.randomNormal([n, B, H], 0, 1, 'float32', seed++);
      const cc = k > 0 ? tf.randomNormal([B, H], 0, 1, 'float32', seed++) : undefined;
      const g = traces.backward(m, cc, k < windows.length - 1);
      return [f.spikes, f.final.v, f.final.s, ...(f.final.a ? [f.final.a] : []), f.filtered, f.count, g.w, ...(g.wRec ? [g.wRec] : []), ...(g.b ? [g.b] : [])];
    });
    for (const t of r) out.push(...t.dataSync());
    disposeTree(r);
  });
  traces.dispose();
  disposeTree(spec.neuron as never);
  return out;
}

function maxRelDiff(a: readonly number[], b: readonly number[]): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return den > 0 ? num / den : num;
}

const cases: Case[] = [
  { name: 'reset detached, shared β (presynaptic z̄), recurrent, bias' },
  { name: 'reset attached (per-synapse membrane trace)', resetDetach: false },
  { name: 'adaptive threshold, reset detached', adaptive: true },
  { name: 'adaptive threshold, reset attached, triangle surrogate', adaptive: true, resetDetach: false, surrogate: 'triangle' },
  { name: 'a decay per neuron, feed-forward, no bias', perNeuronBeta: true, recurrent: false, bias: false },
  { name: 'analog input, odd sizes (B 5, I 7, H 6)', analog: true, B: 5, I: 7, H: 6 },
  { name: 'one window', windows: [6] },
  { name: 'windows of one step', windows: [1, 1, 1, 1] },
  { name: 'work enough to split over threads (B 16, I 120, H 70)', B: 16, I: 120, H: 70, adaptive: true, resetDetach: false, windows: [7, 9, 4] },
];

describe('spikeflow.integrateFireEligibility (wasm) equals the composite reference', () => {
  for (const c of cases) {
    it(c.name, () => {
      const before = tf.memory().numTensors;
      const fast = run(integrateFireEligibility, c);
      const ref = run(integrateFireEligibilityReference, c);
      expect(fast.length).toBe(ref.length);
      expect(maxRelDiff(fast, ref)).toBeLessThan(2e-5);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

describe('spikeflow.integrateFireEligibility: calls in order, and memory kept across calls', () => {
  const spec = () => specOf({ name: 'x' });

  it('refuses a backward without a forward, a second forward, and anything after the last window', () => {
    const s = spec();
    const t = integrateFireEligibility(s);
    const { batch: B, inputs: I, size: H } = s;
    const x = tf.zeros([2, B, I]);
    const w = tf.zeros([I, H]);
    const b = tf.zeros([H]);
    const wr = tf.zeros([H, H]);
    const m = tf.zeros([2, B, H]);
    expect(() => t.backward(m, undefined, true)).toThrow(/backward without a window/);
    disposeTree(t.forward(x, w, b, wr) as never);
    expect(() => t.forward(x, w, b, wr)).toThrow(/forward twice/);
    expect(() => t.backward(tf.zeros([3, B, H]), undefined, true)).toThrow(/expected m \[2, 3, 9\]/);
    disposeTree(t.backward(m, undefined, false) as never);
    let e: unknown;
    try {
      t.forward(x, w, b, wr);
    } catch (err) {
      e = err;
    }
    expect(isSpikeflowError(e, 'CLOSED')).toBe(true);
    expect(() => integrateFireEligibility(s).forward(tf.zeros([2, B, I + 1]), w, b, wr)).toThrow(/expected x float32 \[n, 3, 11\]/);
    disposeTree([x, w, b, wr, m, s.neuron] as never);
  });

  it('kernels called between windows lay their scratch out after the kept traces; a later holder takes the memory over', () => {
    const s = spec();
    const c: Case = { name: 'x', windows: [3, 3] };
    const alone = run(integrateFireEligibility, c);
    // The same run with another kernel's large scratch laid out between every two calls.
    const { batch: B, inputs: I, size: H } = s;
    const t = integrateFireEligibility(specOf(c));
    const out: number[] = [];
    let seed = 100;
    [3, 3].forEach((n, k) => {
      const r = tf.tidy(() => {
        const u = tf.randomUniform([n, B, I], 0, 1, 'float32', seed++);
        const x = tf.cast(tf.less(u, 0.4), 'float32');
        const w = tf.randomNormal([I, H], 0.25, 0.6, 'float32', seed++);
        const b = tf.randomNormal([H], 0.1, 0.2, 'float32', seed++);
        const wRec = tf.randomNormal([H, H], 0, 0.5, 'float32', seed++);
        const f = t.forward(x, w, b, wRec);
        // Another kernel's scratch (megabytes), where an arena laid out from the start would overwrite the traces.
        tf.tidy(() =>
          leakyScan(eventDense(tf.randomNormal([2000, 300], 0, 1, 'float32', 1), tf.ones([300, 40])).reshape([50, 40, 40]), tf.zeros([40, 40]), 0.9).dataSync(),
        );
        const m = tf.randomNormal([n, B, H], 0, 1, 'float32', seed++);
        const cc = k > 0 ? tf.randomNormal([B, H], 0, 1, 'float32', seed++) : undefined;
        const g = t.backward(m, cc, k === 0);
        return [f.spikes, f.final.v, f.final.s, f.filtered, f.count, g.w, g.wRec!, g.b!];
      });
      for (const x of r) out.push(...x.dataSync());
      disposeTree(r);
    });
    expect(out).toEqual(alone);
    // Another holder of kept memory: the traces' memory is gone, and they say so.
    const u = integrateFireEligibility(s);
    const other = keep(1000, { width: 1 });
    expect(() => u.forward(tf.zeros([1, B, I]), tf.zeros([I, H]), tf.zeros([H]), tf.zeros([H, H]))).toThrow(/released or taken over mid-sequence/);
    other.release();
    u.dispose();
    expect(kernelMemoryBytes()).toBeGreaterThan(0);
    disposeTree([s.neuron, specOf(c).neuron] as never);
  });
});

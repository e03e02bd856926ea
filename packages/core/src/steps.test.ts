import { describe, expect, it } from 'vitest';
import { tf, type NamedTensorMap, type Tensor } from './tf.js';
import { builtinSurrogates } from './surrogates.js';
import { disposeTree, treeMap } from './state.js';
import { createRng } from './random.js';
import { buildNetwork, detach, type Network } from './network.js';
import type { ModelRegistries } from './model.js';
import type { NetState } from './step.js';
import { checkStepSource, denseInputs, disposeBatch, inputShape, stepSource, stepsOf, type StepSource } from './steps.js';
import { unroll } from './loops.js';
import { checkInputs, forward } from './inference.js';
import { ceEveryStep, ceMean } from './losses.js';
import { trainWindows, type WindowPlan } from './windows.js';
import type { RuleContext, SequenceBatch } from './rule.js';
import { rngAt } from './dataset.js';
import { errorOf, iaf, referenceFusedKernels, useCpuBackend, fusableIaf } from './test-support.js';

useCpuBackend();

/** `[T, B, I]` Bernoulli(p) values, as a plain array (row-major). */
function bernoulli(T: number, B: number, I: number, p: number, seed: number): Float32Array {
  const r = createRng(seed);
  return Float32Array.from({ length: T * B * I }, () => (r() < p ? 1 : 0));
}

/** A step source over `values` `[T, B, I]` that counts the windows it makes (`calls`: [from, to) in order). */
function countingSource(values: Float32Array, [T, B, I]: readonly [number, number, number]): StepSource & { calls: [number, number][] } {
  const calls: [number, number][] = [];
  const s = stepSource({
    steps: T,
    stepShape: [B, I],
    fill: (from, to, out) => {
      calls.push([from, to]);
      out.set(values.subarray(from * B * I, to * B * I));
    },
  });
  return Object.assign(s, { calls });
}

const values = (t: Tensor) => Array.from(t.dataSync());

/** A `bool` step source over `values` `[T, B, I]` (0 or 1): spikes as bytes. */
function boolSource(values: Float32Array, [T, B, I]: readonly [number, number, number]): StepSource {
  return {
    steps: T,
    stepShape: [B, I],
    dtype: 'bool',
    window: (from, to) => tf.tensor3d(Uint8Array.from(values.subarray(from * B * I, to * B * I)), [to - from, B, I], 'bool'),
  };
}

describe('step sources: the contract', () => {
  it('steps and windows are float32 with the input’s values whatever its type (bool and int32 sources and tensors are cast)', () => {
    const dims = [5, 2, 3] as const;
    const v = bernoulli(...dims, 0.5, 3);
    const counts = Int32Array.from(v, (x, i) => x * (i % 4));
    const int32Source: StepSource = {
      steps: 5,
      stepShape: [2, 3],
      dtype: 'int32',
      window: (from, to) => tf.tensor3d(counts.subarray(from * 6, to * 6), [to - from, 2, 3], 'int32'),
      at: (t) => tf.tensor2d(counts.subarray(t * 6, (t + 1) * 6), [2, 3], 'int32'),
    };
    const inputs: [string, Parameters<typeof stepsOf>[0], ArrayLike<number>][] = [
      ['a bool source', boolSource(v, dims), v],
      ['a bool tensor', tf.tensor3d(v, [...dims], 'bool'), v],
      ['an int32 source with its own at', int32Source, counts],
      ['an int32 tensor', tf.tensor3d(counts, [...dims], 'int32'), counts],
    ];
    const before = tf.memory().numTensors;
    for (const [name, x, want] of inputs) {
      const xs = stepsOf(x);
      for (const [from, to] of [
        [0, 5],
        [1, 3],
      ] as const) {
        const w = xs.window(from, to);
        expect(w.dtype, name).toBe('float32');
        expect(values(w), name).toEqual(Array.from(want).slice(from * 6, to * 6));
        w.dispose();
      }
      const at = xs.at(4);
      expect([at.dtype, at.shape], name).toEqual(['float32', [2, 3]]);
      expect(values(at), name).toEqual(Array.from(want).slice(24, 30));
      at.dispose();
      const whole = denseInputs(x);
      expect(whole.dtype, name).toBe('float32');
      expect(values(whole), name).toEqual(Array.from(want));
      whole.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    for (const [, x] of inputs) if (x instanceof tf.Tensor) x.dispose();
  });

  it('a source made by stepSource gives the windows and steps of the dense tensor, the same each time asked', () => {
    const dims = [7, 3, 4] as const;
    const v = bernoulli(...dims, 0.4, 1);
    const dense = tf.tensor3d(v, [...dims]);
    const src = countingSource(v, dims);
    const xs = stepsOf(src);
    expect(xs.length).toBe(7);
    expect(xs.shape).toEqual([3, 4]);
    expect(inputShape(src)).toEqual([7, 3, 4]);
    expect(inputShape(dense)).toEqual([7, 3, 4]);
    const before = tf.memory().numTensors;
    const fromTensor = stepsOf(dense);
    for (const [from, to] of [
      [0, 7],
      [2, 5],
      [6, 7],
      [2, 5],
    ] as const) {
      const a = xs.window(from, to);
      const b = fromTensor.window(from, to);
      expect(a.shape).toEqual([to - from, 3, 4]);
      expect(a.dtype).toBe('float32');
      expect(values(a)).toEqual(values(b));
      tf.dispose([a, b]);
    }
    for (let t = 0; t < 7; t++) {
      const a = xs.at(t);
      const b = fromTensor.at(t);
      expect(a.shape).toEqual([3, 4]);
      expect(values(a)).toEqual(values(b));
      tf.dispose([a, b]);
    }
    // at() without its own `at` asks for a window of one step.
    expect(src.calls.slice(4)).toEqual(Array.from({ length: 7 }, (_, t) => [t, t + 1]));
    const whole = denseInputs(src);
    expect(values(whole)).toEqual(Array.from(v));
    const copy = denseInputs(dense);
    expect(copy).not.toBe(dense);
    expect(values(copy)).toEqual(Array.from(v));
    tf.dispose([whole, copy]);
    expect(tf.memory().numTensors).toBe(before);
    dense.dispose();
  });

  it('refuses a source whose declared steps, step shape, dtype or at are wrong, naming the field', () => {
    const base = { steps: 4, stepShape: [2, 3], dtype: 'float32' as const, window: () => tf.zeros([1]) };
    const msg = (x: unknown) => errorOf(() => inputShape(x as StepSource));
    expect(msg({ ...base, steps: -1 }).message).toMatch(/^step source: 'steps' must be the number of steps T, a whole number >= 0, got -1/);
    expect(msg({ ...base, steps: 2.5 }).message).toMatch(/'steps'.*got 2\.5/);
    expect(msg({ ...base, stepShape: [] }).message).toMatch(/'stepShape' must be the shape of one step, \[B, \.\.\.\] of whole numbers >= 1, got \[\]/);
    expect(msg({ ...base, stepShape: [2, 0] }).message).toMatch(/'stepShape'.*got \[2,0\]/);
    expect(msg({ ...base, dtype: 'float64' }).message).toMatch(/'dtype' must be one of float32, int32, bool, got "float64"/);
    expect(msg({ ...base, at: 3 }).message).toMatch(/'at' must be a function/);
    const e = msg({ steps: 4 });
    expect(e.code).toBe('SHAPE_MISMATCH');
    expect(e.message).toMatch(
      /inputs must be a \[T, B, \.\.\.\] tensor or a step source \(steps, stepShape, dtype, window\), got an object without a window method/,
    );
    expect(e.details['path']).toBe('inputs');
    expect(() => checkStepSource(base)).not.toThrow();
  });

  it('refuses windows out of range, and windows of the wrong shape or type (freeing them)', () => {
    let made: Tensor | undefined;
    const lying: StepSource = {
      steps: 5,
      stepShape: [2, 3],
      dtype: 'float32',
      window: (from, to) => (made = tf.zeros([to - from, 2, 4])),
    };
    const xs = stepsOf(lying);
    const before = tf.memory().numTensors;
    for (const [from, to] of [
      [-1, 2],
      [3, 3],
      [4, 6],
      [0.5, 2],
    ] as const) {
      expect(errorOf(() => xs.window(from, to)).message).toBe(
        `step source: a window [${from}, ${to}) of a sequence of 5 steps must satisfy 0 <= from < to <= 5`,
      );
    }
    expect(errorOf(() => xs.at(5)).message).toMatch(/a window \[5, 6\) of a sequence of 5 steps/);
    const e = errorOf(() => xs.window(1, 3));
    expect(e.code).toBe('SHAPE_MISMATCH');
    expect(e.message).toBe("step source: window(1, 3) returned a float32 [2,2,4] tensor, expected float32 [2,2,3] (the source's stepShape and dtype)");
    expect(made!.isDisposed).toBe(true);
    const ints: StepSource = { steps: 2, stepShape: [1, 1], dtype: 'float32', window: (from, to) => tf.zeros([to - from, 1, 1], 'int32') };
    expect(errorOf(() => stepsOf(ints).window(0, 2)).message).toMatch(/returned a int32 \[2,1,1\] tensor, expected float32 \[2,1,1\]/);
    const notTensor = { steps: 2, stepShape: [1, 1], dtype: 'float32', window: () => [[0]] } as unknown as StepSource;
    expect(errorOf(() => stepsOf(notTensor).window(0, 1)).message).toBe('step source: window(0, 1) returned an array, expected a float32 tensor [1,1,1]');
    const badAt: StepSource = { ...ints, window: (f, t) => tf.zeros([t - f, 1, 1]), at: () => tf.zeros([2]) };
    expect(errorOf(() => stepsOf(badAt).at(0)).message).toMatch(/^step source: at\(0\) returned a float32 \[2\] tensor, expected float32 \[1,1\]/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a network checks a source against its inputs; disposeBatch frees tensors and calls a source’s dispose', () => {
    const net = buildNetwork(
      { inputs: 3, layers: [{ neuron: 'iaf', size: 2 }], readout: { size: 2 } },
      { neurons: new Map([['iaf', iaf]]), surrogates: builtinSurrogates },
    );
    const src = stepSource({ steps: 4, stepShape: [2, 5], fill: () => {} });
    const e = errorOf(() => checkInputs(net, src));
    expect(e.message).toBe('inputs must be time-major [T, B, 3] (the model\'s "inputs"), got [4,2,5] from a step source (steps, stepShape)');
    expect(errorOf(() => forward(net, src)).code).toBe('SHAPE_MISMATCH');
    let disposed = 0;
    const targets = tf.tensor1d([0, 1], 'int32');
    disposeBatch({ inputs: { ...stepSource({ steps: 1, stepShape: [2, 3], fill: () => {} }), dispose: () => disposed++ }, targets });
    expect(disposed).toBe(1);
    expect(targets.isDisposed).toBe(true);
    const t = { inputs: tf.zeros([1, 2, 3]), targets: tf.tensor1d([0, 1], 'int32') };
    disposeBatch(t);
    expect(t.inputs.isDisposed && t.targets.isDisposed).toBe(true);
    net.dispose();
  });

  it('rngAt(seed, n) draws what createRng(seed) draws after n draws', () => {
    for (const seed of [0, 1, 123456789, 0xffffffff]) {
      const r = createRng(seed);
      const drawn = Array.from({ length: 300 }, () => r());
      for (const n of [0, 1, 17, 299]) expect(rngAt(seed, n)()).toBe(drawn[n]);
      // The state wraps round every 2³² draws.
      expect(rngAt(seed, 2 ** 32 + 17)()).toBe(drawn[17]);
    }
    expect(errorOf(() => rngAt(0, -1)).code).toBe('CONFIG_INVALID');
  });
});

// A network that runs fused: core's composite references registered as if they were a backend's kernels.
const fusable = fusableIaf;
const reg: ModelRegistries = { neurons: new Map([['iaf-fused', fusable]]), surrogates: builtinSurrogates };
const fastTable = referenceFusedKernels;
const spec = (hidden = 6, outputs = 3) => ({
  inputs: 5,
  layers: [{ neuron: 'iaf-fused', size: hidden, recurrent: true }],
  readout: { size: outputs, kappa: 0.8 },
});

/** Every update's gradients as plain arrays, and the report, of one sequence under `plan`. */
function updates(net: Network, batch: SequenceBatch, plan: WindowPlan, loss = ceMean): { grads: Record<string, number[]>[]; loss: number } {
  const grads: Record<string, number[]>[] = [];
  const ctx: RuleContext = { network: net, loss, apply: (g) => grads.push(Object.fromEntries(Object.entries(g).map(([k, v]) => [k, values(v)]))) };
  const r = trainWindows(batch, ctx, plan);
  return { grads, loss: r.loss as number };
}

describe('rules train the same from a step source as from the dense tensor', () => {
  const dims = [10, 3, 5] as const;
  const v = bernoulli(...dims, 0.5, 7);
  const cases: [string, WindowPlan][] = [
    ['BPTT (one window)', { window: Infinity, update: 'sequence', objective: 'sequence' }],
    ['truncated BPTT, a whole-sequence loss in two passes', { window: 3, update: 'sequence', objective: 'sequence' }],
    ['online, an update per step', { window: 1, update: 'window', objective: 'steps' }],
  ];
  for (const fused of [true, false]) {
    for (const [name, plan] of cases) {
      it(`${name}${fused ? ', fused' : ', step by step'}: the same gradients, bit for bit`, () => {
        const net = buildNetwork(spec(), reg, { seed: 2, ...(fused ? { kernels: fastTable() } : {}) });
        expect(net.fused).toBe(fused);
        const x = tf.tensor3d(v, [...dims]);
        const targets = tf.tensor1d([0, 1, 2], 'int32');
        const loss = plan.objective === 'steps' ? ceEveryStep : ceMean;
        const before = tf.memory().numTensors;
        const dense = updates(net, { inputs: x, targets }, plan, loss);
        const src = countingSource(v, dims);
        const streamed = updates(net, { inputs: src, targets }, plan, loss);
        // Spikes as bytes: a bool source, and a bool tensor, train as their float32 twin does.
        const bytes = boolSource(v, dims);
        const fromBytes = updates(net, { inputs: bytes, targets }, plan, loss);
        const boolTensor = tf.tensor3d(v, [...dims], 'bool');
        const fromBoolTensor = updates(net, { inputs: boolTensor, targets }, plan, loss);
        boolTensor.dispose();
        expect(tf.memory().numTensors).toBe(before);
        expect(streamed.grads).toEqual(dense.grads);
        expect(streamed.loss).toBe(dense.loss);
        for (const got of [fromBytes, fromBoolTensor]) {
          expect(got.grads).toEqual(dense.grads);
          expect(got.loss).toBe(dense.loss);
        }
        expect(dense.grads.length).toBe(plan.update === 'window' ? 10 : 1);
        expect(src.calls.length).toBeGreaterThan(0);
        tf.dispose([x, targets]);
        net.dispose();
      });
    }
  }

  it('a window re-run after an update (FPTT’s again()) asks the source for it again and gets the same values', () => {
    const net = buildNetwork(spec(), reg, { seed: 4, kernels: fastTable() });
    const targets = tf.tensor1d([0, 1, 2], 'int32');
    const run = (inputs: SequenceBatch['inputs']) => {
      const got: Record<string, number[]>[] = [];
      const snapshot = Object.fromEntries(Object.entries(net.params).map(([k, p]) => [k, tf.clone(p)]));
      const ctx: RuleContext = { network: net, loss: ceEveryStep, apply: () => {} };
      trainWindows({ inputs, targets }, ctx, {
        window: 4,
        update: 'window',
        objective: 'steps',
        apply: (g, _w, again) => {
          got.push(Object.fromEntries(Object.entries(g).map(([k, t]) => [k, values(t)])));
          tf.tidy(() => net.setParams(Object.fromEntries(Object.entries(g).map(([k, t]) => [k, tf.sub(net.params[k]!, tf.mul(t, 0.5))]))));
          const g2 = again();
          got.push(Object.fromEntries(Object.entries(g2).map(([k, t]) => [k, values(t)])));
          disposeTree(g2);
        },
      });
      net.setParams(snapshot);
      disposeTree(snapshot);
      return got;
    };
    const x = tf.tensor3d(v, [...dims]);
    const dense = run(x);
    const src = countingSource(v, dims);
    expect(run(src)).toEqual(dense);
    // Windows [0, 4), [4, 8), [8, 10): each asked for twice, once more for the re-run.
    expect(src.calls).toEqual([
      [0, 4],
      [0, 4],
      [4, 8],
      [4, 8],
      [8, 10],
      [8, 10],
    ]);
    tf.dispose([x, targets]);
    net.dispose();
  });
});

describe('truncated BPTT of a whole-sequence loss (two passes)', () => {
  /** The truncated gradient by definition: one tape over the sequence, the state detached at every window start. */
  function reference(net: Network, x: Tensor, targets: Tensor, k: number): NamedTensorMap {
    const [T, B] = x.shape as [number, number];
    const bound = ceMean.bind(targets, { steps: T, batch: B, outputs: net.outputs });
    const xs = stepsOf(x);
    const vars = Object.entries(net.params);
    const { value, grads } = tf.variableGrads(
      () => {
        const p = net.prepare();
        let s: NetState = net.init(B);
        const ys: Tensor[] = [];
        for (let from = 0; from < T; from += k) {
          s = treeMap(s as never, (t) => detach(t)) as NetState;
          s = unroll(net, p, s, xs, from, Math.min(from + k, T), (_t, out) => ys.push(out.readout));
        }
        return bound.sequence(ys);
      },
      vars.map(([, w]) => w),
    );
    value.dispose();
    bound.dispose();
    const names = new Map(vars.map(([n, w]) => [w.name, n]));
    return Object.fromEntries(Object.entries(grads).map(([vn, g]) => [names.get(vn)!, g]));
  }

  for (const fused of [true, false]) {
    it(`gives the truncated gradient of its definition${fused ? ', fused' : ''}; each window asked for again in the second pass`, () => {
      const net = buildNetwork(spec(), reg, { seed: 5, ...(fused ? { kernels: fastTable() } : {}) });
      const dims = [11, 3, 5] as const;
      const v = bernoulli(...dims, 0.5, 9);
      const x = tf.tensor3d(v, [...dims]);
      const targets = tf.tensor1d([2, 0, 1], 'int32');
      const want = reference(net, x, targets, 4);
      const src = countingSource(v, dims);
      const got = updates(net, { inputs: src, targets }, { window: 4, update: 'sequence', objective: 'sequence' });
      for (const [name, g] of Object.entries(want)) {
        const a = got.grads[0]![name]!;
        const scale = Math.max(...values(g).map(Math.abs));
        values(g).forEach((w, i) => expect(Math.abs(a[i]! - w), name).toBeLessThanOrEqual(1e-5 * scale + 1e-7));
      }
      // Pass one, then pass two: each window once on the tape, which carries the state on.
      const windows = [
        [0, 4],
        [4, 8],
        [8, 11],
      ];
      if (fused) expect(src.calls).toEqual([...windows, ...windows]);
      else expect(src.calls.length).toBe(2 * 11); // step by step: every step of both passes, one at a time
      disposeTree([want, x, targets]);
      net.dispose();
    });
  }

  it('keeps neither the windows’ start states nor the inputs: memory grows with T by the readouts and their gradients only', () => {
    const B = 8;
    const H = 64;
    const peak = (T: number) => {
      const net = buildNetwork(spec(H, 2), reg, { seed: 1 });
      const src = stepSource({ steps: T, stepShape: [B, 5], fill: (from, to, out) => out.set(bernoulli(to - from, B, 5, 0.5, from)) });
      const targets = tf.tensor1d(new Array(B).fill(0), 'int32');
      const engine = tf.engine() as unknown as { state: { numBytes: number }; trackTensor: (...a: unknown[]) => unknown };
      const track = engine.trackTensor;
      const base = engine.state.numBytes;
      let top = base;
      engine.trackTensor = function (this: typeof engine, ...a: unknown[]) {
        const r = track.apply(this, a);
        top = Math.max(top, this.state.numBytes);
        return r;
      };
      try {
        updates(net, { inputs: src, targets }, { window: 4, update: 'sequence', objective: 'sequence' });
      } finally {
        engine.trackTensor = track;
      }
      targets.dispose();
      net.dispose();
      return top - base;
    };
    const grow = peak(128) - peak(64);
    // 64 more steps: their readouts y_t and ∂L/∂y_t ([B, 2] each) and the loss's own per-step
    // tensors; the 16 more window start states ([B, 2H + 2] each) alone would add 16·8·130·4 = 66 KB.
    const perStep = B * 2 * 4;
    expect(grow).toBeLessThanOrEqual(64 * perStep * 4);
    expect(grow).toBeLessThan(16 * B * (2 * H + 2) * 4);
  });
});

describe('forward from a step source', () => {
  for (const fused of [true, false]) {
    it(`gives the readout of the dense tensor${fused ? ', fused over two inference windows' : ''}`, () => {
      const net = buildNetwork(spec(), reg, { seed: 6, ...(fused ? { kernels: fastTable() } : {}) });
      const dims = [fused ? 1100 : 40, 2, 5] as const;
      const v = bernoulli(...dims, 0.3, 11);
      const x = tf.tensor3d(v, [...dims]);
      const src = countingSource(v, dims);
      const a = forward(net, x, { record: true });
      const b = forward(net, src, { record: true });
      expect(values(b.readout)).toEqual(values(a.readout));
      expect(values(b.spikes![0]!)).toEqual(values(a.spikes![0]!));
      if (fused)
        expect(src.calls).toEqual([
          [0, 1024],
          [1024, 1100],
        ]);
      disposeTree([a, b, x]);
      net.dispose();
    });
  }
});

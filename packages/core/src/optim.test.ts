import { describe, expect, it } from 'vitest';
import { tf, type NamedTensorMap, type Tensor, type Variable } from './tf.js';
import { fpttAnchorReference, fpttPullReference } from './updates.js';
import {
  OptimizerRunner,
  adam,
  adamax,
  adamw,
  builtinOptimizers,
  isWeightName,
  chain,
  clipByGlobalNorm,
  clipByValue,
  constantSchedule,
  cosineSchedule,
  exponentialSchedule,
  optimizerFromSpec,
  scale,
  scaleByLearningRate,
  sgd,
  type Optimizer,
} from './optim.js';
import { cloneTree, disposeTree, treeLeaves } from './state.js';
import { errorOf, useCpuBackend } from './test-support.js';

useCpuBackend();

type Vec = Record<string, number[]>;

const init: Vec = { w: [1, -2], b: [0.5, 0, -0.25] };
/** Three steps of gradients; in step 3 `b` gets none (counts as zero). */
const grads: Vec[] = [{ w: [0.5, -1], b: [0.1, -0.2, 0.3] }, { w: [0.2, 0.3], b: [-0.4, 0.05, 0] }, { w: [-0.4, 0.1] }];

/** Runs `opt` on fresh variables through an OptimizerRunner; returns the parameters after each step. */
function run(opt: Optimizer, steps: readonly Vec[] = grads, start: Vec = init): Vec[] {
  const params: Record<string, Variable> = Object.fromEntries(Object.entries(start).map(([k, v]) => [k, tf.tidy(() => tf.variable(tf.tensor1d(v)))]));
  const runner = new OptimizerRunner(opt, params);
  const out: Vec[] = [];
  for (const g of steps) {
    const gt: NamedTensorMap = Object.fromEntries(Object.entries(g).map(([k, v]) => [k, tf.tensor1d(v)]));
    runner.apply(gt);
    expect(Object.values(gt).every((t) => !t.isDisposed)).toBe(true);
    disposeTree(gt);
    out.push(Object.fromEntries(Object.entries(params).map(([k, v]) => [k, Array.from(v.dataSync())])));
  }
  expect(runner.steps).toBe(steps.length);
  runner.dispose();
  disposeTree(params);
  return out;
}

/** A plain-JS optimizer: per-parameter state, one element at a time. */
type RefStep = (g: number, st: Record<string, number>, n: number, lr: number) => number;

function reference(step: RefStep, lr: (n: number) => number, steps: readonly Vec[] = grads, start: Vec = init, pre?: (g: Vec) => Vec): Vec[] {
  const w: Vec = Object.fromEntries(Object.entries(start).map(([k, v]) => [k, [...v]]));
  const state: Record<string, Record<string, number>[]> = Object.fromEntries(Object.entries(start).map(([k, v]) => [k, v.map(() => ({}))]));
  const out: Vec[] = [];
  steps.forEach((g0, i) => {
    const full = Object.fromEntries(Object.keys(start).map((k) => [k, g0[k] ?? start[k]!.map(() => 0)]));
    const g = pre ? pre(full) : full;
    for (const k of Object.keys(w)) w[k] = w[k]!.map((x, j) => x + step(g[k]![j]!, state[k]![j]!, i + 1, lr(i)));
    out.push(Object.fromEntries(Object.entries(w).map(([k, v]) => [k, [...v]])));
  });
  return out;
}

const adamRef =
  (b1 = 0.9, b2 = 0.999, eps = 1e-8): RefStep =>
  (g, st, n, lr) => {
    st['m'] = b1 * (st['m'] ?? 0) + (1 - b1) * g;
    st['v'] = b2 * (st['v'] ?? 0) + (1 - b2) * g * g;
    return (-lr * (st['m']! / (1 - b1 ** n))) / (Math.sqrt(st['v']! / (1 - b2 ** n)) + eps);
  };
const adamaxRef =
  (b1 = 0.9, b2 = 0.999, eps = 1e-8): RefStep =>
  (g, st, n, lr) => {
    st['m'] = b1 * (st['m'] ?? 0) + (1 - b1) * g;
    st['u'] = Math.max(b2 * (st['u'] ?? 0), Math.abs(g));
    return (-lr * (st['m']! / (1 - b1 ** n))) / (st['u']! + eps);
  };
const momentumRef =
  (mu: number, nesterov: boolean): RefStep =>
  (g, st, _n, lr) => {
    st['t'] = mu * (st['t'] ?? 0) + g;
    return -lr * (nesterov ? g + mu * st['t']! : st['t']!);
  };
const sgdRef: RefStep = (g, _st, _n, lr) => -lr * g;

function expectClose(actual: Vec[], expected: Vec[], digits = 6): void {
  expect(actual.length).toBe(expected.length);
  actual.forEach((step, i) => {
    for (const k of Object.keys(expected[i]!)) {
      expect(step[k]!.length).toBe(expected[i]![k]!.length);
      step[k]!.forEach((x, j) => expect(x, `step ${i + 1}, ${k}[${j}]`).toBeCloseTo(expected[i]![k]![j]!, digits));
    }
  });
}

describe('optimizers against plain JS', () => {
  it('adam', () => {
    expectClose(
      run(adam({ lr: 0.01 })),
      reference(adamRef(), () => 0.01),
    );
    expectClose(
      run(adam({ lr: 0.05, beta1: 0.5, beta2: 0.9, eps: 1e-3 })),
      reference(adamRef(0.5, 0.9, 1e-3), () => 0.05),
    );
  });

  it('adam moves the first step by about lr·sign(g) for every nonzero gradient', () => {
    const [first] = run(adam({ lr: 0.01 }), [{ w: [0.5, -1], b: [3, -1e-3, 0] }]);
    expect(first!['w']!.map((x, j) => x - init['w']![j]!).map((d) => Math.round(d * 1e6) / 1e6)).toEqual([-0.01, 0.01]);
    expect(first!['b']![2]).toBe(init['b']![2]);
  });

  it('adamax', () => {
    expectClose(
      run(adamax({ lr: 0.01 })),
      reference(adamaxRef(), () => 0.01),
    );
    expectClose(
      run(adamax()),
      reference(adamaxRef(), () => 0.002),
    );
  });

  it('adamw: PyTorch’s AdamW step, the decay decoupled from the moments: p ← p·(1 − lr·λ) − lr·m̂/(√v̂ + ε)', () => {
    const [lr, wd, b1, b2, eps] = [0.01, 0.1, 0.9, 0.999, 1e-8];
    const p: Vec = Object.fromEntries(Object.entries(init).map(([k, v]) => [k, [...v]]));
    const m: Vec = Object.fromEntries(Object.entries(init).map(([k, v]) => [k, v.map(() => 0)]));
    const v2: Vec = Object.fromEntries(Object.entries(init).map(([k, v]) => [k, v.map(() => 0)]));
    const want = grads.map((g, i) => {
      for (const k of Object.keys(p)) {
        p[k] = p[k]!.map((x, j) => {
          const gj = g[k]?.[j] ?? 0;
          m[k]![j] = b1 * m[k]![j]! + (1 - b1) * gj;
          v2[k]![j] = b2 * v2[k]![j]! + (1 - b2) * gj * gj;
          return x * (1 - lr * wd) - (lr * (m[k]![j]! / (1 - b1 ** (i + 1)))) / (Math.sqrt(v2[k]![j]! / (1 - b2 ** (i + 1))) + eps);
        });
      }
      return Object.fromEntries(Object.entries(p).map(([k, x]) => [k, [...x]]));
    });
    expectClose(run(adamw({ lr, weightDecay: wd })), want);
    expectClose(run(optimizerFromSpec({ name: 'adamw', lr, weightDecay: wd })), want);
    // No decay: Adam; the default decay is PyTorch's 0.01.
    expectClose(run(adamw({ lr, weightDecay: 0 })), run(adam({ lr })));
    expect(run(adamw({ lr }))[0]!['w']![1]).toBeCloseTo(-2 * (1 - lr * 0.01) + lr, 6);
  });

  it('weightClamp keeps every synaptic weight within ±c after each update and leaves the other parameters alone', () => {
    expect(['layers.0.W', 'layers.1.W2', 'layers.0.W_rec', 'readout.W'].every(isWeightName)).toBe(true);
    expect(['layers.0.b', 'layers.0.bn_gamma', 'layers.0.beta', 'readout.b', 'layers.0.Wx'].some(isWeightName)).toBe(false);
    const start = { 'layers.0.W': [0.95, -0.9, 0.2], 'layers.0.b': [0.95, -0.95] };
    const steps = [
      { 'layers.0.W': [-1, 1, 0], 'layers.0.b': [-1, 1] },
      { 'layers.0.W': [-1, 1, 1], 'layers.0.b': [-1, 1] },
    ];
    const got = run(optimizerFromSpec({ name: 'sgd', lr: 0.1, weightClamp: 1 }), steps, start);
    expectClose(got, [
      { 'layers.0.W': [1, -1, 0.2], 'layers.0.b': [1.05, -1.05] },
      { 'layers.0.W': [1, -1, 0.1], 'layers.0.b': [1.15, -1.15] },
    ]);
    expect(() => optimizerFromSpec({ name: 'adamw', weightClamp: 0 })).toThrow(/optimizer\.weightClamp: must be > 0/);
  });

  it('sgd, sgd with momentum, sgd with Nesterov momentum', () => {
    expectClose(
      run(sgd({ lr: 0.1 })),
      reference(sgdRef, () => 0.1),
    );
    expectClose(
      run(sgd()),
      reference(sgdRef, () => 0.01),
    );
    expectClose(
      run(sgd({ lr: 0.1, momentum: 0.9 })),
      reference(momentumRef(0.9, false), () => 0.1),
    );
    expectClose(
      run(sgd({ lr: 0.1, momentum: 0.5, nesterov: true })),
      reference(momentumRef(0.5, true), () => 0.1),
    );
    // Nesterov differs from plain momentum.
    expect(run(sgd({ lr: 0.1, momentum: 0.9, nesterov: true }))[2]).not.toEqual(run(sgd({ lr: 0.1, momentum: 0.9 }))[2]);
  });

  it('plain sgd leaves a parameter without gradient unchanged; momentum keeps moving it', () => {
    const plain = run(sgd({ lr: 0.1 }));
    expect(plain[2]!['b']).toEqual(plain[1]!['b']);
    const heavy = run(sgd({ lr: 0.1, momentum: 0.9 }));
    expect(heavy[2]!['b']).not.toEqual(heavy[1]!['b']);
  });

  it('a learning-rate schedule is read at the update count (0 first)', () => {
    const sched = (n: number) => 0.1 / (n + 1);
    expectClose(run(sgd({ lr: sched })), reference(sgdRef, sched));
    expectClose(run(adam({ lr: cosineSchedule(0.02, 2, 0.001) })), reference(adamRef(), cosineSchedule(0.02, 2, 0.001)));
  });

  it('clipping runs before the optimizer', () => {
    const norm = (g: Vec) => {
      const n = Math.sqrt(
        Object.values(g)
          .flat()
          .reduce((a, x) => a + x * x, 0),
      );
      const f = 0.5 / Math.max(n, 0.5);
      return Object.fromEntries(Object.entries(g).map(([k, v]) => [k, v.map((x) => x * f)]));
    };
    expectClose(
      run(adam({ lr: 0.01, clipNorm: 0.5 })),
      reference(adamRef(), () => 0.01, grads, init, norm),
    );
    const value = (g: Vec) => Object.fromEntries(Object.entries(g).map(([k, v]) => [k, v.map((x) => Math.min(0.25, Math.max(-0.25, x)))]));
    expectClose(
      run(sgd({ lr: 1, momentum: 0.9, clipValue: 0.25 })),
      reference(momentumRef(0.9, false), () => 1, grads, init, value),
    );
  });
});

describe('gradient transformations', () => {
  const map = (m: NamedTensorMap) => Object.fromEntries(Object.entries(m).map(([k, t]) => [k, Array.from(t.dataSync())]));

  it('clipByGlobalNorm scales all gradients together to the max norm, and leaves smaller ones alone', () => {
    const g = { a: tf.tensor1d([3, 0]), b: tf.tensor2d([[0], [4]]) };
    const small = clipByGlobalNorm(1).update(g, null, {});
    expect(map(small.updates)).toEqual({ a: [Math.fround(0.6), 0], b: [0, Math.fround(0.8)] });
    expect(small.updates['b']!.shape).toEqual([2, 1]);
    const norm = Math.sqrt(
      Object.values(map(small.updates))
        .flat()
        .reduce((s, x) => s + x * x, 0),
    );
    expect(norm).toBeCloseTo(1, 6);
    const exact = clipByGlobalNorm(5).update(g, null, {});
    expect(map(exact.updates)).toEqual({ a: [3, 0], b: [0, 4] });
    const large = clipByGlobalNorm(100).update(g, null, {});
    expect(map(large.updates)).toEqual({ a: [3, 0], b: [0, 4] });
    const zeros = { z: tf.zeros([3]) };
    const z = clipByGlobalNorm(1).update(zeros, null, {});
    expect(map(z.updates)).toEqual({ z: [0, 0, 0] });
    expect(clipByGlobalNorm(1).update({}, null, {}).updates).toEqual({});
    disposeTree([g, small.updates, exact.updates, large.updates, zeros, z.updates]);
  });

  it('clipByValue clips every entry to ±max', () => {
    const g = { a: tf.tensor1d([-2, -0.5, 0.3, 0.7, 0.5]) };
    const { updates } = clipByValue(0.5).update(g, null, {});
    expect(map(updates)).toEqual({ a: [-0.5, -0.5, 0.3, 0.5, 0.5].map(Math.fround) });
    disposeTree([g, updates]);
  });

  it('scale, scaleByLearningRate and chain compose, carrying each state', () => {
    const g = { a: tf.tensor1d([1, -2]) };
    const s = scale(-0.5).update(g, null, {});
    expect(map(s.updates)).toEqual({ a: [-0.5, 1] });
    const lr = scaleByLearningRate((n) => [0.1, 0.2][n] ?? 0);
    const first = lr.update(g, lr.init({}), {});
    expect(first.state).toEqual({ count: 1 });
    expect(map(first.updates)['a']!.map((x) => Math.round(x * 1e6) / 1e6)).toEqual([-0.1, 0.2]);
    const second = lr.update(g, first.state, {});
    expect(second.state).toEqual({ count: 2 });
    expect(map(second.updates)['a']!.map((x) => Math.round(x * 1e6) / 1e6)).toEqual([-0.2, 0.4]);
    const c = chain(clipByValue(1), scale(2), lr);
    expect(c.name).toBe('clipByValue(1)+scale(2)+scaleByLearningRate');
    const st = c.init({});
    expect(st).toEqual([null, null, { count: 0 }]);
    const before = tf.memory().numTensors;
    const r = c.update(g, st, {});
    // Intermediate updates are disposed: only the final map is new.
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(map(r.updates)['a']!.map((x) => Math.round(x * 1e6) / 1e6)).toEqual([-0.2, 0.2]);
    expect(r.state).toEqual([null, null, { count: 1 }]);
    disposeTree([g, s.updates, first.updates, second.updates, r.updates]);
  });

  it('schedules', () => {
    expect(constantSchedule(0.3)(0)).toBe(0.3);
    expect(constantSchedule(0.3)(1000)).toBe(0.3);
    const cos = cosineSchedule(1, 10, 0.1);
    expect(cos(0)).toBeCloseTo(1, 12);
    expect(cos(5)).toBeCloseTo(0.55, 12);
    expect(cos(10)).toBeCloseTo(0.1, 12);
    expect(cos(50)).toBeCloseTo(0.1, 12);
    expect(cosineSchedule(2, 4)(4)).toBeCloseTo(0, 12);
    const exp = exponentialSchedule(1, 10, 0.5);
    expect(exp(0)).toBe(1);
    expect(exp(10)).toBeCloseTo(0.5, 12);
    expect(exp(20)).toBeCloseTo(0.25, 12);
    expect(exp(5)).toBeCloseTo(Math.SQRT1_2, 12);
  });

  it('decaying schedules give the same values as their closed forms, bit for bit', () => {
    for (const [n, lr, min] of [
      [10, 1, 0.1],
      [7, 0.002, 0],
      [125, 0.003, 1e-5],
    ] as const) {
      const cos = cosineSchedule(lr, n, min);
      const exp = exponentialSchedule(lr, n, 0.5);
      for (let c = 0; c <= n + 3; c++) {
        expect(cos(c)).toBe(min + 0.5 * (lr - min) * (1 + Math.cos((Math.PI * Math.min(c, n)) / n)));
        expect(exp(c)).toBe(lr * 0.5 ** (c / n));
      }
    }
  });

  /** The learning rates scaleByLearningRate applies from `state` on, `steps` updates (read from the update of a gradient of -1). */
  const rates = (t: ReturnType<typeof scaleByLearningRate>, state: ReturnType<ReturnType<typeof scaleByLearningRate>['init']>, steps: number) => {
    const g = { a: tf.scalar(-1) };
    const out: number[] = [];
    let s = state;
    for (let i = 0; i < steps; i++) {
      const r = t.update(g, s, {});
      out.push(r.updates['a']!.dataSync()[0]!);
      r.updates['a']!.dispose();
      s = r.state;
    }
    g.a.dispose();
    return { out, state: s };
  };

  it('a run resumed under a longer decay continues its learning rate from where it was, and ends at the final rate', () => {
    for (const make of [(n: number) => cosineSchedule(0.01, n, 0.001), (n: number) => exponentialSchedule(0.01, n, 0.1)]) {
      const short = scaleByLearningRate(make(10));
      const first = rates(short, short.init({}), 4);
      // Stored in a checkpoint as plain numbers, then resumed with twice the updates.
      const stored = JSON.parse(JSON.stringify(first.state)) as typeof first.state;
      const long = scaleByLearningRate(make(20));
      const resumed = rates(long, stored, 16);
      const all = [...first.out, ...resumed.out];
      // Continuous: the first update after the resume uses the rate the shorter run would have used
      // next, and from there the rate keeps falling (more slowly: the rest of the decay is spread).
      expect(resumed.out[0]).toBe(rates(short, first.state, 1).out[0]);
      const drops = all.slice(1).map((x, i) => all[i]! - x);
      expect(Math.min(...drops)).toBeGreaterThan(0);
      // Without the span, the rate would have jumped up at the resume point.
      expect(make(20)(4)).toBeGreaterThan(all[3]!);
      // The decay ends where the longer run ends.
      expect(rates(long, resumed.state, 1).out[0]).toBeCloseTo(make(20)(20), 7);
      expect(resumed.state.span).toMatchObject({ from: 4, steps: 20 });
    }
  });

  it('a run resumed under its own decay follows the uninterrupted schedule bit for bit', () => {
    const t = scaleByLearningRate(cosineSchedule(0.02, 12, 0.001));
    const whole = rates(t, t.init({}), 12).out;
    const head = rates(t, t.init({}), 5);
    const tail = rates(scaleByLearningRate(cosineSchedule(0.02, 12, 0.001)), JSON.parse(JSON.stringify(head.state)), 7);
    expect([...head.out, ...tail.out]).toEqual(whole);
    // A state written before spans were kept ({ count } only) resumes on the schedule as it is now.
    const old = rates(t, { count: 5 }, 7).out;
    expect(old).toEqual(whole.slice(5));
  });
});

describe('OptimizerRunner', () => {
  it('leaks no tensors across repeated apply, and releases its state on dispose', () => {
    const opts: [string, () => Optimizer][] = [
      ['adam+clip', () => adam({ lr: 0.01, clipNorm: 1, clipValue: 0.5 })],
      ['adamax', () => adamax()],
      ['sgd nesterov', () => sgd({ lr: 0.1, momentum: 0.9, nesterov: true, clipNorm: 2 })],
      ['sgd', () => sgd({ lr: cosineSchedule(0.1, 3) })],
    ];
    for (const [name, make] of opts) {
      const params = tf.tidy(() => ({ w: tf.variable(tf.ones([3, 2])), b: tf.variable(tf.zeros([2])) }));
      const g = { w: tf.fill([3, 2], 0.3), b: tf.tensor1d([1, -1]) };
      const baseline = tf.memory().numTensors;
      const r = new OptimizerRunner(make(), params);
      r.apply(g);
      const after1 = tf.memory().numTensors;
      for (let i = 0; i < 5; i++) r.apply(i % 2 ? g : { w: g.w });
      expect(tf.memory().numTensors, name).toBe(after1);
      expect(r.steps).toBe(6);
      r.dispose();
      expect(tf.memory().numTensors, name).toBe(baseline);
      disposeTree([params, g]);
    }
  });

  it('refuses a gradient for an unknown parameter without changing anything', () => {
    const w = tf.tidy(() => tf.variable(tf.tensor1d([1, 2])));
    const r = new OptimizerRunner(adam(), { w });
    const g = tf.ones([2]);
    const state = r.state;
    const e = errorOf(() => r.apply({ w: g, v: g }));
    expect(e.code).toBe('UNKNOWN_NAME');
    expect(e.message).toBe("optimizer: gradient for unknown parameter 'v'");
    expect(r.steps).toBe(0);
    expect(r.state).toBe(state);
    expect(Array.from(w.dataSync())).toEqual([1, 2]);
    r.dispose();
    disposeTree([w, g]);
  });

  it("applyAnchored (FPTT's dual update with Adam's step in one kernel per parameter): the same weights, anchor, multipliers and optimizer state, bit for bit, as pull → apply → anchor on the references, a parameter without gradient included", () => {
    const bits = (t: Tensor) => Array.from(new Uint32Array(Float32Array.from(t.dataSync() as Float32Array).buffer));
    const run = (fused: boolean) => {
      const params = { w: tf.tidy(() => tf.variable(tf.tensor2d([1, -2, 0.5, 3], [2, 2]))), b: tf.tidy(() => tf.variable(tf.tensor1d([0.1, -0.1]))) };
      const r = new OptimizerRunner(adam({ lr: cosineSchedule(0.05, 3) }), params);
      let wbar: NamedTensorMap = { w: params.w.clone(), b: params.b.clone() };
      let lambda: NamedTensorMap = { w: tf.zeros([2, 2]), b: tf.zeros([2]) };
      for (let i = 0; i < 4; i++) {
        // b has a gradient every other update only.
        const grads: NamedTensorMap = tf.tidy(() => ({ w: tf.sin(params.w), ...(i % 2 === 0 ? { b: tf.cos(params.b) } : {}) }));
        let next: { wbar: NamedTensorMap; lambda: NamedTensorMap };
        if (fused) {
          next = r.applyAnchored(grads, { wbar, lambda, alpha: 0.1, beta: 0.5 })!;
        } else {
          const pulled = Object.fromEntries(
            Object.entries(params).map(([k, w]) => [k, fpttPullReference(grads[k], w, wbar[k]!, lambda[k]!, { alpha: 0.1, shiftScale: 1 })]),
          );
          r.apply(pulled);
          disposeTree(pulled);
          const moved = Object.fromEntries(
            Object.entries(params).map(([k, w]) => [k, fpttAnchorReference(w, wbar[k]!, lambda[k]!, { alpha: 0.1, beta: 0.5 })]),
          );
          next = {
            wbar: Object.fromEntries(Object.entries(moved).map(([k, m]) => [k, m.wbar])),
            lambda: Object.fromEntries(Object.entries(moved).map(([k, m]) => [k, m.lambda])),
          };
        }
        disposeTree([grads, wbar, lambda]);
        ({ wbar, lambda } = next);
      }
      const out = {
        leaves: [params.w, params.b, wbar['w']!, wbar['b']!, lambda['w']!, lambda['b']!, ...treeLeaves(r.state)].map(bits),
        state: JSON.stringify(r.state, (_k, v) => (v instanceof tf.Tensor ? v.shape : v)),
        steps: r.steps,
      };
      r.dispose();
      disposeTree([params, wbar, lambda]);
      return out;
    };
    const tensors = tf.memory().numTensors;
    expect(run(true)).toEqual(run(false));
    expect(tf.memory().numTensors).toBe(tensors);
  });

  it('applyAnchored does nothing and returns undefined for an optimizer other than Adam with a learning rate alone', () => {
    for (const opt of [adam({ clipNorm: 1 }), adamw(), adamax(), sgd({ momentum: 0.9 }), chain(scaleByLearningRate(constantSchedule(0.1)))]) {
      const w = tf.tidy(() => tf.variable(tf.tensor1d([1, 2])));
      const r = new OptimizerRunner(opt, { w });
      const state = r.state;
      const anchor = { wbar: { w: tf.ones([2]) }, lambda: { w: tf.zeros([2]) }, alpha: 0.1, beta: 0.5 };
      const g = tf.ones([2]);
      expect(r.applyAnchored({ w: g }, anchor), opt.name).toBeUndefined();
      expect(r.steps).toBe(0);
      expect(r.state).toBe(state);
      expect(Array.from(w.dataSync())).toEqual([1, 2]);
      r.dispose();
      disposeTree([w, g, anchor.wbar, anchor.lambda]);
    }
  });

  it('resumes exactly from a copy of its state and step count', () => {
    const make = () => adam({ lr: 0.05, clipNorm: 1 });
    const a = { w: tf.tidy(() => tf.variable(tf.tensor1d([1, -2]))) };
    const ra = new OptimizerRunner(make(), a);
    const gs = [
      [0.5, -1],
      [0.2, 0.3],
      [-0.4, 0.1],
    ].map((v) => tf.tensor1d(v));
    ra.apply({ w: gs[0]! });
    ra.apply({ w: gs[1]! });
    const b = { w: tf.tidy(() => tf.variable(a.w.clone())) };
    const rb = new OptimizerRunner(make(), b, { state: cloneTree(ra.state), steps: ra.steps });
    expect(rb.steps).toBe(2);
    ra.apply({ w: gs[2]! });
    rb.apply({ w: gs[2]! });
    expect(Array.from(b.w.dataSync())).toEqual(Array.from(a.w.dataSync()));
    expect(treeLeaves(rb.state).length).toBe(treeLeaves(ra.state).length);
    ra.dispose();
    rb.dispose();
    disposeTree([a, b, gs]);
  });
});

describe('optimizerFromSpec', () => {
  it('builtin optimizer names', () => {
    expect(builtinOptimizers.map((e) => e.name)).toEqual(['adam', 'adamw', 'adamax', 'sgd']);
  });

  it('builds the same optimizer as the factories (defaults, options, schedules)', () => {
    expectClose(
      run(optimizerFromSpec({ name: 'adam' })),
      reference(adamRef(), () => 1e-3),
    );
    expectClose(
      run(optimizerFromSpec({ name: 'adamax', lr: 0.01, beta1: 0.8 })),
      reference(adamaxRef(0.8), () => 0.01),
    );
    expectClose(
      run(optimizerFromSpec({ name: 'sgd', lr: 0.1, momentum: 0.5, nesterov: true })),
      reference(momentumRef(0.5, true), () => 0.1),
    );
    expectClose(
      run(optimizerFromSpec({ name: 'sgd', lr: 0.1, schedule: 'cosine', decaySteps: 2, minLr: 0.01 })),
      reference(sgdRef, cosineSchedule(0.1, 2, 0.01)),
    );
    expectClose(run(optimizerFromSpec({ name: 'sgd', lr: 0.1, schedule: 'exponential', decaySteps: 1 })), reference(sgdRef, exponentialSchedule(0.1, 1, 0.5)));
    const clipped = (g: Vec) => Object.fromEntries(Object.entries(g).map(([k, v]) => [k, v.map((x) => Math.min(0.2, Math.max(-0.2, x)))]));
    expectClose(
      run(optimizerFromSpec({ name: 'sgd', lr: 1, clipValue: 0.2 })),
      reference(sgdRef, () => 1, grads, init, clipped),
    );
  });

  it('unknown name: UNKNOWN_NAME at <path>.name with a suggestion', () => {
    const e = errorOf(() => optimizerFromSpec({ name: 'adma' }));
    expect(e.code).toBe('UNKNOWN_NAME');
    expect(e.details.path).toBe('optimizer.name');
    expect(e.message).toBe("optimizer.name: unknown optimizer 'adma'; did you mean 'adam'? (known: 'adam', 'adamw', 'adamax', 'sgd')");
    expect(errorOf(() => optimizerFromSpec({ name: 'rmsprop' }, 'run.optimizer')).details.path).toBe('run.optimizer.name');
  });

  it('missing name or non-object: CONFIG_INVALID', () => {
    const missing = errorOf(() => optimizerFromSpec({ lr: 0.1 }));
    expect(missing.code).toBe('CONFIG_INVALID');
    expect(missing.details.path).toBe('optimizer.name');
    expect(missing.message).toContain('adam, adamw, adamax, sgd');
    expect(errorOf(() => optimizerFromSpec('adam')).details.path).toBe('optimizer');
  });

  it('unknown and bad keys name the field', () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ name: 'adam', learningRate: 1 }, 'optimizer.learningRate', /unknown key/],
      [{ name: 'adam', clipnorm: 1 }, 'optimizer.clipnorm', /did you mean 'clipNorm'/],
      [{ name: 'sgd', beta1: 0.9 }, 'optimizer.beta1', /unknown key/],
      [{ name: 'adam', lr: -1 }, 'optimizer.lr', /must be > 0, got -1/],
      [{ name: 'adam', lr: 0 }, 'optimizer.lr', /must be > 0, got 0/],
      [{ name: 'adam', beta1: 1 }, 'optimizer.beta1', /must be <= /],
      [{ name: 'adam', eps: 0 }, 'optimizer.eps', /must be > 0/],
      [{ name: 'adam', clipNorm: 0 }, 'optimizer.clipNorm', /must be > 0/],
      [{ name: 'sgd', momentum: 1.5 }, 'optimizer.momentum', /must be <= 1/],
      [{ name: 'sgd', nesterov: 'yes' }, 'optimizer.nesterov', /expected true or false/],
      [{ name: 'adam', schedule: 'linear' }, 'optimizer.schedule', /must be one of 'constant', 'cosine', 'exponential', got 'linear'/],
      [{ name: 'adam', schedule: 'cosine' }, 'optimizer.decaySteps', /is required with schedule 'cosine'/],
      [{ name: 'adam', schedule: 'exponential', decaySteps: 2.5 }, 'optimizer.decaySteps', /expected an integer/],
      [{ name: 'adam', schedule: 'exponential', decaySteps: 2, decayRate: 1.5 }, 'optimizer.decayRate', /must be <= 1/],
    ];
    for (const [spec, path, message] of cases) {
      const e = errorOf(() => optimizerFromSpec(spec));
      expect(e.code, path).toBe('CONFIG_INVALID');
      expect(e.details.path).toBe(path);
      expect(e.message.startsWith(`${path}: `)).toBe(true);
      expect(e.message).toMatch(message);
    }
    expect(errorOf(() => optimizerFromSpec({ name: 'adam', lr: -1 }, 'run.optimizer')).details.path).toBe('run.optimizer.lr');
  });
});

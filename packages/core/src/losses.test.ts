import { describe, expect, it } from 'vitest';
import { tf, type Tensor } from './tf.js';
import { builtinLosses, ceEveryStep, ceMean, ceMseEveryStep, lossFromSpec, mseEveryStep, mseLast, type LossShape, type TemporalLoss } from './losses.js';
import { createRng } from './random.js';
import { unstackSteps } from './kernels.js';
import { disposeTree } from './state.js';
import { errorOf, useCpuBackend } from './test-support.js';

useCpuBackend();

const [T, B, O] = [5, 3, 4];
const shape: LossShape = { steps: T, batch: B, outputs: O };
const rand = createRng(42);
const normalish = () => (rand() + rand() + rand() - 1.5) * 2;
/** Readouts y[t][b][k]. */
const Y = Array.from({ length: T }, () => Array.from({ length: B }, () => Array.from({ length: O }, normalish)));
const labels = [2, 0, 3];
const valuesEvery = Array.from({ length: T }, () => Array.from({ length: B }, () => Array.from({ length: O }, normalish)));
const valuesLast = Array.from({ length: B }, () => Array.from({ length: O }, normalish));

const readouts = (): Tensor[] => Y.map((y) => tf.tensor2d(y));
const ce = (logits: readonly number[], label: number) => {
  const m = Math.max(...logits);
  return m + Math.log(logits.reduce((a, l) => a + Math.exp(l - m), 0)) - logits[label]!;
};
const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Each loss with its target and its value computed in plain JS. */
const cases: { loss: TemporalLoss; target: () => Tensor; value: number }[] = [
  {
    loss: ceMean,
    target: () => tf.tensor1d(labels, 'int32'),
    value: mean(
      range(B).map((b) =>
        ce(
          range(O).map((k) => mean(range(T).map((t) => Y[t]![b]![k]!))),
          labels[b]!,
        ),
      ),
    ),
  },
  {
    loss: ceEveryStep,
    target: () => tf.tensor1d(labels, 'int32'),
    value: mean(range(T).flatMap((t) => range(B).map((b) => ce(Y[t]![b]!, labels[b]!)))),
  },
  {
    loss: mseEveryStep,
    target: () => tf.tensor3d(valuesEvery),
    value: mean(range(T).flatMap((t) => range(B).flatMap((b) => range(O).map((k) => (Y[t]![b]![k]! - valuesEvery[t]![b]![k]!) ** 2)))),
  },
  {
    loss: mseLast,
    target: () => tf.tensor2d(valuesLast),
    value: mean(range(B).flatMap((b) => range(O).map((k) => (Y[T - 1]![b]![k]! - valuesLast[b]![k]!) ** 2))),
  },
];

describe.each(cases.map((c) => [c.loss.name, c] as const))('%s', (_, { loss, target, value }) => {
  it('sequence() matches plain JS', () => {
    const tgt = target();
    const bound = loss.bind(tgt, shape);
    const ys = readouts();
    const v = bound.sequence(ys);
    expect(v.shape).toEqual([]);
    expect(v.dataSync()[0]).toBeCloseTo(value, 5);
    bound.dispose();
    disposeTree([ys, v, tgt]);
  });

  it('decomposes as declared: Σ_t step(y_t, t) = sequence, hasTerm agrees with step', () => {
    const tgt = target();
    const bound = loss.bind(tgt, shape);
    expect(loss.decomposesOverTime).toBe(bound.step !== undefined);
    expect(bound.hasTerm !== undefined).toBe(bound.step !== undefined);
    if (bound.step) {
      const ys = readouts();
      let sum = 0;
      ys.forEach((y, t) => {
        const term = bound.step!(y, t);
        expect(term !== null, `t=${t}`).toBe(bound.hasTerm!(t));
        if (term) {
          expect(term.shape).toEqual([]);
          sum += term.dataSync()[0]!;
          term.dispose();
        }
      });
      expect(sum).toBeCloseTo(value, 5);
      disposeTree(ys);
    }
    bound.dispose();
    tgt.dispose();
  });

  it('leaks no tensors (bind, sequence, steps, dispose)', () => {
    const tgt = target();
    const ys = readouts();
    const before = tf.memory().numTensors;
    const bound = loss.bind(tgt, shape);
    const v = bound.sequence(ys);
    const terms = ys.map((y, t) => bound.step?.(y, t) ?? null).filter((x): x is tf.Scalar => x !== null);
    disposeTree([v, terms]);
    bound.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(tgt.isDisposed).toBe(false);
    disposeTree([ys, tgt]);
  });
});

describe('terminal: one step read as the prediction of the sequence target', () => {
  it('ce_mean and ce_every_step score y against the labels, mse_last against the final values; mse_every_step has none', () => {
    const y = tf.tensor2d(Y[1]!);
    const expectedCe = mean(range(B).map((b) => ce(Y[1]![b]!, labels[b]!)));
    const expectedMse = mean(range(B).flatMap((b) => range(O).map((k) => (Y[1]![b]![k]! - valuesLast[b]![k]!) ** 2)));
    for (const [loss, target, value] of [
      [ceMean, () => tf.tensor1d(labels, 'int32'), expectedCe],
      [ceEveryStep, () => tf.tensor1d(labels, 'int32'), expectedCe],
      [mseLast, () => tf.tensor2d(valuesLast), expectedMse],
    ] as const) {
      expect(loss.hasTerminal).toBe(true);
      const t = target();
      const bound = loss.bind(t, shape);
      const v = bound.terminal!(y);
      expect(v.dataSync()[0]).toBeCloseTo(value, 5);
      disposeTree([v, t]);
      bound.dispose();
    }
    expect(mseEveryStep.hasTerminal).toBe(false);
    const t = tf.tensor3d(valuesEvery);
    const bound = mseEveryStep.bind(t, shape);
    expect(bound.terminal).toBeUndefined();
    bound.dispose();
    disposeTree([t, y]);
  });
});

describe('loss details', () => {
  it('only the last step of mse_last has a term', () => {
    const tgt = tf.tensor2d(valuesLast);
    const bound = mseLast.bind(tgt, shape);
    expect(range(T).map((t) => bound.hasTerm!(t))).toEqual([false, false, false, false, true]);
    const y = tf.zeros([B, O]);
    expect(bound.step!(y, 0)).toBeNull();
    disposeTree([y, tgt]);
  });

  it('ce_mean and ce_every_step accept float labels holding integers', () => {
    for (const loss of [ceMean, ceEveryStep]) {
      const ints = tf.tensor1d(labels, 'int32');
      const floats = tf.tensor1d(labels, 'float32');
      const [a, b] = [loss.bind(ints, shape), loss.bind(floats, shape)];
      const ys = readouts();
      const [va, vb] = [a.sequence(ys), b.sequence(ys)];
      expect(vb.dataSync()[0]).toBe(va.dataSync()[0]);
      a.dispose();
      b.dispose();
      disposeTree([ints, floats, ys, va, vb]);
    }
  });

  it('ce_mean gradient: (softmax(mean_t y) − onehot) / (B·T) for every step', () => {
    const tgt = tf.tensor1d(labels, 'int32');
    const bound = ceMean.bind(tgt, shape);
    const stacked = tf.tensor3d(Y);
    const g = tf.grad((y: Tensor) => bound.sequence(tf.unstack(y)))(stacked);
    const gd = g.dataSync();
    for (let b = 0; b < B; b++) {
      const m = range(O).map((k) => mean(range(T).map((t) => Y[t]![b]![k]!)));
      const z = m.reduce((a, v) => a + Math.exp(v), 0);
      for (let t = 0; t < T; t++) {
        for (let k = 0; k < O; k++) {
          const expected = (Math.exp(m[k]!) / z - (k === labels[b] ? 1 : 0)) / (B * T);
          expect(gd[(t * B + b) * O + k]).toBeCloseTo(expected, 6);
        }
      }
    }
    bound.dispose();
    disposeTree([tgt, stacked, g]);
  });

  it('a label out of range, negative or fractional is DATA_INVALID naming it', () => {
    for (const loss of [ceMean, ceEveryStep]) {
      for (const bad of [
        [0, 4, 1],
        [0, -1, 1],
        [0, 1.5, 1],
      ]) {
        const tgt = tf.tensor1d(bad, 'float32');
        const before = tf.memory().numTensors;
        const e = errorOf(() => loss.bind(tgt, shape));
        expect(e.code).toBe('DATA_INVALID');
        expect(e.message).toContain(`loss '${loss.name}': label ${bad[1]} is not an integer in [0, 4)`);
        expect(tf.memory().numTensors).toBe(before);
        tgt.dispose();
      }
    }
  });

  it('wrong target shapes are SHAPE_MISMATCH saying what was expected', () => {
    const check = (loss: TemporalLoss, tgt: Tensor, expected: RegExp) => {
      const e = errorOf(() => loss.bind(tgt, shape));
      expect(e.code, loss.name).toBe('SHAPE_MISMATCH');
      expect(e.message).toMatch(expected);
      tgt.dispose();
    };
    check(ceMean, tf.zeros([B, 1]), /^loss 'ce_mean': targets must be integer labels \[3\], got shape \[3,1\]$/);
    check(ceMean, tf.zeros([B + 1]), /targets must be integer labels \[3\], got shape \[4\]/);
    check(ceEveryStep, tf.zeros([T, B]), /^loss 'ce_every_step': targets must be integer labels \[3\]/);
    check(mseEveryStep, tf.zeros([T - 1, B, O]), /^loss 'mse_every_step': targets must be values \[5,3,4\], got shape \[4,3,4\]$/);
    check(mseEveryStep, tf.zeros([B, O]), /targets must be values \[5,3,4\]/);
    check(mseLast, tf.zeros([T, B, O]), /^loss 'mse_last': targets must be values \[3,4\], got shape \[5,3,4\]$/);
    check(mseLast, tf.zeros([B, O + 1]), /targets must be values \[3,4\], got shape \[3,5\]/);
  });

  it('builtin losses: names, targets, decomposition', () => {
    expect(builtinLosses.map((l) => [l.name, l.decomposesOverTime, l.target])).toEqual([
      ['ce_mean', false, 'integer labels [B]'],
      ['ce_every_step', true, 'integer labels [B]'],
      ['mse_every_step', true, 'values [T, B, O]'],
      ['mse_last', true, 'values [B, O]'],
      ['ce_mse_every_step', true, 'integer labels [B]'],
    ]);
  });

  it('ce_mse_every_step: (1/T) Σ_t [(1 − λ)·CE + λ·MSE against the one-hot labels], by hand; λ = 0 is ce_every_step', () => {
    const ys = [
      [
        [1, 0],
        [0.5, -1],
      ],
      [
        [0, 2],
        [-0.5, 0.25],
      ],
    ];
    const labels = [1, 0];
    const lambda = 0.3;
    const ce = (y: number[], c: number) => Math.log(y.reduce((a, v) => a + Math.exp(v), 0)) - y[c]!;
    const mse = (y: number[], c: number) => y.reduce((a, v, k) => a + (v - (k === c ? 1 : 0)) ** 2, 0) / y.length;
    let want = 0;
    for (const yt of ys) want += yt.reduce((a, y, b) => a + ((1 - lambda) * ce(y, labels[b]!) + lambda * mse(y, labels[b]!)) / 2, 0) / ys.length;
    const tgt = tf.tensor1d(labels, 'int32');
    const shape = { steps: 2, batch: 2, outputs: 2 };
    const bound = ceMseEveryStep(lambda).bind(tgt, shape);
    const yt = ys.map((y) => tf.tensor2d(y));
    expect(bound.sequence(yt).dataSync()[0]).toBeCloseTo(want, 5);
    expect(yt.map((y, t) => bound.step!(y, t)!.dataSync()[0]!).reduce((a, b) => a + b)).toBeCloseTo(want, 5);
    const plain = ceEveryStep.bind(tgt, shape);
    const zero = ceMseEveryStep(0).bind(tgt, shape);
    expect(zero.sequence(yt).dataSync()[0]).toBeCloseTo(plain.sequence(yt).dataSync()[0]!, 6);
    expect(zero.terminal!(yt[1]!).dataSync()[0]).toBeCloseTo(plain.terminal!(yt[1]!).dataSync()[0]!, 6);
    [bound, plain, zero].forEach((b) => b.dispose());
    tf.dispose([tgt, ...yt]);
  });
});

describe('lossFromSpec', () => {
  const table = new Map(builtinLosses.map((l) => [l.name, l]));

  it('resolves a name or { name }', () => {
    expect(lossFromSpec('mse_last', table)).toBe(mseLast);
    expect(lossFromSpec({ name: 'ce_every_step' }, table)).toBe(ceEveryStep);
  });

  it('a loss with options takes them from the spec, validated; others refuse any key', () => {
    const mixed = lossFromSpec({ name: 'ce_mse_every_step', lambda: 0.2 }, table);
    expect(mixed.name).toBe('ce_mse_every_step');
    expect(mixed.optionsSchema!['lambda']).toMatchObject({ default: 0.2 });
    expect(lossFromSpec('ce_mse_every_step', table).optionsSchema!['lambda']).toMatchObject({ default: 0.05 });
    const bad = errorOf(() => lossFromSpec({ name: 'ce_mse_every_step', lambda: 2 }, table));
    expect(bad.code).toBe('CONFIG_INVALID');
    expect(bad.details.path).toBe('loss.lambda');
    const typo = errorOf(() => lossFromSpec({ name: 'ce_mse_every_step', lamda: 0.1 }, table));
    expect(typo.details.path).toBe('loss.lamda');
    expect(typo.message).toContain('lambda');
  });

  it('unknown name: UNKNOWN_NAME at <path>.name with a suggestion', () => {
    const e = errorOf(() => lossFromSpec({ name: 'ce_maen' }, table));
    expect(e.code).toBe('UNKNOWN_NAME');
    expect(e.details.path).toBe('loss.name');
    expect(e.message).toMatch(/^loss\.name: unknown loss 'ce_maen'; did you mean 'ce_mean'\?/);
    expect(errorOf(() => lossFromSpec('hinge', table, 'run.loss')).details.path).toBe('run.loss.name');
  });

  it('unknown key, missing name, non-object: CONFIG_INVALID naming the field', () => {
    const key = errorOf(() => lossFromSpec({ name: 'ce_mean', weight: 2 }, table));
    expect(key.code).toBe('CONFIG_INVALID');
    expect(key.details.path).toBe('loss.weight');
    const missing = errorOf(() => lossFromSpec({}, table));
    expect(missing.details.path).toBe('loss.name');
    expect(missing.message).toContain('ce_mean, ce_every_step, mse_every_step, mse_last');
    expect(errorOf(() => lossFromSpec(3, table)).details.path).toBe('loss');
  });
});

describe('the stacked form of each built-in loss', () => {
  for (const c of cases) {
    it(`${c.loss.name}: stacked([T, B, O]) equals sequence, in value and gradient`, () => {
      const target = c.target();
      const bound = c.loss.bind(target, shape);
      expect(bound.stacked).toBeDefined();
      const stackedY = tf.tensor3d(Y);
      const a = bound.stacked!(stackedY);
      expect(a.dataSync()[0]).toBeCloseTo(c.value, 5);
      const ga = tf.grad((y: Tensor) => bound.stacked!(y))(stackedY);
      const gb = tf.grad((y: Tensor) => bound.sequence(tf.unstack(y)))(stackedY);
      const gbd = gb.dataSync();
      ga.dataSync().forEach((x, i) => expect(x).toBeCloseTo(gbd[i]!, 6));
      disposeTree([a, ga, gb, stackedY, target]);
      bound.dispose();
    });
  }
});

it('ce_mse_every_step: stacked([T, B, O]) equals sequence, in value and gradient', () => {
  const target = tf.tensor1d(labels, 'int32');
  const bound = ceMseEveryStep(0.3).bind(target, shape);
  const y = tf.tensor3d(Y);
  const [a, b] = [bound.stacked!(y), bound.sequence(tf.unstack(y))];
  expect(a.dataSync()[0]).toBeCloseTo(b.dataSync()[0]!, 6);
  const ga = tf
    .grad((v: Tensor) => bound.stacked!(v))(y)
    .dataSync();
  const gb = tf
    .grad((v: Tensor) => bound.sequence(tf.unstack(v)))(y)
    .dataSync();
  ga.forEach((x, i) => expect(x).toBeCloseTo(gb[i]!, 6));
  disposeTree([a, b, y, target]);
  bound.dispose();
});

describe('the window form of each decomposing loss', () => {
  const windows: readonly [number, number][] = [
    [0, T],
    [0, 2],
    [2, 4],
    [4, 5],
    [3, 5],
  ];
  for (const loss of [ceEveryStep, mseEveryStep, mseLast, ceMseEveryStep(0.3)]) {
    it(`${loss.name}: window(y[from, to), from) equals Σ_t step(y_t, t) over the window, in value and gradient (null without a term)`, () => {
      const c = cases.find((x) => x.loss.name === loss.name);
      const target = c ? c.target() : tf.tensor1d(labels, 'int32');
      const bound = loss.bind(target, shape);
      expect(bound.window).toBeDefined();
      for (const [from, to] of windows) {
        const y = tf.tensor3d(Y.slice(from, to));
        const byStep = (v: Tensor) => {
          const terms = unstackSteps(v)
            .map((yt, i) => bound.step!(yt, from + i))
            .filter((x): x is tf.Scalar => x !== null);
          return terms.length ? (tf.addN(terms) as tf.Scalar) : null;
        };
        const a = bound.window!(y, from);
        const b = byStep(y);
        expect(a === null, `[${from}, ${to})`).toBe(b === null);
        if (a && b) {
          expect(a.dataSync()[0]).toBeCloseTo(b.dataSync()[0]!, 6);
          const ga = tf
            .grad((v: Tensor) => bound.window!(v, from)!)(y)
            .dataSync();
          // Every unstacked step on the tape (unstack's gradient needs one for each): 0·Σy_t where a step has no term.
          const all = (v: Tensor) => tf.addN(unstackSteps(v).map((yt, i) => bound.step!(yt, from + i) ?? tf.mul(0, tf.sum(yt)))) as tf.Scalar;
          const gb = tf.grad(all)(y).dataSync();
          ga.forEach((x, i) => expect(x).toBeCloseTo(gb[i]!, 6));
        }
        disposeTree([a, b, y]);
      }
      bound.dispose();
      target.dispose();
    });
  }
});

import { describe, expect, it } from 'vitest';
import { tf, type Tensor } from './tf.js';
import {
  arctan,
  builtinSurrogates,
  fastSigmoid,
  multiGaussian,
  sigmoid,
  spikeFn,
  surrogateFromSpec,
  triangle,
  type Surrogate,
  type SurrogateEntry,
} from './surrogates.js';
import { errorOf, useCpuBackend } from './test-support.js';

useCpuBackend();

/** Values of a function of one tensor on `xs`, disposing everything it made. */
function values(f: (x: Tensor) => Tensor, xs: readonly number[]): number[] {
  return tf.tidy(() => Array.from(f(tf.tensor1d(xs as number[])).dataSync()));
}

/**
 * -3.0 .. 3.0 shifted by 0.0137: never exactly 0, ±1, ±1.5 (the triangles' kinks used below), and
 * dense near the peak.
 */
const grid = Array.from({ length: 61 }, (_, i) => -3 + i * 0.1 + 0.0137);

const npdf = (x: number, mu: number, s: number) => Math.exp(-((x - mu) ** 2) / (2 * s * s)) / (s * Math.sqrt(2 * Math.PI));
const logistic = (u: number) => 1 / (1 + Math.exp(-u));

/** Each surrogate, with the documented pseudo-derivative written out in plain JS. */
const cases: { s: Surrogate; formula: (x: number) => number }[] = [
  { s: fastSigmoid(), formula: (x) => 1 / (1 + 25 * Math.abs(x)) ** 2 },
  { s: fastSigmoid({ slope: 4 }), formula: (x) => 1 / (1 + 4 * Math.abs(x)) ** 2 },
  { s: sigmoid(), formula: (x) => 5 * logistic(5 * x) * (1 - logistic(5 * x)) },
  { s: sigmoid({ slope: 2 }), formula: (x) => 2 * logistic(2 * x) * (1 - logistic(2 * x)) },
  { s: arctan(), formula: (x) => 1 / (1 + (Math.PI * x) ** 2) },
  { s: arctan({ alpha: 0.5 }), formula: (x) => 0.25 / (1 + ((Math.PI / 2) * 0.5 * x) ** 2) },
  { s: triangle(), formula: (x) => 0.3 * Math.max(0, 1 - Math.abs(x)) },
  { s: triangle({ gamma: 0.8, width: 1.5 }), formula: (x) => 0.8 * Math.max(0, 1 - Math.abs(x) / 1.5) },
  {
    s: multiGaussian(),
    formula: (x) => 0.5 * (1.15 * npdf(x, 0, 0.5) - 0.15 * (npdf(x, 0.5, 3) + npdf(x, -0.5, 3))),
  },
  {
    s: multiGaussian({ sigma: 0.3, height: 0.3, scale: 4, gamma: 1.2 }),
    formula: (x) => 1.2 * (1.3 * npdf(x, 0, 0.3) - 0.3 * (npdf(x, 0.3, 1.2) + npdf(x, -0.3, 1.2))),
  },
];

const label = (s: Surrogate) => `${s.name}(${JSON.stringify(s.params)})`;

describe.each(cases.map((c) => [label(c.s), c] as const))('surrogate %s', (_, { s, formula }) => {
  it('derivative equals the documented formula', () => {
    const own = values((x) => s.derivative(x), grid);
    grid.forEach((x, i) => expect(own[i], `x=${x}`).toBeCloseTo(formula(x), 5));
  });

  it('derivative equals tf.grad(primitive)', () => {
    const own = values((x) => s.derivative(x), grid);
    const auto = values((x) => tf.grad((v: Tensor) => tf.sum(s.primitive(v)))(x), grid);
    grid.forEach((x, i) => expect(own[i], `x=${x}`).toBeCloseTo(auto[i]!, 5));
  });

  it('derivative(0) equals peak, and the peak is the maximum', () => {
    const [at0] = values((x) => s.derivative(x), [0]);
    expect(at0).toBeCloseTo(s.peak, 6);
    expect(s.peak).toBeCloseTo(formula(0), 6);
    for (const d of values((x) => s.derivative(x), grid)) expect(d).toBeLessThanOrEqual(s.peak + 1e-6);
  });

  it('is even: derivative(x) = derivative(-x)', () => {
    const pos = values(
      (x) => s.derivative(x),
      grid.filter((x) => x > 0),
    );
    const neg = values(
      (x) => s.derivative(x),
      grid.filter((x) => x > 0).map((x) => -x),
    );
    pos.forEach((d, i) => expect(neg[i]).toBeCloseTo(d, 6));
  });

  it('spikeFn: Heaviside forward (0 at exactly 0), backward dy · derivative', () => {
    const spike = spikeFn(s);
    const xs = [-2, -1e-6, -0, 0, 1e-6, 0.5, 3];
    expect(values(spike, xs)).toEqual([0, 0, 0, 0, 1, 1, 1]);
    const own = values((x) => s.derivative(x), grid);
    const viaSpike = values((x) => tf.grad((v: Tensor) => tf.sum(spike(v)))(x), grid);
    expect(viaSpike).toEqual(own);
    // The upstream gradient multiplies the pseudo-derivative element-wise.
    const dy = grid.map((_, i) => (i % 3) - 1.5);
    const chained = values((x) => tf.grad((v: Tensor) => tf.sum(tf.mul(spike(v), tf.tensor1d(dy))))(x), grid);
    chained.forEach((g, i) => expect(g).toBeCloseTo(dy[i]! * own[i]!, 6));
  });

  it('keeps shapes and leaks no tensors', () => {
    const x = tf.tensor2d([
      [-0.2, 0.1, 0.7],
      [1.2, -1.7, 0.05],
    ]);
    const before = tf.memory().numTensors;
    const d = s.derivative(x);
    const p = s.primitive(x);
    const sp = spikeFn(s)(x);
    const g = tf.grad((v: Tensor) => tf.sum(spikeFn(s)(v)))(x);
    expect(d.shape).toEqual([2, 3]);
    expect(p.shape).toEqual([2, 3]);
    expect(sp.shape).toEqual([2, 3]);
    expect(g.shape).toEqual([2, 3]);
    expect(tf.memory().numTensors).toBe(before + 4);
    tf.dispose([d, p, sp, g, x]);
    expect(tf.memory().numTensors).toBe(before - 1);
  });
});

describe('documented shape of the surrogates', () => {
  const halfAt = (s: Surrogate, x: number) => values((v) => s.derivative(v), [x])[0]! / s.peak;

  it('half maximum points', () => {
    expect(halfAt(fastSigmoid({ slope: 10 }), (Math.SQRT2 - 1) / 10)).toBeCloseTo(0.5, 5);
    expect(halfAt(sigmoid({ slope: 3 }), 1.7627 / 3)).toBeCloseTo(0.5, 4);
    expect(halfAt(arctan({ alpha: 3 }), 2 / (Math.PI * 3))).toBeCloseTo(0.5, 5);
    expect(halfAt(triangle({ gamma: 0.7, width: 2 }), 1)).toBeCloseTo(0.5, 6);
  });

  it('peaks', () => {
    expect(fastSigmoid({ slope: 7 }).peak).toBe(1);
    expect(sigmoid({ slope: 6 }).peak).toBe(1.5);
    expect(arctan({ alpha: 3 }).peak).toBe(1.5);
    expect(triangle({ gamma: 0.7 }).peak).toBe(0.7);
    // γ[(1+h)·N(0; 0, σ) − 2h·N(σ; 0, sσ)] with the paper's defaults.
    expect(multiGaussian().peak).toBeCloseTo(0.5 * (1.15 * npdf(0, 0, 0.5) - 0.3 * npdf(0.5, 0, 3)), 12);
    // Without side lobes it is a plain Gaussian bump.
    expect(multiGaussian({ height: 0, sigma: 0.4, gamma: 2 }).peak).toBeCloseTo(2 * npdf(0, 0, 0.4), 12);
  });

  it('the triangle has support |x| < width; the multi-Gaussian has negative side lobes', () => {
    expect(values((x) => triangle({ width: 0.5 }).derivative(x), [-0.6, -0.5, 0.5, 2])).toEqual([0, 0, 0, 0]);
    const lobes = values((x) => multiGaussian().derivative(x), [1.5, -1.5]);
    for (const v of lobes) expect(v).toBeLessThan(0);
  });

  it('factories report their names and parameters, with defaults filled', () => {
    expect([fastSigmoid(), sigmoid(), arctan(), triangle(), multiGaussian()].map((s) => [s.name, s.params])).toEqual([
      ['fast_sigmoid', { slope: 25 }],
      ['sigmoid', { slope: 5 }],
      ['arctan', { alpha: 2 }],
      ['triangle', { gamma: 0.3, width: 1 }],
      ['multi_gaussian', { sigma: 0.5, height: 0.15, scale: 6, gamma: 0.5 }],
    ]);
  });
});

describe('bad factory parameters', () => {
  it('non-positive or non-finite parameters are CONFIG_INVALID naming the parameter', () => {
    const bad: [() => unknown, string][] = [
      [() => fastSigmoid({ slope: 0 }), 'surrogate.slope'],
      [() => fastSigmoid({ slope: -1 }), 'surrogate.slope'],
      [() => fastSigmoid({ slope: Number.NaN }), 'surrogate.slope'],
      [() => fastSigmoid({ slope: Infinity }), 'surrogate.slope'],
      [() => sigmoid({ slope: -5 }), 'surrogate.slope'],
      [() => arctan({ alpha: 0 }), 'surrogate.alpha'],
      [() => triangle({ gamma: 0 }), 'surrogate.gamma'],
      [() => triangle({ width: -1 }), 'surrogate.width'],
      [() => multiGaussian({ sigma: 0 }), 'surrogate.sigma'],
      [() => multiGaussian({ scale: -2 }), 'surrogate.scale'],
      [() => multiGaussian({ gamma: 0 }), 'surrogate.gamma'],
      [() => multiGaussian({ height: -0.1 }), 'surrogate.height'],
      [() => multiGaussian({ height: Number.NaN }), 'surrogate.height'],
    ];
    for (const [f, path] of bad) {
      const e = errorOf(f);
      expect(e.code).toBe('CONFIG_INVALID');
      expect(e.details.path).toBe(path);
      expect(e.message.startsWith(`${path}: `)).toBe(true);
    }
    expect(errorOf(() => fastSigmoid({ slope: 0 })).message).toBe('surrogate.slope: fastSigmoid(): slope must be a finite number > 0, got 0');
    expect(() => multiGaussian({ height: 0 })).not.toThrow();
  });
});

describe('surrogateFromSpec', () => {
  it('the builtin table names every factory, and its schema defaults are the factory defaults', () => {
    expect(builtinSurrogates.map((e) => e.name)).toEqual(['fast_sigmoid', 'sigmoid', 'arctan', 'triangle', 'multi_gaussian']);
    const factories = [fastSigmoid(), sigmoid(), arctan(), triangle(), multiGaussian()];
    builtinSurrogates.forEach((entry, i) => {
      const s = surrogateFromSpec({ name: entry.name }, builtinSurrogates);
      expect(s.name).toBe(entry.name);
      expect(s.params).toEqual(factories[i]!.params);
    });
  });

  it('passes parameters through and fills the rest', () => {
    const s = surrogateFromSpec({ name: 'triangle', gamma: 0.5 }, builtinSurrogates);
    expect(s.params).toEqual({ gamma: 0.5, width: 1 });
    expect(s.peak).toBe(0.5);
    expect(surrogateFromSpec({ name: 'fast_sigmoid', slope: 10 }, builtinSurrogates).params).toEqual({ slope: 10 });
  });

  it('an unknown name is UNKNOWN_NAME with a suggestion and the known names', () => {
    const e = errorOf(() => surrogateFromSpec({ name: 'fast_sigmod' }, builtinSurrogates));
    expect(e.code).toBe('UNKNOWN_NAME');
    expect(e.details.path).toBe('surrogate.name');
    expect(e.message).toMatch(/^surrogate\.name: unknown surrogate 'fast_sigmod'; did you mean 'fast_sigmoid'\?/);
    expect(e.message).toContain("'multi_gaussian'");
    const nested = errorOf(() => surrogateFromSpec({ name: 'boxcar' }, builtinSurrogates, 'model.layers[1].surrogate'));
    expect(nested.details.path).toBe('model.layers[1].surrogate.name');
    expect(nested.message).not.toMatch(/did you mean/);
  });

  it('a missing or non-string name, or a non-object spec, is CONFIG_INVALID naming the field', () => {
    const missing = errorOf(() => surrogateFromSpec({ slope: 3 }, builtinSurrogates));
    expect(missing.code).toBe('CONFIG_INVALID');
    expect(missing.details.path).toBe('surrogate.name');
    expect(errorOf(() => surrogateFromSpec({ name: 3 }, builtinSurrogates)).details.path).toBe('surrogate.name');
    const notObject = errorOf(() => surrogateFromSpec('fast_sigmoid', builtinSurrogates, 'model.surrogate'));
    expect(notObject.code).toBe('CONFIG_INVALID');
    expect(notObject.details.path).toBe('model.surrogate');
  });

  it('an unknown or bad parameter is CONFIG_INVALID naming it', () => {
    const unknown = errorOf(() => surrogateFromSpec({ name: 'fast_sigmoid', slop: 3 }, builtinSurrogates, 'model.surrogate'));
    expect(unknown.code).toBe('CONFIG_INVALID');
    expect(unknown.details.path).toBe('model.surrogate.slop');
    expect(unknown.message).toMatch(/did you mean 'slope'/);
    const zero = errorOf(() => surrogateFromSpec({ name: 'sigmoid', slope: 0 }, builtinSurrogates));
    expect(zero.details.path).toBe('surrogate.slope');
    expect(zero.message).toBe('surrogate.slope: must be > 0, got 0');
    expect(errorOf(() => surrogateFromSpec({ name: 'arctan', alpha: '2' }, builtinSurrogates)).details.path).toBe('surrogate.alpha');
    expect(errorOf(() => surrogateFromSpec({ name: 'multi_gaussian', height: -1 }, builtinSurrogates)).message).toBe('surrogate.height: must be >= 0, got -1');
  });

  it('uses the entries it is given (plugin surrogates), from any iterable', () => {
    const boxcar: SurrogateEntry = {
      name: 'boxcar',
      schema: { width: { type: 'number', default: 0.5, min: 0, exclusiveMin: true } },
      create: (p) => triangle({ width: p['width']! }),
    };
    const table = new Map([[boxcar.name, boxcar]]);
    expect(surrogateFromSpec({ name: 'boxcar', width: 2 }, table.values()).params).toEqual({ gamma: 0.3, width: 2 });
    expect(errorOf(() => surrogateFromSpec({ name: 'sigmoid' }, [boxcar])).code).toBe('UNKNOWN_NAME');
  });
});

import { tf, type Tensor } from './tf.js';
import { configError, didYouMean, expectObject, parseSchema, type Schema } from './validate.js';
import { SpikeflowError } from './errors.js';

/**
 * A surrogate gradient: the spike nonlinearity `spike(x) = H(x)` (x = v − threshold; 1 where
 * x > 0, else 0) in the forward pass, and a smooth pseudo-derivative `derivative(x)` in the
 * backward pass. `primitive` is a smooth function whose derivative is exactly `derivative`, so
 * the backward pass can be checked against automatic differentiation of the primitive.
 */
export interface Surrogate {
  /** Registry name, as used in JSON configs (`fast_sigmoid`, ...). */
  readonly name: string;
  /** The parameters it was built with. */
  readonly params: Readonly<Record<string, number>>;
  /** Value of the pseudo-derivative at x = 0 (its peak for every surrogate here). */
  readonly peak: number;
  /** d spike / dx, element-wise. */
  derivative(x: Tensor): Tensor;
  /** A smooth function with `d primitive / dx = derivative`. */
  primitive(x: Tensor): Tensor;
}

/** An op that spikes in the forward pass and uses `surrogate.derivative` in the backward pass. */
export type SpikeFn = (x: Tensor) => Tensor;

/**
 * Builds the spike op for a surrogate: `tf.step` forward (Heaviside, H(0) = 0) and
 * `dy · derivative(x)` backward. One tape entry per call.
 */
export function spikeFn(surrogate: Surrogate): SpikeFn {
  return tf.customGrad((...args: (Tensor | tf.GradSaveFunc)[]) => {
    const [x, save] = args as [Tensor, tf.GradSaveFunc];
    save([x]);
    return {
      value: tf.step(x),
      gradFunc: (dy: Tensor, saved: Tensor[]) => tf.mul(dy, surrogate.derivative(saved[0]!)),
    };
  });
}

/**
 * Fast sigmoid (SuperSpike; Zenke & Ganguli 2018): `1 / (1 + k|x|)²`.
 * Peak 1 at x = 0, half maximum at |x| = (√2 − 1)/k. Primitive `x / (1 + k|x|)`.
 *
 * @example fastSigmoid({ slope: 25 })
 */
export function fastSigmoid({ slope = 25 }: { slope?: number } = {}): Surrogate {
  positive('fastSigmoid', 'slope', slope);
  return {
    name: 'fast_sigmoid',
    params: { slope },
    peak: 1,
    derivative: (x) => tf.tidy(() => tf.reciprocal(tf.square(tf.add(1, tf.mul(slope, tf.abs(x)))))),
    primitive: (x) => tf.tidy(() => tf.div(x, tf.add(1, tf.mul(slope, tf.abs(x))))),
  };
}

/**
 * Logistic sigmoid: `k · σ(kx) · (1 − σ(kx))`, the derivative of `σ(kx)`.
 * Peak k/4 at x = 0, half maximum at |x| ≈ 1.763/k.
 */
export function sigmoid({ slope = 5 }: { slope?: number } = {}): Surrogate {
  positive('sigmoid', 'slope', slope);
  return {
    name: 'sigmoid',
    params: { slope },
    peak: slope / 4,
    derivative: (x) =>
      tf.tidy(() => {
        const s = tf.sigmoid(tf.mul(slope, x));
        return tf.mul(slope, tf.mul(s, tf.sub(1, s)));
      }),
    primitive: (x) => tf.tidy(() => tf.sigmoid(tf.mul(slope, x))),
  };
}

/**
 * Arctangent (Fang et al. 2021, SpikingJelly's ATan): `(α/2) / (1 + (π/2 · α · x)²)`, the
 * derivative of `arctan(π/2 · α · x) / π`. Peak α/2 at x = 0, half maximum at |x| = 2/(πα).
 */
export function arctan({ alpha = 2 }: { alpha?: number } = {}): Surrogate {
  positive('arctan', 'alpha', alpha);
  const c = (Math.PI / 2) * alpha;
  return {
    name: 'arctan',
    params: { alpha },
    peak: alpha / 2,
    derivative: (x) => tf.tidy(() => tf.div(alpha / 2, tf.add(1, tf.square(tf.mul(c, x))))),
    primitive: (x) => tf.tidy(() => tf.div(tf.atan(tf.mul(c, x)), Math.PI)),
  };
}

/**
 * Triangle / piecewise linear (Bellec et al. 2018, the e-prop pseudo-derivative):
 * `γ · max(0, 1 − |x|/w)`. Peak γ at x = 0, support |x| < w, half maximum at |x| = w/2.
 * Primitive: `γ(x − x|x|/(2w))` inside the support, `±γw/2` outside.
 */
export function triangle({ gamma = 0.3, width = 1 }: { gamma?: number; width?: number } = {}): Surrogate {
  positive('triangle', 'gamma', gamma);
  positive('triangle', 'width', width);
  return {
    name: 'triangle',
    params: { gamma, width },
    peak: gamma,
    derivative: (x) => tf.tidy(() => tf.mul(gamma, tf.relu(tf.sub(1, tf.div(tf.abs(x), width))))),
    primitive: (x) =>
      tf.tidy(() => {
        const xc = tf.clipByValue(x, -width, width);
        return tf.mul(gamma, tf.sub(xc, tf.div(tf.mul(xc, tf.abs(xc)), 2 * width)));
      }),
  };
}

/**
 * Multi-Gaussian (Yin, Corradi & Bohté 2021, "Accurate and efficient time-domain classification
 * with adaptive spiking recurrent neural networks"):
 * `γ · [(1 + h)·N(x; 0, σ) − h·N(x; σ, sσ) − h·N(x; −σ, sσ)]`, a Gaussian bump with negative
 * side lobes. Defaults from the paper: σ = 0.5, h = 0.15, s = 6, γ = 0.5. Peak
 * `γ[(1+h)/(σ√2π) − 2h·N(σ; 0, sσ)]` (≈ 0.439 with the defaults) at x = 0.
 * Primitive: the same mixture of Gaussian CDFs.
 */
export function multiGaussian({
  sigma = 0.5,
  height = 0.15,
  scale = 6,
  gamma = 0.5,
}: {
  sigma?: number;
  height?: number;
  scale?: number;
  gamma?: number;
} = {}): Surrogate {
  positive('multiGaussian', 'sigma', sigma);
  positive('multiGaussian', 'scale', scale);
  positive('multiGaussian', 'gamma', gamma);
  if (!(height >= 0)) throw configError('surrogate.height', `must be >= 0, got ${height}`);
  const gauss = (x: Tensor, mu: number, s: number) => tf.mul(1 / (s * Math.sqrt(2 * Math.PI)), tf.exp(tf.div(tf.square(tf.sub(x, mu)), -2 * s * s)));
  const cdf = (x: Tensor, mu: number, s: number) => tf.mul(0.5, tf.add(1, tf.erf(tf.div(tf.sub(x, mu), s * Math.SQRT2))));
  const wide = scale * sigma;
  const npdf = (x: number, s: number) => Math.exp((-x * x) / (2 * s * s)) / (s * Math.sqrt(2 * Math.PI));
  return {
    name: 'multi_gaussian',
    params: { sigma, height, scale, gamma },
    peak: gamma * ((1 + height) * npdf(0, sigma) - 2 * height * npdf(sigma, wide)),
    derivative: (x) =>
      tf.tidy(() => tf.mul(gamma, tf.sub(tf.mul(1 + height, gauss(x, 0, sigma)), tf.mul(height, tf.add(gauss(x, sigma, wide), gauss(x, -sigma, wide)))))),
    primitive: (x) =>
      tf.tidy(() => tf.mul(gamma, tf.sub(tf.mul(1 + height, cdf(x, 0, sigma)), tf.mul(height, tf.add(cdf(x, sigma, wide), cdf(x, -sigma, wide)))))),
  };
}

function positive(fn: string, key: string, v: number): void {
  if (!(typeof v === 'number' && Number.isFinite(v) && v > 0)) {
    throw configError(`surrogate.${key}`, `${fn}(): ${key} must be a finite number > 0, got ${v}`);
  }
}

/** A named surrogate factory with the JSON schema of its parameters. */
export interface SurrogateEntry {
  readonly name: string;
  readonly schema: Schema;
  readonly create: (params: Record<string, number>) => Surrogate;
}

const num = (d: number, doc: string) => ({ type: 'number', default: d, min: 0, exclusiveMin: true, doc }) as const;

/**
 * The surrogates core ships, by the names JSON configs use. The table exists only so configs can
 * name a surrogate; TypeScript users call the factories. Plugins may add entries.
 */
export const builtinSurrogates: readonly SurrogateEntry[] = [
  { name: 'fast_sigmoid', schema: { slope: num(25, 'steepness k') }, create: (p) => fastSigmoid(p) },
  { name: 'sigmoid', schema: { slope: num(5, 'steepness k') }, create: (p) => sigmoid(p) },
  { name: 'arctan', schema: { alpha: num(2, 'width parameter α') }, create: (p) => arctan(p) },
  {
    name: 'triangle',
    schema: { gamma: num(0.3, 'peak γ'), width: num(1, 'half-support w') },
    create: (p) => triangle(p),
  },
  {
    name: 'multi_gaussian',
    schema: {
      sigma: num(0.5, 'σ of the central Gaussian'),
      height: { type: 'number', default: 0.15, min: 0, doc: 'h, weight of the side lobes' },
      scale: num(6, 's, width ratio of side lobes'),
      gamma: num(0.5, 'overall gain γ'),
    },
    create: (p) => multiGaussian(p),
  },
];

/** A surrogate named in JSON: `{ "name": "fast_sigmoid", "slope": 25 }`. */
export interface SurrogateSpec {
  name: string;
  [param: string]: number | string;
}

/** Builds a surrogate from its JSON spec, naming the field at fault on error. */
export function surrogateFromSpec(spec: unknown, entries: Iterable<SurrogateEntry>, path = 'surrogate'): Surrogate {
  const obj = expectObject(spec, path);
  const table = new Map([...entries].map((e) => [e.name, e]));
  const name = obj['name'];
  if (typeof name !== 'string') throw configError(`${path}.name`, `expected a surrogate name, got ${JSON.stringify(name)}`);
  const entry = table.get(name);
  if (!entry) {
    throw new SpikeflowError('UNKNOWN_NAME', `${path}.name: unknown surrogate '${name}'; ${didYouMean(name, table.keys())}`, {
      path: `${path}.name`,
    });
  }
  const { name: _n, ...params } = obj;
  const values = parseSchema(entry.schema, params, path) as unknown as Record<string, number>;
  return entry.create(values);
}

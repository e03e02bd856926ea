import { tf, type NamedTensorMap, type Tensor } from './tf.js';
import type { ParamMap } from './network.js';
import { disposeTree, keepTree, tidy, type TensorTree } from './state.js';
import { configError, didYouMean, expectObject, parseSchema, type Schema } from './validate.js';
import { SpikeflowError } from './errors.js';

/**
 * A gradient transformation (after optax): `init` makes its state from the parameters, `update`
 * maps gradients to updates and returns its new state. State is plain data (tensors and
 * numbers), so it checkpoints and resumes exactly. Compose with {@link chain}.
 */
export interface GradientTransformation<S extends TensorTree = TensorTree> {
  readonly name: string;
  init(params: ParamMap): S;
  /** Must not dispose `grads` or `state`; returns fresh tensors. */
  update(grads: NamedTensorMap, state: S, params: ParamMap): { updates: NamedTensorMap; state: S };
}

/** An optimizer is a gradient transformation whose updates are added to the parameters. */
export type Optimizer = GradientTransformation;

const mapGrads = (g: NamedTensorMap, fn: (t: Tensor, k: string) => Tensor): NamedTensorMap =>
  Object.fromEntries(Object.entries(g).map(([k, t]) => [k, fn(t, k)]));

const zerosLikeParams = (params: ParamMap): Record<string, Tensor> =>
  Object.fromEntries(Object.entries(params).map(([k, v]) => [k, tf.zerosLike(v)]));

/** Runs transformations in sequence; the state is the list of their states. */
export function chain(...ts: GradientTransformation[]): GradientTransformation<TensorTree[]> {
  return {
    name: ts.map((t) => t.name).join('+'),
    init: (params) => ts.map((t) => t.init(params)),
    update(grads, state, params) {
      let g = grads;
      const next: TensorTree[] = [];
      const made: NamedTensorMap[] = [];
      ts.forEach((t, i) => {
        const r = t.update(g, state[i] as never, params);
        if (g !== grads) made.push(g);
        g = r.updates;
        next.push(r.state);
      });
      made.forEach((m) => disposeTree(m, g));
      return { updates: g, state: next };
    },
  };
}

/** Scales every gradient by `-lr` (or any factor). */
export function scale(factor: number): GradientTransformation<null> {
  return { name: `scale(${factor})`, init: () => null, update: (g, s) => ({ updates: mapGrads(g, (t) => tf.mul(t, factor)), state: s }) };
}

/** Rescales all gradients together so their global L2 norm is at most `maxNorm`. */
export function clipByGlobalNorm(maxNorm: number): GradientTransformation<null> {
  return {
    name: `clipByGlobalNorm(${maxNorm})`,
    init: () => null,
    update: (g, s) => {
      const updates = tf.tidy(() => {
        const sq = Object.values(g).map((t) => tf.sum(tf.square(t)));
        const norm = tf.sqrt(sq.length ? tf.addN(sq) : tf.scalar(0));
        const factor = tf.div(maxNorm, tf.maximum(norm, maxNorm));
        return mapGrads(g, (t) => tf.mul(t, factor));
      });
      return { updates, state: s };
    },
  };
}

/** Clips every gradient entry to `[-max, max]`. */
export function clipByValue(max: number): GradientTransformation<null> {
  return { name: `clipByValue(${max})`, init: () => null, update: (g, s) => ({ updates: mapGrads(g, (t) => tf.clipByValue(t, -max, max)), state: s }) };
}

type AdamState = { count: number; mu: Record<string, Tensor>; nu: Record<string, Tensor> };

/** Adam's moment estimates with bias correction (Kingma & Ba 2015), without the learning rate. */
export function scaleByAdam({ beta1 = 0.9, beta2 = 0.999, eps = 1e-8 } = {}): GradientTransformation<AdamState> {
  return {
    name: 'scaleByAdam',
    init: (params) => ({ count: 0, mu: zerosLikeParams(params), nu: zerosLikeParams(params) }),
    update(g, s) {
      const count = s.count + 1;
      const c1 = 1 - beta1 ** count;
      const c2 = 1 - beta2 ** count;
      const mu: Record<string, Tensor> = {};
      const nu: Record<string, Tensor> = {};
      const updates = tf.tidy(() => {
        const out: NamedTensorMap = {};
        for (const k of Object.keys(s.mu)) {
          const gk = g[k] ?? tf.zerosLike(s.mu[k]!);
          mu[k] = tf.keep(tf.add(tf.mul(beta1, s.mu[k]!), tf.mul(1 - beta1, gk)));
          nu[k] = tf.keep(tf.add(tf.mul(beta2, s.nu[k]!), tf.mul(1 - beta2, tf.square(gk))));
          out[k] = tf.div(tf.div(mu[k]!, c1), tf.add(tf.sqrt(tf.div(nu[k]!, c2)), eps));
        }
        return out;
      });
      return { updates, state: { count, mu, nu } };
    },
  };
}

type AdamaxState = { count: number; mu: Record<string, Tensor>; u: Record<string, Tensor> };

/** Adamax: Adam with the infinity norm, `u ← max(β2·u, |g|)` (Kingma & Ba 2015, §7.1). */
export function scaleByAdamax({ beta1 = 0.9, beta2 = 0.999, eps = 1e-8 } = {}): GradientTransformation<AdamaxState> {
  return {
    name: 'scaleByAdamax',
    init: (params) => ({ count: 0, mu: zerosLikeParams(params), u: zerosLikeParams(params) }),
    update(g, s) {
      const count = s.count + 1;
      const c1 = 1 - beta1 ** count;
      const mu: Record<string, Tensor> = {};
      const u: Record<string, Tensor> = {};
      const updates = tf.tidy(() => {
        const out: NamedTensorMap = {};
        for (const k of Object.keys(s.mu)) {
          const gk = g[k] ?? tf.zerosLike(s.mu[k]!);
          mu[k] = tf.keep(tf.add(tf.mul(beta1, s.mu[k]!), tf.mul(1 - beta1, gk)));
          u[k] = tf.keep(tf.maximum(tf.mul(beta2, s.u[k]!), tf.abs(gk)));
          out[k] = tf.div(tf.div(mu[k]!, c1), tf.add(u[k]!, eps));
        }
        return out;
      });
      return { updates, state: { count, mu, u } };
    },
  };
}

type TraceState = { trace: Record<string, Tensor> };

/** Heavy-ball momentum `m ← μ·m + g` (Nesterov: `g + μ·m`). */
export function trace({ momentum, nesterov = false }: { momentum: number; nesterov?: boolean }): GradientTransformation<TraceState> {
  return {
    name: 'trace',
    init: (params) => ({ trace: zerosLikeParams(params) }),
    update(g, s) {
      const next: Record<string, Tensor> = {};
      const updates = tf.tidy(() => {
        const out: NamedTensorMap = {};
        for (const k of Object.keys(s.trace)) {
          const gk = g[k] ?? tf.zerosLike(s.trace[k]!);
          next[k] = tf.keep(tf.add(tf.mul(momentum, s.trace[k]!), gk));
          out[k] = nesterov ? tf.add(gk, tf.mul(momentum, next[k]!)) : tf.clone(next[k]!);
        }
        return out;
      });
      return { updates, state: { trace: next } };
    },
  };
}

export interface ClipOptions {
  /** Clip gradients to this global L2 norm first. */
  clipNorm?: number;
  /** Clip every gradient entry to ±clipValue first. */
  clipValue?: number;
}

const withClip = (o: ClipOptions, ...ts: GradientTransformation[]): GradientTransformation =>
  chain(...[o.clipNorm !== undefined ? clipByGlobalNorm(o.clipNorm) : null, o.clipValue !== undefined ? clipByValue(o.clipValue) : null].filter((t) => t !== null), ...ts);

/** Adam with learning rate `lr` and optional gradient clipping. */
export const adam = ({ lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, ...clip }: { lr?: number; beta1?: number; beta2?: number; eps?: number } & ClipOptions = {}): Optimizer =>
  withClip(clip, scaleByAdam({ beta1, beta2, eps }), scale(-lr));

/** Adamax with learning rate `lr` (default 0.002) and optional gradient clipping. */
export const adamax = ({ lr = 2e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, ...clip }: { lr?: number; beta1?: number; beta2?: number; eps?: number } & ClipOptions = {}): Optimizer =>
  withClip(clip, scaleByAdamax({ beta1, beta2, eps }), scale(-lr));

/** Stochastic gradient descent, optionally with (Nesterov) momentum and gradient clipping. */
export const sgd = ({ lr = 1e-2, momentum = 0, nesterov = false, ...clip }: { lr?: number; momentum?: number; nesterov?: boolean } & ClipOptions = {}): Optimizer =>
  withClip(clip, ...(momentum > 0 ? [trace({ momentum, nesterov })] : []), scale(-lr));

const pos = (d: number | undefined, doc: string) => ({ type: 'number', min: 0, exclusiveMin: true, doc, ...(d !== undefined ? { default: d } : {}) }) as const;
const clipSchema = { clipNorm: pos(undefined, 'max global gradient norm'), clipValue: pos(undefined, 'max |gradient entry|') } as const;
const betas = {
  beta1: { type: 'number', default: 0.9, min: 0, max: 0.999999 },
  beta2: { type: 'number', default: 0.999, min: 0, max: 0.999999999 },
  eps: pos(1e-8, 'denominator offset'),
} as const;

export interface OptimizerEntry {
  readonly name: string;
  readonly schema: Schema;
  readonly create: (o: Record<string, unknown>) => Optimizer;
}

export const builtinOptimizers: readonly OptimizerEntry[] = [
  { name: 'adam', schema: { lr: pos(1e-3, 'learning rate'), ...betas, ...clipSchema }, create: (o) => adam(o) },
  { name: 'adamax', schema: { lr: pos(2e-3, 'learning rate'), ...betas, ...clipSchema }, create: (o) => adamax(o) },
  {
    name: 'sgd',
    schema: { lr: pos(1e-2, 'learning rate'), momentum: { type: 'number', default: 0, min: 0, max: 1 }, nesterov: { type: 'boolean', default: false }, ...clipSchema },
    create: (o) => sgd(o),
  },
];

/** An optimizer named in JSON: `{ "name": "adam", "lr": 0.001, "clipNorm": 1 }`. */
export function optimizerFromSpec(spec: unknown, path = 'optimizer', entries: readonly OptimizerEntry[] = builtinOptimizers): Optimizer {
  const obj = expectObject(spec, path);
  const name = obj['name'];
  if (typeof name !== 'string') throw configError(`${path}.name`, `expected an optimizer name (${entries.map((e) => e.name).join(', ')})`);
  const entry = entries.find((e) => e.name === name);
  if (!entry) throw new SpikeflowError('UNKNOWN_NAME', `${path}.name: unknown optimizer '${name}'; ${didYouMean(name, entries.map((e) => e.name))}`, { path: `${path}.name` });
  const { name: _n, ...rest } = obj;
  return entry.create(parseSchema(entry.schema, rest, path));
}

/**
 * Holds an optimizer's state for one set of parameters and applies gradients to them:
 * `params ← params + updates`. Missing gradients count as zero.
 */
export class OptimizerRunner {
  readonly optimizer: Optimizer;
  readonly params: ParamMap;
  #state: TensorTree;
  #steps = 0;

  /** `state` and `steps` restore a checkpointed runner (the runner takes ownership of `state`'s tensors). */
  constructor(optimizer: Optimizer, params: ParamMap, state?: TensorTree, steps = 0) {
    this.optimizer = optimizer;
    this.params = params;
    this.#state = state ?? keepTree(tidy(() => optimizer.init(params)));
    this.#steps = steps;
  }

  get state(): TensorTree {
    return this.#state;
  }
  /** Number of updates applied. */
  get steps(): number {
    return this.#steps;
  }

  /** One update from `grads` (not disposed: the caller owns them). */
  apply(grads: NamedTensorMap): void {
    for (const k of Object.keys(grads)) {
      if (!(k in this.params)) throw new SpikeflowError('UNKNOWN_NAME', `optimizer: gradient for unknown parameter '${k}'`);
    }
    const old = this.#state;
    const next = tidy(() => {
      const { updates, state } = this.optimizer.update(grads, old, this.params);
      for (const [k, u] of Object.entries(updates)) this.params[k]!.assign(tf.add(this.params[k]!, u));
      return keepTree(state as never) as TensorTree;
    });
    disposeTree(old, next);
    this.#state = next;
    this.#steps++;
  }

  dispose(): void {
    disposeTree(this.#state);
  }
}

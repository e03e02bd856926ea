import { tf, type NamedTensorMap, type Tensor } from './tf.js';
import type { ParamMap } from './params.js';
import { disposeTree, keepTree, tidy, type TensorTree } from './state.js';
import { configError, didYouMean, expectObject, parseSchema, type Schema } from './validate.js';
import { SpikeflowError } from './errors.js';
import { AdamMoments, FpttAdamStep, referenceKernels, type KernelTable } from './kernels.js';

/**
 * A gradient transformation (after optax): `init` makes its state from the parameters, `update`
 * maps gradients to updates and returns its new state. State is plain data (tensors and
 * numbers), so it checkpoints and resumes exactly. Compose with {@link chain}.
 */
export interface GradientTransformation<S extends TensorTree = TensorTree> {
  readonly name: string;
  init(params: Readonly<Record<string, Tensor>>): S;
  /** Must not dispose `grads` or `state`; returns fresh tensors. */
  update(grads: NamedTensorMap, state: S, params: Readonly<Record<string, Tensor>>, context?: UpdateContext): { updates: NamedTensorMap; state: S };
  /**
   * What the transformation is, for a runner that runs a known chain as one kernel per parameter
   * ({@link OptimizerRunner.applyAnchored}); absent: run it as it is.
   */
  readonly fusable?: FusableStep;
}

/** The transformations a runner may fuse: a chain of them, Adam's moments, a learning rate. */
export type FusableStep =
  | { readonly kind: 'chain'; readonly parts: readonly GradientTransformation[] }
  | { readonly kind: 'adam'; readonly beta1: number; readonly beta2: number; readonly eps: number }
  /** The learning rate of the next update and the state after it (the transformation's own state in, as its `update` takes it). */
  | { readonly kind: 'learningRate'; readonly next: (state: TensorTree) => { lr: number; state: TensorTree } };

/** What an update may use besides gradients, state and parameters. */
export interface UpdateContext {
  /**
   * The run's kernels: a transformation whose arithmetic is a kernel (`scaleByAdam`'s
   * `spikeflow.adamMoments`) runs the active backend's fast version from here, else core's
   * reference.
   */
  readonly kernels?: KernelTable;
}

/** An optimizer is a gradient transformation whose updates are added to the parameters. */
export type Optimizer = GradientTransformation;

const mapGrads = (g: NamedTensorMap, fn: (t: Tensor, k: string) => Tensor): NamedTensorMap =>
  Object.fromEntries(Object.entries(g).map(([k, t]) => [k, fn(t, k)]));

const zerosLikeParams = (params: Readonly<Record<string, Tensor>>): Record<string, Tensor> =>
  Object.fromEntries(Object.entries(params).map(([k, v]) => [k, tf.zerosLike(v)]));

/** Runs transformations in sequence; the state is the list of their states. */
export function chain(...ts: GradientTransformation[]): GradientTransformation<TensorTree[]> {
  return {
    name: ts.map((t) => t.name).join('+'),
    fusable: { kind: 'chain', parts: ts },
    init: (params) => ts.map((t) => t.init(params)),
    update(grads, state, params, context) {
      let g = grads;
      const next: TensorTree[] = [];
      const made: NamedTensorMap[] = [];
      ts.forEach((t, i) => {
        const r = t.update(g, state[i], params, context);
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
  return {
    name: `scale(${factor})`,
    fusable: { kind: 'learningRate', next: (state) => ({ lr: -factor, state }) },
    init: () => null,
    update: (g, s) => ({ updates: mapGrads(g, (t) => tf.mul(t, factor)), state: s }),
  };
}

/** A learning rate as a function of the update count (0 for the first update). */
export type Schedule = (count: number) => number;

/**
 * A schedule that decays over `decaySteps` updates, through a phase that runs from 0 to `end`
 * (π for the cosine, 1 for the exponential) as the count goes from 0 to `decaySteps`.
 *
 * Run length changed on resume: when an optimizer's state was made under another `decaySteps` (a
 * run resumed with more or fewer epochs, where the decay spans the whole run), the phase goes on
 * from where it was, linearly to `end` over the updates that are left (a {@link ScheduleSpan}),
 * so the learning rate is continuous at the resume point and still reaches its final value at the
 * new end. A run resumed with its own length follows the original schedule bit for bit.
 */
export interface DecaySchedule extends Schedule {
  readonly decaySteps: number;
  readonly end: number;
  /** The learning rate at a phase. */
  readonly atPhase: (phase: number) => number;
}

/** Where a schedule's phase is anchored: `phase` at update `from`, reaching the end at update `steps`. */
export type ScheduleSpan = {
  readonly from: number;
  readonly phase: number;
  readonly steps: number;
};

/** The phase at update `count` of a span ending at `end` (past the span's last update, it keeps growing at the same rate). */
export function phaseAt(span: ScheduleSpan, count: number, end: number): number {
  if (span.steps <= span.from) return Math.max(span.phase, end);
  return span.phase + ((end - span.phase) * (count - span.from)) / (span.steps - span.from);
}

const isDecay = (s: Schedule): s is DecaySchedule => typeof (s as Partial<DecaySchedule>).atPhase === 'function';

function decaySchedule(decaySteps: number, end: number, atPhase: (phase: number) => number): DecaySchedule {
  const span: ScheduleSpan = { from: 0, phase: 0, steps: decaySteps };
  return Object.assign((count: number) => atPhase(phaseAt(span, count, end)), { decaySteps, end, atPhase });
}

/** Constant learning rate. */
export const constantSchedule =
  (lr: number): Schedule =>
  () =>
    lr;

/** Cosine decay from `lr` to `minLr` over `decaySteps` updates, then `minLr` (Loshchilov & Hutter 2017, without restarts). */
export const cosineSchedule = (lr: number, decaySteps: number, minLr = 0): DecaySchedule =>
  decaySchedule(decaySteps, Math.PI, (phase) => minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.min(phase, Math.PI))));

/** Exponential decay: `lr · rate^(count / decaySteps)`. */
export const exponentialSchedule = (lr: number, decaySteps: number, rate: number): DecaySchedule => decaySchedule(decaySteps, 1, (phase) => lr * rate ** phase);

/** A learning-rate schedule's state: the update count and, on a resumed run with a new length, the span its decay spreads over. */
export type LrState = { count: number; span?: ScheduleSpan };

/**
 * Scales updates by `−schedule(count)`: gradient descent with a scheduled learning rate. For a
 * {@link DecaySchedule} the state keeps the span the phase follows, so that a run resumed under
 * another `decaySteps` continues its learning rate without a jump.
 */
export function scaleByLearningRate(schedule: Schedule): GradientTransformation<LrState> {
  return {
    name: 'scaleByLearningRate',
    fusable: { kind: 'learningRate', next: (state) => nextRate(schedule, state as LrState) },
    init: () => ({ count: 0 }),
    update: (g, s) => {
      const { lr, state } = nextRate(schedule, s);
      return { updates: mapGrads(g, (t) => tf.mul(t, -lr)), state };
    },
  };
}

/** The learning rate of the update after state `s`, and the state after that update. */
function nextRate(schedule: Schedule, s: LrState): { lr: number; state: LrState } {
  if (!isDecay(schedule)) return { lr: schedule(s.count), state: s.span ? { count: s.count + 1, span: s.span } : { count: s.count + 1 } };
  // The first update anchors the span; a state from another run length is re-anchored here.
  let span = s.span ?? { from: 0, phase: 0, steps: schedule.decaySteps };
  if (span.steps !== schedule.decaySteps) span = { from: s.count, phase: phaseAt(span, s.count, schedule.end), steps: schedule.decaySteps };
  return { lr: schedule.atPhase(phaseAt(span, s.count, schedule.end)), state: { count: s.count + 1, span } };
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

/**
 * Decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019;
 * optax's `add_decayed_weights`): adds `rate·p` to each parameter's update before the learning
 * rate scales it, so that with Adam the step is `p ← p − lr·(adam(g) + rate·p)`, PyTorch's AdamW.
 * Every parameter decays (as PyTorch's AdamW given all of them).
 */
export function addDecayedWeights(rate: number): GradientTransformation<null> {
  return {
    name: `addDecayedWeights(${rate})`,
    init: () => null,
    update: (g, s, params) => ({ updates: mapGrads(g, (t, k) => (params[k] ? tf.add(t, tf.mul(params[k]!, rate)) : tf.clone(t))), state: s }),
  };
}

/** Whether parameter `name` is a synaptic weight (`W`, `W2`, `W_rec`, `readout.W`; not a bias, norm or neuron parameter). */
export const isWeightName = (name: string): boolean => /^W(\d*|_rec)$/.test(name.split('.').at(-1)!);

/**
 * Keeps every synaptic weight ({@link isWeightName}) within `[-max, max]` after its update: the
 * update becomes `clip(p + u, −max, max) − p` (TSSL-BP's authors clamp every conv and linear weight
 * to ±4 after each step). Last in a chain: it sees the final update.
 */
export function clampWeights(max: number): GradientTransformation<null> {
  return {
    name: `clampWeights(${max})`,
    init: () => null,
    update: (g, s, params) => ({
      updates: mapGrads(g, (u, k) => (params[k] && isWeightName(k) ? tf.sub(tf.clipByValue(tf.add(params[k]!, u), -max, max), params[k]!) : tf.clone(u))),
      state: s,
    }),
  };
}

/** Clips every gradient entry to `[-max, max]`. */
export function clipByValue(max: number): GradientTransformation<null> {
  return { name: `clipByValue(${max})`, init: () => null, update: (g, s) => ({ updates: mapGrads(g, (t) => tf.clipByValue(t, -max, max)), state: s }) };
}

/** Adam's state: the update count and the first and second moments per parameter. */
export type AdamState = { count: number; mu: Record<string, Tensor>; nu: Record<string, Tensor> };

/**
 * Adam's moment estimates with bias correction (Kingma & Ba 2015), without the learning rate:
 * `spikeflow.adamMoments` per parameter (one pass over memory where the backend has it fast).
 */
export function scaleByAdam({ beta1 = 0.9, beta2 = 0.999, eps = 1e-8 } = {}): GradientTransformation<AdamState> {
  return {
    name: 'scaleByAdam',
    fusable: { kind: 'adam', beta1, beta2, eps },
    init: (params) => ({ count: 0, mu: zerosLikeParams(params), nu: zerosLikeParams(params) }),
    update(g, s, _params, context) {
      const count = s.count + 1;
      const moments = context?.kernels?.get(AdamMoments) ?? referenceKernels[AdamMoments];
      const mu: Record<string, Tensor> = {};
      const nu: Record<string, Tensor> = {};
      const updates = tf.tidy(() => {
        const out: NamedTensorMap = {};
        for (const k of Object.keys(s.mu)) {
          const r = moments(g[k] ?? tf.zerosLike(s.mu[k]!), s.mu[k]!, s.nu[k]!, { beta1, beta2, eps, count });
          mu[k] = tf.keep(r.mu);
          nu[k] = tf.keep(r.nu);
          out[k] = r.update;
        }
        return out;
      });
      return { updates, state: { count, mu, nu } };
    },
  };
}

/** Adamax's state: the update count, the first moments and the infinity norms per parameter. */
export type AdamaxState = { count: number; mu: Record<string, Tensor>; u: Record<string, Tensor> };

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

/** Momentum's state: the trace (velocity) per parameter. */
export type TraceState = { trace: Record<string, Tensor> };

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

/** The learning rate: a number (constant) or a schedule. */
export type LearningRate = number | Schedule;

const lrStep = (lr: LearningRate): GradientTransformation => (typeof lr === 'number' ? scale(-lr) : scaleByLearningRate(lr));

export interface ClipOptions {
  /** Clip gradients to this global L2 norm first. */
  clipNorm?: number;
  /** Clip every gradient entry to ±clipValue first. */
  clipValue?: number;
  /** Keep every synaptic weight within ±weightClamp after each update ({@link clampWeights}). */
  weightClamp?: number;
}

const withClip = (o: ClipOptions, ...ts: GradientTransformation[]): GradientTransformation =>
  chain(
    ...[o.clipNorm !== undefined ? clipByGlobalNorm(o.clipNorm) : null, o.clipValue !== undefined ? clipByValue(o.clipValue) : null].filter((t) => t !== null),
    ...ts,
    ...(o.weightClamp !== undefined ? [clampWeights(o.weightClamp)] : []),
  );

/** Adam with learning rate `lr` and optional gradient clipping. */
export const adam = ({
  lr = 1e-3,
  beta1 = 0.9,
  beta2 = 0.999,
  eps = 1e-8,
  ...clip
}: { lr?: LearningRate; beta1?: number; beta2?: number; eps?: number } & ClipOptions = {}): Optimizer =>
  withClip(clip, scaleByAdam({ beta1, beta2, eps }), lrStep(lr));

/**
 * AdamW: Adam with decoupled weight decay `weightDecay` (default 0.01, PyTorch's) on every
 * parameter ({@link addDecayedWeights}), and optional gradient clipping and weight clamp.
 */
export const adamw = ({
  lr = 1e-3,
  beta1 = 0.9,
  beta2 = 0.999,
  eps = 1e-8,
  weightDecay = 0.01,
  ...clip
}: { lr?: LearningRate; beta1?: number; beta2?: number; eps?: number; weightDecay?: number } & ClipOptions = {}): Optimizer =>
  withClip(clip, scaleByAdam({ beta1, beta2, eps }), ...(weightDecay > 0 ? [addDecayedWeights(weightDecay)] : []), lrStep(lr));

/** Adamax with learning rate `lr` (default 0.002) and optional gradient clipping. */
export const adamax = ({
  lr = 2e-3,
  beta1 = 0.9,
  beta2 = 0.999,
  eps = 1e-8,
  ...clip
}: { lr?: LearningRate; beta1?: number; beta2?: number; eps?: number } & ClipOptions = {}): Optimizer =>
  withClip(clip, scaleByAdamax({ beta1, beta2, eps }), lrStep(lr));

/** Stochastic gradient descent, optionally with (Nesterov) momentum and gradient clipping. */
export const sgd = ({
  lr = 1e-2,
  momentum = 0,
  nesterov = false,
  ...clip
}: { lr?: LearningRate; momentum?: number; nesterov?: boolean } & ClipOptions = {}): Optimizer =>
  withClip(clip, ...(momentum > 0 ? [trace({ momentum, nesterov })] : []), lrStep(lr));

const pos = (d: number | undefined, doc: string) => ({ type: 'number', min: 0, exclusiveMin: true, doc, ...(d !== undefined ? { default: d } : {}) }) as const;
const clipSchema = {
  clipNorm: pos(undefined, 'max global gradient norm'),
  clipValue: pos(undefined, 'max |gradient entry|'),
  weightClamp: pos(undefined, 'keep every synaptic weight (W, W2, W_rec, readout.W) within ±weightClamp after each update'),
  schedule: { type: 'string', default: 'constant', oneOf: ['constant', 'cosine', 'exponential'], doc: 'learning-rate schedule' },
  decaySteps: { type: 'number', integer: true, min: 1, doc: 'updates over which the rate decays (cosine: to minLr; default: the whole run)' },
  minLr: { type: 'number', default: 0, min: 0, doc: 'cosine: final learning rate' },
  decayRate: { type: 'number', default: 0.5, min: 0, exclusiveMin: true, max: 1, doc: 'exponential: factor per decaySteps updates' },
} as const;

/** The learning rate a JSON optimizer spec asks for. */
function scheduleOf(o: Record<string, unknown>, path: string): LearningRate {
  const lr = o['lr'] as number;
  if (o['schedule'] === 'constant' || o['schedule'] === undefined) return lr;
  const steps = o['decaySteps'];
  if (typeof steps !== 'number')
    throw configError(`${path}.decaySteps`, `is required with schedule '${String(o['schedule'])}' (updates over which the rate decays)`);
  return o['schedule'] === 'cosine' ? cosineSchedule(lr, steps, o['minLr'] as number) : exponentialSchedule(lr, steps, o['decayRate'] as number);
}

/** The options of an optimizer spec without the schedule keys, with `lr` resolved to a rate or schedule. */
function withSchedule(o: Record<string, unknown>, path: string): Record<string, unknown> {
  const { schedule: _s, decaySteps: _d, minLr: _m, decayRate: _r, ...rest } = o;
  return { ...rest, lr: scheduleOf(o, path) };
}
const betas = {
  beta1: { type: 'number', default: 0.9, min: 0, max: 0.999999 },
  beta2: { type: 'number', default: 0.999, min: 0, max: 0.999999999 },
  eps: pos(1e-8, 'denominator offset'),
} as const;

export interface OptimizerEntry {
  readonly name: string;
  readonly schema: Schema;
  readonly create: (o: Record<string, unknown>, path: string) => Optimizer;
}

export const builtinOptimizers: readonly OptimizerEntry[] = [
  { name: 'adam', schema: { lr: pos(1e-3, 'learning rate'), ...betas, ...clipSchema }, create: (o, path) => adam(withSchedule(o, path)) },
  {
    name: 'adamw',
    schema: {
      lr: pos(1e-3, 'learning rate'),
      ...betas,
      weightDecay: { type: 'number', default: 0.01, min: 0, doc: "decoupled weight decay (PyTorch AdamW's weight_decay)" },
      ...clipSchema,
    },
    create: (o, path) => adamw(withSchedule(o, path)),
  },
  { name: 'adamax', schema: { lr: pos(2e-3, 'learning rate'), ...betas, ...clipSchema }, create: (o, path) => adamax(withSchedule(o, path)) },
  {
    name: 'sgd',
    schema: {
      lr: pos(1e-2, 'learning rate'),
      momentum: { type: 'number', default: 0, min: 0, max: 1 },
      nesterov: { type: 'boolean', default: false },
      ...clipSchema,
    },
    create: (o, path) => sgd(withSchedule(o, path)),
  },
];

/** An optimizer named in JSON: `{ "name": "adam", "lr": 0.001, "clipNorm": 1 }`. */
export function optimizerFromSpec(spec: unknown, path = 'optimizer', entries: readonly OptimizerEntry[] = builtinOptimizers): Optimizer {
  const obj = expectObject(spec, path);
  const name = obj['name'];
  if (typeof name !== 'string') throw configError(`${path}.name`, `expected an optimizer name (${entries.map((e) => e.name).join(', ')})`);
  const entry = entries.find((e) => e.name === name);
  if (!entry)
    throw new SpikeflowError(
      'UNKNOWN_NAME',
      `${path}.name: unknown optimizer '${name}'; ${didYouMean(
        name,
        entries.map((e) => e.name),
      )}`,
      { path: `${path}.name` },
    );
  const { name: _n, ...rest } = obj;
  return entry.create(parseSchema(entry.schema, rest, path), path);
}

/**
 * FPTT's update in the dual form around one optimizer step (see `@spikeflow/rule-fptt`): per
 * parameter, the anchor W̄ and multipliers λ, and the pull's α and the anchor's β.
 */
export interface AnchoredStep {
  readonly wbar: NamedTensorMap;
  readonly lambda: NamedTensorMap;
  readonly alpha: number;
  readonly beta: number;
}

/** Adam's hyper-parameters and the learning rate's transformation, where an optimizer is exactly those two. */
interface AdamWithRate {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly rate: (state: TensorTree) => { lr: number; state: TensorTree };
}

/** `optimizer` as Adam's moments followed by a learning rate and nothing else (no clipping, decay or clamp), or undefined. */
function adamWithRate(optimizer: Optimizer): AdamWithRate | undefined {
  const f = optimizer.fusable;
  if (f?.kind !== 'chain' || f.parts.length !== 2) return undefined;
  const [adam, rate] = f.parts.map((t) => t.fusable);
  if (adam?.kind !== 'adam' || rate?.kind !== 'learningRate') return undefined;
  return { beta1: adam.beta1, beta2: adam.beta2, eps: adam.eps, rate: rate.next };
}

/** How an {@link OptimizerRunner} starts. */
export interface OptimizerRunnerOptions {
  /** A checkpointed state to go on from (the runner takes ownership of its tensors); default: the optimizer's `init`. */
  readonly state?: TensorTree | null;
  /** Updates already applied, with `state`. */
  readonly steps?: number;
  /** The run's kernels, for the optimizer's arithmetic (`scaleByAdam`'s `spikeflow.adamMoments`); default: core's references. */
  readonly kernels?: KernelTable;
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
  readonly #context: UpdateContext;

  constructor(optimizer: Optimizer, params: ParamMap, { state, steps = 0, kernels }: OptimizerRunnerOptions = {}) {
    this.optimizer = optimizer;
    this.params = params;
    this.#context = kernels ? { kernels } : {};
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
    this.#checkNames(grads);
    const old = this.#state;
    const next = tidy(() => {
      const { updates, state } = this.optimizer.update(grads, old, this.params, this.#context);
      for (const [k, u] of Object.entries(updates)) this.params[k]!.assign(tf.add(this.params[k]!, u));
      return keepTree(state);
    });
    disposeTree(old, next);
    this.#state = next;
    this.#steps++;
  }

  /**
   * One FPTT update in the dual form fused with the optimizer's step, where the optimizer is Adam
   * followed by a learning rate and nothing else: per parameter one `spikeflow.fpttAdamStep` (the
   * loss gradient pulled towards the anchor, Adam's step, the anchor moved at the new weights; one
   * pass over the parameter's memory where the backend has it fast), the same bits as pulling,
   * {@link apply} and moving the anchor one after another. Counts as one update. Returns the new
   * W̄ and λ (the caller's; `anchor`'s own are left alone), or `undefined` — nothing applied — for
   * any other optimizer: the rule then does those three steps itself.
   */
  applyAnchored(grads: NamedTensorMap, anchor: AnchoredStep): { wbar: NamedTensorMap; lambda: NamedTensorMap } | undefined {
    const fused = adamWithRate(this.optimizer);
    if (!fused) return undefined;
    this.#checkNames(grads);
    const [adamState, rateState] = this.#state as [AdamState, TensorTree];
    const step = this.#context.kernels?.get(FpttAdamStep) ?? referenceKernels[FpttAdamStep];
    const count = adamState.count + 1;
    const { lr, state: rateNext } = fused.rate(rateState);
    const mu: Record<string, Tensor> = {};
    const nu: Record<string, Tensor> = {};
    const wbar: NamedTensorMap = {};
    const lambda: NamedTensorMap = {};
    const p = { beta1: fused.beta1, beta2: fused.beta2, eps: fused.eps, count, lr, alpha: anchor.alpha, beta: anchor.beta };
    for (const [k, param] of Object.entries(this.params)) {
      const r = step(grads[k], param, anchor.wbar[k]!, anchor.lambda[k]!, adamState.mu[k]!, adamState.nu[k]!, p);
      param.assign(r.w);
      r.w.dispose();
      mu[k] = r.mu;
      nu[k] = r.nu;
      wbar[k] = r.wbar;
      lambda[k] = r.lambda;
    }
    const old = this.#state;
    this.#state = [{ count, mu, nu }, rateNext];
    disposeTree(old, this.#state);
    this.#steps++;
    return { wbar, lambda };
  }

  #checkNames(grads: NamedTensorMap): void {
    for (const k of Object.keys(grads)) {
      if (!(k in this.params)) throw new SpikeflowError('UNKNOWN_NAME', `optimizer: gradient for unknown parameter '${k}'`);
    }
  }

  dispose(): void {
    disposeTree(this.#state);
  }
}

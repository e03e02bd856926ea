import { hostMemoryBackend, tf, type NamedTensorMap, type Scalar, type Tensor, type Variable } from './tf.js';
import { SpikeflowError } from './errors.js';
import { DecayedSum, LeakyReadout, MaxPool, unstackSteps } from './kernels.js';
import { applyPools } from './conv.js';
import type { ResolvedModel } from './model.js';
import type { BoundLoss } from './losses.js';
import type { Network } from './network.js';
import { masked, type NetState, type NetworkTraces, type StepParams, type SynapseFn } from './step.js';
import { inputShape, stepsOf, type StepInput, type Steps } from './steps.js';
import { advanceWindow, runWindowValues, unroll } from './loops.js';
import { checkInputs } from './inference.js';
import { disposeTree, keepTree, tidy, treeLeaves } from './state.js';
import type { RuleContext, RuleReport, SequenceBatch } from './rule.js';

/**
 * Core's window engine: the one loop every windowed rule runs on. A rule declares what happens per
 * window — how long a window is, what scores it, where the gradient is cut, which synapse hook
 * runs, when updates apply — in a {@link WindowPlan}, and {@link trainWindows} runs the sequence:
 * window by window from the state the previous window left (carried, detached), each window on a
 * gradient tape of its own, through the backend's fused kernels where the network runs fused and
 * no synapse hook is set, else step by step. Full BPTT is one window; truncated BPTT, FPTT's
 * chunks and local BPTT's windows are k steps; OTTT and SLTT are windows of one step.
 */

/** Where a window lies in its sequence. */
export interface WindowInfo {
  /** The window's number in the sequence, from 0. */
  readonly index: number;
  /** The number of windows in the sequence. */
  readonly count: number;
  /** Its first step, and one past its last. */
  readonly from: number;
  readonly to: number;
  /** The sequence's length T. */
  readonly steps: number;
}

/** What layer `l` (or the readout) read over a window run step by step: `source(l − 1)` (−1: the inputs), pooled and masked as the step did. */
function windowFeed(model: ResolvedModel, p: StepParams, l: number | 'readout', source: (layer: number) => Tensor): Tensor {
  if (l === 'readout' && model.readout.from === 'membrane') {
    throw new SpikeflowError(
      'INCOMPATIBLE',
      "WindowOutputs.feed('readout'): this readout reads the last layer's membrane, which a window run step by step does not keep",
    );
  }
  const x = source(l === 'readout' ? model.layers.length - 1 : l - 1);
  const pools = l === 'readout' ? model.readoutPools : model.layers[l]!.pools;
  const mask = l === 'readout' ? p.dropout?.readout : p.dropout?.layers[l];
  const [k, B] = x.shape as [number, number];
  return masked(pools.length ? tf.reshape(applyPools(tf.reshape(x, [k * B, -1]), pools, p.kernels[MaxPool]), [k, B, -1]) : x, mask);
}

/** What an objective sees of a window: its outputs, on the window's tape when it runs backward. */
export interface WindowOutputs {
  /** The run's loss, bound to the batch's targets. */
  readonly loss: BoundLoss;
  /** Whether the window ran through the fused kernels. */
  readonly fused: boolean;
  /** Readout y_t of each step of the window, `[B, outputs]` each. */
  readouts(): readonly Tensor[];
  /** The same, stacked: `[k, B, outputs]`. */
  stacked(): Tensor;
  /** The readout of the window's last step, `[B, outputs]` (one slice where the window ran fused). */
  last(): Tensor;
  /** Spikes of layer `layer` at every step of the window, `[k, B, size]`. */
  spikes(layer: number): Tensor;
  /** The window's inputs, `[k, B, inputs]` (values: no gradient flows into them). */
  inputs(): Tensor;
  /**
   * What layer `layer`'s synapse read at every step of the window — the previous layer's spikes (the
   * inputs for layer 0) after the layer's pooling and dropout — or, for `'readout'`, what the
   * readout read (the last layer's spikes after its pooling and dropout), `[k, B, features]`.
   */
  feed(layer: number | 'readout'): Tensor;
  /**
   * A presynaptic trace after the window (OTTT's): `â ← λ·â + x_j` over the steps of `x [k, B, n]`
   * (the window's inputs or a layer's spikes) from `before` (zero where absent), `[B, n]`, values
   * only, through the backend's `spikeflow.decayedSum`.
   */
  decayedSum(x: Tensor, decay: number, before?: Tensor): Tensor;
  /** The rule's extra trainable tensors ({@link WindowPlan.extra}) as this window's tape sees them. */
  readonly extra: Readonly<Record<string, Tensor>>;
  /**
   * A leaky integrator over the window, `y_t = κ·y_{t−1} + x_t·W + b` from `y0`, `[k, B, O]`, through
   * the backend's fast kernel where it has one: what auxiliary readouts (local rules' heads) are made of.
   * Under a plan with `temporal: false`, y_{t−1} is a constant of step t in its backward pass too.
   */
  leaky(x: Tensor, w: Tensor, b: Tensor | undefined, y0: Tensor, kappa: number): Tensor;
}

/**
 * A window's score: `objective` is differentiated (when the window runs backward); `report` is
 * what the window adds to the reported loss (default: `objective`; `null`: nothing).
 */
export interface WindowScore {
  readonly objective: Scalar;
  readonly report?: Scalar | null;
}

/** A rule's own window objective; `null` for a window without one. */
export type WindowObjective = (out: WindowOutputs, w: WindowInfo) => WindowScore | null;

/** What a rule declares about its windows. */
export interface WindowPlan {
  /** Steps per window (the last one may be shorter); `Infinity` (or ≥ T): the whole sequence is one window. */
  readonly window: number;
  /**
   * `window`: an update after every window that runs backward; `sequence`: the windows' gradients
   * summed, one update after the last window (even without any gradient: an update of nothing).
   */
  readonly update: 'window' | 'sequence';
  /**
   * What scores a window: `steps`, the sum of the loss's per-step terms of its steps (windows
   * without a term run forward only); `sequence`, the whole sequence's loss — one window: its tape;
   * several: each window's exact share of the truncated gradient (per-step terms where the loss
   * decomposes over time, else a tape-free pass for ∂L/∂y_t and each window re-run seeded with
   * it); or a function of the window's outputs.
   */
  readonly objective: 'steps' | 'sequence' | WindowObjective;
  /** Layers whose feed-forward input is cut from the gradient (local rules' blocks); the fused path keeps working. */
  readonly cut?: readonly number[];
  /**
   * `false`: no gradient flows along time inside a window — the state entering each step is a
   * constant of that step (SLTT's and OTTT's spatial gradients), so a window of k steps gives the
   * sum of k one-step windows' gradients (in one fused pass where the network runs fused).
   */
  readonly temporal?: false;
  /** The synapse hook of a window (OTTT's traced products); a window with one runs step by step. */
  readonly synapse?: (w: WindowInfo) => SynapseFn | undefined;
  /**
   * The presynaptic traces before a window (OTTT's, carried by the rule): the fused kernels' weight
   * gradients take them (`PrepareOptions.traces`). Only on a network that runs fused.
   */
  readonly traces?: (w: WindowInfo) => NetworkTraces | undefined;
  /**
   * Whether a window runs backward (default: yes; with the `steps` objective only windows with a
   * term do). A window that does not still runs forward, is observed and scored for the report.
   */
  readonly backward?: (w: WindowInfo, loss: BoundLoss) => boolean;
  /**
   * Trainable tensors of the rule itself (local rules' auxiliary heads), read before each window:
   * the tape differentiates them with the network's parameters, and their gradients come in the
   * same map under these keys (so the rule needs {@link apply}).
   */
  readonly extra?: () => Readonly<Record<string, Tensor>>;
  /** Transforms a window's gradients before they are applied or summed; returns a new map and frees what it replaces. */
  readonly grads?: (grads: NamedTensorMap, w: WindowInfo) => NamedTensorMap;
  /**
   * Applies an update in place of `ctx.apply(grads)` (the engine frees `grads` afterwards; the hook
   * may free them sooner, once spent, to keep the peak low).
   * `again()` re-runs the window from the state it started from, at the weights as they are now,
   * and returns its gradients (the caller's to free); the state it ends with is carried instead
   * (FPTT's textbook form). `w` is the window updated after, or the last one for `sequence` updates.
   */
  readonly apply?: (grads: NamedTensorMap, w: WindowInfo, again: () => NamedTensorMap) => void;
  /**
   * Called after every window has run, forward only or on its tape — before its gradients are
   * transformed ({@link grads}) and applied (rules advance their own traces here).
   */
  readonly afterWindow?: (w: WindowInfo) => void;
}

/**
 * The sum of the per-step terms of a loss that decomposes over time for the steps `from, from + 1, …`
 * of `ys`: a stacked `[k, B, O]` readout (a fused window's) in a few ops where the loss has the
 * window form, else step by step; `null` where none of the steps has a term.
 */
export function stepTerms(loss: BoundLoss, ys: Tensor | readonly Tensor[], from: number): Scalar | null {
  if (!loss.step) throw new SpikeflowError('PLUGIN_INVALID', 'stepTerms: the loss does not decompose over time (it has no per-step terms)');
  if (!Array.isArray(ys) && loss.window) return loss.window(ys as Tensor, from);
  const steps = Array.isArray(ys) ? (ys as readonly Tensor[]) : unstackSteps(ys as Tensor);
  const terms: Scalar[] = [];
  steps.forEach((y, i) => {
    const term = loss.step!(y, from + i);
    if (term) terms.push(term);
  });
  if (terms.length === 0) return null;
  return terms.length === 1 ? terms[0]! : (tf.addN(terms) as Scalar);
}

/** Whether any step of `[from, to)` has a term of `loss`. */
export function windowHasTerm(loss: BoundLoss, from: number, to: number): boolean {
  for (let t = from; t < to; t++) if (loss.hasTerm?.(t) ?? true) return true;
  return false;
}

/**
 * Runs one sequence of `batch` by `plan`: windows in order, updates through `ctx.apply` (or the
 * plan's `apply`), every step's readout to `ctx.observe` once. The reported loss is the sum of the
 * windows' reports, each at the weights its window saw. Memory: one window's activations (and, for
 * a whole-sequence loss cut into windows, the readout of every step).
 */
export function trainWindows(batch: SequenceBatch, ctx: RuleContext, plan: WindowPlan): RuleReport {
  const net = ctx.network;
  checkInputs(net, batch.inputs);
  if (!(plan.window >= 1)) throw new SpikeflowError('PLUGIN_INVALID', `window plan: the window must be >= 1 step, got ${plan.window}`);
  const [T, B] = inputShape(batch.inputs) as [number, number];
  const bound = ctx.loss.bind(batch.targets, { steps: T, batch: B, outputs: net.outputs });
  try {
    const run = new SequenceRun(net, bound, batch.inputs, ctx, plan);
    const k = Math.min(plan.window, T);
    if (plan.objective === 'sequence' && k < T && !bound.step) {
      if (plan.update !== 'sequence' || plan.extra || plan.synapse) {
        throw new SpikeflowError(
          'PLUGIN_INVALID',
          'window plan: a whole-sequence loss over several windows (two passes) needs a sequence update, without extra tensors or a synapse hook',
        );
      }
      return run.twoPass(k);
    }
    return run.windows(k);
  } finally {
    bound.dispose();
  }
}

/** One sequence under a plan. */
class SequenceRun {
  readonly #xs: Steps;
  readonly #T: number;
  readonly #B: number;

  constructor(
    readonly net: Network,
    readonly bound: BoundLoss,
    readonly inputs: StepInput,
    readonly ctx: RuleContext,
    readonly plan: WindowPlan,
  ) {
    this.#xs = stepsOf(inputs);
    [this.#T, this.#B] = inputShape(inputs) as [number, number];
  }

  windows(k: number): RuleReport {
    const T = this.#T;
    const count = Math.ceil(T / k);
    const { plan, ctx } = this;
    let state: NetState = this.net.init(this.#B);
    let acc: NamedTensorMap | undefined;
    const loss = new LossSum();
    let updates = 0;
    let last: WindowInfo | undefined;
    try {
      for (let index = 0; index < count; index++) {
        const from = index * k;
        const w: WindowInfo = { index, count, from, to: Math.min(from + k, T), steps: T };
        last = w;
        const synapse = plan.synapse?.(w);
        // A whole-sequence loss cut into windows decomposes over time here (see trainWindows).
        const steps = plan.objective === 'steps' || (plan.objective === 'sequence' && k < T);
        const hasTerm = !steps || windowHasTerm(this.bound, w.from, w.to);
        const backward = hasTerm && (plan.backward?.(w, this.bound) ?? true);
        let next: NetState;
        if (!hasTerm && !synapse && !plan.extra && typeof plan.objective !== 'function') {
          // Nothing to score: forward without a tape, a step (or a fused window) at a time.
          next = advanceWindow(this.net, state, this.#xs, w.from, w.to, (t, y) => {
            ctx.observe?.(t, y);
          });
          plan.afterWindow?.(w);
        } else if (!backward) {
          const r = tidy(() => {
            const out = this.#run(state, w, synapse, true, plan.extra?.() ?? {});
            const score = this.#score(out.outputs, w);
            const report = score ? (score.report === undefined ? score.objective : score.report) : null;
            return { end: out.end, report: report ? tf.keep(report) : null };
          });
          loss.add(r.report);
          next = r.end;
          plan.afterWindow?.(w);
        } else {
          const first = this.#tape(state, w, synapse, true);
          loss.add(first.report);
          next = first.end;
          plan.afterWindow?.(w);
          const grads = plan.grads ? plan.grads(first.grads, w) : first.grads;
          if (plan.update === 'window') {
            const start = state;
            const again = () => {
              const r = this.#tape(start, w, synapse, false);
              r.report?.dispose();
              disposeTree(next, r.end);
              next = r.end;
              return r.grads;
            };
            this.#apply(grads, w, again);
            updates++;
          } else {
            acc = accumulateGrads(acc, grads);
          }
        }
        disposeTree(state, next);
        state = next;
      }
      if (plan.update === 'sequence') {
        const g = acc ?? {};
        acc = undefined;
        this.#apply(g, last!, () => {
          throw new SpikeflowError('PLUGIN_INVALID', 'window plan: again() re-runs one window, so it needs an update per window');
        });
        updates++;
      }
      return { loss: loss.read(ctx.asyncReads), updates };
    } finally {
      loss.dispose();
      disposeTree(state);
      if (acc) disposeTree(acc);
    }
  }

  /**
   * Truncated gradient of a whole-sequence loss that does not decompose over time, in two passes
   * over the windows. The first, tape-free, keeps only every step's readout y_t; ∂L/∂y_t comes from
   * the loss alone (the readouts are freed then); the second runs the windows again in order from
   * the initial state, each on the tape and seeded with Σ_t ⟨y_t, ∂L/∂y_t⟩, whose parameter
   * gradient is exactly that window's share. The second pass carries the state each window's tape
   * ends with into the next (the first pass's, up to the round-off of the kernels' tape-free and
   * taped paths where the network runs fused) and asks the inputs for each window again: memory is
   * O(T·B·O) for the readouts and their gradients, plus one window — neither the windows' start
   * states nor the inputs are kept.
   */
  twoPass(k: number): RuleReport {
    const T = this.#T;
    const { net } = this;
    const count = Math.ceil(T / k);
    const dy = net.fused && this.bound.stacked ? this.#readoutGradsStacked(k) : this.#readoutGradsByStep(k);
    const loss = new LossSum();
    loss.add(dy.loss);
    let acc: NamedTensorMap | undefined;
    let start: NetState = net.init(this.#B);
    try {
      for (let w = 0; w < count; w++) {
        const from = w * k;
        const to = Math.min(from + k, T);
        const s = start;
        let end: NetState | undefined;
        const { value: seed, grads } = this.#variableGrads(() => {
          const p = net.prepare(this.#prepareOptions(undefined));
          if (p.fused) {
            const o = net.runWindow(p, s, this.#xs.window(from, to));
            end = keepTree(o.state);
            return tf.sum(tf.mul(o.readout, dy.window(from, to))) as Scalar;
          }
          const terms: Scalar[] = [];
          end = keepTree(unroll(net, p, s, this.#xs, from, to, (t, out) => terms.push(tf.sum(tf.mul(out.readout, dy.step(t))))));
          return tf.addN(terms) as Scalar;
        }, {});
        seed.dispose();
        acc = accumulateGrads(acc, grads);
        dy.release(to);
        if (w + 1 === count) {
          if (end) disposeTree(end, s);
          break;
        }
        // The state the window's tape ends with carries on (fused, the kernels' values may differ from the tape-free pass's in
        // the last bits: the same state up to round-off).
        const next = end!;
        disposeTree(s, next);
        start = next;
      }
    } catch (e) {
      if (acc) disposeTree(acc);
      loss.dispose();
      throw e;
    } finally {
      disposeTree(start);
      dy.dispose();
    }
    const g = acc ?? {};
    this.#apply(g, { index: count - 1, count, from: (count - 1) * k, to: T, steps: T }, () => {
      throw new SpikeflowError('PLUGIN_INVALID', 'window plan: again() needs an update per window');
    });
    return { loss: loss.read(this.ctx.asyncReads), updates: 1 };
  }

  /**
   * The two-pass rule's first pass where the network runs fused and the loss reads a stacked
   * readout: the windows' readouts `[k, B, O]` joined into `[T, B, O]`, and ∂L/∂y in one tensor of
   * that shape (a few ops, whatever T; no tensor per step).
   */
  #readoutGradsStacked(k: number): ReadoutGrads {
    const { net, ctx } = this;
    const T = this.#T;
    const parts: Tensor[] = [];
    let state: NetState | undefined = net.init(this.#B);
    let dY: Float32Array | undefined;
    // On a GPU backend ∂L/∂y stays on the device, sliced per window.
    let dYDevice: Tensor | undefined;
    let loss: Scalar;
    try {
      for (let from = 0; from < T; from += k) {
        const out: { readout: Tensor; state: NetState } = runWindowValues(net, state, this.#xs, from, Math.min(from + k, T));
        parts.push(out.readout);
        disposeTree(state, out.state);
        state = out.state;
        if (ctx.observe) observeSteps(ctx.observe, out.readout, from);
      }
      disposeTree(state);
      state = undefined;
      const y = parts.length === 1 ? parts[0]! : tf.concat(parts, 0);
      if (y !== parts[0]) disposeTree(parts);
      parts.length = 0;
      try {
        const r = tf.valueAndGrad(this.bound.stacked!)(y);
        loss = r.value as Scalar;
        // Its values, read once: a backend may copy a whole tensor to slice it (wasm does), and a window is sliced T/k times.
        if (hostMemoryBackend()) {
          dY = r.grad.dataSync() as Float32Array;
          r.grad.dispose();
        } else {
          dYDevice = r.grad;
        }
      } finally {
        y.dispose();
      }
    } finally {
      disposeTree(parts);
      if (state) disposeTree(state);
    }
    const step = [this.#B, this.net.outputs];
    const per = this.#B * this.net.outputs;
    if (dYDevice) {
      const g = dYDevice;
      const window = (from: number, to: number) => tf.slice(g, [from, 0, 0], [to - from, ...step]);
      return {
        loss,
        window,
        step: (t) => tf.tidy(() => tf.reshape(window(t, t + 1), step)),
        release: () => {},
        dispose: () => g.dispose(),
      };
    }
    const values = dY!;
    return {
      loss,
      window: (from, to) => tf.tensor(values.subarray(from * per, to * per), [to - from, ...step], 'float32'),
      step: (t) => tf.tensor(values.subarray(t * per, (t + 1) * per), step, 'float32'),
      release: () => {},
      dispose: () => {},
    };
  }

  /**
   * The two-pass rule's first pass step by step (or where the loss reads the readout as a list):
   * every step's readout y_t kept, then ∂L/∂y_t for each, the readouts freed.
   */
  #readoutGradsByStep(k: number): ReadoutGrads {
    const { net, ctx, bound } = this;
    const T = this.#T;
    const ys: Tensor[] = [];
    // A state may hold the last readout itself (step by step, the state's readout is y_t): kept ones are not the state's to free.
    const kept = new Set<Tensor>();
    const free = (old: NetState, next?: NetState) => {
      const live = new Set(treeLeaves(next));
      for (const t of new Set(treeLeaves(old))) if (!live.has(t) && !kept.has(t) && !t.isDisposed) t.dispose();
    };
    let state: NetState = net.init(this.#B);
    try {
      for (let from = 0; from < T; from += k) {
        const next = advanceWindow(net, state, this.#xs, from, Math.min(from + k, T), (t, y) => {
          ctx.observe?.(t, y);
          ys.push(y);
          kept.add(y);
          return true;
        });
        free(state, next);
        state = next;
      }
    } catch (e) {
      disposeTree(ys);
      throw e;
    } finally {
      free(state);
    }
    let dy: Tensor[];
    let loss: Scalar;
    try {
      const r = tf.valueAndGrads((...y: Tensor[]) => bound.sequence(y))(ys);
      loss = r.value as Scalar;
      dy = r.grads;
    } finally {
      disposeTree(ys);
    }
    // Each ∂L/∂y_t is freed once the last window that reads it has run (a loss may hand out one tensor for several steps).
    const lastUse = new Map<Tensor, number>();
    dy.forEach((g, t) => lastUse.set(g, t));
    let released = 0;
    return {
      loss,
      window: (from, to) => tf.stack(dy.slice(from, to)),
      step: (t) => dy[t]!,
      release: (to) => {
        for (const g of dy.slice(released, to)) if (lastUse.get(g)! < to && !g.isDisposed) g.dispose();
        released = to;
      },
      dispose: () => disposeTree(dy),
    };
  }

  #prepareOptions(synapse: SynapseFn | undefined, w?: WindowInfo) {
    const traces = w && this.plan.traces?.(w);
    return {
      ...(synapse ? { synapse } : {}),
      ...(traces ? { traces } : {}),
      ...(this.plan.cut?.length ? { cut: this.plan.cut } : {}),
      ...(this.plan.temporal === false ? { temporal: false as const } : {}),
    };
  }

  /**
   * Window `w` from `start` on a tape: the gradient of its objective with respect to the network's
   * parameters and the plan's extra tensors, its report and the state it ends with (kept).
   */
  #tape(start: NetState, w: WindowInfo, synapse: SynapseFn | undefined, observe: boolean): { grads: NamedTensorMap; report: Scalar | null; end: NetState } {
    let end: NetState | undefined;
    let report: Scalar | null = null;
    const extra = this.plan.extra?.() ?? {};
    const { value, grads } = this.#variableGrads((vars) => {
      const out = this.#run(start, w, synapse, observe, vars);
      const score = this.#score(out.outputs, w);
      if (!score) throw new SpikeflowError('PLUGIN_INVALID', `window plan: window [${w.from}, ${w.to}) runs backward but its objective gave no score`);
      end = keepTree(out.end);
      const r = score.report === undefined ? score.objective : score.report;
      report = r ? tf.keep(r === score.objective ? tf.clone(r) : r) : null;
      return score.objective;
    }, extra);
    value.dispose();
    return { grads, report, end: end! };
  }

  /** `tf.variableGrads` over the network's parameters and `extra` (as variables of this tape), keyed by name. */
  #variableGrads(f: (vars: Readonly<Record<string, Tensor>>) => Scalar, extra: Readonly<Record<string, Tensor>>): { value: Scalar; grads: NamedTensorMap } {
    const own = Object.entries(extra).map(([k, v]) => [k, tf.variable(v, true)] as [string, Variable]);
    try {
      const vars = [...Object.entries(this.net.params), ...own];
      const names = new Map(vars.map(([k, v]) => [v.name, k]));
      const { value, grads } = tf.variableGrads(
        () => f(Object.fromEntries(own)),
        vars.map(([, v]) => v),
      );
      const out: NamedTensorMap = {};
      for (const [vn, g] of Object.entries(grads)) out[names.get(vn)!] = g;
      return { value, grads: out };
    } finally {
      for (const [, v] of own) v.dispose();
    }
  }

  /** Window `w` from `start` in the caller's scope: its outputs and end state. Observes each step when asked. */
  #run(
    start: NetState,
    w: WindowInfo,
    synapse: SynapseFn | undefined,
    observe: boolean,
    extra: Readonly<Record<string, Tensor>>,
  ): { outputs: WindowOutputs; end: NetState } {
    const { net, ctx, bound } = this;
    const p: StepParams = net.prepare(this.#prepareOptions(synapse, w));
    const leaky = (x: Tensor, wt: Tensor, b: Tensor | undefined, y0: Tensor, kappa: number) =>
      p.kernels[LeakyReadout](x, wt, b, y0, kappa, p.temporal ? {} : { temporal: false });
    const decayedSum = p.kernels[DecayedSum];
    if (p.fused) {
      const whole = w.from === 0 && w.to === this.#T;
      // A whole-sequence float32 tensor runs as it is; else the steps make the window (the whole sequence, for one window).
      const x = whole && this.inputs instanceof tf.Tensor && this.inputs.dtype === 'float32' ? this.inputs : this.#xs.window(w.from, w.to);
      const o = net.runWindow(p, start, x);
      let readouts: Tensor[] | undefined;
      if (observe && ctx.observe) observeSteps(ctx.observe, o.readout, w.from);
      const outputs: WindowOutputs = {
        loss: bound,
        fused: true,
        readouts: () => (readouts ??= unstackSteps(o.readout)),
        stacked: () => o.readout,
        last: () => (readouts ? readouts.at(-1)! : tf.reshape(tf.slice(o.readout, [o.readout.shape[0]! - 1, 0, 0], [1, -1, -1]), o.readout.shape.slice(1))),
        spikes: (l) => o.spikes[l]!,
        inputs: () => x,
        feed: (l) => (l === 'readout' ? o.readoutFeed : o.feeds[l]!),
        decayedSum,
        extra,
        leaky,
      };
      return { outputs, end: o.state };
    }
    const ys: Tensor[] = [];
    const spikes: Tensor[][] = net.model.layers.map(() => []);
    const end = unroll(net, p, start, this.#xs, w.from, w.to, (t, out) => {
      ys.push(out.readout);
      out.spikes.forEach((s, l) => spikes[l]!.push(s));
      if (observe) ctx.observe?.(t, out.readout);
    });
    let stacked: Tensor | undefined;
    const stackedSpikes: (Tensor | undefined)[] = [];
    let inputs: Tensor | undefined;
    const outputs: WindowOutputs = {
      loss: bound,
      fused: false,
      readouts: () => ys,
      stacked: () => (stacked ??= tf.stack(ys)),
      last: () => ys.at(-1)!,
      spikes: (l) => (stackedSpikes[l] ??= tf.stack(spikes[l]!)),
      inputs: () => (inputs ??= this.#xs.window(w.from, w.to)),
      feed: (l) => windowFeed(net.model, p, l, (i) => (i < 0 ? outputs.inputs() : outputs.spikes(i))),
      decayedSum,
      extra,
      leaky,
    };
    return { outputs, end };
  }

  #score(out: WindowOutputs, w: WindowInfo): WindowScore | null {
    const objective = this.plan.objective;
    if (typeof objective === 'function') return objective(out, w);
    const bound = this.bound;
    if (objective === 'sequence' && w.from === 0 && w.to === this.#T) {
      return { objective: out.fused && bound.stacked ? bound.stacked(out.stacked()) : bound.sequence(out.readouts()) };
    }
    // Per-step terms (a whole-sequence loss cut into windows decomposes here: see trainWindows).
    const term = stepTerms(bound, out.fused ? out.stacked() : out.readouts(), w.from);
    return term ? { objective: term } : null;
  }

  #apply(grads: NamedTensorMap, w: WindowInfo, again: () => NamedTensorMap): void {
    try {
      if (this.plan.apply) this.plan.apply(grads, w, again);
      else this.ctx.apply(grads);
    } finally {
      disposeTree(grads);
    }
  }
}

/** Hands every step of a stacked readout `[k, B, O]` to `observe`, outside the tape's arithmetic: one small tensor at a time. */
function observeSteps(observe: (t: number, y: Tensor) => void, readout: Tensor, from: number): void {
  const ys = stepsOf(readout);
  for (let i = 0; i < ys.length; i++) {
    const y = ys.at(i);
    try {
      observe(from + i, y);
    } finally {
      y.dispose();
    }
  }
}

/** ∂L/∂y_t of a whole-sequence loss, from the two-pass rule's first pass, and that pass's loss. */
interface ReadoutGrads {
  /** The sequence's loss (the caller's to free). */
  readonly loss: Scalar;
  /** ∂L/∂y for steps `[from, to)`, `[to − from, B, O]`, owned by the enclosing scope. */
  window(from: number, to: number): Tensor;
  /** ∂L/∂y_t, `[B, O]` (not the caller's to free outside a scope). */
  step(t: number): Tensor;
  /** The windows up to step `to` have run: what only they read may go. */
  release(to: number): void;
  dispose(): void;
}

/**
 * The windows' reported losses, summed on the device and read once when the sequence is done
 * (a read waits for the device: one per window would stall a GPU that many times): at once, or —
 * where the context asks for asynchronous reads — as a promise (a backend that cannot read
 * synchronously: WebGPU in Node). What a rule reports as `RuleReport.loss`:
 * `loss.read(ctx.asyncReads)`.
 */
export class LossSum {
  #sum: Scalar | null = null;

  /** Adds `x` (and takes it: it is freed). */
  add(x: Scalar | null): void {
    if (!x) return;
    if (!this.#sum) {
      this.#sum = x;
      return;
    }
    const s = tf.add(this.#sum, x) as Scalar;
    this.#sum.dispose();
    x.dispose();
    this.#sum = s;
  }

  /** The sum (0 with no term); the tensor is freed once read. */
  read(async = false): number | Promise<number> {
    const s = this.#sum;
    this.#sum = null;
    if (!s) return async ? Promise.resolve(0) : 0;
    if (!async) {
      const v = s.dataSync()[0]!;
      s.dispose();
      return v;
    }
    // Kept from any enclosing scope until the read is done.
    tf.keep(s);
    return s.data().then(
      (v) => {
        s.dispose();
        return v[0]!;
      },
      (e: unknown) => {
        s.dispose();
        throw e;
      },
    );
  }

  dispose(): void {
    this.#sum?.dispose();
    this.#sum = null;
  }
}

/**
 * Adds `grads` into an accumulator of gradients keyed by parameter name and returns it: the
 * first call returns `grads` itself; later calls sum per name and free both summands. Rules that
 * sum several windows' gradients before one update use it.
 */
export function accumulateGrads(acc: NamedTensorMap | undefined, grads: NamedTensorMap): NamedTensorMap {
  if (!acc) return grads;
  const out: NamedTensorMap = { ...acc };
  for (const [name, g] of Object.entries(grads)) {
    const prev = acc[name];
    out[name] = prev ? tf.add(prev, g) : g;
    if (prev) {
      prev.dispose();
      g.dispose();
    }
  }
  return out;
}

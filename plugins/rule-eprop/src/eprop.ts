import {
  EventDense,
  IntegrateFireEligibility,
  LeakyReadout,
  LossSum,
  SpikeflowError,
  accumulateGrads,
  stepTerms,
  checkInputs,
  defineRule,
  disposeTree,
  inputShape,
  layerParam,
  parseSchema,
  readoutParam,
  referenceKernels,
  stepsOf,
  tf,
  tidy,
  type BoundLoss,
  type EligibilitySpec,
  type EligibilityTraces,
  type JacobianEntry,
  type KernelSignatures,
  type LearningRule,
  type LocalJacobians,
  type NamedTensorMap,
  type NetState,
  type Network,
  type RuleContext,
  type Scalar,
  type SchemaInput,
  type SchemaValues,
  type SequenceBatch,
  type StepParams,
  type Steps,
  type Tensor,
} from '@spikeflow/core';

/**
 * The rule's options (`{ "name": "eprop", ... }` in a config), the one definition of their types,
 * ranges and defaults:
 *
 * - `feedback`: `symmetric` (default), B = W_outᵀ, the readout's own weights; `random`, a fixed
 *   random B (uniform in ±1/√H, drawn from `seed`; random-feedback e-prop); `adaptive`, a random B
 *   that receives every update W_out receives, and weight decay (adaptive e-prop).
 * - `window`: steps per window (default 32; 64 in `accumulate` mode where the fused kernel runs,
 *   which does its pass over the traces once per window). The eligibility traces are carried
 *   across windows; inside a window their contribution is summed in one pass. Results do not
 *   depend on it in `accumulate` mode (up to float round-off); memory grows with it, not with T.
 * - `mode`: `accumulate` (default) or `online` (an update after every window: the weights change mid-sequence).
 * - `feedbackDecay`: `adaptive` feedback, B ← (1 − d)·B + ΔW_outᵀ after every update (default 0.01; below 1).
 * - `seed` of the random feedback matrix; `rateReg`, c_reg, the weight of the firing-rate
 *   regulariser (c_reg/2)·Σ_j (f_j − f_target)² (0: off); `rateTarget`, f_target, the target
 *   firing probability per step (0.01: 10 Hz at 1 ms steps).
 */
export const epropSchema = {
  feedback: {
    type: 'string',
    default: 'symmetric',
    oneOf: ['symmetric', 'random', 'adaptive'],
    doc: 'learning-signal weights B: W_outᵀ, fixed random, or random and updated like W_out',
  },
  window: {
    type: 'number',
    integer: true,
    min: 1,
    doc: 'steps per window: traces are carried across windows (memory grows with it, not with T); default 32, and 64 in accumulate mode where the fused kernel runs',
  },
  mode: {
    type: 'string',
    default: 'accumulate',
    oneOf: ['accumulate', 'online'],
    doc: 'accumulate: one update per sequence; online: one update after every window',
  },
  feedbackDecay: { type: 'number', default: 0.01, min: 0, max: 1, doc: 'adaptive feedback: B ← (1 − d)·B + ΔW_out after every update' },
  seed: { type: 'number', integer: true, default: 0, doc: 'seed of the random feedback matrix' },
  rateReg: { type: 'number', default: 0, min: 0, doc: 'c_reg, weight of the firing-rate regulariser (0: off)' },
  rateTarget: { type: 'number', default: 0.01, min: 0, max: 1, doc: 'target firing probability per step' },
} as const;

export type EpropOptions = SchemaInput<typeof epropSchema>;

/** Where the learning signal L_j^t = Σ_k B_jk·(∂E_t/∂y_k^t) takes its weights B from. */
export type Feedback = SchemaValues<typeof epropSchema>['feedback'];

/** `accumulate`: one update per sequence; `online`: one update after every window of steps. */
export type EpropMode = SchemaValues<typeof epropSchema>['mode'];

/** What e-prop keeps between sequences (checkpointed): the feedback matrix and the rate estimate. */
export interface EpropState {
  readonly [key: string]: Tensor | undefined;
  /** B, `[hidden, outputs]` (random and adaptive feedback). */
  readonly feedback?: Tensor;
  /** Each neuron's firing probability per step over the last sequence, `[hidden]` (with `rateReg`). */
  readonly rate?: Tensor;
}

/**
 * e-prop — eligibility propagation (Bellec, Scherr, Subramoney, Hajek, Salaj, Legenstein & Maass,
 * "A solution to the learning dilemma for recurrent networks of spiking neurons", Nature
 * Communications 11:3625, 2020), for a network of one hidden layer (recurrent or not) and a leaky
 * readout of its spikes. In our convention (x_t enters v_t; the previous step's spikes s_{t−1}
 * enter through W_rec, the reset and the adaptation):
 *
 *     ε_t = (∂h_t/∂h_{t−1})·ε_{t−1} + (∂h_t/∂I_t)·pre_t     eligibility vector, per synapse
 *                                                          (pre_t = x_t, s_{t−1} or 1 for the bias)
 *     e_t = ∂s_t/∂W, the spike component of ε_t            eligibility trace
 *     F_κ(e)_t = κ·F_κ(e)_{t−1} + e_t                      filtered by the readout's leak κ
 *     L_t = (∂E_t/∂y_t)·Bᵀ  (+ c_reg·(f̂ − f_target)/(T·B))  learning signal
 *     ∇W = Σ_t L_t · F_κ(e)_t    (the regulariser's part unfiltered, Σ_t r·e_t)
 *
 * h is the neuron's whole state; the local Jacobians ∂h_t/∂h_{t−1} and ∂h_t/∂I_t come from the
 * neuron's `localJacobians` capability (LIF, ALIF). For LIF and ALIF with `resetDetach` they are
 * Bellec et al.'s traces: z̄ for LIF, and ε^a_{t+1} = ψ_t·z̄_t + (ρ − ψ_t·β_a)·ε^a_t,
 * e_t = ψ_t·(z̄_t − β_a·ε^a_t) for ALIF. The readout (W_out, b_out) gets its exact gradient.
 *
 * What it drops: every error path through *other* neurons — the recurrent spikes s_{t−1}·W_rec
 * are treated as inputs. With symmetric feedback its gradient therefore equals BPTT's on the
 * network with the recurrent spike path detached (exactly BPTT's without recurrent weights), for
 * a loss that decomposes over time.
 *
 * How it computes it: the per-synapse ε and F_κ(e) are carried forward across windows of
 * `window` steps; inside a window, the sum over its steps is formed by one reverse sweep over the
 * neuron's local Jacobians (per-neuron `[B, H]` tensors, no gradient tape) and one
 * `spikeflow.outerSum` per synapse group and probe (a sum of per-example outer products, which
 * the wasm and cpu backends compute event-driven) — the same numbers as stepping the traces one step at a time, with
 * one `[B, fan_in, H]` update per window instead of per step. Memory: O(B·fan_in·H) for the
 * traces plus O(window) activations, independent of T.
 *
 * Where the layer's neuron has an integrate-and-fire form (`integrateFire`: LIF, ALIF) and the
 * backend registers a fast `spikeflow.integrateFireEligibility` (wasm, cpu), the same gradients
 * come from that kernel instead ({@link runFused}): it runs the layer and keeps the traces in the
 * kernels' own memory, and per window does one pass over them plus work in proportion to the
 * input events. The path above stays the reference for any neuron with local Jacobians.
 */
export function eprop(options: EpropOptions = {}): LearningRule<EpropState> {
  const { feedback, window: asked, mode, feedbackDecay, seed, rateReg, rateTarget } = parseSchema(epropSchema, options, 'rule');
  const window = asked ?? DEFAULT_WINDOW;
  if (!(feedbackDecay < 1)) {
    throw new SpikeflowError('CONFIG_INVALID', `rule.feedbackDecay: must be below 1 (B would not keep its past), got ${feedbackDecay}`, {
      path: 'rule.feedbackDecay',
    });
  }
  // Where the fused kernel runs in accumulate mode and no window was asked for, longer windows:
  // the result is the same, and the per-window work (one pass over the traces) is done less often.
  const fusedWindow = asked ?? (mode === 'accumulate' ? FUSED_ACCUMULATE_WINDOW : DEFAULT_WINDOW);
  const hyper: Hyper = { feedback, window, fusedWindow, online: mode === 'online', feedbackDecay, rateReg, rateTarget };
  return defineRule({
    name: `eprop(${feedback}, window=${window}, ${mode})`,
    memory: 'O(1)',
    gradient: 'approximate',
    // One hidden layer (Bellec et al. 2020) of a neuron with local Jacobians and fixed parameters,
    // under a readout of its spikes with a fixed leak κ (which filters the eligibility traces).
    requires: {
      lossDecomposesOverTime: true,
      denseLayers: true,
      noDropout: true,
      layers: 1,
      neuron: ['localJacobians'],
      fixedNeuronParams: true,
      readout: { leak: true, from: 'spikes' },
    },
    init(network) {
      const layer = network.model.layers[0]!;
      const state: Record<string, Tensor> = {};
      if (feedback !== 'symmetric') {
        const bound = 1 / Math.sqrt(layer.size);
        state['feedback'] = tf.randomUniform([layer.size, network.outputs], -bound, bound, 'float32', seed);
      }
      if (rateReg > 0) state['rate'] = tf.fill([layer.size], rateTarget);
      return state;
    },
    updatesPerSequence: (T) => (hyper.online ? Math.ceil(T / window) : 1),
    update(batch: SequenceBatch, state: EpropState, ctx: RuleContext) {
      const net = ctx.network;
      checkInputs(net, batch.inputs);
      const missing = feedback !== 'symmetric' && !state.feedback ? 'feedback matrix' : rateReg > 0 && !state.rate ? 'rate estimate' : undefined;
      if (missing) {
        throw new SpikeflowError(
          'CONFIG_INVALID',
          `rule '${this.name}': its state has no ${missing}; pass the state made by rule.init(network) (or a checkpoint of a run with the same rule options)`,
        );
      }
      const [T, B] = inputShape(batch.inputs) as [number, number];
      const bound = ctx.loss.bind(batch.targets, { steps: T, batch: B, outputs: net.outputs });
      try {
        const fused = fusedEligibility(net);
        return fused ? runFused(net, bound, stepsOf(batch.inputs), hyper, state, ctx, fused) : run(net, bound, stepsOf(batch.inputs), hyper, state, ctx);
      } finally {
        bound.dispose();
      }
    },
  });
}

/** Steps per window where the options name no `window`. */
const DEFAULT_WINDOW = 32;

/** Steps per window of the fused kernel in accumulate mode where the options name no `window`. */
const FUSED_ACCUMULATE_WINDOW = 64;

interface Hyper {
  readonly feedback: Feedback;
  readonly window: number;
  /** Steps per window on the fused path. */
  readonly fusedWindow: number;
  readonly online: boolean;
  readonly feedbackDecay: number;
  readonly rateReg: number;
  readonly rateTarget: number;
}

/** One synapse group: a weight matrix (or the bias, fan-in 1) of the hidden layer, by parameter name. */
interface Group {
  readonly param: string;
  readonly fan: number;
}

/** What crosses a window boundary besides the network state: the per-synapse traces. */
interface Traces {
  /** `eps[g][c]`: ε of state component c for group g, `[B, fan, H]`. */
  readonly eps: Tensor[][];
  /** F_κ(e) for group g, `[B, fan, H]`. */
  readonly fe: Tensor[];
  /** κ-filtered spikes (for the readout's exact gradient), `[B, H]`, and the κ-filtered 1 (bias). */
  readonly sbar: Tensor;
  readonly cbar: number;
}

/** The outputs of one window that outlive it. */
interface WindowResult {
  readonly state: NetState;
  readonly traces?: Traces;
  readonly grads: NamedTensorMap;
  readonly loss: Scalar;
  readonly spikeCount: Tensor;
}

function run(net: Network, bound: BoundLoss, xs: Steps, hyper: Hyper, initial: EpropState, ctx: RuleContext) {
  const T = xs.length;
  const B = xs.shape[0]!;
  const layer = net.model.layers[0]!;
  const groups: Group[] = [
    { param: layerParam(0, 'W'), fan: layer.fanIn },
    ...(layer.recurrent ? [{ param: layerParam(0, 'W_rec'), fan: layer.size }] : []),
    ...(layer.bias ? [{ param: layerParam(0, 'b'), fan: 1 }] : []),
  ];
  const updates = new Updates(net, hyper, ctx, initial);
  let netState: NetState = net.init(B);
  let traces: Traces | undefined;
  // Summed on the device, read once (asynchronously where the context asks).
  const loss = new LossSum();
  let spikes: Tensor = tf.zeros([layer.size]);
  let finished = false;
  const reg = hyper.rateReg > 0 ? tf.tidy(() => tf.div(tf.mul(hyper.rateReg, tf.sub(initial.rate!, hyper.rateTarget)), T * B)) : undefined;
  try {
    for (let t0 = 0; t0 < T; t0 += hyper.window) {
      const t1 = Math.min(t0 + hyper.window, T);
      const r = windowPass(net, bound, xs, t0, t1, groups, netState, traces, updates.matrix(), reg, ctx);
      disposeTree(netState, r.state);
      netState = r.state;
      if (traces) disposeTree(traces, r.traces ?? null);
      traces = r.traces;
      loss.add(r.loss);
      const sc = tf.add(spikes, r.spikeCount);
      disposeTree([spikes, r.spikeCount]);
      spikes = sc;
      updates.add(r.grads, t1 === T);
    }
    const state = updates.state(spikes, T * B);
    finished = true;
    return { state, report: { loss: loss.read(ctx.asyncReads), updates: updates.count } };
  } finally {
    loss.dispose();
    disposeTree([netState, traces ?? null, spikes, reg ?? null]);
    updates.dispose(finished);
  }
}

/**
 * The updates of one sequence, whichever path computes its windows: each window's gradients summed
 * (accumulate mode, one update after the last window) or applied at once (online), and B as the
 * updates leave it (adaptive feedback changes it after every update; the caller owns `initial`).
 */
class Updates {
  #acc: NamedTensorMap | undefined;
  #feedback: Tensor | undefined;
  count = 0;

  constructor(
    readonly net: Network,
    readonly hyper: Hyper,
    readonly ctx: RuleContext,
    readonly initial: EpropState,
  ) {
    this.#feedback = initial.feedback;
  }

  /** The weights of the learning signal now: W_out (symmetric) or B. */
  matrix(): Tensor {
    return this.hyper.feedback === 'symmetric' ? this.net.params[readoutParam('W')]! : this.#feedback!;
  }

  /** A window's gradients (this takes them); `last` for the sequence's last window. */
  add(grads: NamedTensorMap, last: boolean): void {
    if (!this.hyper.online) this.#acc = accumulateGrads(this.#acc, grads);
    if (!this.hyper.online && !last) return;
    const g = this.hyper.online ? grads : this.#acc!;
    this.#acc = undefined;
    const next = apply(this.net, g, this.#feedback, this.hyper, this.ctx);
    if (this.#feedback !== this.initial.feedback && this.#feedback !== next) this.#feedback?.dispose();
    this.#feedback = next;
    this.count++;
  }

  /** The rule's state after the sequence, from each neuron's spike count over its `samples` steps × batch. */
  state(spikes: Tensor, samples: number): EpropState {
    const state: Record<string, Tensor> = {};
    if (this.#feedback) state['feedback'] = this.#feedback;
    if (this.hyper.rateReg > 0) state['rate'] = tf.div(spikes, samples);
    return state as EpropState;
  }

  /** Frees what is left; after a failure, also a feedback matrix this call made (it is not handed back). */
  dispose(finished: boolean): void {
    if (this.#acc) disposeTree(this.#acc);
    this.#acc = undefined;
    if (!finished && this.#feedback && this.#feedback !== this.initial.feedback) this.#feedback.dispose();
  }
}

/**
 * One optimizer update (the gradients are freed). With adaptive feedback, B then takes the same
 * change W_out took, and decays: B ← (1 − d)·B + ΔW_out. Returns B as it is after the update.
 */
function apply(net: Network, grads: NamedTensorMap, feedback: Tensor | undefined, hyper: Hyper, ctx: RuleContext): Tensor | undefined {
  const wout = net.params[readoutParam('W')]!;
  const before = hyper.feedback === 'adaptive' ? tf.clone(wout) : undefined;
  try {
    ctx.apply(grads);
  } finally {
    disposeTree(grads);
  }
  if (!before) return feedback;
  const next = tf.tidy(() => tf.add(tf.mul(1 - hyper.feedbackDecay, feedback!), tf.sub(wout, before)));
  before.dispose();
  return next;
}

/** `x·e` for a Jacobian entry (`null`: no term; 1: x itself). */
function times(x: Tensor, e: JacobianEntry): Tensor | null {
  if (e === null || e === 0) return null;
  if (e === 1) return x;
  return tf.mul(x, e);
}

function sum(terms: readonly (Tensor | null)[]): Tensor | null {
  const live = terms.filter((t): t is Tensor => t !== null);
  if (live.length === 0) return null;
  return live.length === 1 ? live[0]! : tf.addN(live);
}

/**
 * One window [t0, t1): the forward pass (tape-free) recording each step's local Jacobians and
 * ∂E_t/∂y_t, then one reverse sweep with stacked probes:
 *
 * - probe 0 seeds the learning signal L_t on the spikes: its ∂/∂I_t give this window's own
 *   gradient, and its cotangent at the window's start state pairs with the carried ε;
 * - probe 1 + c seeds ones on state component c at the window's end (c = 0..m−1): ε^c at t1;
 * - probe m + 1 seeds κ^{t1−1−t} on the spikes of step t: F_κ(e) at t1.
 *
 * The neuron's update is local, so every probe is one `[B, H]` slice per state component.
 */
function windowPass(
  net: Network,
  bound: BoundLoss,
  xs: Steps,
  t0: number,
  t1: number,
  groups: readonly Group[],
  start: NetState,
  traces: Traces | undefined,
  feedbackMatrix: Tensor,
  reg: Tensor | undefined,
  ctx: RuleContext,
): WindowResult {
  const T = xs.length;
  const B = xs.shape[0]!;
  const layer = net.model.layers[0]!;
  const H = layer.size;
  const mask = net.recurrentMask(0);
  const keys = layer.neuron.stateKeys as readonly string[];
  const m = keys.length;
  const sIdx = keys.indexOf(layer.neuron.spikes!);
  const kappa = net.model.readout.leak!;
  const n = t1 - t0;
  const carry = t1 < T;
  return tidy(() => {
    const stepper = net.stepper();
    const xsW: Tensor[] = [];
    const sPrev: Tensor[] = [];
    const sCur: Tensor[] = [];
    const jac: LocalJacobians[] = [];
    const dy: (Tensor | null)[] = [];
    const terms: Scalar[] = [];
    let state = start;
    for (let t = t0; t < t1; t++) {
      const prev = state;
      const x = xs.at(t);
      const out = tidy(() => {
        const o = stepper.step(prev, x);
        const J = stepper.localJacobians(0, prev.layers[0]!.neuron, o.state.layers[0]!.neuron, o.currents[0]!);
        let g: Tensor | null = null;
        let term: Scalar | null = null;
        if (bound.hasTerm?.(t) ?? true) {
          // 0·Σy keeps y on the tape where the loss has no term at t.
          const vg = tf.valueAndGrad((y: Tensor) => bound.step!(y, t) ?? (tf.mul(0, tf.sum(y)) as Scalar))(o.readout);
          g = vg.grad;
          term = vg.value as Scalar;
        }
        return { state: o.state, y: o.readout, J, g, term };
      });
      ctx.observe?.(t, out.y);
      xsW.push(x);
      sPrev.push(prev.layers[0]!.spikes);
      sCur.push(out.state.layers[0]!.spikes);
      jac.push(out.J);
      dy.push(out.g);
      if (out.term) terms.push(out.term);
      state = out.state;
    }

    // Readout errors filtered backwards by κ inside the window: λ_t = ∂E_t/∂y_t + κ·λ_{t+1}.
    const lam: Tensor[] = new Array(n);
    let run: Tensor | null = null;
    for (let k = n - 1; k >= 0; k--) {
      const decayed: Tensor | null = run && kappa !== 0 ? tf.mul(run, kappa) : null;
      run = dy[k] ? (decayed ? tf.add(dy[k]!, decayed) : dy[k]!) : (decayed ?? tf.zeros([B, net.outputs]));
      lam[k] = run;
    }
    const lamCarry = kappa !== 0 ? tf.mul(lam[0]!, kappa) : null; // ∂(this window's loss)/∂y_{t0−1}
    const Bt = tf.transpose(feedbackMatrix); // [O, H]
    const learning = (l: Tensor) => (reg ? tf.add(tf.matMul(l, Bt), reg) : tf.matMul(l, Bt));

    // Probes and their seeds on the spike component.
    const P = carry ? m + 2 : 1;
    const fe = m + 1;
    const onehot = (i: number) => {
      const v = new Float32Array(P);
      v[i] = 1;
      return tf.tensor(v, [P, 1, 1]);
    };
    const e0 = onehot(0);
    const eFe = carry ? onehot(fe) : null;
    const inject = (k: number) => {
      const loss = tf.mul(tf.expandDims(learning(lam[k]!), 0), e0);
      return eFe ? tf.add(loss, tf.mul(eFe, kappa ** (n - 1 - k))) : loss;
    };
    let cot: (Tensor | null)[] = keys.map((_, c) => {
      const seed = c === sIdx ? inject(n - 1) : null;
      if (!carry) return seed;
      const probe = tf.mul(onehot(1 + c), tf.ones([1, B, H]));
      return seed ? tf.add(seed, probe) : probe;
    });
    const dI: Tensor[] = new Array(n);
    // Each step of the sweep in its own scope, and the cotangents it replaces freed at once: the
    // sweep holds O(P·B·H) at a time, not per step of the window.
    const release = (spent: readonly (Tensor | null)[], keep: readonly (Tensor | null)[]) => {
      const live = new Set([...keep, ...dI]);
      for (const x of new Set(spent)) if (x && !live.has(x)) x.dispose();
    };
    for (let k = n - 1; k >= 0; k--) {
      const J = jac[k]!;
      const old = cot;
      const r = tidy(() => {
        const d = sum(keys.map((_, c) => (old[c] ? times(old[c]!, J.current[c]!) : null))) ?? tf.zeros([P, B, H]);
        const prev = keys.map((_, c2) => sum(keys.map((_, c) => (old[c] ? times(old[c]!, J.state[c]![c2]!) : null))));
        if (k > 0) prev[sIdx] = prev[sIdx] ? tf.add(prev[sIdx]!, inject(k - 1)) : inject(k - 1);
        return { d, prev };
      });
      dI[k] = r.d;
      cot = r.prev;
      release(old, cot);
    }
    // cot[c] is now [P, B, H]: each probe's cotangent on component c of the window's start state.
    const GI = tf.stack(dI, 1); // [P, n, B, H]
    const stepwise = dI.splice(0);
    release(stepwise, cot);
    const probes = P === 1 ? [GI.reshape([n, B, H])] : tf.unstack(GI, 0);
    if (P > 1) GI.dispose();
    // The Jacobians are spent (the params' own tensors stay).
    for (const J of jac) for (const e of [...J.state.flat(), ...J.current]) if (e instanceof tf.Tensor && !stepper.isParam(e)) e.dispose();
    const startCot = cot.map((c) => (c === null ? null : P === 1 ? [c.reshape([B, H])] : tf.unstack(c, 0)));
    const cotOf = (probe: number, c: number): Tensor | null => startCot[c]?.[probe] ?? null;

    const X = tf.stack(xsW); // [n, B, I]
    // Presynaptic activity per group, [n, B, fan]; the bias (fan 1, pre = 1) needs none.
    const pres: (Tensor | null)[] = groups.map((g) => (g.param === layerParam(0, 'W') ? X : g.param === layerParam(0, 'W_rec') ? tf.stack(sPrev) : null));
    const flat = (t: Tensor) => t.reshape([n * B, t.shape[2]!]);

    // This window's gradient: its own steps (probe 0), plus the carried traces paired with the
    // cotangent of the start state (ε) and with the learning signal of κ·λ through the readout (F_κ(e)).
    const grads: NamedTensorMap = {};
    const G0 = flat(probes[0]!);
    const LB = lamCarry ? tf.matMul(lamCarry, Bt) : null; // [B, H]
    groups.forEach((g, gi) => {
      let grad = g.fan === 1 ? tf.sum(G0, 0).reshape([1, H]) : tf.matMul(tf.transpose(flat(pres[gi]!)), G0);
      if (traces) {
        // One [B, fan, H] temporary at a time (the traces are the big tensors here).
        // Σ_b (Σ_c ε^c·λ^c + F_κ(e)·L): the products added one `[B, fan, H]` at a time, then one
        // sum over the batch (wasm's reduction over a leading axis is the slow part).
        const pairs: [Tensor, Tensor | null][] = [...keys.map((_, c) => [traces.eps[gi]![c]!, cotOf(0, c)] as [Tensor, Tensor | null]), [traces.fe[gi]!, LB]];
        let acc: Tensor | null = null;
        for (const [trace, signal] of pairs) {
          if (!signal) continue;
          const prev: Tensor | null = acc;
          acc = tidy(() => (prev ? tf.add(prev, tf.mul(trace, tf.expandDims(signal, 1))) : tf.mul(trace, tf.expandDims(signal, 1))));
          prev?.dispose();
        }
        if (acc) {
          const total = acc;
          const prev = grad;
          grad = tidy(() => tf.add(prev, tf.sum(total, 0)));
          prev.dispose();
          total.dispose();
        }
      }
      if (g.param === layerParam(0, 'W_rec') && mask) grad = tf.mul(grad, mask);
      grads[g.param] = g.fan === 1 ? grad.reshape([H]) : grad;
    });
    // The readout's exact gradient: ∂E/∂W_out = Σ_t F_κ(s)_tᵀ·∂E_t/∂y_t.
    const Lam = tf.stack(lam).reshape([n * B, net.outputs]);
    const S = tf.stack(sCur); // [n, B, H]
    let gWout = tf.matMul(tf.transpose(flat(S)), Lam);
    let gbout = tf.sum(Lam, 0);
    if (traces && lamCarry) {
      gWout = tf.add(gWout, tf.matMul(tf.transpose(traces.sbar), lamCarry));
      gbout = tf.add(gbout, tf.mul(tf.sum(lamCarry, 0), traces.cbar));
    }
    grads[readoutParam('W')] = gWout;
    if (net.model.readout.bias) grads[readoutParam('b')] = gbout;

    // Traces at the window's end, for the next window.
    let next: Traces | undefined;
    if (carry) {
      const decay = kappa ** n;
      const eps: Tensor[][] = [];
      const feNext: Tensor[] = [];
      groups.forEach((g, gi) => {
        // Σ_t pre_t ⊗ (∂h_{t1−1}/∂I_t) per batch element: the backend's spikeflow.outerSum
        // (event-driven on wasm and cpu: only the presynaptic entries that are not zero).
        const born = (probe: Tensor) => (g.fan === 1 ? tf.sum(probe, 0).reshape([B, 1, H]) : stepper.outerSum(pres[gi]!, probe));
        // The traces at t1: born in the window, plus the carried ones propagated through the
        // window (Σ_c' Φ_cc'·ε^c'), added one `[B, fan, H]` product at a time.
        const update = (probe: number, extra?: Tensor) => {
          let acc = born(probes[probe]!);
          const terms: (() => Tensor)[] = [];
          if (traces) {
            keys.forEach((_, c2) => {
              const phi = cotOf(probe, c2);
              if (phi) terms.push(() => tf.mul(traces.eps[gi]![c2]!, tf.expandDims(phi, 1)));
            });
          }
          if (extra && decay !== 0) terms.push(() => tf.mul(extra, decay));
          for (const term of terms) {
            const prev = acc;
            acc = tidy(() => tf.add(prev, term()));
            prev.dispose();
          }
          return acc;
        };
        eps.push(keys.map((_, c) => update(1 + c)));
        feNext.push(update(fe, traces?.fe[gi]));
      });
      const w = Array.from({ length: n }, (_, k) => kappa ** (n - 1 - k));
      const sbarFresh = tf.sum(tf.mul(S, tf.tensor(w, [n, 1, 1])), 0);
      const sbar = traces && decay !== 0 ? tf.add(tf.mul(traces.sbar, decay), sbarFresh) : sbarFresh;
      next = { eps, fe: feNext, sbar, cbar: (traces ? traces.cbar * decay : 0) + w.reduce((a, b) => a + b, 0) };
    }
    const loss = (terms.length ? tf.addN(terms) : tf.scalar(0)) as Scalar;
    const spikeCount = tf.sum(S, [0, 1]);
    return { state, traces: next, grads, loss, spikeCount };
  });
}

/** The fused kernel for a network's layer, and how to describe the layer to it (see {@link fusedEligibility}). */
interface FusedEligibility {
  readonly make: KernelSignatures['spikeflow.integrateFireEligibility'];
  readonly spec: (p: StepParams, batch: number) => EligibilitySpec;
}

/**
 * The active backend's fused e-prop kernel (`spikeflow.integrateFireEligibility`) for the network's
 * layer, where its neuron declares an integrate-and-fire form under its config (`integrateFire`)
 * and the backend registers a fast version of the kernel; else undefined: the generic path
 * ({@link run}), which follows any neuron's local Jacobians.
 */
function fusedEligibility(net: Network): FusedEligibility | undefined {
  const layer = net.model.layers[0]!;
  const neuron = layer.neuron;
  if (!neuron.integrateFire || neuron.membrane === undefined || neuron.spikes === undefined) return undefined;
  const form = (p: StepParams) => neuron.integrateFire!({ config: layer.config, tensors: p.layers[0]!.neuron });
  // Whether the neuron has the form depends on its config alone; the kernel on the backend.
  const found = tidy(() => {
    const p = net.prepare();
    const make = p.kernels[IntegrateFireEligibility];
    return make !== referenceKernels[IntegrateFireEligibility] && form(p) !== undefined ? make : undefined;
  });
  if (!found) return undefined;
  return {
    make: found,
    spec: (p, batch) => ({
      batch,
      inputs: layer.fanIn,
      size: layer.size,
      recurrent: p.layers[0]!.W_rec !== undefined,
      bias: p.layers[0]!.b !== undefined,
      neuron: { ...form(p)!, surrogate: layer.surrogate },
      kappa: net.model.readout.leak!,
    }),
  };
}

/**
 * e-prop through the fused kernel, window by window: the kernel runs the layer and keeps the
 * per-synapse traces; per window the readout runs in one `spikeflow.leakyReadout`, ∂E/∂y of the
 * whole window comes from one gradient of the loss's window form, the readout errors are
 * filtered backwards by κ in one `spikeflow.leakyScan` (λ_t = ∂E_t/∂y_t + κ·λ_{t+1}), and the
 * kernel turns the learning signals m_t = λ_t·Bᵀ (+ the rate regulariser's r) and the carried
 * signal c = κ·λ_{t0}·Bᵀ into the window's gradient, since
 *
 *     Σ_{t in window} L_t·F_κ(e)_t = Σ_{t in window} (λ_t·Bᵀ)·e_t + (κ·λ_{t0}·Bᵀ)·F_κ(e)_{t0−1}.
 *
 * The same gradients as {@link run}, in a few tensor ops per window instead of a dozen per step.
 */
function runFused(net: Network, bound: BoundLoss, xs: Steps, hyper: Hyper, initial: EpropState, ctx: RuleContext, fused: FusedEligibility) {
  const T = xs.length;
  const B = xs.shape[0]!;
  const H = net.model.layers[0]!.size;
  const O = net.outputs;
  const kappa = net.model.readout.leak!;
  const mask = net.recurrentMask(0);
  const updates = new Updates(net, hyper, ctx, initial);
  let traces: EligibilityTraces | undefined;
  let y: Tensor = tf.zeros([B, O]);
  // The κ-filtered spikes and κ-filtered 1 at the window's start (the readout's exact gradient).
  let sbar: Tensor | undefined;
  let cbar = 0;
  const loss = new LossSum();
  let spikes: Tensor = tf.zeros([H]);
  let finished = false;
  const reg = hyper.rateReg > 0 ? tf.tidy(() => tf.div(tf.mul(hyper.rateReg, tf.sub(initial.rate!, hyper.rateTarget)), T * B)) : undefined;
  const filters = kappaFilters(kappa);
  try {
    for (let t0 = 0; t0 < T; t0 += hyper.fusedWindow) {
      const t1 = Math.min(t0 + hyper.fusedWindow, T);
      const n = t1 - t0;
      const advance = t1 < T;
      const feedbackMatrix = updates.matrix();
      const r = tidy(() => {
        const p = net.prepare();
        const lp = p.layers[0]!;
        traces ??= fused.make(fused.spec(p, B));
        const xw = xs.window(t0, t1);
        const f = traces.forward(xw.dtype === 'float32' ? xw : tf.cast(xw, 'float32'), lp.W, lp.b, lp.W_rec);
        const S = f.spikes;
        const Y = p.kernels[LeakyReadout](S, p.readout.W!, p.readout.b, y, kappa);
        if (ctx.observe) for (let k = 0; k < n; k++) ctx.observe(t0 + k, tf.reshape(tf.slice(Y, [k, 0, 0], [1, B, O]), [B, O]));
        // 0·Σy keeps y on the tape where the window has no loss term.
        const { value, grad: dY } = tf.valueAndGrad((ys: Tensor) => stepTerms(bound, ys, t0) ?? (tf.mul(0, tf.sum(ys)) as Scalar))(Y);
        // λ_t = Σ_{s ≥ t} κ^{s−t}·∂E_s/∂y_s within the window (= ∂E_t/∂y_t + κ·λ_{t+1}): one product with the window's filter.
        const lamFlat = tf.reshape(tf.matMul(filters.reverse(n), tf.reshape(dY, [n, B * O])), [n * B, O]);
        const Bt = tf.transpose(feedbackMatrix); // [O, H]
        const signal = tf.reshape(tf.matMul(lamFlat, Bt), [n, B, H]);
        // ∂(this window's loss)/∂y_{t0−1}: it pairs with what the traces carried in.
        const lamCarry = t0 > 0 && kappa !== 0 ? tf.mul(tf.slice(lamFlat, [0, 0], [B, O]), kappa) : undefined;
        const g = traces.backward(reg ? tf.add(signal, reg) : signal, lamCarry ? tf.matMul(lamCarry, Bt) : undefined, advance);
        const grads: NamedTensorMap = { [layerParam(0, 'W')]: g.w };
        if (g.wRec) grads[layerParam(0, 'W_rec')] = mask ? tf.mul(g.wRec, mask) : g.wRec;
        if (g.b) grads[layerParam(0, 'b')] = g.b;
        // The readout's exact gradient: ∂E/∂W_out = Σ_t F_κ(s)_tᵀ·∂E_t/∂y_t, the window's part
        // Sᵀ·λ as the weight gradient of the backend's spikeflow.eventDense (event-driven where it
        // is fast: the spikes are mostly zeros; a transpose of S and a dense product cost more).
        const Sflat = tf.reshape(S, [n * B, H]);
        const dense = p.kernels[EventDense];
        let gWout = tf.grad((w: Tensor) => tf.sum(tf.mul(dense(Sflat, w), lamFlat)))(p.readout.W!);
        let gbout = tf.sum(lamFlat, 0);
        if (sbar && lamCarry) {
          gWout = tf.add(gWout, tf.matMul(tf.transpose(sbar), lamCarry));
          gbout = tf.add(gbout, tf.mul(tf.sum(lamCarry, 0), cbar));
        }
        grads[readoutParam('W')] = gWout;
        if (net.model.readout.bias) grads[readoutParam('b')] = gbout;
        const lastStep = (t: Tensor, width: number) => tf.reshape(tf.slice(t, [n - 1, 0, 0], [1, B, width]), [B, width]);
        return {
          grads,
          loss: value as Scalar,
          y: lastStep(Y, O),
          // F_κ(s) at the window's end: κⁿ·sbar + Σ_k κ^{n−1−k}·s_k (the kernel's filtered spikes).
          sbar: advance ? (sbar && kappa !== 0 ? tf.add(tf.mul(sbar, kappa ** n), f.filtered) : f.filtered) : undefined,
          spikeCount: f.count,
        };
      });
      disposeTree([y, sbar ?? null]);
      y = r.y;
      sbar = r.sbar;
      if (advance) for (let k = 0; k < n; k++) cbar = cbar * kappa + 1;
      loss.add(r.loss);
      const sc = tf.add(spikes, r.spikeCount);
      disposeTree([spikes, r.spikeCount]);
      spikes = sc;
      updates.add(r.grads, t1 === T);
    }
    const state = updates.state(spikes, T * B);
    finished = true;
    return { state, report: { loss: loss.read(ctx.asyncReads), updates: updates.count } };
  } finally {
    loss.dispose();
    traces?.dispose();
    filters.dispose();
    disposeTree([y, sbar ?? null, spikes, reg ?? null]);
    updates.dispose(finished);
  }
}

/**
 * The κ filter of windows of n steps, made once per length: `[n, n]` with κ^{s−t} at (t, s ≥ t),
 * so that λ = filter·∂E/∂y sums each step's later errors.
 */
function kappaFilters(kappa: number) {
  const made = new Map<number, Tensor>();
  return {
    reverse(n: number): Tensor {
      let t = made.get(n);
      if (!t) {
        const v = new Float32Array(n * n);
        for (let r = 0; r < n; r++) for (let c = r; c < n; c++) v[r * n + c] = kappa ** (c - r);
        t = tf.keep(tf.tensor2d(v, [n, n]));
        made.set(n, t);
      }
      return t;
    },
    dispose: () => made.forEach((t) => t.dispose()),
  };
}

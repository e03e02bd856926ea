import {
  SpikeflowError,
  defineRule,
  disposeTree,
  isDenseModel,
  inputShape,
  layerParam,
  parseSchema,
  readoutParam,
  stepTerms,
  stepwise,
  tf,
  tidy,
  trainWindows,
  windowHasTerm,
  type LearningRule,
  type NamedTensorMap,
  type Network,
  type NetworkTraces,
  type PresynapticTraces,
  type RuleContext,
  type RuleReport,
  type SchemaInput,
  type SchemaValues,
  type SequenceBatch,
  type SynapseFn,
  type Tensor,
  type WindowInfo,
  type WindowOutputs,
} from '@spikeflow/core';

/**
 * The rule's options (`{ "name": "ottt", ... }` in a config), the one definition of their types,
 * ranges and defaults: `mode`, `accumulate` (OTTT_A: the steps' gradients summed, one update per
 * sequence) or `online` (OTTT_O: an update after every step); `decay`, λ, the decay of the
 * presynaptic traces of every layer's synapses (W, W_rec and the bias) — by default each layer's
 * own membrane decay, as its neuron declares it (`membraneDecay`: β of LIF and ALIF), the choice
 * for which OTTT_A is exact on one LIF layer; required for neurons without one; `window`, with
 * OTTT_A on a network that runs fused, the steps run together in one fused pass.
 */
export const otttSchema = {
  mode: {
    type: 'string',
    default: 'accumulate',
    oneOf: ['accumulate', 'online'],
    doc: 'accumulate (OTTT_A): one update per sequence; online (OTTT_O): an update every step',
  },
  decay: { type: 'number', min: 0, max: 1, doc: "λ of the presynaptic traces (default: each layer's membrane decay beta)" },
  window: {
    type: 'number',
    integer: true,
    default: 64,
    min: 1,
    doc: 'accumulate, where the network runs fused: steps run together in one fused pass (the same gradient for any value; memory grows with it, not with T)',
  },
} as const;

export type OtttOptions = SchemaInput<typeof otttSchema>;
export type OtttMode = SchemaValues<typeof otttSchema>['mode'];

type Empty = Record<string, never>;

/** The decay of every traced synapse group, by parameter name, and the bias groups. */
interface Decays {
  /** λ of the presynaptic trace of each weight (`layers.0.W`, `layers.0.W_rec`, `readout.W`). */
  readonly weights: ReadonlyMap<string, number>;
  /** λ of the trace of the constant input 1 of each bias (`layers.0.b`, `readout.b`). */
  readonly biases: ReadonlyMap<string, number>;
}

/**
 * The traces' decays for `net`: `decay` where given, else each layer's membrane decay (the rule
 * requires the capability then, checked by core before the first update).
 */
export function otttDecays(net: Network, decay?: number): Decays {
  const weights = new Map<string, number>();
  const biases = new Map<string, number>();
  net.model.layers.forEach((l, i) => {
    const lambda = decay ?? l.neuron.membraneDecay!(l.config)!;
    weights.set(layerParam(i, 'W'), lambda);
    if (l.recurrent) weights.set(layerParam(i, 'W_rec'), lambda);
    if (l.bias) biases.set(layerParam(i, 'b'), lambda);
  });
  // A readout with a fixed leak κ integrates with it: its weights' trace decays with κ (exact for
  // the readout). A readout whose leak changes every step (ltc) gets the instantaneous input.
  const kappa = net.model.readout.leak ?? 0;
  weights.set(readoutParam('W'), kappa);
  if (net.model.readout.bias) biases.set(readoutParam('b'), kappa);
  return { weights, biases };
}

/**
 * `x·W` whose weight gradient uses the presynaptic trace `a` in place of `x` (value and input
 * gradient as `x·W`): OTTT's substitution. Transposes are explicit (wasm's transposed matMul is slow).
 */
function tracedProduct(x: Tensor, w: Tensor, a: Tensor, dense: (x: Tensor, w: Tensor) => Tensor): Tensor {
  const f = tf.customGrad(((xx: Tensor, ww: Tensor, save: tf.GradSaveFunc) => {
    save([ww]);
    return {
      value: dense(xx, ww),
      gradFunc: (dy: Tensor, saved: Tensor[]) => [dense(dy, tf.transpose(saved[0]!)), dense(tf.transpose(a), dy)],
    };
  }) as never) as unknown as (x: Tensor, w: Tensor) => Tensor;
  return f(x, w);
}

/** The traces of one synapse group set (a layer's W, W_rec and b, or the readout's W and b) before a window. */
interface GroupTraces {
  /** â of the feed-forward input (absent: zero, before the first step). */
  readonly input?: Tensor;
  /** â of the recurrent input s_{t−1}. */
  readonly recurrent?: Tensor;
  /** The layer's spikes of the step before the window (s_{t0−1}: W_rec's input at t0). */
  readonly entering?: Tensor;
  /** c of the bias. */
  readonly bias: number;
}

/**
 * OTTT's presynaptic traces of a network that runs fused, carried from window to window: before a
 * window they are what its kernels' weight gradients read (core's `NetworkTraces`); the window's
 * inputs and spikes then advance each, â ← λ·â + x_t over the window's steps (the backend's
 * `spikeflow.decayedSum`, one pass), and c_{t1−1} = λ^k·c_{t0−1} + Σ_{j<k} λ^j.
 */
class CarriedTraces {
  #now: { layers: GroupTraces[]; readout: GroupTraces };
  #next: { layers: GroupTraces[]; readout: GroupTraces } | undefined;

  constructor(
    readonly net: Network,
    /** λ of every layer's traces (W, W_rec and b), and κ of the readout's. */
    readonly lambdas: readonly number[],
    readonly kappa: number,
    /** Every layer's spikes before the first step (the state's, W_rec's input at step 0). */
    entering: readonly Tensor[],
  ) {
    this.#now = { layers: lambdas.map((_, i) => ({ entering: entering[i]!, bias: 0 })), readout: { bias: 0 } };
  }

  /** The traces before the next window, as the fused kernels read them. */
  before(): NetworkTraces {
    const group = (g: GroupTraces, decay: number): PresynapticTraces => ({
      decay,
      bias: g.bias,
      ...(g.input ? { input: g.input } : {}),
      ...(g.recurrent ? { recurrent: g.recurrent } : {}),
    });
    return { layers: this.#now.layers.map((g, i) => group(g, this.lambdas[i]!)), readout: group(this.#now.readout, this.kappa) };
  }

  /** The traces after window `w` from its outputs (kept until {@link commit}). */
  advance(out: WindowOutputs, w: WindowInfo): void {
    const k = w.to - w.from;
    const model = this.net.model;
    const bias = (c: number, lambda: number) => {
      for (let j = 0; j < k; j++) c = lambda * c + 1;
      return c;
    };
    const next = tidy(() => {
      const layers = model.layers.map((l, i): GroupTraces => {
        const lambda = this.lambdas[i]!;
        const now = this.#now.layers[i]!;
        // What the layer's synapse read: the previous layer's output after the layer's pooling.
        const input = out.decayedSum(out.feed(i), lambda, now.input);
        if (!l.recurrent) return { input, bias: bias(now.bias, lambda) };
        // W_rec's input over the window: the spikes entering it, then the window's own but the last.
        const s = out.spikes(i);
        const [, B, H] = s.shape as [number, number, number];
        const first = out.decayedSum(tf.expandDims(now.entering!, 0), lambda, now.recurrent);
        const recurrent = k > 1 ? out.decayedSum(tf.slice(s, [0, 0, 0], [k - 1, B, H]), lambda, first) : first;
        const entering = tf.reshape(tf.slice(s, [k - 1, 0, 0], [1, B, H]), [B, H]);
        return { input, recurrent, entering, bias: bias(now.bias, lambda) };
      });
      const now = this.#now.readout;
      const readout: GroupTraces = { input: out.decayedSum(out.feed('readout'), this.kappa, now.input), bias: bias(now.bias, this.kappa) };
      return { layers, readout };
    });
    for (const g of [...next.layers, next.readout]) for (const t of [g.input, g.recurrent, g.entering]) if (t) tf.keep(t);
    this.#next = next;
  }

  /** The traces after the window advanced last replace those before it (which are freed). */
  commit(): void {
    if (!this.#next) return;
    disposeTree(tensorsOf(this.#now), tensorsOf(this.#next));
    this.#now = this.#next;
    this.#next = undefined;
  }

  /** Frees every trace. */
  dispose(): void {
    disposeTree([tensorsOf(this.#now), tensorsOf(this.#next)]);
    this.#next = undefined;
  }
}

function tensorsOf(g: { layers: GroupTraces[]; readout: GroupTraces } | undefined): Tensor[] {
  if (!g) return [];
  return [...g.layers, g.readout].flatMap((t) => [t.input, t.recurrent, t.entering]).filter((t): t is Tensor => t !== undefined);
}

/**
 * OTTT_A on a network that runs fused: windows of `window` steps without the temporal path (core's
 * window engine, `temporal: false`), each one fused pass whose kernels' weight gradients take the
 * presynaptic traces before the window (`traces`), carried from window to window by
 * {@link CarriedTraces}. The same gradient as the steps one at a time through the synapse hook.
 */
function fusedOttt(batch: SequenceBatch, ctx: RuleContext, lambdas: readonly number[], kappa: number, window: number): RuleReport {
  const net = ctx.network;
  const B = inputShape(batch.inputs)[1]!;
  const start = net.init(B);
  const entering = start.layers.map((l) => tf.keep(tf.clone(l.spikes)));
  disposeTree(start);
  const traces = new CarriedTraces(net, lambdas, kappa, entering);
  try {
    return trainWindows(batch, ctx, {
      window,
      update: 'sequence',
      temporal: false,
      traces: () => traces.before(),
      // The steps' loss terms, as `steps`; every window runs (forward only where it has no term)
      // so that its inputs and spikes advance the traces.
      objective: (out, w) => {
        traces.advance(out, w);
        const term = stepTerms(out.loss, out.fused ? out.stacked() : out.readouts(), w.from);
        return term ? { objective: term } : null;
      },
      backward: (w, loss) => windowHasTerm(loss, w.from, w.to),
      afterWindow: () => traces.commit(),
    });
  } finally {
    traces.dispose();
  }
}

/**
 * Online Training Through Time (Xiao, Meng, Zhang, Wang & Lin, "Online Training Through Time for
 * Spiking Neural Networks", NeurIPS 2022; code pkuxmq/OTTT-SNN).
 *
 * Every step starts from the state the previous step left, detached: the instantaneous loss L_t is
 * backpropagated through the step's spatial path only, giving g_t = ∂L_t/∂I_t at every layer's
 * input current. Each synapse keeps a presynaptic trace
 *
 *     â_t = λ·â_{t−1} + x_t          (x_t: the synapse's input at step t; â_{−1} = 0)
 *
 * and the weight gradient replaces the input by its trace: ∇W = Σ_t â_tᵀ·g_t (a bias, whose input
 * is 1, gets Σ_t c_t·g_t with c_t = λ·c_{t−1} + 1). λ is the layer's membrane decay β by default,
 * the readout's κ for the readout. For one LIF layer whose reset is detached, v_t = Σ_{τ≤t}
 * β^{t−τ}(x_τ·W + b), so ∂v_t/∂W = â_t with λ = β and OTTT_A's gradient is BPTT's exactly
 * (under a readout without a leak, or for the readout's own weights under a leaky one). Elsewhere
 * it is BPTT's with the temporal paths dropped: those through the membranes, adaptation and reset
 * of later steps, the recurrent spikes and the readout's trace, and those through a later layer's
 * membrane back to an earlier layer. Other parameters (trainable neuron parameters, an ltc
 * readout's gate) get the instantaneous gradient of each step.
 *
 * OTTT_A sums the steps' gradients and updates once per sequence; OTTT_O updates after every step.
 * Step by step (each step on its own tape, core's `stepwise`), a synapse hook substitutes the trace
 * in each product's weight gradient. Where the
 * network runs fused, OTTT_A runs windows of `window` steps without the temporal path instead, one
 * fused pass each, whose kernels take the traces before the window: over a window
 * Σ_t â_tᵀ·g_t = Σ_τ x_τᵀ·ĝ_τ + λ·â_{t0−1}ᵀ·ĝ_{t0} with ĝ_τ = g_τ + λ·ĝ_{τ+1}, and the rule
 * advances the traces by the window's inputs and spikes — the same gradient, at about SLTT's cost.
 * The state, the traces and one window's activations are all that is kept: **memory does not
 * depend on T**. Needs a loss that decomposes over time (`ce_every_step`, the reference code's
 * `ce_mse_every_step`, `mse_every_step`, `mse_last`).
 */
export function ottt(options: OtttOptions = {}): LearningRule<Empty> {
  const { mode, decay, window } = parseSchema(otttSchema, options, 'rule');
  const online = mode === 'online';
  const name = `ottt(${online ? 'O' : 'A'}${decay === undefined ? '' : `, λ=${decay}`})`;
  return defineRule({
    name,
    memory: 'O(1)',
    gradient: 'approximate',
    // Without a λ, every layer's traces decay with its neuron's fixed membrane decay. OTTT_O's
    // synapse hook traces dense products only; OTTT_A traces conv2d layers on the fused path.
    requires: {
      lossDecomposesOverTime: true,
      noDropout: true,
      ...(online ? { denseLayers: true } : {}),
      ...(decay === undefined ? { neuron: ['membraneDecay'] as const } : {}),
    },
    init: () => ({}),
    updatesPerSequence: (T) => (online ? T : 1),
    update(batch: SequenceBatch, state: Empty, ctx: RuleContext) {
      const net = ctx.network;
      const { weights, biases } = otttDecays(net, decay);
      if (!online && net.fused) {
        // Windows of steps through the fused kernels, the traces in their weight gradients.
        const lambdas = net.model.layers.map((_, i) => weights.get(layerParam(i, 'W'))!);
        return { state, report: fusedOttt(batch, ctx, lambdas, weights.get(readoutParam('W'))!, window) };
      }
      if (!isDenseModel(net.model)) {
        // (OTTT_O declares dense layers: core refused a conv network before this update.)
        throw new SpikeflowError(
          'INCOMPATIBLE',
          `rule '${name}' cannot train this run: model.layers: it traces convolutions in the fused kernels' windows, and this network does not run fused on this backend; ` +
            'use LIF or ALIF neurons on the wasm or cpu backend with the fast kernels',
          { rule: name },
        );
      }
      // Step by step: the synapse hook substitutes each trace in its product's weight gradient.
      let traces = new Map<string, Tensor>();
      let next = new Map<string, Tensor>();
      const synapse: SynapseFn = (x, w, site, dense) => {
        const lambda = weights.get(site.param)!;
        const prev = traces.get(site.param);
        const a = tf.keep(prev && lambda > 0 ? tf.add(tf.mul(prev, lambda), x) : tf.clone(x));
        next.set(site.param, a);
        return tracedProduct(x, w, a, dense);
      };
      // c_t for each bias group: the trace of a constant input 1.
      const biasTrace = new Map([...biases.keys()].map((k) => [k, 0]));
      const scaleBiases = (grads: NamedTensorMap): NamedTensorMap => {
        const out: NamedTensorMap = { ...grads };
        for (const [name, c] of biasTrace) {
          const g = grads[name];
          if (!g || c === 1) continue;
          out[name] = tf.mul(g, c);
          g.dispose();
        }
        return out;
      };
      try {
        const report = stepwise(batch, ctx, {
          online,
          synapse: () => synapse,
          // Runs before the step's gradient is transformed: c_t includes step t.
          afterStep: () => {
            for (const [name, c] of biasTrace) biasTrace.set(name, biases.get(name)! * c + 1);
            for (const [name, a] of traces) if (next.get(name) !== a) a.dispose();
            traces = next;
            next = new Map();
          },
          grads: scaleBiases,
        });
        return { state, report };
      } finally {
        for (const a of new Set([...traces.values(), ...next.values()])) a.dispose();
      }
    },
  });
}

import {
  defineRule,
  layerParam,
  parseSchema,
  readoutParam,
  stepwise,
  tf,
  type LearningRule,
  type NamedTensorMap,
  type Network,
  type RuleContext,
  type SchemaInput,
  type SchemaValues,
  type SequenceBatch,
  type SynapseFn,
  type Tensor,
} from '@spikeflow/core';

/**
 * The rule's options (`{ "name": "ottt", ... }` in a config), the one definition of their types,
 * ranges and defaults: `mode`, `accumulate` (OTTT_A: the steps' gradients summed, one update per
 * sequence) or `online` (OTTT_O: an update after every step); `decay`, λ, the decay of the
 * presynaptic traces of every layer's synapses (W, W_rec and the bias) — by default each layer's
 * own membrane decay, as its neuron declares it (`membraneDecay`: β of LIF and ALIF), the choice
 * for which OTTT_A is exact on one LIF layer; required for neurons without one.
 */
export const otttSchema = {
  mode: {
    type: 'string',
    default: 'accumulate',
    oneOf: ['accumulate', 'online'],
    doc: 'accumulate (OTTT_A): one update per sequence; online (OTTT_O): an update every step',
  },
  decay: { type: 'number', min: 0, max: 1, doc: "λ of the presynaptic traces (default: each layer's membrane decay beta)" },
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

/**
 * Online Training Through Time (Xiao, Meng, Zhang, Wang & Lin, "Online Training Through Time for
 * Spiking Neural Networks", NeurIPS 2022; code pkuxmq/OTTT-SNN).
 *
 * Every step runs on its own gradient tape from the state the previous step left, detached (core's
 * `stepwise`); the instantaneous loss L_t is backpropagated through the step's spatial path only,
 * giving g_t = ∂L_t/∂I_t at every layer's input current. Each synapse keeps a presynaptic trace
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
 * The state, the traces and one step's activations are all that is kept: **memory does not
 * depend on T**. Needs a loss that decomposes over time (`ce_every_step`, the reference code's
 * `ce_mse_every_step`, `mse_every_step`, `mse_last`).
 */
export function ottt(options: OtttOptions = {}): LearningRule<Empty> {
  const { mode, decay } = parseSchema(otttSchema, options, 'rule');
  const online = mode === 'online';
  return defineRule({
    name: `ottt(${online ? 'O' : 'A'}${decay === undefined ? '' : `, λ=${decay}`})`,
    memory: 'O(1)',
    gradient: 'approximate',
    // Without a λ, every layer's traces decay with its neuron's fixed membrane decay.
    requires: { lossDecomposesOverTime: true, ...(decay === undefined ? { neuron: ['membraneDecay'] as const } : {}) },
    init: () => ({}),
    updatesPerSequence: (T) => (online ? T : 1),
    update(batch: SequenceBatch, state: Empty, ctx: RuleContext) {
      const { weights, biases } = otttDecays(ctx.network, decay);
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

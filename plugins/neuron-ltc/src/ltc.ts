import { configError, defineNeuron, LtcStep, ltcStepReference, tf, type NeuronTensorParam, type SchemaValues, type Tensor } from '@spikeflow/core';

/** Config of an LTC-SN layer, as written in a model spec's `params`. */
export const ltcSchema = {
  threshold: {
    type: 'string',
    default: 'adaptive',
    oneOf: ['adaptive', 'fixed'],
    doc: 'adaptive: θ_t = b0 + β·b_t with a gated adaptation b; fixed: θ = theta (the Add-task variant)',
  },
  b0: { type: 'number', default: 0.1, min: 0, doc: 'baseline threshold b_0 of the adaptive threshold' },
  beta: { type: 'number', default: 1.8, min: 0, doc: 'adaptation strength β: threshold rise per unit of b' },
  theta: { type: 'number', default: 0.5, min: 0, exclusiveMin: true, doc: 'the constant threshold of the fixed variant' },
} as const;

export type LtcConfig = SchemaValues<typeof ltcSchema>;
export type LtcState = { readonly u: Tensor; readonly s: Tensor; readonly b: Tensor };

declare module '@spikeflow/core' {
  interface NeuronRegistry {
    ltc: LtcConfig;
  }
}

/**
 * A gate: a dense layer over the concatenation `[I_t ; x_{t−1}]` (`2·size` inputs), initialised as
 * PyTorch's `nn.Linear` (uniform in ±1/√fan_in), as the reference code does.
 */
function gate(size: number): { W: NeuronTensorParam; b: NeuronTensorParam } {
  const bound = 1 / Math.sqrt(2 * size);
  return {
    W: { value: { uniform: bound }, shape: [2 * size, size], trainable: true },
    b: { value: { uniform: bound }, shape: [size], trainable: true },
  };
}

/**
 * The liquid-time-constant spiking neuron (LTC-SN) of Yin, Corradi & Bohté, "Accurate online
 * training of dynamical spiking neural networks through Forward Propagation Through Time",
 * Nature Machine Intelligence 2023, as their code (byin-cwi/sFPTT, `mem_update_adp`) computes it.
 * For input current I_t and state (u, s, b):
 *
 *     α_t = σ([I_t ; u_{t−1}]·W_α + b_α)          update fraction of the membrane
 *     ρ_t = σ([I_t ; b_{t−1}]·W_ρ + b_ρ)          decay of the adaptation
 *     b_t = ρ_t·b_{t−1} + (1 − ρ_t)·s_{t−1}
 *     θ_t = b_0 + β·b_t
 *     u_t = (1 − α_t)·u_{t−1} + α_t·I_t
 *     s_t = spike(u_t − θ_t),  then u_t ← (1 − s_t)·u_t
 *
 * The code names the gates `tauM` and `tauAdp`, but uses their sigmoid outputs directly as the
 * update fraction α and the decay ρ (not as time constants in exp(−Δt/τ)); they are named for
 * what they do here: parameters `alpha_W`/`alpha_b` and `rho_W`/`rho_b` of each layer. The reset
 * multiplies by (1 − s_t) through the surrogate, as in the code. The fixed-threshold variant
 * (the code's Add-task model) uses θ = `theta` and neither ρ nor b. State starts at zero (the
 * classification code starts u uniform in [0, 1) and b at b_0; pass a state to `forward` for that).
 * The neuron's own surrogate is the code's multi-Gaussian (σ = 0.3, h = 0.15, s = 6, γ = 0.5).
 */
export const ltc = defineNeuron({
  name: 'ltc',
  description: 'liquid-time-constant spiking neuron (LTC-SN): input-dependent gates set the membrane update and threshold adaptation',
  configSchema: ltcSchema,
  defaultSurrogate: { name: 'multi_gaussian', sigma: 0.3, height: 0.15, scale: 6, gamma: 0.5 },
  stateKeys: ['u', 's', 'b'],
  membrane: 'u',
  spikes: 's',
  validate(config, path) {
    if (config.threshold === 'fixed' && config.beta !== ltcSchema.beta.default) {
      throw configError(`${path}.beta`, `the fixed-threshold variant has no adaptation; remove "beta" or use "threshold": "adaptive"`);
    }
  },
  tensorParams: (c, size) => {
    const alpha = gate(size);
    const params: Record<string, NeuronTensorParam> = { alpha_W: alpha.W, alpha_b: alpha.b };
    if (c.threshold === 'adaptive') {
      const rho = gate(size);
      params['rho_W'] = rho.W;
      params['rho_b'] = rho.b;
      params['b0'] = { value: c.b0, trainable: false };
      params['beta'] = { value: c.beta, trainable: false };
    } else {
      params['theta'] = { value: c.theta, trainable: false };
    }
    return params;
  },
  init: (batch, size): LtcState => {
    const z = tf.zeros([batch, size]);
    return { u: z, s: z, b: z };
  },
  // The gates' products here; the rest of the step in one kernel (`spikeflow.ltcStep`, whose
  // reference is the equations above in plain tfjs ops), the backend's own where it has one.
  step({ tensors, config }, state: LtcState, current, { surrogate, dense, kernels }) {
    const pre = (x: Tensor, key: string) => tf.add(dense(tf.concat([current, x], 1), tensors[`${key}_W`]!), tensors[`${key}_b`]!);
    const adaptive = tensors['rho_W'] !== undefined;
    const ltcStep = kernels?.[LtcStep] ?? ltcStepReference;
    const next = ltcStep(pre(state.u, 'alpha'), adaptive ? pre(state.b, 'rho') : undefined, current, state, {
      threshold: adaptive ? config.b0 : config.theta,
      strength: adaptive ? config.beta : 0,
      surrogate,
    });
    return { state: { u: next.u, s: next.s, b: next.b ?? state.b }, spikes: next.s };
  },
});

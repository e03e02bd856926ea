import { defineNeuron, tf, tidy, type SchemaValues, type Tensor } from '@spikeflow/core';

/** Config of an ALIF layer, as written in a model spec's `params`. */
export const alifSchema = {
  beta: { type: 'number', default: 0.9, min: 0, max: 1, doc: 'membrane decay β per step' },
  threshold: { type: 'number', default: 1, min: 0, exclusiveMin: true, doc: 'baseline threshold ϑ (also the reset amount)' },
  reset: { type: 'string', default: 'subtract', oneOf: ['subtract'], doc: 'reset mechanism: subtract ϑ after a spike' },
  resetDetach: { type: 'boolean', default: false, doc: 'treat the reset term as a constant in the backward pass (a is never detached)' },
  rho: { type: 'number', default: 0.95, min: 0, max: 1, doc: 'adaptation decay ρ per step (ρ = exp(−Δt/τ_a))' },
  betaA: { type: 'number', default: 1.8, min: 0, doc: 'adaptation strength β_a: threshold rise per unit of a' },
  learnBeta: { type: 'boolean', default: false, doc: 'make β a trainable per-neuron parameter (clamped to [0, 1])' },
  learnRho: { type: 'boolean', default: false, doc: 'make ρ a trainable per-neuron parameter (clamped to [0, 1])' },
} as const;

export type AlifConfig = SchemaValues<typeof alifSchema>;
export type AlifState = { readonly v: Tensor; readonly a: Tensor; readonly s: Tensor };

declare module '@spikeflow/core' {
  interface NeuronRegistry {
    alif: AlifConfig;
  }
}

const perNeuron = (learn: boolean, value: number, size: number) =>
  learn ? { value: new Float32Array(size).fill(value), trainable: true, range: [0, 1] as const } : { value, trainable: false };

/**
 * Adaptive LIF (Bellec et al. 2018, "Long short-term memory and learning-to-learn in networks of
 * spiking neurons"; the LSNN / e-prop neuron), with subtractive reset of the base threshold:
 *
 *     a_t = ρ·a_{t−1} + s_{t−1}
 *     A_t = ϑ + β_a·a_t
 *     v_t = β·v_{t−1} + I_t − ϑ·r_{t−1},   r_{t−1} = s_{t−1} (constant in backward if resetDetach)
 *     s_t = spike(v_t − A_t)
 *
 * The gradient always flows through `a`. State `{ v, a, s }` starts at zero. A whole window of a
 * layer runs in core's integrate-and-fire kernel with an adaptive threshold (`integrateFire`) where
 * the backend has the fast kernels.
 */
export const alif = defineNeuron({
  name: 'alif',
  description: 'adaptive LIF (LSNN): threshold rises by β_a·a after spikes and decays with ρ',
  configSchema: alifSchema,
  stateKeys: ['v', 'a', 's'],
  membrane: 'v',
  spikes: 's',
  adaptation: 'a',
  membraneDecay: (c) => (c.learnBeta ? undefined : c.beta),
  tensorParams: (c, size) => ({
    beta: perNeuron(c.learnBeta, c.beta, size),
    rho: perNeuron(c.learnRho, c.rho, size),
    threshold: { value: c.threshold, trainable: false },
    betaA: { value: c.betaA, trainable: false },
  }),
  // The step above is core's integrate-and-fire kernel equation with an adaptive threshold, for
  // every config (ρ and β fixed or per neuron and trainable; the reset detached or not).
  integrateFire: ({ config, tensors }) => ({
    beta: tensors['beta']!,
    threshold: config.threshold,
    resetDetach: config.resetDetach,
    adaptation: { rho: tensors['rho']!, strength: config.betaA },
  }),
  init: (batch, size): AlifState => {
    const z = tf.zeros([batch, size]);
    return { v: z, a: z, s: z };
  },
  step({ config, tensors }, state: AlifState, current, { spike, detach }) {
    const thr = tensors['threshold']!;
    const a = tf.add(tf.mul(tensors['rho']!, state.a), state.s);
    const reset = config.resetDetach ? detach(state.s) : state.s;
    const v = tf.sub(tf.add(tf.mul(tensors['beta']!, state.v), current), tf.mul(thr, reset));
    const s = spike(tf.sub(v, tf.add(thr, tf.mul(tensors['betaA']!, a))));
    return { state: { v, a, s }, spikes: s };
  },
  /**
   * The step is local to each neuron. With ψ_t = σ'(v_t − A_t), A_t = ϑ + β_a·a_t, and state
   * order (v, a, s):
   *
   *     ∂v_t/∂(v, a, s)_{t−1} = (β, 0, −ϑ or 0 if resetDetach)            ∂v_t/∂I_t = 1
   *     ∂a_t/∂(v, a, s)_{t−1} = (0, ρ, 1)                                 ∂a_t/∂I_t = 0
   *     ∂s_t/∂(v, a, s)_{t−1} = ψ_t·(β, −β_a·ρ, −ϑ (or 0) − β_a)          ∂s_t/∂I_t = ψ_t
   *
   * With the reset detached these reproduce Bellec et al.'s ALIF eligibility vectors:
   * ε^a_t = ψ_{t−1}·ε^v_{t−1} + (ρ − ψ_{t−1}·β_a)·ε^a_{t−1} and e_t = ψ_t·(ε^v_t − β_a·ε^a_t).
   */
  localJacobians: {
    jacobians({ config, tensors }, _prev, next: AlifState, _current, { surrogate }) {
      const beta = tensors['beta']!;
      const rho = tensors['rho']!;
      const thr = config.threshold;
      return tidy(() => {
        const psi = surrogate.derivative(tf.sub(next.v, tf.add(tensors['threshold']!, tf.mul(tensors['betaA']!, next.a))));
        const dsds = config.resetDetach ? -config.betaA : -thr - config.betaA;
        return {
          state: [
            [beta, null, config.resetDetach ? null : -thr],
            [null, rho, 1],
            [tf.mul(psi, beta), tf.mul(psi, tf.mul(rho, -config.betaA)), dsds === 0 ? null : tf.mul(psi, dsds)],
          ],
          current: [1, null, psi],
        };
      });
    },
  },
});

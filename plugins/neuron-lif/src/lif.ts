import { defineNeuron, tf, tidy, type SchemaValues, type Tensor } from '@spikeflow/core';
import { membrane, membraneJacobians, resetSchema } from './membrane.js';

/** Config of a LIF layer, as written in a model spec's `params`. */
export const lifSchema = {
  beta: {
    type: 'number',
    default: 0.9,
    min: 0,
    max: 1,
    doc: 'membrane decay β per step (β = exp(−Δt/τ_m); NIR and its importers use forward Euler, β = 1 − Δt/τ_m)',
  },
  ...resetSchema,
  learnBeta: { type: 'boolean', default: false, doc: 'make β a trainable per-neuron parameter (clamped to [0, 1])' },
} as const;

export type LifConfig = SchemaValues<typeof lifSchema>;
export type LifState = { readonly v: Tensor; readonly s: Tensor };

declare module '@spikeflow/core' {
  interface NeuronRegistry {
    lif: LifConfig;
  }
}

/**
 * Leaky integrate-and-fire with subtractive reset (Norse's `lif_step`, snnTorch's `Leaky`):
 *
 *     v_t = β·v_{t−1} + I_t − ϑ·r_{t−1},   r_{t−1} = s_{t−1} (constant in backward if resetDetach)
 *     s_t = spike(v_t − ϑ)
 *
 * or, with `reset: "zero"`, reset to zero (NIR's LIF with v_reset = 0 under forward Euler;
 * snnTorch's `reset_mechanism="zero"` without reset delay):
 *
 *     v_t = β·v_{t−1}·(1 − r_{t−1}) + I_t,   s_t = spike(v_t − ϑ)
 *
 * where `v` holds the membrane before its reset (a neuron that spiked at t − 1 starts step t from 0).
 * `spike` is the Heaviside step forward and the layer's surrogate derivative backward. State
 * `{ v, s }` starts at zero. With `learnBeta`, β is a per-neuron parameter `layers.<i>.beta`.
 *
 * @example { "neuron": "lif", "size": 256, "recurrent": true, "params": { "beta": 0.9, "resetDetach": true } }
 */
export const lif = defineNeuron({
  name: 'lif',
  description: 'leaky integrate-and-fire, subtractive or zero reset (optionally detached), fixed or trainable decay',
  configSchema: lifSchema,
  stateKeys: ['v', 's'],
  membrane: 'v',
  spikes: 's',
  // Reset to zero makes ∂v_t/∂v_{t−1} = β·(1 − s_{t−1}): no fixed decay.
  membraneDecay: (c) => (c.learnBeta || c.reset === 'zero' ? undefined : c.beta),
  tensorParams: (c, size) => ({
    beta: c.learnBeta ? { value: new Float32Array(size).fill(c.beta), trainable: true, range: [0, 1] as const } : { value: c.beta, trainable: false },
    threshold: { value: c.threshold, trainable: false },
  }),
  // The subtractive step is core's LIF kernel equation; reset to zero has no fused form.
  integrateFire: ({ config, tensors }) =>
    config.reset === 'subtract' ? { beta: tensors['beta']!, threshold: config.threshold, resetDetach: config.resetDetach } : undefined,
  init: (batch, size): LifState => {
    const z = tf.zeros([batch, size]);
    return { v: z, s: z };
  },
  step({ config, tensors }, state: LifState, current, { spike, detach }) {
    const thr = tensors['threshold']!;
    const reset = config.resetDetach ? detach(state.s) : state.s;
    const v = membrane(config, tensors['beta']!, thr, state.v, reset, current);
    const s = spike(tf.sub(v, thr));
    return { state: { v, s }, spikes: s };
  },
  /**
   * The step is local to each neuron. With ψ_t = σ'(v_t − ϑ) (the layer's surrogate derivative):
   *
   *     ∂v_t/∂v_{t−1} = β      ∂v_t/∂s_{t−1} = −ϑ (0 if resetDetach)      ∂v_t/∂I_t = 1
   *     ∂s_t/∂v_{t−1} = ψ_t·β  ∂s_t/∂s_{t−1} = −ϑ·ψ_t (0 if resetDetach)  ∂s_t/∂I_t = ψ_t
   *
   * With the reset detached these give Bellec et al.'s LIF eligibility trace e_t = ψ_t·z̄_t.
   * Reset to zero: ∂v_t/∂v_{t−1} = β·(1 − s_{t−1}), ∂v_t/∂s_{t−1} = −β·v_{t−1} (0 if resetDetach),
   * the rows of s_t those times ψ_t.
   */
  localJacobians: {
    jacobians({ config, tensors }, prev: LifState, next: LifState, _current, { surrogate }) {
      const beta = tensors['beta']!;
      return tidy(() => {
        const psi = surrogate.derivative(tf.sub(next.v, tensors['threshold']!));
        const [dv, ds] = membraneJacobians(config, beta, prev);
        return {
          state: [
            [dv, ds],
            [tf.mul(psi, dv), ds === null ? null : tf.mul(psi, ds)],
          ],
          current: [1, psi],
        };
      });
    },
  },
});

import { defineNeuron, tf, tidy, type SchemaValues, type Tensor } from '@spikeflow/core';
import { membrane, membraneJacobians, resetSchema } from './membrane.js';

/** Config of a current-based LIF layer (`"neuron": "cuba-lif"`). */
export const cubaLifSchema = {
  alpha: { type: 'number', default: 0.8, min: 0, max: 1, doc: 'synaptic current decay α per step (α = 1 − Δt/τ_syn under forward Euler)' },
  beta: { type: 'number', default: 0.9, min: 0, max: 1, doc: 'membrane decay β per step (β = 1 − Δt/τ_mem under forward Euler)' },
  ...resetSchema,
} as const;

export type CubaLifConfig = SchemaValues<typeof cubaLifSchema>;
export type CubaLifState = { readonly i: Tensor; readonly v: Tensor; readonly s: Tensor };

declare module '@spikeflow/core' {
  interface NeuronRegistry {
    'cuba-lif': CubaLifConfig;
  }
}

/**
 * Current-based leaky integrate-and-fire (snnTorch's `Synaptic`; NIR's CubaLIF): the input
 * current passes a first-order synaptic filter before the membrane integrates it,
 *
 *     i_t = α·i_{t−1} + I_t
 *     v_t = β·v_{t−1} + i_t − ϑ·r_{t−1}            (reset: subtract)
 *     v_t = β·v_{t−1}·(1 − r_{t−1}) + i_t          (reset: zero)
 *     s_t = spike(v_t − ϑ),   r_{t−1} = s_{t−1} (constant in backward if resetDetach)
 *
 * — NIR's CubaLIF under forward Euler (the new current drives the membrane, as snnTorch's and
 * Norse's importers run it) with α = 1 − Δt/τ_syn, β = 1 − Δt/τ_mem and the input gains folded
 * into the weights. State `{ i, v, s }` starts at zero; `v` holds the membrane before its reset.
 *
 * @example { "neuron": "cuba-lif", "size": 128, "params": { "alpha": 0.8, "beta": 0.9, "reset": "zero" } }
 */
export const cubaLif = defineNeuron({
  name: 'cuba-lif',
  description: 'current-based leaky integrate-and-fire: a synaptic current filter before the membrane (snnTorch Synaptic, NIR CubaLIF)',
  configSchema: cubaLifSchema,
  stateKeys: ['i', 'v', 's'],
  membrane: 'v',
  spikes: 's',
  tensorParams: (c) => ({
    alpha: { value: c.alpha, trainable: false },
    beta: { value: c.beta, trainable: false },
    threshold: { value: c.threshold, trainable: false },
  }),
  init: (batch, size): CubaLifState => {
    const z = tf.zeros([batch, size]);
    return { i: z, v: z, s: z };
  },
  step({ config, tensors }, state: CubaLifState, current, { spike, detach }) {
    const thr = tensors['threshold']!;
    const beta = tensors['beta']!;
    const reset = config.resetDetach ? detach(state.s) : state.s;
    const i = tf.add(tf.mul(tensors['alpha']!, state.i), current);
    const v = membrane(config, beta, thr, state.v, reset, i);
    const s = spike(tf.sub(v, thr));
    return { state: { i, v, s }, spikes: s };
  },
  /**
   * Local to each neuron. With ψ_t = σ'(v_t − ϑ): ∂i_t/∂i_{t−1} = α, ∂v_t/∂i_{t−1} = α,
   * ∂v_t/∂v_{t−1} = β (zero reset: β·(1 − s_{t−1})), ∂v_t/∂s_{t−1} = −ϑ (zero reset: −β·v_{t−1};
   * 0 if resetDetach), ∂·/∂I_t = 1; the row of s_t is ψ_t times the row of v_t.
   */
  localJacobians: {
    jacobians({ config, tensors }, prev: CubaLifState, next: CubaLifState, _current, { surrogate }) {
      const alpha = tensors['alpha']!;
      const beta = tensors['beta']!;
      return tidy(() => {
        const psi = surrogate.derivative(tf.sub(next.v, tensors['threshold']!));
        const [dv, ds] = membraneJacobians(config, beta, prev);
        return {
          state: [
            [alpha, null, null],
            [alpha, dv, ds],
            [tf.mul(psi, alpha), tf.mul(psi, dv), ds === null ? null : tf.mul(psi, ds)],
          ],
          current: [1, 1, psi],
        };
      });
    },
  },
});

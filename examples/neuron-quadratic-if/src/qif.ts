import { configError, defineNeuron, tf, type SchemaValues, type Tensor } from '@spikeflow/core';

/** Config of a QIF layer, as written in a model spec's `params`. */
export const qifSchema = {
  a: { type: 'number', default: 0.1, min: 0, exclusiveMin: true, doc: 'gain a of the quadratic term a·v·(v − v_c), per step' },
  vCritical: {
    type: 'number',
    default: 1,
    min: 0,
    exclusiveMin: true,
    doc: 'critical voltage v_c: below it v decays to rest (0), above it v runs away to a spike',
  },
  vPeak: { type: 'number', default: 2, min: 0, exclusiveMin: true, doc: 'spike cut-off v_peak, > vCritical: s_t = H(v_t − v_peak)' },
  vReset: { type: 'number', default: 0, doc: 'voltage v_reset the neuron is set to on the step after a spike, < vPeak' },
  resetDetach: { type: 'boolean', default: false, doc: 'treat the reset gate r_{t−1} = s_{t−1} as a constant in the backward pass' },
} as const;

export type QifConfig = SchemaValues<typeof qifSchema>;
export type QifState = { readonly v: Tensor; readonly s: Tensor };

declare module '@spikeflow/core' {
  interface NeuronRegistry {
    qif: QifConfig;
  }
}

/**
 * Discrete-time quadratic integrate-and-fire neuron (the θ-neuron's normal form: Ermentrout &
 * Kopell 1986, "Parabolic bursting in an excitable system coupled with a slow oscillation";
 * Latham, Richmond, Nelson & Nirenberg 2000, "Intrinsic dynamics in neuronal networks. I. Theory"),
 * normalised so that rest is 0 and the critical (threshold) voltage is v_c:
 *
 *     v'_t = v_{t−1} + a·v_{t−1}·(v_{t−1} − v_c) + I_t
 *     v_t  = (1 − r_{t−1})·v'_t + r_{t−1}·v_reset,   r_{t−1} = s_{t−1} (constant in backward if resetDetach)
 *     s_t  = spike(v_t − v_peak)
 *
 * Below v_c the quadratic term pulls v back to rest; above it v accelerates towards v_peak, where
 * the neuron spikes and is set to v_reset on the next step. `spike` is the Heaviside step forward
 * and the layer's surrogate derivative backward. State `{ v, s }` starts at zero. `a`, `v_c`,
 * `v_peak`, `v_reset` are fixed scalars (constants owned by the network). The reset is written
 * `v' − r·v' + r·v_reset`, which equals the gated form exactly for r ∈ {0, 1}.
 *
 * @example { "neuron": "qif", "size": 64, "recurrent": true, "params": { "a": 0.2, "vPeak": 3, "resetDetach": true } }
 */
export const qif = defineNeuron({
  name: 'qif',
  description: 'quadratic integrate-and-fire: v += a·v·(v − v_c) + I, spike at v_peak, then set to v_reset',
  configSchema: qifSchema,
  stateKeys: ['v', 's'],
  spikes: 's',
  // Relations between fields (the schema checks each field alone); runs before any tensor exists.
  validate: (c, path) => {
    if (!(c.vPeak > c.vCritical)) {
      throw configError(`${path}.vPeak`, `must be > vCritical (${c.vCritical}), got ${c.vPeak}`, { vPeak: c.vPeak, vCritical: c.vCritical });
    }
    if (!(c.vReset < c.vPeak)) {
      throw configError(`${path}.vReset`, `must be < vPeak (${c.vPeak}), got ${c.vReset}`, { vReset: c.vReset, vPeak: c.vPeak });
    }
  },
  tensorParams: (c) => ({
    a: { value: c.a, trainable: false },
    vCritical: { value: c.vCritical, trainable: false },
    vPeak: { value: c.vPeak, trainable: false },
    vReset: { value: c.vReset, trainable: false },
  }),
  init: (batch, size): QifState => {
    const z = tf.zeros([batch, size]);
    return { v: z, s: z };
  },
  step({ config, tensors }, state: QifState, current, { spike, detach }) {
    const { a, vCritical, vPeak, vReset } = tensors as { readonly [K in 'a' | 'vCritical' | 'vPeak' | 'vReset']: Tensor };
    const r = config.resetDetach ? detach(state.s) : state.s;
    const vPre = tf.add(tf.add(state.v, tf.mul(tf.mul(a, state.v), tf.sub(state.v, vCritical))), current);
    const v = tf.add(tf.sub(vPre, tf.mul(r, vPre)), tf.mul(r, vReset));
    const s = spike(tf.sub(v, vPeak));
    return { state: { v, s }, spikes: s };
  },
});

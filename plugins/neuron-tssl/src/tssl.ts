import { defineNeuron, tf, type SchemaValues, type Tensor } from '@spikeflow/core';

/** Config of a layer of TSSL-BP's neurons, as written in a model spec's `params`. */
export const tsslSchema = {
  tauM: { type: 'number', default: 5, min: 1, doc: 'membrane time constant τ_m in steps (θ_m = 1/τ_m)' },
  tauS: { type: 'number', default: 3, min: 1, doc: 'synaptic (PSP) time constant τ_s in steps (r = 1 − 1/τ_s)' },
  threshold: { type: 'number', default: 1, min: 0, exclusiveMin: true, doc: 'firing threshold ϑ' },
  filterInput: {
    type: 'boolean',
    default: false,
    doc: "pass the incoming current through the PSP filter first (the first layer's: the network's input PSP-filtered, as TSSL-BP feeds it)",
  },
} as const;

export type TsslConfig = SchemaValues<typeof tsslSchema>;
export type TsslState = { readonly u: Tensor; readonly o: Tensor; readonly a: Tensor; readonly i: Tensor };

declare module '@spikeflow/core' {
  interface NeuronRegistry {
    tssl: TsslConfig;
  }
}

/**
 * TSSL-BP's neuron (Zhang & Li, "Temporal Spike Sequence Learning via Backpropagation for Deep
 * Spiking Neural Networks", NeurIPS 2020; the authors' code stonezwr/TSSL-BP): a leaky membrane
 * with reset to zero and no refractory period, and a first-order synaptic filter whose output, the
 * PSP, is what the layer passes on (to the next layer and the readout). For the current I_t:
 *
 *     i_t = r·i_{t−1} + I_t/τ_s         (with filterInput; else i = 0 and I_t goes straight in)
 *     v_t = u_{t−1} + i_t − u_{t−1}/τ_m
 *     o_t = spike(v_t − ϑ)             (the layer's surrogate, for rules that differentiate it)
 *     u_t = v_t·(1 − o_t)
 *     a_t = r·a_{t−1} + o_t/τ_s        (returned as the layer's output)
 *
 * State `{ u, o, a, i }` starts at zero. The `spikeTiming` capability tells rules that the step is
 * core's `spikeTimingSequence` (TSSL-BP runs each layer through it, with its own gradient).
 */
export const tssl = defineNeuron({
  name: 'tssl',
  description: "TSSL-BP's neuron: LIF with reset to zero whose PSP (a first-order synaptic filter of its spikes) is what the layer passes on",
  configSchema: tsslSchema,
  stateKeys: ['u', 'o', 'a', 'i'],
  membrane: 'u',
  tensorParams: () => ({}),
  spikeTiming: (c) => ({ tauM: c.tauM, tauS: c.tauS, threshold: c.threshold, filterInput: c.filterInput }),
  init: (batch, size): TsslState => {
    const z = tf.zeros([batch, size]);
    return { u: z, o: z, a: z, i: z };
  },
  step({ config }, state: TsslState, current, { spike }) {
    const r = 1 - 1 / config.tauS;
    // Without filterInput, i stays zero (the current goes straight in).
    const i = config.filterInput ? tf.add(tf.mul(r, state.i), tf.mul(1 - r, current)) : tf.zerosLike(state.i);
    const v = tf.add(tf.mul(1 - 1 / config.tauM, state.u), config.filterInput ? i : current);
    const o = spike(tf.sub(v, config.threshold));
    const u = tf.mul(v, tf.sub(1, o));
    const a = tf.add(tf.mul(r, state.a), tf.mul(1 - r, o));
    return { state: { u, o, a, i }, spikes: a };
  },
});

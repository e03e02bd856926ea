import { defineReadout, tf } from '@spikeflow/core';

/**
 * The liquid-time-constant readout: `y_t = (1 − κ_t)·y_{t−1} + κ_t·d_t`, whose update fraction
 * `κ_t = σ([d_t ; y_{t−1}]·W_κ + b_κ)` is computed per unit and step by a trainable gate
 * (parameters `readout.W_kappa` `[2·size, size]` and `readout.b_kappa` `[size]`, initialised as
 * PyTorch's `nn.Linear`, uniform in ±1/√(2·size)), as in the output layer of Yin, Corradi & Bohté
 * 2023 (code byin-cwi/sFPTT, `output_Neuron`). `"readout": { "kind": "ltc" }` in a model spec.
 */
export const ltcReadout = defineReadout({
  name: 'ltc',
  description: 'liquid-time-constant integrator y_t = y_{t−1} + κ_t·(d_t − y_{t−1}) with a learned gate κ_t',
  optionsSchema: {},
  tensorParams: (_options, size) => ({
    W_kappa: { value: { uniform: 1 / Math.sqrt(2 * size) }, shape: [2 * size, size], trainable: true },
    b_kappa: { value: { uniform: 1 / Math.sqrt(2 * size) }, shape: [size], trainable: true },
  }),
  step: ({ tensors, dense }, y, d) => {
    const kappa = tf.sigmoid(tf.add(dense(tf.concat([d, y], 1), tensors['W_kappa']!), tensors['b_kappa']!));
    return tf.add(y, tf.mul(kappa, tf.sub(d, y)));
  },
});

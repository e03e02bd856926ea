import { tf, type Tensor } from '@spikeflow/core';

/** The threshold and reset fields that `lif` and `cuba-lif` share. */
export const resetSchema = {
  threshold: { type: 'number', default: 1, min: 0, exclusiveMin: true, doc: 'firing threshold ϑ' },
  reset: {
    type: 'string',
    default: 'subtract',
    oneOf: ['subtract', 'zero'],
    doc: "reset mechanism: 'subtract' ϑ after a spike, or 'zero' (the membrane starts the next step from 0: NIR's LIF with v_reset = 0, snnTorch's reset-to-zero)",
  },
  resetDetach: { type: 'boolean', default: false, doc: 'treat the reset term as a constant in the backward pass' },
} as const;

interface ResetConfig {
  readonly reset: string;
  readonly threshold: number;
}

/**
 * The membrane after one step from `v` (before its reset) and the spikes `s` of the step before:
 * `β·v + I − ϑ·s` (subtract) or `β·v·(1 − s) + I` (zero; `v − v·s` is exactly 0 where s = 1).
 * `reset` is `s`, or `s` detached.
 */
export function membrane(config: ResetConfig, beta: Tensor, thr: Tensor, v: Tensor, reset: Tensor, input: Tensor): Tensor {
  return config.reset === 'zero' ? tf.add(tf.mul(beta, tf.sub(v, tf.mul(v, reset))), input) : tf.sub(tf.add(tf.mul(beta, v), input), tf.mul(thr, reset));
}

/**
 * ∂v_t/∂v_{t−1} and ∂v_t/∂s_{t−1} of {@link membrane}: β and −ϑ (subtract), β·(1 − s_{t−1}) and
 * −β·v_{t−1} (zero); `null` for the reset's entry where it is detached.
 */
export function membraneJacobians(
  config: ResetConfig & { readonly resetDetach: boolean },
  beta: Tensor,
  prev: { readonly v: Tensor; readonly s: Tensor },
): [Tensor | number, Tensor | number | null] {
  if (config.reset === 'zero') return [tf.mul(beta, tf.sub(1, prev.s)), config.resetDetach ? null : tf.mul(tf.neg(beta), prev.v)];
  return [beta, config.resetDetach ? null : -config.threshold];
}

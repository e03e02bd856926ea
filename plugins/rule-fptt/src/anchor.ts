import { FpttAnchor, FpttPull, referenceKernels, tf, type KernelTable, type NamedTensorMap, type Tensor } from '@spikeflow/core';

/**
 * The two FPTT updates of the anchor W̄, as pure functions over parameter maps (no network), so
 * that they can be pinned on a convex problem by hand.
 *
 * **dual** (the official sFPTT code; Yin, Corradi & Bohté 2023, byin-cwi/sFPTT): per parameter W
 * keep W̄ and λ. One optimizer step on
 *
 *     ℓ_t(W) − ⟨W, λ⟩ + (α/2)·‖W − W̄‖²          (sum-reduced norm)
 *
 * whose gradient is ∇ℓ_t(W) − λ + α·(W − W̄); then, at the new W,
 *
 *     λ ← λ − α·(W − W̄)
 *     W̄ ← (1 − β)·W̄ + β·W − (β/α)·λ            (with the new λ)
 *
 * **textbook** (Kag & Saligrama, "Training Recurrent Neural Networks via Forward Propagation
 * Through Time", ICML 2021, Algorithm 1): keep W̄ and g = ∇ℓ_{t−1}(W_t). One optimizer step on
 *
 *     ℓ_t(W) + (α/2)·‖W − W̄ − g/(2α)‖²
 *
 * whose gradient is ∇ℓ_t(W) + α·(W − W̄) − g/2; then, with ∇ℓ_t at the *updated* weights (a second
 * forward/backward pass),
 *
 *     W̄ ← ½·(W̄ + W) − ∇ℓ_t(W)/(2α),   g ← ∇ℓ_t(W)
 *
 * The dual form shifts the anchor by −(β/α)·λ, a running sum of α·(W − W̄) that tracks the
 * accumulated loss gradients (∇ℓ/α per step at the fixed point); the textbook form shifts it by
 * ∇ℓ/(2α) from the newest loss alone.
 */
export type FpttForm = 'dual' | 'textbook';

export interface FpttHyper {
  readonly alpha: number;
  readonly beta: number;
  readonly form: FpttForm;
}

/** The rule's state: plain tensor maps keyed by parameter name (checkpointed as they are). */
export interface FpttState {
  readonly [key: string]: NamedTensorMap;
  /** The anchor W̄ (running average of the weights). */
  readonly wbar: NamedTensorMap;
  /** dual: the multipliers λ. textbook: ∇ℓ_{t−1} at the current weights. */
  readonly aux: NamedTensorMap;
}

/** W̄ = W, λ = 0 (dual) or g = 0 (textbook). */
export function initAnchor(params: Readonly<Record<string, Tensor>>): FpttState {
  const wbar: NamedTensorMap = {};
  const aux: NamedTensorMap = {};
  for (const [name, w] of Object.entries(params)) {
    wbar[name] = tf.clone(w);
    aux[name] = tf.zerosLike(w);
  }
  return { wbar, aux };
}

/**
 * The gradient of the regularised objective at the current weights, from the loss gradient
 * (missing = zero) — new tensors, the caller's to dispose. `kernels`: the run's, for
 * `spikeflow.fpttPull` (default: core's reference).
 */
export function objectiveGrads(
  params: Readonly<Record<string, Tensor>>,
  lossGrads: NamedTensorMap,
  state: FpttState,
  h: FpttHyper,
  kernels?: KernelTable,
): NamedTensorMap {
  const pull = kernels?.get(FpttPull) ?? referenceKernels[FpttPull];
  const shiftScale = h.form === 'dual' ? 1 : 0.5;
  const out: NamedTensorMap = {};
  for (const [name, w] of Object.entries(params)) out[name] = pull(lossGrads[name], w, state.wbar[name]!, state.aux[name]!, { alpha: h.alpha, shiftScale });
  return out;
}

/**
 * The anchor update after the optimizer step, at the updated weights. The textbook form needs
 * `lossGradsAtNew`, ∇ℓ_t at those weights. Returns a new state; the old one is the caller's.
 * `kernels`: the run's, for the dual form's `spikeflow.fpttAnchor` (default: core's reference).
 */
export function updateAnchor(
  params: Readonly<Record<string, Tensor>>,
  state: FpttState,
  h: FpttHyper,
  lossGradsAtNew?: NamedTensorMap,
  kernels?: KernelTable,
): FpttState {
  const anchor = kernels?.get(FpttAnchor) ?? referenceKernels[FpttAnchor];
  const wbar: NamedTensorMap = {};
  const aux: NamedTensorMap = {};
  for (const [name, w] of Object.entries(params)) {
    if (h.form === 'dual') {
      const r = anchor(w, state.wbar[name]!, state.aux[name]!, { alpha: h.alpha, beta: h.beta });
      wbar[name] = r.wbar;
      aux[name] = r.lambda;
      continue;
    }
    const [wb, a] = tf.tidy(() => {
      const g = lossGradsAtNew?.[name] ?? tf.zerosLike(w);
      return [tf.sub(tf.mul(0.5, tf.add(state.wbar[name]!, w)), tf.mul(1 / (2 * h.alpha), g)), tf.clone(g)];
    });
    wbar[name] = wb!;
    aux[name] = a!;
  }
  return { wbar, aux };
}

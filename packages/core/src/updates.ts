import { tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';

/**
 * Elementwise parameter updates as kernels (`spikeflow.adamMoments`, `spikeflow.fpttPull`,
 * `spikeflow.fpttAnchor`): each is a dozen tfjs ops per parameter written out below, which a
 * backend may run as one pass over memory. Online rules update many times per sequence (FPTT after
 * every window), so these passes cost as much as the window's forward and backward work.
 */

/** Adam's hyper-parameters for one update (`spikeflow.adamMoments`). */
export interface AdamMomentsParams {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  /** The update's number, from 1: the bias corrections are 1 − β1^count and 1 − β2^count. */
  readonly count: number;
}

/** What `spikeflow.adamMoments` returns: the step direction (before the learning rate) and the new moments. */
export interface AdamMomentsResult {
  readonly update: Tensor;
  readonly mu: Tensor;
  readonly nu: Tensor;
}

/** The hyper-parameters of FPTT's regularised gradient (`spikeflow.fpttPull`). */
export interface FpttPullParams {
  /** α, the strength of the pull towards the anchor W̄. */
  readonly alpha: number;
  /** σ, the multiple of `shift` subtracted: 1 for the dual form's λ, ½ for the textbook form's g. */
  readonly shiftScale: number;
}

/** The hyper-parameters of FPTT's anchor update in the dual form (`spikeflow.fpttAnchor`). */
export interface FpttAnchorParams {
  readonly alpha: number;
  /** β, the averaging rate of W̄. */
  readonly beta: number;
}

/** What `spikeflow.fpttAnchor` returns: the new anchor W̄ and multipliers λ. */
export interface FpttAnchorResult {
  readonly wbar: Tensor;
  readonly lambda: Tensor;
}

/** Throws unless every tensor has the shape of the first. */
export function checkSameShapes(kernel: string, tensors: Readonly<Record<string, Tensor | undefined>>): void {
  const entries = Object.entries(tensors).filter((e): e is [string, Tensor] => e[1] !== undefined);
  const [first, shape] = [entries[0]![0], entries[0]![1].shape];
  for (const [name, t] of entries) {
    if (t.shape.join() !== shape.join()) {
      throw new SpikeflowError(
        'SHAPE_MISMATCH',
        `${kernel}: every tensor must have one shape, the parameter's; ${first} is [${shape}] but ${name} is [${t.shape}]`,
      );
    }
  }
}

/**
 * Adam's moments and step direction, elementwise (Kingma & Ba 2015), in float32 ops in this order:
 *
 *     μ ← β1·μ + (1 − β1)·g
 *     ν ← β2·ν + (1 − β2)·g²
 *     u = (μ / c1) / (√(ν / c2) + ε)          c1 = 1 − β1^count, c2 = 1 − β2^count
 */
export function adamMomentsReference(g: Tensor, mu: Tensor, nu: Tensor, p: AdamMomentsParams): AdamMomentsResult {
  checkSameShapes('spikeflow.adamMoments', { g, mu, nu });
  const c1 = 1 - p.beta1 ** p.count;
  const c2 = 1 - p.beta2 ** p.count;
  return tf.tidy(() => {
    const m = tf.add(tf.mul(p.beta1, mu), tf.mul(1 - p.beta1, g));
    const v = tf.add(tf.mul(p.beta2, nu), tf.mul(1 - p.beta2, tf.square(g)));
    return { update: tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), p.eps)), mu: m, nu: v };
  });
}

/**
 * FPTT's regularised gradient at the current weights: `g + (α·(W − W̄) − σ·shift)`, or without `g`
 * (a parameter the loss does not reach) `α·(W − W̄) − σ·shift`, in float32 ops in this order.
 */
export function fpttPullReference(g: Tensor | undefined, w: Tensor, wbar: Tensor, shift: Tensor, p: FpttPullParams): Tensor {
  checkSameShapes('spikeflow.fpttPull', { w, g, wbar, shift });
  return tf.tidy(() => {
    const pull = tf.mul(p.alpha, tf.sub(w, wbar));
    const r = tf.sub(pull, p.shiftScale === 1 ? shift : tf.mul(p.shiftScale, shift));
    return g ? tf.add(g, r) : r;
  });
}

/**
 * FPTT's anchor update in the dual form, at the weights after the optimizer's step, in float32
 * ops in this order:
 *
 *     λ ← λ − α·(W − W̄)
 *     W̄ ← ((1 − β)·W̄ + β·W) − (β/α)·λ        (the new λ)
 */
export function fpttAnchorReference(w: Tensor, wbar: Tensor, lambda: Tensor, p: FpttAnchorParams): FpttAnchorResult {
  checkSameShapes('spikeflow.fpttAnchor', { w, wbar, lambda });
  return tf.tidy(() => {
    const next = tf.sub(lambda, tf.mul(p.alpha, tf.sub(w, wbar)));
    return { wbar: tf.sub(tf.add(tf.mul(1 - p.beta, wbar), tf.mul(p.beta, w)), tf.mul(p.beta / p.alpha, next)), lambda: next };
  });
}

/** The hyper-parameters of FPTT's whole update of one parameter with Adam (`spikeflow.fpttAdamStep`). */
export interface FpttAdamStepParams extends AdamMomentsParams, FpttAnchorParams {
  /** The learning rate of this update (the step is `−lr` times Adam's direction). */
  readonly lr: number;
}

/** What `spikeflow.fpttAdamStep` returns: the new weights, anchor, multipliers and moments. */
export interface FpttAdamStepResult extends FpttAnchorResult {
  readonly w: Tensor;
  readonly mu: Tensor;
  readonly nu: Tensor;
}

/**
 * FPTT's update of one parameter in the dual form, with Adam and a learning rate as the
 * optimizer: the regularised gradient ({@link fpttPullReference}, σ = 1), Adam's moments and
 * direction ({@link adamMomentsReference}), the step `W + u·(−lr)`, and the anchor at the new
 * weights ({@link fpttAnchorReference}) — the float32 ops of those references in that order, so
 * the same bits as running them one after another (as an optimizer chain `scaleByAdam`, then the
 * learning rate, would).
 */
export function fpttAdamStepReference(
  g: Tensor | undefined,
  w: Tensor,
  wbar: Tensor,
  lambda: Tensor,
  mu: Tensor,
  nu: Tensor,
  p: FpttAdamStepParams,
): FpttAdamStepResult {
  checkSameShapes('spikeflow.fpttAdamStep', { w, g, wbar, lambda, mu, nu });
  return tf.tidy(() => {
    const pulled = fpttPullReference(g, w, wbar, lambda, { alpha: p.alpha, shiftScale: 1 });
    const adam = adamMomentsReference(pulled, mu, nu, p);
    const next = tf.add(w, tf.mul(adam.update, -p.lr));
    const anchor = fpttAnchorReference(next, wbar, lambda, p);
    return { w: next, wbar: anchor.wbar, lambda: anchor.lambda, mu: adam.mu, nu: adam.nu };
  });
}

import { tf, type Scalar, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';
import { splitSteps } from './steps.js';
import { configError, didYouMean, expectObject, parseSchema, rejectUnknownKeys, type Schema } from './validate.js';

/** The shapes a loss is bound to: T steps, batch B, O readout units. */
export interface LossShape {
  readonly steps: number;
  readonly batch: number;
  readonly outputs: number;
}

/** A loss bound to one batch's targets. */
export interface BoundLoss {
  /** The whole-sequence loss from the readout of every step (`T` tensors `[B, O]`). */
  sequence(readout: readonly Tensor[]): Scalar;
  /**
   * The same loss from the readout stacked in one tensor `[T, B, O]`, as a network run window by
   * window through fused kernels produces it. Optional: rules fall back to `sequence` over the
   * unstacked steps.
   */
  readonly stacked?: (readout: Tensor) => Scalar;
  /**
   * The term of step t, for losses that decompose over time (`Σ_t step(y_t, t)` equals
   * `sequence`); `null` where step t contributes nothing. Absent when the loss does not decompose.
   */
  readonly step?: (y: Tensor, t: number) => Scalar | null;
  /**
   * The sum of the terms of steps `from … from + k − 1` from their readout stacked in one tensor
   * `[k, B, O]` (a window of a fused network): `Σ_i step(y[i], from + i)` in a few ops instead of a
   * few per step; `null` where none of those steps has a term. Optional (present only with `step`):
   * rules fall back to `step` per step.
   */
  readonly window?: (y: Tensor, from: number) => Scalar | null;
  /** Whether step t has a term (present with `step`); lets rules skip the tape where it has none. */
  readonly hasTerm?: (t: number) => boolean;
  /**
   * The loss of reading one step's readout `y` (`[B, O]`) as the prediction of the sequence's
   * target. Present for losses whose target belongs to the whole sequence (labels, a final
   * value); online rules with a terminal-label schedule (FPTT) score chunk ends with it.
   */
  readonly terminal?: (y: Tensor) => Scalar;
  dispose(): void;
}

/**
 * A loss over the readout sequence. `decomposesOverTime` says whether it is a sum of per-step
 * terms `Σ_t ℓ_t(y_t, target)`: online rules (FPTT, e-prop, OTTT, SLTT) and per-window truncated
 * BPTT need that and refuse other losses with a clear error.
 */
export interface TemporalLoss {
  readonly name: string;
  readonly decomposesOverTime: boolean;
  /** Whether bound losses offer `terminal` (the target belongs to the whole sequence). */
  readonly hasTerminal: boolean;
  /** The target a batch must carry, for error messages and dataset authors. */
  readonly target: string;
  bind(target: Tensor, shape: LossShape): BoundLoss;
  /** Options the loss takes in a config besides its name (`{ "name": "ce_mse_every_step", "lambda": 0.05 }`), validated against this schema. */
  readonly optionsSchema?: Schema;
  /** The loss with validated options (present with `optionsSchema`). */
  configure?(options: Record<string, unknown>): TemporalLoss;
}

/**
 * Mean over the rows of the softmax cross-entropy of `logits [B, O]` (or `[k, B, O]`, a window of
 * readouts) against one-hot targets `[B, O]`. Its gradient, `(softmax(logits) − oneHot) / rows`, is
 * written out: differentiated op by op, logSumExp's max has a gradient through a broadcast Equal,
 * which the wasm backend runs element by element (2.5 ms for one `[10, 64, 20]` window — more than
 * the window's fused network backward).
 */
function crossEntropy(logits: Tensor, oneHot: Tensor): Scalar {
  const rows = logits.size / logits.shape[logits.rank - 1]!;
  const ce = tf.customGrad(((x: Tensor, save: tf.GradSaveFunc) => {
    const lse = tf.logSumExp(x, -1, true);
    save([x, lse]);
    return {
      value: tf.mean(tf.sub(tf.squeeze(lse, [-1]), tf.sum(tf.mul(oneHot, x), -1))),
      gradFunc: (dy: Tensor, [xs, lses]: Tensor[]) => tf.mul(dy, tf.div(tf.sub(tf.exp(tf.sub(xs!, lses!)), oneHot), rows)),
    };
  }) as never) as (x: Tensor) => Scalar;
  return ce(logits);
}

function labelsOneHot(name: string, target: Tensor, { batch, outputs }: LossShape): Tensor {
  if (target.rank !== 1 || target.shape[0] !== batch) {
    throw new SpikeflowError('SHAPE_MISMATCH', `loss '${name}': targets must be integer labels [${batch}], got shape [${target.shape}]`);
  }
  const labels = target.dataSync();
  for (const l of labels) {
    if (!Number.isInteger(l) || l < 0 || l >= outputs) {
      throw new SpikeflowError('DATA_INVALID', `loss '${name}': label ${l} is not an integer in [0, ${outputs}) (the readout has ${outputs} units)`);
    }
  }
  return tf.tidy(() => tf.oneHot(tf.tensor1d(Array.from(labels), 'int32'), outputs).toFloat());
}

function checkShape(name: string, target: Tensor, expected: number[], what: string): void {
  if (target.rank !== expected.length || target.shape.some((d, i) => d !== expected[i])) {
    throw new SpikeflowError('SHAPE_MISMATCH', `loss '${name}': targets must be ${what} [${expected}], got shape [${target.shape}]`);
  }
}

/** Cross-entropy of the time-averaged readout `mean_t y_t` against labels `[B]`; mean over the batch. Does not decompose over time. */
export const ceMean: TemporalLoss = {
  name: 'ce_mean',
  decomposesOverTime: false,
  hasTerminal: true,
  target: 'integer labels [B]',
  bind(target, shape) {
    const oneHot = labelsOneHot('ce_mean', target, shape);
    return {
      // Σ_t y_t / T by addN, not a mean over tf.stack: the gradient of stack is an unstack, which
      // the wasm backend runs by copying the whole [T, B, O] input once per step (O(T²)).
      sequence: (ys) => tf.tidy(() => crossEntropy(tf.div(tf.addN(ys as Tensor[]), ys.length), oneHot)),
      stacked: (y) => tf.tidy(() => crossEntropy(tf.mean(y, 0), oneHot)),
      terminal: (y) => tf.tidy(() => crossEntropy(y, oneHot)),
      dispose: () => oneHot.dispose(),
    };
  },
};

/** `(1/T) Σ_t CE(y_t, labels)`: cross-entropy at every step, each a mean over the batch. Decomposes. */
export const ceEveryStep: TemporalLoss = {
  name: 'ce_every_step',
  decomposesOverTime: true,
  hasTerminal: true,
  target: 'integer labels [B]',
  bind(target, shape) {
    const oneHot = labelsOneHot('ce_every_step', target, shape);
    const T = shape.steps;
    const step = (y: Tensor) => tf.tidy(() => tf.div(crossEntropy(y, oneHot), T) as Scalar);
    return {
      // The sum of the per-step terms (no tf.stack on the tape: see ce_mean).
      sequence: (ys) => tf.tidy(() => tf.addN(ys.map(step)) as Scalar),
      // (1/T) Σ_t mean_b CE = the mean of CE over steps and batch (the one-hot broadcasts over t).
      stacked: (y) => tf.tidy(() => crossEntropy(y, oneHot)),
      step,
      // k steps' terms: k/T times the mean of CE over those steps and the batch.
      window: (y) => tf.tidy(() => tf.mul(crossEntropy(y, oneHot), y.shape[0]! / T) as Scalar),
      hasTerm: () => true,
      terminal: (y) => tf.tidy(() => crossEntropy(y, oneHot)),
      dispose: () => oneHot.dispose(),
    };
  },
};

/** Mean over t, b, k of `(y_t − target_t)²`, targets `[T, B, O]`. Decomposes. */
export const mseEveryStep: TemporalLoss = {
  name: 'mse_every_step',
  decomposesOverTime: true,
  hasTerminal: false,
  target: 'values [T, B, O]',
  bind(target, shape) {
    checkShape('mse_every_step', target, [shape.steps, shape.batch, shape.outputs], 'values');
    const perStep = splitSteps(target);
    const T = shape.steps;
    return {
      sequence: (ys) => tf.tidy(() => tf.addN(ys.map((y, t) => tf.div(tf.mean(tf.squaredDifference(y, perStep[t]!)), T))) as Scalar),
      stacked: (y) => tf.tidy(() => tf.mean(tf.squaredDifference(y, target))),
      step: (y, t) => tf.tidy(() => tf.div(tf.mean(tf.squaredDifference(y, perStep[t]!)), T) as Scalar),
      window: (y, from) =>
        tf.tidy(() => {
          const k = y.shape[0]!;
          const part = k === T ? target : tf.slice(target, [from, 0, 0], [k, -1, -1]);
          return tf.mul(tf.mean(tf.squaredDifference(y, part)), k / T) as Scalar;
        }),
      hasTerm: () => true,
      dispose: () => perStep.forEach((x) => x.dispose()),
    };
  },
};

/** Mean over b, k of `(y_{T−1} − target)²`, targets `[B, O]` (the Add task). Decomposes: only the last step has a term. */
export const mseLast: TemporalLoss = {
  name: 'mse_last',
  decomposesOverTime: true,
  hasTerminal: true,
  target: 'values [B, O]',
  bind(target, shape) {
    checkShape('mse_last', target, [shape.batch, shape.outputs], 'values');
    const last = shape.steps - 1;
    return {
      sequence: (ys) => tf.tidy(() => tf.mean(tf.squaredDifference(ys[last]!, target))),
      stacked: (y) => tf.tidy(() => tf.mean(tf.squaredDifference(tf.reshape(tf.slice(y, [last, 0, 0], [1, -1, -1]), target.shape), target))),
      step: (y, t) => (t === last ? tf.tidy(() => tf.mean(tf.squaredDifference(y, target)) as Scalar) : null),
      window: (y, from) =>
        from <= last && last < from + y.shape[0]!
          ? tf.tidy(() => tf.mean(tf.squaredDifference(tf.reshape(tf.slice(y, [last - from, 0, 0], [1, -1, -1]), target.shape), target)) as Scalar)
          : null,
      hasTerm: (t) => t === last,
      terminal: (y) => tf.tidy(() => tf.mean(tf.squaredDifference(y, target)) as Scalar),
      dispose: () => {},
    };
  },
};

/**
 * `(1/T) Σ_t [(1 − λ)·CE(y_t, labels) + λ·MSE(y_t, onehot(labels))]`, CE a mean over the batch and
 * MSE a mean over batch and classes: the per-step loss of OTTT's reference code (Xiao et al. 2022,
 * pkuxmq/OTTT-SNN, `--loss_lambda`, 0.05 there). Decomposes over time. λ = 0 is `ce_every_step`.
 */
export function ceMseEveryStep(lambda = 0.05): TemporalLoss {
  if (!(lambda >= 0 && lambda <= 1)) throw configError('loss.lambda', `must be in [0, 1], got ${lambda}`);
  const mix = (y: Tensor, oneHot: Tensor) =>
    tf.add(tf.mul(1 - lambda, crossEntropy(y, oneHot)), tf.mul(lambda, tf.mean(tf.squaredDifference(y, oneHot)))) as Scalar;
  return {
    name: 'ce_mse_every_step',
    decomposesOverTime: true,
    hasTerminal: true,
    target: 'integer labels [B]',
    bind(target, shape) {
      const oneHot = labelsOneHot('ce_mse_every_step', target, shape);
      const T = shape.steps;
      const step = (y: Tensor) => tf.tidy(() => tf.div(mix(y, oneHot), T) as Scalar);
      return {
        sequence: (ys) => tf.tidy(() => tf.addN(ys.map(step)) as Scalar),
        stacked: (y) => tf.tidy(() => mix(y, oneHot)),
        step,
        window: (y) => tf.tidy(() => tf.mul(mix(y, oneHot), y.shape[0]! / T) as Scalar),
        hasTerm: () => true,
        terminal: (y) => tf.tidy(() => mix(y, oneHot)),
        dispose: () => oneHot.dispose(),
      };
    },
    optionsSchema: { lambda: { type: 'number', default: lambda, min: 0, max: 1, doc: 'weight λ of the MSE term against the one-hot labels' } },
    configure: (o) => ceMseEveryStep(o['lambda'] as number),
  };
}

export const builtinLosses: readonly TemporalLoss[] = [ceMean, ceEveryStep, mseEveryStep, mseLast, ceMseEveryStep()];

/** A loss named in JSON: `"ce_mean"` or `{ "name": "ce_mean" }`. */
export function lossFromSpec(spec: unknown, losses: ReadonlyMap<string, TemporalLoss>, path = 'loss'): TemporalLoss {
  const obj = typeof spec === 'string' ? { name: spec } : expectObject(spec, path);
  const name = obj['name'];
  if (typeof name !== 'string') throw configError(`${path}.name`, `expected a loss name (${[...losses.keys()].join(', ')})`);
  const loss = losses.get(name);
  if (!loss) throw new SpikeflowError('UNKNOWN_NAME', `${path}.name: unknown loss '${name}'; ${didYouMean(name, losses.keys())}`, { path: `${path}.name` });
  if (!loss.optionsSchema || !loss.configure) {
    rejectUnknownKeys(obj, ['name'], path);
    return loss;
  }
  const { name: _n, ...options } = obj;
  return loss.configure(parseSchema(loss.optionsSchema, options, path) as Record<string, unknown>);
}

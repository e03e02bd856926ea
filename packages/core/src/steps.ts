import { tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';

/** The steps of a time-major input, made one at a time. */
export interface Steps {
  readonly length: number;
  /** Shape of one step, `[B, ...]`. */
  readonly shape: readonly number[];
  /** Step t as a fresh `[B, ...]` tensor, owned by the enclosing scope (`tf.tidy`, `tf.variableGrads`) or the caller. */
  at(t: number): Tensor;
  /** Steps `[from, to)` as one fresh `[to − from, B, ...]` tensor (a window for the fused path), owned like {@link at}'s. */
  window(from: number, to: number): Tensor;
}

/**
 * The steps of a time-major `[T, B, ...]` tensor. Reads the data once, at the first step asked
 * for (`x` must live until then), and builds each step's tensor on demand from a view: no
 * `slice`/`unstack` (they copy the whole input per step on the wasm backend), and only the steps
 * in use hold tensor memory. Inputs are constants of the computation: no gradient flows back to
 * them.
 */
export function stepsOf(x: Tensor): Steps {
  const [T, ...rest] = x.shape;
  if (T === undefined) throw new SpikeflowError('SHAPE_MISMATCH', 'stepsOf: expected a time-major tensor [T, B, ...], got a scalar');
  // Read on first use: a rule that ends up running the sequence as one window never copies it.
  let data: Float32Array | Int32Array | Uint8Array | undefined;
  const per = rest.reduce((a, b) => a * b, 1);
  return {
    length: T,
    shape: rest,
    at: (t) => {
      data ??= x.dataSync() as Float32Array | Int32Array | Uint8Array;
      return tf.tensor(data.subarray(t * per, (t + 1) * per), rest, x.dtype);
    },
    window: (from, to) => {
      if (!(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from < to && to <= T)) {
        throw new SpikeflowError('SHAPE_MISMATCH', `stepsOf: a window [${from}, ${to}) of a sequence of ${T} steps must satisfy 0 <= from < to <= ${T}`);
      }
      data ??= x.dataSync() as Float32Array | Int32Array | Uint8Array;
      return tf.tensor(data.subarray(from * per, to * per), [to - from, ...rest], x.dtype);
    },
  };
}

/** All steps of a time-major tensor as separate tensors (the caller disposes them). */
export function splitSteps(x: Tensor): Tensor[] {
  const s = stepsOf(x);
  return Array.from({ length: s.length }, (_, t) => s.at(t));
}

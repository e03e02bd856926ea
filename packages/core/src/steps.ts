import { hostMemoryBackend, tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';
import type { SequenceBatch } from './rule.js';

/** The element types a sequence's inputs may have. */
export type StepDType = 'float32' | 'int32' | 'bool';

/**
 * A sequence's inputs made on demand: T steps of shape `[B, ...]`, of which a consumer asks for
 * windows `[from, to)` as it runs them. A batch holds its compact form (bytes, events, seeds) and
 * builds each window when asked, so no consumer needs the whole `[T, B, ...]` input in memory: a
 * rule whose own state is O(1) in T runs in memory O(1) in T.
 *
 * The contract, which {@link stepsOf} checks (a `SHAPE_MISMATCH` naming what is wrong):
 * - `steps` is a whole number ≥ 0, `stepShape` whole numbers ≥ 1 (`[B, channels]` for a model's
 *   inputs), `dtype` one of {@link StepDType};
 * - `window(from, to)` is only asked for `0 ≤ from < to ≤ steps` and returns a fresh tensor of shape
 *   `[to − from, ...stepShape]` and type `dtype`, which the caller owns (disposes, or leaves to the
 *   enclosing `tf.tidy` / `tf.variableGrads` scope);
 * - a window asked for twice holds the same values (truncated BPTT's two passes, FPTT's re-run),
 *   and windows are asked for in any order;
 * - its data stays in closures or private fields: a consumer that walks a batch for tensors
 *   (`disposeTree`) visits its own enumerable fields, which should hold no large arrays.
 *
 * Inputs are constants of the computation: no gradient flows back to them.
 */
export interface StepSource {
  /** Steps in the sequence, T. */
  readonly steps: number;
  /** Shape of one step, `[B, ...]`. */
  readonly stepShape: readonly number[];
  /** The type of its windows: `bool` (spikes as bytes) and `int32` (counts) are cast to float32 as {@link stepsOf} hands them on. */
  readonly dtype: StepDType;
  /** Steps `[from, to)` as a fresh `[to − from, ...stepShape]` tensor. */
  window(from: number, to: number): Tensor;
  /** Step t as a fresh `[...stepShape]` tensor (default: the window `[t, t + 1)` without its first axis). */
  at?(t: number): Tensor;
  /** Frees what the source holds besides plain arrays (tensors); {@link disposeBatch} calls it. */
  dispose?(): void;
}

/** A sequence's inputs, time-major: a `[T, B, ...]` tensor, or a {@link StepSource} that makes windows of it on demand. */
export type StepInput = Tensor | StepSource;

/**
 * The steps of a time-major input, made one at a time. Every step and window is float32, whatever
 * the input's type: a `bool` or `int32` input (spikes as bytes, event counts) is cast as each is
 * made, so that every consumer computes on float32 and gets bitwise what a float32 twin of the
 * input gives.
 */
export interface Steps {
  readonly length: number;
  /** Shape of one step, `[B, ...]`. */
  readonly shape: readonly number[];
  /** Step t as a fresh `[B, ...]` tensor, owned by the enclosing scope (`tf.tidy`, `tf.variableGrads`) or the caller. */
  at(t: number): Tensor;
  /** Steps `[from, to)` as one fresh `[to − from, B, ...]` tensor (a window for the fused path), owned like {@link at}'s. */
  window(from: number, to: number): Tensor;
}

const DTYPES: readonly string[] = ['float32', 'int32', 'bool'];

/** Whether `x` is a {@link StepSource} (anything but a tensor that has a `window` method). */
export function isStepSource(x: unknown): x is StepSource {
  return !(x instanceof tf.Tensor) && typeof x === 'object' && x !== null && typeof (x as { window?: unknown }).window === 'function';
}

const sourceError = (message: string, details: Record<string, unknown> = {}) =>
  new SpikeflowError('SHAPE_MISMATCH', `step source: ${message}`, { ...details, path: 'inputs' });

/** Checks a {@link StepSource}'s declared shape and type (not its windows: {@link stepsOf} checks each as it is made). */
export function checkStepSource(x: Pick<StepSource, 'steps' | 'stepShape' | 'dtype' | 'at'>): void {
  if (!(Number.isSafeInteger(x.steps) && x.steps >= 0)) {
    throw sourceError(`'steps' must be the number of steps T, a whole number >= 0, got ${String(x.steps)}`);
  }
  const shape = x.stepShape as unknown;
  if (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => Number.isSafeInteger(d) && d >= 1)) {
    throw sourceError(`'stepShape' must be the shape of one step, [B, ...] of whole numbers >= 1, got ${JSON.stringify(shape)}`);
  }
  if (!DTYPES.includes(x.dtype)) throw sourceError(`'dtype' must be one of ${DTYPES.join(', ')}, got ${JSON.stringify(x.dtype)}`);
  if (x.at !== undefined && typeof x.at !== 'function') throw sourceError("'at' must be a function (t) => Tensor, or absent");
}

/** The shape of a sequence's inputs, `[T, B, ...]`, whichever form they take. */
export function inputShape(x: StepInput): number[] {
  if (x instanceof tf.Tensor) return x.shape;
  if (!isStepSource(x)) {
    throw new SpikeflowError('SHAPE_MISMATCH', `inputs must be a [T, B, ...] tensor or a step source (steps, stepShape, dtype, window), got ${describe(x)}`, {
      path: 'inputs',
    });
  }
  checkStepSource(x);
  return [x.steps, ...x.stepShape];
}

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'an array';
  return typeof x === 'object' ? 'an object without a window method' : typeof x;
}

function checkRange(from: number, to: number, T: number, what: string): void {
  if (!(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from < to && to <= T)) {
    throw new SpikeflowError('SHAPE_MISMATCH', `${what}: a window [${from}, ${to}) of a sequence of ${T} steps must satisfy 0 <= from < to <= ${T}`, {
      from,
      to,
      steps: T,
    });
  }
}

/** `t` a tensor of `shape` and `dtype`, else it is disposed and refused. */
function checked(t: unknown, shape: readonly number[], dtype: StepDType, what: string): Tensor {
  if (!(t instanceof tf.Tensor)) throw sourceError(`${what} returned ${describe(t)}, expected a ${dtype} tensor [${shape}]`);
  const got: readonly number[] = t.shape;
  if (t.dtype !== dtype || got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
    const was = `${t.dtype} [${got}]`;
    t.dispose();
    throw sourceError(`${what} returned a ${was} tensor, expected ${dtype} [${shape}] (the source's stepShape and dtype)`, { expected: [...shape] });
  }
  return t;
}

/** `t` as float32: itself, or its cast (`t` disposed). */
function asFloat32(t: Tensor): Tensor {
  if (t.dtype === 'float32') return t;
  try {
    return tf.cast(t, 'float32');
  } finally {
    t.dispose();
  }
}

/** `data [from, to)` as a tensor of `shape` and `dtype` (float32 from another type: converted as it is copied). */
function stepTensor(data: Float32Array | Int32Array | Uint8Array, from: number, to: number, shape: number[], dtype: Tensor['dtype']): Tensor {
  const view = data.subarray(from, to);
  return tf.tensor(dtype === 'float32' && !(view instanceof Float32Array) ? Float32Array.from(view) : view, shape, dtype);
}

/**
 * The steps of a sequence's inputs. From a time-major `[T, B, ...]` tensor: reads the data once,
 * at the first step asked for (`x` must live until then), and builds each step's tensor on demand
 * from a view — no `slice`/`unstack` (they copy the whole input per step on the wasm backend), and
 * only the steps in use hold tensor memory. From a {@link StepSource}: checks it, then asks it for
 * each window (checking the range, and the shape and type of what it returns) — nothing of the
 * sequence is kept. Inputs are constants of the computation: no gradient flows back to them.
 */
export function stepsOf(x: StepInput): Steps {
  return x instanceof tf.Tensor ? tensorSteps(x, true) : sourceSteps(x);
}

/** {@link stepsOf} of a tensor: each step and window float32 (`float32`), or of the tensor's own type. */
function tensorSteps(x: Tensor, float32: boolean): Steps {
  const [T, ...rest] = x.shape;
  if (T === undefined) throw new SpikeflowError('SHAPE_MISMATCH', 'stepsOf: expected a time-major tensor [T, B, ...], got a scalar');
  // Read on first use: a rule that ends up running the sequence as one window never copies it.
  let data: Float32Array | Int32Array | Uint8Array | undefined;
  const per = rest.reduce((a, b) => a * b, 1);
  if (!hostMemoryBackend()) {
    // On a GPU backend the input stays on the device: each window is a slice of it.
    const zeros = rest.map(() => 0);
    const window = (from: number, to: number) => {
      const w = tf.slice(x, [from, ...zeros], [to - from, ...rest]);
      return float32 ? asFloat32(w) : w;
    };
    return {
      length: T,
      shape: rest,
      at: (t) => {
        checkRange(t, t + 1, T, 'stepsOf');
        return tf.tidy(() => tf.reshape(window(t, t + 1), rest));
      },
      window: (from, to) => {
        checkRange(from, to, T, 'stepsOf');
        return window(from, to);
      },
    };
  }
  return {
    length: T,
    shape: rest,
    at: (t) => {
      data ??= x.dataSync() as Float32Array | Int32Array | Uint8Array;
      return stepTensor(data, t * per, (t + 1) * per, rest, float32 ? 'float32' : x.dtype);
    },
    window: (from, to) => {
      checkRange(from, to, T, 'stepsOf');
      data ??= x.dataSync() as Float32Array | Int32Array | Uint8Array;
      return stepTensor(data, from * per, to * per, [to - from, ...rest], float32 ? 'float32' : x.dtype);
    },
  };
}

function sourceSteps(x: StepSource): Steps {
  const [T, ...rest] = inputShape(x);
  const source = x;
  return {
    length: T!,
    shape: rest,
    at: (t) => {
      checkRange(t, t + 1, T!, 'step source');
      if (source.at) return asFloat32(checked(source.at(t), rest, source.dtype, `at(${t})`));
      const w = asFloat32(checked(source.window(t, t + 1), [1, ...rest], source.dtype, `window(${t}, ${t + 1})`));
      try {
        return tf.reshape(w, rest);
      } finally {
        w.dispose();
      }
    },
    window: (from, to) => {
      checkRange(from, to, T!, 'step source');
      return asFloat32(checked(source.window(from, to), [to - from, ...rest], source.dtype, `window(${from}, ${to})`));
    },
  };
}

/** All steps of a time-major tensor as separate tensors of its type (the caller disposes them). */
export function splitSteps(x: Tensor): Tensor[] {
  const s = tensorSteps(x, false);
  return Array.from({ length: s.length }, (_, t) => s.at(t));
}

/**
 * The whole sequence as one fresh float32 `[T, B, ...]` tensor the caller owns (a copy where `x` is a
 * tensor). It holds all of T at once, which a source exists to avoid: for tests, inspection and
 * small data only.
 */
export function denseInputs(x: StepInput): Tensor {
  if (x instanceof tf.Tensor) return x.dtype === 'float32' ? tf.clone(x) : tf.cast(x, 'float32');
  const [T, ...rest] = inputShape(x);
  if (T === 0) return tf.zeros([0, ...rest], 'float32');
  return stepsOf(x).window(0, T!);
}

/** How a {@link stepSource} writes the values of a window. */
export interface StepFill {
  /** Steps in the sequence, T. */
  readonly steps: number;
  /** Shape of one step, `[B, ...]`. */
  readonly stepShape: readonly number[];
  /**
   * Writes steps `[from, to)` into `out`, a zero-filled `[to − from, ...stepShape]` array (row-major:
   * step `t`, row `b`, channel `c` at `((t − from)·B + b)·C + c` for `[B, C]` steps). The same values
   * for the same steps every time.
   */
  fill(from: number, to: number, out: Float32Array): void;
}

/**
 * A float32 {@link StepSource} from a function that writes a window's values into an array: what a
 * dataset plugin returns as a batch's `inputs`, keeping its compact form (bytes, events, seeds) in
 * the closure of `fill`. Each window is one typed array turned into one tensor.
 */
export function stepSource(spec: StepFill): StepSource {
  const { steps, fill } = spec;
  const stepShape = [...spec.stepShape];
  checkStepSource({ steps, stepShape, dtype: 'float32' });
  const per = stepShape.reduce((a, b) => a * b, 1);
  return {
    steps,
    stepShape,
    dtype: 'float32',
    window(from, to) {
      checkRange(from, to, steps, 'step source');
      const out = new Float32Array((to - from) * per);
      fill(from, to, out);
      return tf.tensor(out, [to - from, ...stepShape], 'float32');
    },
  };
}

/**
 * Frees a batch: its targets, and its inputs where they are a tensor or a source with a `dispose`.
 * Consumers of a dataset's batches (the trainer, evaluation) free each batch with it.
 */
export function disposeBatch(batch: SequenceBatch): void {
  const x = batch.inputs;
  if (x instanceof tf.Tensor) {
    if (!x.isDisposed) x.dispose();
  } else x.dispose?.();
  if (batch.targets instanceof tf.Tensor && !batch.targets.isDisposed) batch.targets.dispose();
}

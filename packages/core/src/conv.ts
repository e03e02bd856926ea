import { tf, type Tensor, type Variable } from './tf.js';
import { configError, join } from './validate.js';
import type { Conv2dOptions, PoolOptions } from './kernels.js';

/**
 * Spatial layers: the geometry of `conv2d` and pooling layers, and the ops a step runs for them.
 * Activations stay flat between layers (`[B, H·W·C]`, the row-major order of a channels-last
 * `[B, H, W, C]` tensor, as tfjs lays it out), so the state, the window engine, the readout and
 * the losses see `[B, features]` as for dense layers; a spatial op reshapes on its way in and out.
 */

/** An activation's shape without the batch: `[H, W, C]` (channels last). */
export type SpatialShape = readonly [number, number, number];

/**
 * `conv2d`'s padding: `valid` (no padding), `same` (TensorFlow's rule: the extra row or column at
 * the bottom or right), or explicit zeros: `[rows, columns]` added on both sides (PyTorch's
 * `padding=(p_h, p_w)`).
 */
export type Padding = 'same' | 'valid' | readonly [number, number];

/** A `conv2d` layer's geometry. */
export interface Conv2dGeometry {
  readonly inShape: SpatialShape;
  readonly outShape: SpatialShape;
  readonly kernel: readonly [number, number];
  readonly stride: readonly [number, number];
  readonly padding: Padding;
}

/** A pooling layer's geometry (`valid` windows only). */
export interface PoolGeometry {
  readonly type: 'avgpool' | 'maxpool' | 'sumpool';
  /** `sumpool`: the factor on each window's sum. */
  readonly scale?: number;
  readonly inShape: SpatialShape;
  readonly outShape: SpatialShape;
  readonly size: readonly [number, number];
  readonly stride: readonly [number, number];
}

/** `n` or `[a, b]` of positive integers, as `[a, b]` (`n` gives `[n, n]`). */
export function pairOf(value: unknown, path: string, what: string): [number, number] {
  const ok = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 1;
  if (ok(value)) return [value, value];
  if (Array.isArray(value) && value.length === 2 && value.every(ok)) return [value[0] as number, value[1] as number];
  throw configError(path, `expected ${what}: a positive integer or a pair [rows, columns] of them, got ${JSON.stringify(value)}`);
}

/** `[H, W, C]` of positive integers. */
export function spatialShapeOf(value: unknown, path: string): SpatialShape {
  if (Array.isArray(value) && value.length === 3 && value.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 1)) {
    return [value[0] as number, value[1] as number, value[2] as number];
  }
  throw configError(path, `expected [height, width, channels] of positive integers (channels last), got ${JSON.stringify(value)}`);
}

export const sizeOf = (s: SpatialShape): number => s[0] * s[1] * s[2];

/**
 * The output of a convolution over `inShape`: `valid` gives ⌊(H − kh)/sh⌋ + 1 rows (an error where
 * the kernel is larger than the input), `same` gives ⌈H/sh⌉ (the padding tfjs and TensorFlow add).
 */
export function convGeometry(
  inShape: SpatialShape,
  channels: number,
  kernel: [number, number],
  stride: [number, number],
  padding: Padding,
  path: string,
): Conv2dGeometry {
  const out = (n: number, k: number, s: number, axis: string, pad: number) => {
    if (padding === 'same') return Math.ceil(n / s);
    if (k > n + 2 * pad)
      throw configError(
        join(path, 'kernel'),
        `a ${k}-wide kernel does not fit the input's ${n} ${axis}${pad ? ` padded by ${pad} on each side` : ''} with "padding": ${JSON.stringify(padding)}; use a smaller kernel, more padding or "padding": "same"`,
      );
    return Math.floor((n + 2 * pad - k) / s) + 1;
  };
  const [padRows, padCols] = typeof padding === 'string' ? [0, 0] : padding;
  return {
    inShape,
    outShape: [out(inShape[0], kernel[0], stride[0], 'rows', padRows), out(inShape[1], kernel[1], stride[1], 'columns', padCols), channels],
    kernel,
    stride,
    padding,
  };
}

/** A pooling window over `inShape` (`valid`: ⌊(H − ph)/sh⌋ + 1 rows; an error where the window is larger than the input). */
export function poolGeometry(
  type: PoolGeometry['type'],
  inShape: SpatialShape,
  size: [number, number],
  stride: [number, number],
  path: string,
  scale?: number,
): PoolGeometry {
  if (size[0] > inShape[0] || size[1] > inShape[1]) {
    throw configError(join(path, 'size'), `a [${size}] window does not fit the input's [${inShape[0]}, ${inShape[1]}] rows and columns; use a smaller window`);
  }
  return {
    type,
    inShape,
    outShape: [Math.floor((inShape[0] - size[0]) / stride[0]) + 1, Math.floor((inShape[1] - size[1]) / stride[1]) + 1, inShape[2]],
    size,
    stride,
    ...(type === 'sumpool' ? { scale: scale ?? 1 } : {}),
  };
}

/** `x [B, H·W·C]` as `[B, H, W, C]`. */
const spatial = (x: Tensor, s: SpatialShape) => tf.reshape(x, [-1, s[0], s[1], s[2]]) as tf.Tensor4D;
const flat = (x: Tensor, s: SpatialShape) => tf.reshape(x, [-1, sizeOf(s)]);

/**
 * The input current of a `conv2d` layer: `conv(x, W) + b` for flat `x [N, H·W·C]` (zero-padded
 * first where the padding is explicit), flat
 * `[N, H′·W′·C′]` (N: a step's batch, or a window's T·B images). `conv` is the convolution to run:
 * the backend's `spikeflow.eventConv2d` where the caller has the kernels, else tfjs' `conv2d`.
 */
export function convCurrent(x: Tensor, w: Tensor, b: Tensor | undefined, g: Conv2dGeometry, conv: ConvFn = plainConv2d): Tensor {
  // Explicit padding: the zeros added to the images, then a `valid` convolution (every kernel knows that one).
  const images = spatial(x, g.inShape);
  const y =
    typeof g.padding === 'string'
      ? conv(images, w, { stride: g.stride, padding: g.padding })
      : conv(
          tf.pad(images, [
            [0, 0],
            [g.padding[0], g.padding[0]],
            [g.padding[1], g.padding[1]],
            [0, 0],
          ]),
          w,
          { stride: g.stride, padding: 'valid' },
        );
  return flat(b ? tf.add(y, b) : y, g.outShape);
}

/** A batch-normalised convolution's tensors as a pass reads them (see `BatchNormSpec` in the model). */
export interface BatchNormTensors {
  readonly gamma: Tensor;
  readonly beta: Tensor;
  /** The running estimates: variables that a training pass updates. */
  readonly mean: Variable;
  readonly variance: Variable;
}

/**
 * Batch normalisation per channel of convolution outputs `y [N, H·W·C]` (N images, flat,
 * channels last). `training`: with the mean and biased variance over the N·H·W positions (on the
 * caller's tape), which then move the running estimates by `momentum` (PyTorch's rule, the
 * unbiased variance; outside the gradient); else with the running estimates.
 */
export function batchNorm(
  y: Tensor,
  channels: number,
  bn: BatchNormTensors,
  o: { readonly momentum: number; readonly epsilon: number },
  training: boolean,
): Tensor {
  const x = tf.reshape(y, [-1, channels]);
  let mean: Tensor = bn.mean;
  let variance: Tensor = bn.variance;
  if (training) {
    ({ mean, variance } = tf.moments(x, 0));
    const n = x.shape[0]!;
    const [m, v] = [mean, variance];
    tf.tidy(() => {
      const unbiased = n > 1 ? tf.mul(v, n / (n - 1)) : v;
      bn.mean.assign(tf.add(tf.mul(bn.mean, 1 - o.momentum), tf.mul(m, o.momentum)));
      bn.variance.assign(tf.add(tf.mul(bn.variance, 1 - o.momentum), tf.mul(unbiased, o.momentum)));
    });
  }
  const scale = tf.mul(bn.gamma, tf.rsqrt(tf.add(variance, o.epsilon)));
  return tf.reshape(tf.add(tf.mul(tf.sub(x, mean), scale), bn.beta), y.shape);
}

/** A convolution as `spikeflow.eventConv2d` computes it. */
export type ConvFn = (x: Tensor, w: Tensor, g: Conv2dOptions) => Tensor;

const plainConv2d: ConvFn = (x, w, g) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, g.stride as [number, number], g.padding);

/**
 * Max pooling whose gradient goes to the first maximal element of each window in row-major window
 * order (as PyTorch and TensorFlow's CPU kernels): with 0/1 spikes most windows tie, and tfjs'
 * backends do not agree on which tied element gets it.
 */
export function maxPoolFirst(x: Tensor, g: PoolOptions): Tensor {
  const [ph, pw] = g.size;
  const [sh, sw] = g.stride;
  const Ho = Math.floor((x.shape[1]! - ph) / sh) + 1;
  const Wo = Math.floor((x.shape[2]! - pw) / sw) + 1;
  const op = tf.customGrad((...args: unknown[]) => {
    const x4 = args[0] as tf.Tensor4D;
    const save = args[1] as (t: Tensor[]) => void;
    save([x4]);
    return {
      value: tf.maxPool(x4, [ph, pw], [sh, sw], 'valid'),
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const xs = saved[0] as tf.Tensor4D;
        if (sh === ph && sw === pw) return tiledMaxPoolGradient(xs, dy as tf.Tensor4D, [ph, pw], [Ho, Wo]);
        // Each window's elements in row-major order, the first maximum wins.
        const parts: Tensor[] = [];
        for (let p = 0; p < ph; p++) {
          for (let q = 0; q < pw; q++) {
            parts.push(tf.slice(xs, [0, p, q, 0], [-1, (Ho - 1) * sh + 1, (Wo - 1) * sw + 1, -1]));
          }
        }
        const strided = parts.map((t) => (sh === 1 && sw === 1 ? t : tf.stridedSlice(t, [0, 0, 0, 0], t.shape, [1, sh, sw, 1])));
        const first = tf.argMax(tf.stack(strided, -1), -1);
        const [B, H, W, C] = xs.shape;
        let dx = tf.zeros([B, H, W, C]) as Tensor;
        strided.forEach((_, k) => {
          const p = Math.floor(k / pw);
          const q = k % pw;
          const routed = tf.mul(dy, tf.cast(tf.equal(first, k), 'float32'));
          // Scatter the window's share back to rows p + i·sh, columns q + j·sw.
          const dilated = sh === 1 && sw === 1 ? routed : dilate(routed as tf.Tensor4D, sh, sw);
          const rows = (Ho - 1) * sh + 1;
          const cols = (Wo - 1) * sw + 1;
          dx = tf.add(
            dx,
            tf.pad(dilated, [
              [0, 0],
              [p, H - p - rows],
              [q, W - q - cols],
              [0, 0],
            ]),
          );
        });
        return dx;
      },
    };
  }) as (x: Tensor) => Tensor;
  return op(x as tf.Tensor4D);
}

/**
 * The first-maximum gradient of max pooling whose windows tile the input (stride = size): each
 * window's ph·pw values gathered on one axis, the first maximum's position (`argMax` picks the
 * lowest index among ties, on every tfjs backend) one-hot, times dy, laid back out; the rows and
 * columns past the last window get zeros.
 */
function tiledMaxPoolGradient(x: tf.Tensor4D, dy: tf.Tensor4D, [ph, pw]: readonly [number, number], [Ho, Wo]: readonly [number, number]): Tensor {
  // 1×1 windows at stride 1: every element is its own window's maximum.
  if (ph * pw === 1) return dy;
  const [B, H, W, C] = x.shape;
  const tiles = tf.reshape(tf.slice(x, [0, 0, 0, 0], [B, Ho * ph, Wo * pw, C]), [B, Ho, ph, Wo, pw, C]);
  const windows = tf.reshape(tf.transpose(tiles, [0, 1, 3, 5, 2, 4]), [B, Ho, Wo, C, ph * pw]);
  const routed = tf.mul(tf.oneHot(tf.argMax(windows, -1), ph * pw), tf.expandDims(dy, -1));
  const back = tf.reshape(tf.transpose(tf.reshape(routed, [B, Ho, Wo, C, ph, pw]), [0, 1, 4, 2, 5, 3]), [B, Ho * ph, Wo * pw, C]);
  return tf.pad(back, [
    [0, 0],
    [0, H - Ho * ph],
    [0, W - Wo * pw],
    [0, 0],
  ]);
}

/** `x [B, H, W, C]` with sh − 1 zero rows after each row but the last (and alike for columns). */
function dilate(x: tf.Tensor4D, sh: number, sw: number): Tensor {
  const [B, H, W, C] = x.shape;
  let y: Tensor = x;
  if (sh > 1)
    y = tf.reshape(
      tf.pad(tf.reshape(y, [B, H, 1, W, C]), [
        [0, 0],
        [0, 0],
        [0, sh - 1],
        [0, 0],
        [0, 0],
      ]),
      [B, H * sh, W, C],
    );
  if (sw > 1)
    y = tf.reshape(
      tf.pad(tf.reshape(y, [B, H * sh, W, 1, C]), [
        [0, 0],
        [0, 0],
        [0, 0],
        [0, sw - 1],
        [0, 0],
      ]),
      [B, H * sh, W * sw, C],
    );
  return tf.slice(y, [0, 0, 0, 0], [B, (H - 1) * sh + 1, (W - 1) * sw + 1, C]);
}

/** Max pooling as `spikeflow.maxPool` computes it. */
export type PoolFn = (x: Tensor, g: PoolOptions) => Tensor;

/**
 * The pooling layers `pools` applied in order to flat `x [N, H·W·C]`; flat out. `maxPool` is the
 * max pooling to run: the backend's `spikeflow.maxPool` where the caller has the kernels.
 */
export function applyPools(x: Tensor, pools: readonly PoolGeometry[], maxPool: PoolFn = maxPoolFirst): Tensor {
  let y = x;
  for (const g of pools) {
    const x4 = spatial(y, g.inShape);
    let pooled = g.type === 'maxpool' ? maxPool(x4, g) : tf.avgPool(x4, g.size as [number, number], g.stride as [number, number], 'valid');
    // A window's sum × scale: its mean × (its size × scale).
    if (g.type === 'sumpool') pooled = tf.mul(pooled, g.size[0] * g.size[1] * (g.scale ?? 1));
    y = flat(pooled, g.outShape);
  }
  return y;
}

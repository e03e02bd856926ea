import { SpikeflowError } from './errors.js';
import type { AnyNeuronModel, NeuronRegistry } from './neuron.js';
import { surrogateFromSpec, type Surrogate, type SurrogateEntry, type SurrogateSpec } from './surrogates.js';
import { builtinReadouts, type AnyReadout } from './readout.js';
import { configError, didYouMean, expectObject, join, parseSchema, rejectUnknownKeys } from './validate.js';
import { convGeometry, pairOf, poolGeometry, sizeOf, spatialShapeOf, type Conv2dGeometry, type Padding, type PoolGeometry, type SpatialShape } from './conv.js';

// ---------------------------------------------------------------------------------------------
// Model spec: plain JSON, validated with errors that name the field.

/** What every layer kind's spec has: its neuron, size, surrogate and the options common to all. */
export interface LayerSpecBase {
  /** Number of neurons (> 0). */
  size: number;
  /** Adds a recurrent weight matrix `W_rec` fed with the layer's own spikes of the previous step. */
  recurrent?: boolean;
  /**
   * With `recurrent`: whether a neuron feeds its own spikes back through the diagonal of `W_rec`
   * (default true). `false` masks the diagonal — zero at initialisation, no effect, zero gradient,
   * for every rule — as the e-prop papers' networks do (Bellec et al. 2020).
   */
  selfConnections?: boolean;
  /** Adds a bias `b` to the input current (default true). */
  bias?: boolean;
  /** Scale of the initial weights, uniform in ±gain/√fan_in (default 1). */
  gain?: number;
  /** Surrogate for this layer's spikes (default: the model's). */
  surrogate?: SurrogateSpec;
}

/** A dense layer's spec for a neuron model the registry knows by name, with that neuron's typed `params`. */
export type KnownLayerSpec = {
  [K in keyof NeuronRegistry]: LayerSpecBase & { neuron: K; params?: Partial<NeuronRegistry[K]> };
}[keyof NeuronRegistry];

/** One dense layer: a dense (optionally recurrent) synapse feeding a population of one neuron model. */
export type DenseLayerSpec = ([keyof NeuronRegistry] extends [never]
  ? LayerSpecBase & { neuron: string; params?: Record<string, unknown> }
  : KnownLayerSpec) & {
  type?: 'dense';
};

/**
 * A convolutional layer: `conv(x, W) + b` over a channels-last `[H, W, C]` input (W is `[kh, kw,
 * C_in, channels]`, TensorFlow's HWIO) feeding one neuron per output position and channel.
 */
export interface Conv2dLayerSpec {
  type: 'conv2d';
  neuron: string;
  /** Output channels. */
  channels: number;
  /** Kernel rows and columns (`3` is `[3, 3]`). */
  kernel: number | [number, number];
  /** Stride (default 1). */
  stride?: number | [number, number];
  /**
   * `valid` (default, as TensorFlow), `same` (TensorFlow's rule: ⌈H/stride⌉ rows, the odd padding
   * row at the bottom), or explicit zeros on both sides: `p` or `[rows, columns]` (PyTorch's
   * `padding=p`; `0` is `valid`).
   */
  padding?: 'same' | 'valid' | number | [number, number];
  /** A bias per channel (default true; false, and refused, with `batchNorm`, whose β is the bias). */
  bias?: boolean;
  /** Batch normalisation of the convolution through time (see {@link BatchNormSpec}). */
  batchNorm?: boolean | BatchNormSpec;
  gain?: number;
  surrogate?: SurrogateSpec;
  params?: Record<string, unknown>;
}

/**
 * Batch normalisation of a convolution's output through time, as SEW-ResNet applies it (Fang et
 * al. 2021: PyTorch's BatchNorm2d over the T·B images of a sequence batch at once): per channel,
 * `γ·(I − μ)/√(σ² + ε) + β` with μ and σ² the mean and (biased) variance over every step, batch
 * element and position the pass computes together — all of T for BPTT's one window, each window's
 * steps for a windowed rule. Running estimates (PyTorch's rule: `μ̂ ← (1 − m)·μ̂ + m·μ`, σ̂² from
 * the unbiased variance) replace them outside training. Parameters `bn_gamma` (ones) and `bn_beta`
 * (zeros), buffers `bn_mean` and `bn_var`; a SEW block's second convolution has `bn2_*`.
 */
export interface BatchNormSpec {
  /** Weight m of each pass's statistics in the running estimates (default 0.1, PyTorch's). */
  momentum?: number;
  /** ε added to the variance (default 1e-5, PyTorch's). */
  epsilon?: number;
}

/**
 * Average, max or sum pooling over `valid` windows (no neuron, no state, no parameters). `sumpool`
 * is each window's sum times `scale` (TSSL-BP's pooling: the sum of the PSPs × 1.1; NIR's
 * SumPool2d with scale 1).
 */
export interface PoolLayerSpec {
  type: 'avgpool' | 'maxpool' | 'sumpool';
  /** Window rows and columns (`2` is `[2, 2]`). */
  size: number | [number, number];
  /** Stride (default: the window size). */
  stride?: number | [number, number];
  padding?: 'valid';
  /** `sumpool` only: the factor on each window's sum (default 1). */
  scale?: number;
}

/**
 * A Spike-Element-Wise residual block (Fang et al., "Deep Residual Learning in Spiking Neural
 * Networks", NeurIPS 2021): two `same` convolutions of stride 1 and C → C channels (each batch
 * normalised with `batchNorm`), each feeding one population of the block's neuron, and the connect
 * function of the second stage's spikes s2 and the block's input x: `ADD` s2 + x, `IAND`
 * (1 − s2)·x, `AND` s2·x. Parameters `W`, `b` (first stage) and `W2`, `b2` (second); state
 * `v1, s1, v2, s2` (the neuron's fields with the stage's number).
 */
export interface SewBlockLayerSpec {
  type: 'sew_block';
  neuron: string;
  connect: 'ADD' | 'IAND' | 'AND';
  /** The block's channels: its input's (optional; checked when given). */
  channels?: number;
  /** Kernel rows and columns of both convolutions (default 3). */
  kernel?: number | [number, number];
  bias?: boolean;
  /** Batch normalisation of both convolutions through time (see {@link BatchNormSpec}). */
  batchNorm?: boolean | BatchNormSpec;
  gain?: number;
  surrogate?: SurrogateSpec;
  params?: Record<string, unknown>;
}

/** `[H, W, C]` to `[H·W·C]` in row-major order (what a dense layer or the readout after a spatial layer reads). */
export interface FlattenLayerSpec {
  type: 'flatten';
}

/**
 * Dropout of the activations entering the next layer (or the readout) while training: each of a
 * sequence's features is kept with probability 1 − `rate` and scaled by 1/(1 − `rate`), with one
 * mask per sequence held for all of its steps (a neuron dropped at step 0 stays dropped to the end,
 * as in Lee et al. 2020 and the TSSL-BP and SEW-ResNet code). Evaluation and inference run
 * without it. It sits after any pooling before the same layer.
 */
export interface DropoutLayerSpec {
  type: 'dropout';
  /** Probability that a feature is dropped, in [0, 1). */
  rate: number;
}

/** One entry of a model's `layers`: a dense layer (no `type`, or `dense`), `conv2d`, `sew_block`, `avgpool`, `maxpool`, `sumpool`, `flatten` or `dropout`. */
export type LayerSpec = DenseLayerSpec | Conv2dLayerSpec | SewBlockLayerSpec | PoolLayerSpec | FlattenLayerSpec | DropoutLayerSpec;

/**
 * The non-spiking readout over the last layer's spikes (or, with `from: "membrane"`, its membrane
 * potentials): the drive `d_t = s_t·W_out + b_out` integrated by the readout's kind — core's
 * `leaky` (default), `y_t = κ·y_{t−1} + d_t` with a fixed leak `kappa` (default 0.9), or a kind a
 * plugin provides (a liquid-time-constant readout, ...). Options of
 * the kind sit next to `size` (`"kappa": 0.5`).
 */
export interface ReadoutSpec {
  size: number;
  /** The readout kind (default `leaky`). */
  kind?: string;
  /**
   * What the readout reads from the last layer: its `spikes` (default) or its `membrane`
   * potentials (the state field its neuron names as `membrane`; the Add-task model of Yin et al.
   * 2023 reads its neurons' membrane).
   */
  from?: 'spikes' | 'membrane';
  /** Leak κ in [0, 1] of the `leaky` readout (default 0.9); κ = 0 gives an instantaneous linear readout. */
  kappa?: number;
  bias?: boolean;
  gain?: number;
  /** Options of a plugin's readout kind. */
  [option: string]: unknown;
}

/** A readout spec after validation. */
export interface ResolvedReadout {
  readonly size: number;
  readonly kind: string;
  readonly from: 'spikes' | 'membrane';
  readonly bias: boolean;
  readonly gain: number;
  /** The kind's options, validated against its schema (defaults filled). */
  readonly options: Readonly<Record<string, string | number | boolean>>;
  /** The readout itself. */
  readonly readout: AnyReadout;
  /** Its fixed leak κ (`Readout.leak`), or `undefined` for a readout without one. */
  readonly leak: number | undefined;
  /** Whether it has a synapse (`W`, `b`); without one it reads its input as its drive (`Readout.synapse`). */
  readonly synapse: boolean;
}

/**
 * A network as plain data: inputs → layers (in order) → readout. Matrices are `[fan_in, fan_out]`
 * acting on row vectors (`current = x_t·W + b`); tensors are time-major `[T, B, features]`.
 */
export interface ModelSpec {
  /** Input features per step (with `inputShape`: optional, and then its product). */
  inputs: number;
  /** The input's `[H, W, C]` (channels last) for spatial layers; the data stays flat, `[T, B, H·W·C]`, in row-major order. */
  inputShape?: [number, number, number];
  layers: LayerSpec[];
  readout: ReadoutSpec;
  /** Surrogate of every layer that names none (when omitted: each neuron's own default, else fast sigmoid with slope 25). */
  surrogate?: SurrogateSpec;
}

/**
 * A layer with neurons, after validation. Pooling and flatten entries of the spec are not layers of
 * their own: pooling runs on the way into the next layer (`pools`) or into the readout, flatten
 * only changes how the next entry reads the (already flat) activations. Parameters are numbered
 * over these layers: `layers.<index>.W`.
 */
export interface ResolvedLayer {
  /** Its number among the layers with neurons (what parameter names and states use). */
  readonly index: number;
  /** Its position in the spec's `layers` (what error messages name). */
  readonly specIndex: number;
  readonly type: 'dense' | 'conv2d' | 'sew_block';
  /** A `conv2d` layer's geometry (a `sew_block`'s: both of its convolutions). */
  readonly conv?: Conv2dGeometry;
  /** A `sew_block`'s connect function. */
  readonly connect?: 'ADD' | 'IAND' | 'AND';
  /** A conv layer's batch normalisation through time (a `sew_block`'s: of both convolutions). */
  readonly batchNorm?: { readonly momentum: number; readonly epsilon: number };
  /** The pooling applied, in order, to its input before its synapse. */
  readonly pools: readonly PoolGeometry[];
  /** The dropout rate applied to its input, after the pooling, while training (absent: none). */
  readonly dropout?: number;
  readonly neuron: AnyNeuronModel;
  readonly config: Readonly<Record<string, string | number | boolean>>;
  /** Neurons (a `conv2d` layer: H′·W′·channels). */
  readonly size: number;
  /** Inputs per neuron: a dense layer's input features, a `conv2d` layer's kh·kw·C_in (the weights' bound ±gain/√fanIn). */
  readonly fanIn: number;
  readonly recurrent: boolean;
  /** False when the diagonal of `W_rec` is masked (only meaningful with `recurrent`). */
  readonly selfConnections: boolean;
  readonly bias: boolean;
  readonly gain: number;
  readonly surrogate: Surrogate;
}

export interface ResolvedModel {
  readonly spec: ModelSpec;
  readonly inputs: number;
  /** The input's `[H, W, C]`, where the spec gives one. */
  readonly inputShape?: SpatialShape;
  readonly layers: readonly ResolvedLayer[];
  readonly readout: ResolvedReadout;
  /** The pooling applied to the last layer's output before the readout. */
  readonly readoutPools: readonly PoolGeometry[];
  /** The dropout rate applied to the readout's input, after its pooling, while training (absent: none). */
  readonly readoutDropout?: number;
  /** The readout's input features (rows of `readout.W`). */
  readonly readoutFanIn: number;
}

/** Whether any layer's input, or the readout's, has dropout. */
export function hasDropout(model: ResolvedModel): boolean {
  return model.readoutDropout !== undefined || model.layers.some((l) => l.dropout !== undefined);
}

/** Whether every layer is dense and nothing pools (the network's original form, which fused kernels and most online rules assume). */
export function isDenseModel(model: ResolvedModel): boolean {
  return model.readoutPools.length === 0 && model.layers.every((l) => l.type === 'dense' && l.pools.length === 0);
}

/** The plain fields of a model, a layer and a readout: one schema each, parsed once (the other keys name plugins' values). */
const modelFields = { inputs: { type: 'number', integer: true, min: 1, doc: 'input channels' } } as const;
const layerFields = {
  size: { type: 'number', integer: true, min: 1, required: true, doc: 'number of neurons' },
  recurrent: { type: 'boolean', default: false },
  selfConnections: { type: 'boolean', default: true },
  bias: { type: 'boolean', default: true },
  gain: { type: 'number', default: 1, min: 0, exclusiveMin: true },
} as const;
const readoutFields = {
  size: { type: 'number', integer: true, min: 1, required: true, doc: 'number of outputs' },
  kind: { type: 'string', default: 'leaky' },
  from: { type: 'string', default: 'spikes', oneOf: ['spikes', 'membrane'] },
  bias: { type: 'boolean', default: true },
  gain: { type: 'number', default: 1, min: 0, exclusiveMin: true },
} as const;

/** The entries of `obj` whose keys `schema` names (the rest are checked elsewhere). */
function fieldsOf(obj: Record<string, unknown>, schema: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).filter(([k]) => k in schema));
}

const convFields = {
  channels: { type: 'number', integer: true, min: 1, required: true, doc: 'output channels' },
  bias: { type: 'boolean', default: true },
  gain: { type: 'number', default: 1, min: 0, exclusiveMin: true },
} as const;

/** A `conv2d` entry's padding: `valid` (default), `same`, or explicit zeros `p` / `[rows, columns]` (≥ 0 integers; 0 is `valid`). */
function paddingOf(value: unknown, path: string): Padding {
  if (value === undefined || value === 'valid' || value === 0) return 'valid';
  if (value === 'same') return 'same';
  const ok = (x: unknown): x is number => typeof x === 'number' && Number.isInteger(x) && x >= 0;
  const pair: [number, number] | undefined = ok(value)
    ? [value, value]
    : Array.isArray(value) && value.length === 2 && value.every(ok)
      ? [value[0] as number, value[1] as number]
      : undefined;
  if (!pair) {
    throw configError(
      path,
      `expected "valid", "same", or zeros on both sides: a non-negative integer or a pair [rows, columns] of them, got ${JSON.stringify(value)}`,
    );
  }
  return pair[0] === 0 && pair[1] === 0 ? 'valid' : [pair[0], pair[1]];
}

const LAYER_KEYS = ['type', 'neuron', 'size', 'recurrent', 'selfConnections', 'bias', 'gain', 'surrogate', 'params'] as const;
const CONV_KEYS = ['type', 'neuron', 'channels', 'kernel', 'stride', 'padding', 'bias', 'batchNorm', 'gain', 'surrogate', 'params'] as const;
const POOL_KEYS = ['type', 'size', 'stride', 'padding'] as const;
const sumPoolFields = { scale: { type: 'number', default: 1, min: 0, exclusiveMin: true, doc: "the factor on each window's sum" } } as const;
const SEW_KEYS = ['type', 'neuron', 'connect', 'channels', 'kernel', 'bias', 'batchNorm', 'gain', 'surrogate', 'params'] as const;
const batchNormFields = {
  momentum: { type: 'number', default: 0.1, min: 0, max: 1, doc: "weight of each pass's statistics in the running estimates" },
  epsilon: { type: 'number', default: 1e-5, min: 0, exclusiveMin: true, doc: 'added to the variance' },
} as const;

/**
 * A conv layer's `batchNorm` (`true`, or its options) and its bias: with batch normalisation the
 * layer has no bias of its own (β is one), so an explicit `"bias": true` is refused.
 */
function batchNormOf(l: Record<string, unknown>, lp: string, bias: boolean): { batchNorm?: ResolvedLayer['batchNorm']; bias: boolean } {
  const raw = l['batchNorm'];
  if (raw === undefined || raw === false) return { bias };
  const options = raw === true ? {} : expectObject(raw, join(lp, 'batchNorm'));
  rejectUnknownKeys(options, Object.keys(batchNormFields), join(lp, 'batchNorm'));
  const batchNorm = parseSchema(batchNormFields, options, join(lp, 'batchNorm'));
  if (l['bias'] === true) {
    throw configError(join(lp, 'bias'), 'a batch-normalised convolution has no bias of its own (the normalisation\'s β is one); remove "bias" or "batchNorm"');
  }
  return { batchNorm, bias: false };
}
const sewFields = {
  connect: { type: 'string', required: true, oneOf: ['ADD', 'IAND', 'AND'], doc: 'connect function of the second stage and the input' },
  channels: { type: 'number', integer: true, min: 1, doc: "the block's channels (its input's)" },
  bias: { type: 'boolean', default: true },
  gain: { type: 'number', default: 1, min: 0, exclusiveMin: true },
} as const;
const dropoutFields = {
  rate: { type: 'number', required: true, min: 0, max: 1, exclusiveMax: true, doc: 'probability that a feature is dropped' },
} as const;
const LAYER_TYPES = ['dense', 'conv2d', 'sew_block', 'avgpool', 'maxpool', 'sumpool', 'flatten', 'dropout'] as const;
const MODEL_KEYS = ['inputs', 'inputShape', 'layers', 'readout', 'surrogate'] as const;
const READOUT_KEYS = Object.keys(readoutFields);

export interface ModelRegistries {
  readonly neurons: ReadonlyMap<string, AnyNeuronModel>;
  /** Surrogate entries (a registry's map of them works too). */
  readonly surrogates: Iterable<SurrogateEntry> | ReadonlyMap<string, SurrogateEntry>;
  /** Readout kinds besides core's (`leaky`), e.g. a plugin registry's `readouts`. */
  readonly readouts?: Iterable<AnyReadout> | ReadonlyMap<string, AnyReadout>;
}

/**
 * Validates a model spec against the installed neurons and surrogates. Every error is a
 * `SpikeflowError` whose message and `details.path` name the offending field, e.g.
 * `model.layers[0].size: must be > 0, got -3`.
 */
export function resolveModel(spec: unknown, reg: ModelRegistries, path = 'model'): ResolvedModel {
  const obj = expectObject(spec, path);
  rejectUnknownKeys(obj, MODEL_KEYS, path);
  const surrogates = [...valuesOf(reg.surrogates)];
  const given = parseSchema(modelFields, fieldsOf(obj, modelFields), path).inputs;
  const inputShape = obj['inputShape'] === undefined ? undefined : spatialShapeOf(obj['inputShape'], join(path, 'inputShape'));
  if (inputShape && given !== undefined && given !== sizeOf(inputShape)) {
    throw configError(
      join(path, 'inputs'),
      `is ${given}, but inputShape [${inputShape}] holds ${sizeOf(inputShape)} features; omit "inputs" or make them agree`,
    );
  }
  const inputs = inputShape ? sizeOf(inputShape) : given;
  if (inputs === undefined) throw configError(join(path, 'inputs'), 'is required (the input features per step), unless the model gives an "inputShape"');
  const modelSurrogate = obj['surrogate'] === undefined ? undefined : surrogateFromSpec(obj['surrogate'], surrogates, join(path, 'surrogate'));
  let coreDefault: Surrogate | undefined;
  const fallback = () => {
    coreDefault ??= surrogateFromSpec({ name: 'fast_sigmoid', slope: 25 }, surrogates, join(path, 'surrogate'));
    return coreDefault;
  };
  const layersRaw = obj['layers'];
  if (!Array.isArray(layersRaw) || layersRaw.length === 0) {
    throw configError(join(path, 'layers'), `expected a non-empty array of layers, got ${JSON.stringify(layersRaw)}`);
  }
  // What the next entry reads: flat features, or a spatial [H, W, C] (flat in memory either way).
  let shape: SpatialShape | number = inputShape ?? inputs;
  let pools: PoolGeometry[] = [];
  // The dropout before the next layer (or the readout), and where the spec gave it.
  let dropout: { rate: number; specIndex: number } | undefined;
  const dropoutOf = () => (dropout ? { dropout: dropout.rate } : {});
  const layers: ResolvedLayer[] = [];
  const neuronOf = (l: Record<string, unknown>, lp: string) => {
    const name = l['neuron'];
    if (typeof name !== 'string') throw configError(join(lp, 'neuron'), `expected a neuron name, got ${JSON.stringify(name)}`);
    const neuron = reg.neurons.get(name);
    if (!neuron) {
      throw new SpikeflowError(
        'UNKNOWN_NAME',
        `${lp}.neuron: unknown neuron '${name}'; ${didYouMean(name, reg.neurons.keys())}. ` +
          `A neuron comes from a plugin: install it (e.g. pnpm add @spikeflow/neuron-${name}) and list it in "plugins".`,
        { path: `${lp}.neuron`, name },
      );
    }
    // Precedence: the layer's surrogate, the model's, the neuron's own default, core's default.
    const surrogate =
      l['surrogate'] !== undefined
        ? surrogateFromSpec(l['surrogate'], surrogates, join(lp, 'surrogate'))
        : (modelSurrogate ??
          (neuron.defaultSurrogate ? surrogateFromSpec(neuron.defaultSurrogate, surrogates, `${lp}.neuron (default surrogate of '${name}')`) : fallback()));
    const config = parseSchema(neuron.configSchema, l['params'], join(lp, 'params'));
    neuron.validate?.(config, join(lp, 'params'));
    return { neuron, surrogate, config: config as ResolvedLayer['config'] };
  };
  layersRaw.forEach((raw: unknown, specIndex) => {
    const lp = join(join(path, 'layers'), specIndex);
    const l = expectObject(raw, lp);
    const type = l['type'] ?? 'dense';
    if (typeof type !== 'string' || !(LAYER_TYPES as readonly string[]).includes(type)) {
      throw configError(join(lp, 'type'), `unknown layer type ${JSON.stringify(type)}; ${didYouMean(String(type), LAYER_TYPES)}`);
    }
    const spatialIn = (what: string): SpatialShape => {
      if (typeof shape !== 'number') return shape;
      throw configError(
        join(lp, 'type'),
        `${what} reads a spatial [H, W, C] input, and ${specIndex === 0 ? 'the model input' : `layers[${specIndex - 1}]`} gives ${shape} flat features; ` +
          (specIndex === 0 ? 'give the model an "inputShape"' : "put it before the flatten (a dense layer's output is flat)"),
      );
    };
    if (type === 'flatten') {
      rejectUnknownKeys(l, ['type'], lp);
      shape = typeof shape === 'number' ? shape : sizeOf(shape);
      return;
    }
    if (type === 'dropout') {
      rejectUnknownKeys(l, ['type', 'rate'], lp);
      if (dropout) {
        throw configError(
          join(lp, 'type'),
          `follows the dropout of layers[${dropout.specIndex}] with no layer between them; merge them into one (rate 1 − (1 − p1)·(1 − p2))`,
        );
      }
      dropout = { rate: parseSchema(dropoutFields, fieldsOf(l, dropoutFields), lp).rate, specIndex };
      return;
    }
    if (type === 'avgpool' || type === 'maxpool' || type === 'sumpool') {
      rejectUnknownKeys(l, type === 'sumpool' ? [...POOL_KEYS, 'scale'] : POOL_KEYS, lp);
      if (dropout) {
        throw configError(
          join(lp, 'type'),
          `pools what the dropout of layers[${dropout.specIndex}] masked; put the dropout after the pooling (a layer's input is pooled, then masked)`,
        );
      }
      if (l['padding'] !== undefined && l['padding'] !== 'valid')
        throw configError(join(lp, 'padding'), `pooling takes "valid" windows only, got ${JSON.stringify(l['padding'])}`);
      const size = pairOf(l['size'], join(lp, 'size'), 'the window size');
      const stride = l['stride'] === undefined ? size : pairOf(l['stride'], join(lp, 'stride'), 'the stride');
      const scale = type === 'sumpool' ? parseSchema(sumPoolFields, fieldsOf(l, sumPoolFields), lp).scale : undefined;
      const g = poolGeometry(type, spatialIn(type), size, stride, lp, scale);
      pools.push(g);
      shape = g.outShape;
      return;
    }
    const index = layers.length;
    if (type === 'conv2d') {
      rejectUnknownKeys(l, CONV_KEYS, lp);
      const inShape = spatialIn('conv2d');
      const parsed = parseSchema(convFields, fieldsOf(l, convFields), lp);
      const { channels, gain } = parsed;
      const padding = paddingOf(l['padding'], join(lp, 'padding'));
      const { bias, ...norm } = batchNormOf(l, lp, parsed.bias);
      const kernel = pairOf(l['kernel'], join(lp, 'kernel'), 'the kernel size');
      const stride = l['stride'] === undefined ? ([1, 1] as [number, number]) : pairOf(l['stride'], join(lp, 'stride'), 'the stride');
      const conv = convGeometry(inShape, channels, kernel, stride, padding, lp);
      const n = neuronOf(l, lp);
      const size = sizeOf(conv.outShape);
      const fanIn = kernel[0] * kernel[1] * inShape[2];
      layers.push({ index, specIndex, type, conv, ...norm, pools, ...dropoutOf(), ...n, size, fanIn, recurrent: false, selfConnections: true, bias, gain });
      shape = conv.outShape;
      pools = [];
      dropout = undefined;
      return;
    }
    if (type === 'sew_block') {
      rejectUnknownKeys(l, SEW_KEYS, lp);
      const inShape = spatialIn('sew_block');
      const parsed = parseSchema(sewFields, fieldsOf(l, sewFields), lp);
      const { connect, channels, gain } = parsed;
      const { bias, ...norm } = batchNormOf(l, lp, parsed.bias);
      if (channels !== undefined && channels !== inShape[2]) {
        throw configError(
          join(lp, 'channels'),
          `is ${channels}, but the block's input has ${inShape[2]} channels (a SEW block keeps its input's); omit it or make them agree`,
        );
      }
      const kernel = l['kernel'] === undefined ? ([3, 3] as [number, number]) : pairOf(l['kernel'], join(lp, 'kernel'), 'the kernel size');
      const conv = convGeometry(inShape, inShape[2], kernel, [1, 1], 'same', lp);
      const n = neuronOf(l, lp);
      const size = sizeOf(inShape);
      const fanIn = kernel[0] * kernel[1] * inShape[2];
      layers.push({
        index,
        specIndex,
        type,
        conv,
        connect,
        ...norm,
        pools,
        ...dropoutOf(),
        ...n,
        size,
        fanIn,
        recurrent: false,
        selfConnections: true,
        bias,
        gain,
      });
      pools = [];
      dropout = undefined;
      return;
    }
    rejectUnknownKeys(l, LAYER_KEYS, lp);
    if (typeof shape !== 'number') {
      throw configError(
        join(lp, 'type'),
        `a dense layer reads flat features, and ${specIndex === 0 ? 'the model input' : `layers[${specIndex - 1}]`} gives a [${shape}] map; put a { "type": "flatten" } before it`,
      );
    }
    const n = neuronOf(l, lp);
    const { size, recurrent, selfConnections, bias, gain } = parseSchema(layerFields, fieldsOf(l, layerFields), lp);
    if (!selfConnections && !recurrent)
      throw configError(join(lp, 'selfConnections'), 'only a recurrent layer has self-connections to mask; add "recurrent": true or remove "selfConnections"');
    layers.push({ index, specIndex, type: 'dense', pools, ...dropoutOf(), ...n, size, fanIn: shape, recurrent, selfConnections, bias, gain });
    shape = size;
    pools = [];
    dropout = undefined;
  });
  if (layers.length === 0)
    throw configError(join(path, 'layers'), 'has no layer with neurons (dense, conv2d or sew_block); pooling and flatten alone have nothing to train');
  if (typeof shape !== 'number') {
    throw configError(
      join(path, 'layers'),
      `end in a [${shape}] map, and the readout reads flat features; end them with a { "type": "flatten" } or a dense layer`,
    );
  }
  const readout = resolveReadout(obj['readout'], reg, layers[layers.length - 1]!.neuron, join(path, 'readout'));
  if (!readout.synapse && readout.size !== shape) {
    throw configError(
      join(join(path, 'readout'), 'size'),
      `is ${readout.size}, but readout '${readout.kind}' passes on what it reads unchanged, ${shape} features; make it ${shape} (or the last layer ${readout.size} wide)`,
    );
  }
  if (readout.from === 'membrane' && (pools.length > 0 || layers.at(-1)!.type !== 'dense')) {
    throw configError(
      join(join(path, 'readout'), 'from'),
      'a readout of the membrane reads the last layer directly: it must be dense, with no pooling after it; use "from": "spikes"',
    );
  }
  return {
    spec: spec as ModelSpec,
    inputs,
    ...(inputShape ? { inputShape } : {}),
    layers,
    readout,
    readoutPools: pools,
    ...(dropout ? { readoutDropout: dropout.rate } : {}),
    readoutFanIn: shape,
  };
}

function resolveReadout(raw: unknown, reg: ModelRegistries, lastNeuron: AnyNeuronModel, rp: string): ResolvedReadout {
  const r = expectObject(raw, rp);
  const kinds = new Map<string, AnyReadout>(builtinReadouts.map((k) => [k.name, k]));
  for (const k of valuesOf(reg.readouts ?? [])) kinds.set(k.name, k);
  const { size, kind, from, bias, gain } = parseSchema(readoutFields, fieldsOf(r, readoutFields), rp);
  const model = kinds.get(kind);
  if (!model) {
    throw new SpikeflowError(
      'UNKNOWN_NAME',
      `${rp}.kind: unknown readout '${kind}'; ${didYouMean(kind, kinds.keys())}. A readout kind comes from a plugin listed in "plugins" (a neuron's plugin may bring the readout its model was designed with).`,
      { path: join(rp, 'kind'), name: kind },
    );
  }
  const own = Object.keys(model.optionsSchema);
  const options: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(r)) {
    if (READOUT_KEYS.includes(key)) continue;
    if (own.includes(key)) {
      options[key] = value;
      continue;
    }
    // An option of another kind: say whose it is.
    const owner = [...kinds.values()].find((k) => key in k.optionsSchema);
    if (owner) throw configError(join(rp, key), `is an option of the '${owner.name}' readout, not of '${kind}'; remove it or use "kind": "${owner.name}"`);
    rejectUnknownKeys({ [key]: value }, [...READOUT_KEYS, ...own], rp);
  }
  if (from === 'membrane' && !lastNeuron.membrane) {
    throw configError(join(rp, 'from'), `neuron '${lastNeuron.name}' of the last layer names no membrane state to read; use "from": "spikes"`);
  }
  const parsed = parseSchema(model.optionsSchema, options, rp) as Record<string, string | number | boolean>;
  const synapse = model.synapse !== false;
  if (!synapse && r['bias'] === true) {
    throw configError(join(rp, 'bias'), `readout '${kind}' has no weights, and so no bias; remove "bias" or use a readout with a synapse ("kind": "leaky")`);
  }
  return {
    size,
    kind,
    from,
    synapse,
    bias: synapse && bias,
    gain,
    options: parsed,
    readout: model,
    leak: model.leak?.(parsed),
  };
}

/** The values of a map, or the items of any other iterable. */
function valuesOf<T>(items: Iterable<T> | ReadonlyMap<string, T>): Iterable<T> {
  return items instanceof Map ? items.values() : (items as Iterable<T>);
}

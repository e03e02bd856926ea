import { tf, type Tensor, type Variable } from './tf.js';
import { SpikeflowError } from './errors.js';
import type { NeuronTensorParam } from './neuron.js';
import type { ResolvedModel } from './model.js';

/** Trainable parameters by name: `layers.0.W`, `layers.0.W_rec`, `layers.0.b`, `layers.0.beta`, `readout.W`, ... */
export type ParamMap = Readonly<Record<string, Variable>>;

/**
 * The name of layer `layer`'s parameter `key` (`W`, `W_rec`, `b`, or a trainable neuron
 * parameter such as `beta`): the one place parameter names are spelled. Rules and tools use it
 * (and {@link readoutParam}) instead of writing `'layers.0.W'`.
 */
export function layerParam(layer: number, key: string): string {
  return `layers.${layer}.${key}`;
}

/** The name of the readout's parameter `key` (`W`, `b`, or one of its kind's own). */
export function readoutParam(key: string): string {
  return `readout.${key}`;
}

/** A tensor parameter of a neuron or readout as the step reads it: the tensor and its clamp. */
export interface HeldTensor {
  readonly tensor: Tensor;
  readonly range?: readonly [number, number];
}

/** Everything a network owns: its trainable variables and the constants its steps read. */
export interface NetworkTensors {
  readonly params: Record<string, Variable>;
  /**
   * State that is not trained but kept with the weights (checkpoints save it; optimizers never
   * see it): the running statistics of batch normalisation, `layers.0.bn_mean`, `layers.0.bn_var`.
   */
  readonly buffers: Record<string, Variable>;
  /** Constants to dispose with the network (fixed neuron parameters, masks). */
  readonly constants: readonly Tensor[];
  /** Per layer: its neuron's tensor parameters by key (variables or constants). */
  readonly neuron: readonly { readonly [key: string]: HeldTensor }[];
  /** The readout kind's own tensor parameters by key. */
  readonly readout: { readonly [key: string]: HeldTensor };
  /** Per layer: the constant `1 − I` that masks `W_rec`'s diagonal (layers with `selfConnections: false`). */
  readonly recurrentMasks: readonly (Tensor | undefined)[];
}

/**
 * The initial parameters of `model`, drawn from `seed` in a fixed order (layer by layer: `W`, `b`,
 * `W_rec`, the neuron's uniform parameters; then the readout's `W`, `b` and its kind's own), so
 * that the same seed gives the same weights on any backend. Weights are uniform in ±gain/√fan_in.
 */
export function createTensors(model: ResolvedModel, seed: number): NetworkTensors {
  const params: Record<string, Variable> = {};
  const buffers: Record<string, Variable> = {};
  const constants: Tensor[] = [];
  let s = seed * 1000;
  const uniform = (shape: number[], fanIn: number, gain: number) => {
    const bound = gain / Math.sqrt(fanIn);
    return tf.tidy(() => tf.randomUniform(shape, -bound, bound, 'float32', s++));
  };
  const variable = (name: string, init: Tensor, trainable = true) => {
    (trainable ? params : buffers)[name] = tf.variable(init, trainable);
    init.dispose();
  };
  const held = (p: NeuronTensorParam, name: string, what: string): HeldTensor => {
    const value = neuronParamTensor(p, what, typeof p.value === 'object' && !(p.value instanceof Float32Array) ? s++ : 0);
    if (!p.trainable) {
      constants.push(value);
      return { tensor: value };
    }
    variable(name, value);
    return { tensor: params[name]!, ...(p.range ? { range: p.range } : {}) };
  };
  try {
    const neuron = model.layers.map((l) => {
      // A conv layer's (conv2d, sew_block) W is [kh, kw, C_in, channels] (TensorFlow's HWIO) and its bias per channel.
      const c = l.conv;
      const wShape = c ? [c.kernel[0], c.kernel[1], c.inShape[2], c.outShape[2]] : [l.fanIn, l.size];
      const bShape = [c ? c.outShape[2] : l.size];
      variable(layerParam(l.index, 'W'), uniform(wShape, l.fanIn, l.gain));
      if (l.bias) variable(layerParam(l.index, 'b'), uniform(bShape, l.fanIn, l.gain));
      // A SEW block's second convolution.
      if (l.type === 'sew_block') {
        variable(layerParam(l.index, 'W2'), uniform(wShape, l.fanIn, l.gain));
        if (l.bias) variable(layerParam(l.index, 'b2'), uniform(bShape, l.fanIn, l.gain));
      }
      // Batch normalisation: γ = 1 and β = 0 trained, the running mean 0 and variance 1 kept (one set per convolution).
      if (l.batchNorm) {
        for (const stage of l.type === 'sew_block' ? ['bn', 'bn2'] : ['bn']) {
          variable(layerParam(l.index, `${stage}_gamma`), tf.ones(bShape));
          variable(layerParam(l.index, `${stage}_beta`), tf.zeros(bShape));
          variable(layerParam(l.index, `${stage}_mean`), tf.zeros(bShape), false);
          variable(layerParam(l.index, `${stage}_var`), tf.ones(bShape), false);
        }
      }
      if (l.recurrent) {
        const w = uniform([l.size, l.size], l.size, l.gain);
        variable(layerParam(l.index, 'W_rec'), l.selfConnections ? w : tf.tidy(() => tf.mul(w, offDiagonal(l.size))));
        if (!l.selfConnections) w.dispose();
      }
      const tensors: Record<string, HeldTensor> = {};
      for (const [key, p] of Object.entries(l.neuron.tensorParams(l.config, l.size))) {
        tensors[key] = held(p, layerParam(l.index, key), `${l.neuron.name} parameter '${key}' (layers[${l.index}])`);
      }
      return tensors;
    });
    const r = model.readout;
    const rIn = model.readoutFanIn;
    if (r.synapse) variable(readoutParam('W'), uniform([rIn, r.size], rIn, r.gain));
    if (r.bias) variable(readoutParam('b'), uniform([r.size], rIn, r.gain));
    const readout: Record<string, HeldTensor> = {};
    for (const [key, p] of Object.entries(r.readout.tensorParams?.(r.options, r.size) ?? {})) {
      readout[key] = held(p, readoutParam(key), `readout '${r.kind}' parameter '${key}'`);
    }
    const recurrentMasks = model.layers.map((l) => {
      if (!l.recurrent || l.selfConnections) return undefined;
      const mask = offDiagonal(l.size);
      constants.push(mask);
      return mask;
    });
    return { params, buffers, constants, neuron, readout, recurrentMasks };
  } catch (e) {
    for (const v of [...Object.values(params), ...Object.values(buffers)]) v.dispose();
    for (const c of constants) c.dispose();
    throw e;
  }
}

/** `1 − I`, `[n, n]`: ones off the diagonal. */
function offDiagonal(n: number): Tensor {
  return tf.tidy(() => tf.sub(1, tf.eye(n)));
}

/** A held tensor as a step reads it: clamped to its range, if it has one (on the caller's tape). */
export function readHeld(h: HeldTensor): Tensor {
  return h.range ? tf.clipByValue(h.tensor, h.range[0], h.range[1]) : h.tensor;
}

/**
 * A neuron's tensor parameter as a tensor of its declared shape (`seed` draws a `uniform` one).
 * `what` names it in errors. For tests and tools that run a neuron without a network.
 */
export function neuronParamTensor(p: NeuronTensorParam, what: string, seed = 0): Tensor {
  const v = p.value;
  if (typeof v === 'number') {
    const shape = [...(p.shape ?? [])];
    return shape.length === 0 ? tf.scalar(v) : tf.fill(shape, v);
  }
  if (v instanceof Float32Array) {
    const shape = [...(p.shape ?? [v.length])];
    if (shape.reduce((a, b) => a * b, 1) !== v.length) {
      throw new SpikeflowError('PLUGIN_INVALID', `${what}: ${v.length} values do not fill shape [${shape}]`, { shape });
    }
    return tf.tensor(v, shape);
  }
  if (!p.shape || !(v.uniform >= 0)) {
    throw new SpikeflowError('PLUGIN_INVALID', `${what}: a uniform initialisation needs a shape and a bound >= 0`, { shape: p.shape, bound: v.uniform });
  }
  const shape = [...p.shape];
  const bound = v.uniform;
  return tf.tidy(() => tf.randomUniform(shape, -bound, bound, 'float32', seed));
}

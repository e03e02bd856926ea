import { tf, type Tensor, type Variable } from './tf.js';
import { SpikeflowError } from './errors.js';
import type { AnyNeuronModel, LifKernelParams, NeuronRegistry, NeuronState, NeuronStepContext, NeuronTensorParam } from './neuron.js';
import { spikeFn, surrogateFromSpec, type Surrogate, type SurrogateEntry, type SurrogateSpec } from './surrogates.js';
import { KernelTable, LeakyReadout, LifLayer, detach, unstackSteps, type KernelName, type KernelSignatures } from './kernels.js';
import {
  checkField,
  configError,
  didYouMean,
  expectObject,
  join,
  parseSchema,
  rejectUnknownKeys,
  type SchemaValues,
} from './validate.js';
import { disposeTree, tidy, treeLeaves } from './state.js';

export { detach };

// ---------------------------------------------------------------------------------------------
// Model spec: plain JSON, validated with errors that name the field.

interface LayerSpecBase {
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

type KnownLayerSpec = {
  [K in keyof NeuronRegistry]: LayerSpecBase & { neuron: K; params?: Partial<NeuronRegistry[K]> };
}[keyof NeuronRegistry];

/** One layer: a dense (optionally recurrent) synapse feeding a population of one neuron model. */
export type LayerSpec = [keyof NeuronRegistry] extends [never] ? LayerSpecBase & { neuron: string; params?: Record<string, unknown> } : KnownLayerSpec;

/**
 * The non-spiking readout over the last layer's spikes (or, with `from: "membrane"`, its membrane
 * potentials), `d_t = s_t·W_out + b_out`:
 *
 * - `leaky` (default): a leaky integrator `y_t = κ·y_{t−1} + d_t` with a fixed leak κ;
 * - `ltc`: a liquid-time-constant integrator `y_t = (1 − κ_t)·y_{t−1} + κ_t·d_t` whose update
 *   fraction `κ_t = σ([d_t ; y_{t−1}]·W_κ + b_κ)` is computed per unit and step by a trainable
 *   gate (parameters `readout.W_kappa` `[2·size, size]` and `readout.b_kappa`), as in the output
 *   layer of Yin et al. 2023 (code byin-cwi/sFPTT, `output_Neuron`).
 */
export interface ReadoutSpec {
  size: number;
  /** `leaky` (default) or `ltc`. */
  kind?: 'leaky' | 'ltc';
  /**
   * What the readout reads from the last layer: its `spikes` (default) or its `membrane`
   * potentials (the state field its neuron names as `membrane`; the Add-task model of Yin et al.
   * 2023 reads the LTC-SN membrane).
   */
  from?: 'spikes' | 'membrane';
  /** Leak κ in [0, 1] of the `leaky` readout (default 0.9); κ = 0 gives an instantaneous linear readout. */
  kappa?: number;
  bias?: boolean;
  gain?: number;
}

/**
 * A network as plain data: inputs → layers (in order) → readout. Matrices are `[fan_in, fan_out]`
 * acting on row vectors (`current = x_t·W + b`); tensors are time-major `[T, B, features]`.
 */
export interface ModelSpec {
  inputs: number;
  layers: LayerSpec[];
  readout: ReadoutSpec;
  /** Surrogate of every layer that names none (when omitted: each neuron's own default, else fast sigmoid with slope 25). */
  surrogate?: SurrogateSpec;
}

export interface ResolvedLayer {
  readonly index: number;
  readonly neuron: AnyNeuronModel;
  readonly config: Readonly<Record<string, string | number | boolean>>;
  readonly size: number;
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
  readonly layers: readonly ResolvedLayer[];
  readonly readout: Required<ReadoutSpec>;
}

const LAYER_KEYS = ['neuron', 'size', 'recurrent', 'selfConnections', 'bias', 'gain', 'surrogate', 'params'] as const;
const MODEL_KEYS = ['inputs', 'layers', 'readout', 'surrogate'] as const;
const READOUT_KEYS = ['size', 'kind', 'from', 'kappa', 'bias', 'gain'] as const;

export interface ModelRegistries {
  readonly neurons: ReadonlyMap<string, AnyNeuronModel>;
  readonly surrogates: Iterable<SurrogateEntry>;
}

/**
 * Validates a model spec against the installed neurons and surrogates. Every error is a
 * `SpikeflowError` whose message and `details.path` name the offending field, e.g.
 * `model.layers[0].size: must be > 0, got -3`.
 */
export function resolveModel(spec: unknown, reg: ModelRegistries, path = 'model'): ResolvedModel {
  const obj = expectObject(spec, path);
  rejectUnknownKeys(obj, MODEL_KEYS, path);
  const surrogates = [...reg.surrogates];
  const inputs = checkField({ type: 'number', integer: true, min: 1, required: true, doc: 'input channels' }, obj['inputs'], join(path, 'inputs')) as number;
  const modelSurrogate = obj['surrogate'] === undefined ? undefined : surrogateFromSpec(obj['surrogate'], surrogates, join(path, 'surrogate'));
  let coreDefault: Surrogate | undefined;
  const layersRaw = obj['layers'];
  if (!Array.isArray(layersRaw) || layersRaw.length === 0) {
    throw configError(join(path, 'layers'), `expected a non-empty array of layers, got ${JSON.stringify(layersRaw)}`);
  }
  let fanIn = inputs;
  const layers: ResolvedLayer[] = layersRaw.map((raw: unknown, index) => {
    const lp = join(join(path, 'layers'), index);
    const l = expectObject(raw, lp);
    rejectUnknownKeys(l, LAYER_KEYS, lp);
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
    const size = checkField({ type: 'number', integer: true, min: 1, required: true, doc: 'number of neurons' }, l['size'], join(lp, 'size')) as number;
    const recurrent = checkField({ type: 'boolean', default: false }, l['recurrent'], join(lp, 'recurrent')) as boolean;
    const selfConnections = checkField({ type: 'boolean', default: true }, l['selfConnections'], join(lp, 'selfConnections')) as boolean;
    if (!selfConnections && !recurrent) throw configError(join(lp, 'selfConnections'), 'only a recurrent layer has self-connections to mask; add "recurrent": true or remove "selfConnections"');
    const bias = checkField({ type: 'boolean', default: true }, l['bias'], join(lp, 'bias')) as boolean;
    const gain = checkField({ type: 'number', default: 1, min: 0, exclusiveMin: true }, l['gain'], join(lp, 'gain')) as number;
    // Precedence: the layer's surrogate, the model's, the neuron's own default, core's default.
    const surrogate =
      l['surrogate'] !== undefined
        ? surrogateFromSpec(l['surrogate'], surrogates, join(lp, 'surrogate'))
        : (modelSurrogate ??
          (neuron.defaultSurrogate
            ? surrogateFromSpec(neuron.defaultSurrogate, surrogates, `${lp}.neuron (default surrogate of '${name}')`)
            : (coreDefault ??= surrogateFromSpec({ name: 'fast_sigmoid', slope: 25 }, surrogates, join(path, 'surrogate')))));
    const config = parseSchema(neuron.configSchema, l['params'], join(lp, 'params'));
    neuron.validate?.(config, join(lp, 'params'));
    const layer: ResolvedLayer = { index, neuron, config: config as ResolvedLayer['config'], size, fanIn, recurrent, selfConnections, bias, gain, surrogate };
    fanIn = size;
    return layer;
  });
  const rp = join(path, 'readout');
  const r = expectObject(obj['readout'], rp);
  rejectUnknownKeys(r, READOUT_KEYS, rp);
  const kind = checkField({ type: 'string', default: 'leaky', oneOf: ['leaky', 'ltc'] }, r['kind'], join(rp, 'kind')) as 'leaky' | 'ltc';
  if (kind === 'ltc' && r['kappa'] !== undefined) {
    throw configError(join(rp, 'kappa'), `the 'ltc' readout learns its update fraction κ_t; remove "kappa" or use "kind": "leaky"`);
  }
  const from = checkField({ type: 'string', default: 'spikes', oneOf: ['spikes', 'membrane'] }, r['from'], join(rp, 'from')) as 'spikes' | 'membrane';
  const lastNeuron = layers[layers.length - 1]!.neuron;
  if (from === 'membrane' && !lastNeuron.membrane) {
    throw configError(join(rp, 'from'), `neuron '${lastNeuron.name}' of the last layer names no membrane state to read; use "from": "spikes"`);
  }
  const readout = {
    size: checkField({ type: 'number', integer: true, min: 1, required: true, doc: 'number of outputs' }, r['size'], join(rp, 'size')) as number,
    kind,
    from,
    kappa: checkField({ type: 'number', default: 0.9, min: 0, max: 1 }, r['kappa'], join(rp, 'kappa')) as number,
    bias: checkField({ type: 'boolean', default: true }, r['bias'], join(rp, 'bias')) as boolean,
    gain: checkField({ type: 'number', default: 1, min: 0, exclusiveMin: true }, r['gain'], join(rp, 'gain')) as number,
  };
  return { spec: spec as ModelSpec, inputs, layers, readout };
}

// ---------------------------------------------------------------------------------------------
// Network: parameters (tf.Variables it owns), state, and one time step.

/** A layer's state: its neuron's state and its spikes of the last step (the recurrent input). */
export interface LayerState {
  readonly neuron: NeuronState;
  readonly spikes: Tensor;
}

/** The whole network's state at one step: plain data, passed in and returned. */
export interface NetState {
  readonly layers: readonly LayerState[];
  /** Readout trace y, `[B, outputs]`. */
  readonly readout: Tensor;
}

/** Trainable parameters by name: `layers.0.W`, `layers.0.W_rec`, `layers.0.b`, `layers.0.beta`, `readout.W`, ... */
export type ParamMap = Readonly<Record<string, Variable>>;

/**
 * The tensors one sequence is run with: the parameters as the step reads them (trainable neuron
 * parameters clamped to their range) and the kernels of the active backend. Made by
 * {@link Network.prepare} inside the scope (`tf.tidy`, `tf.variableGrads`) that runs the sequence,
 * so that clamps are on the gradient tape and are freed with the scope.
 */
export interface StepParams {
  readonly layers: readonly {
    readonly W: Tensor;
    readonly b?: Tensor;
    readonly W_rec?: Tensor;
    readonly neuron: { readonly [key: string]: Tensor };
    /** What the layer's neuron step receives besides its parameters (spike op, detach, kernels). */
    readonly ctx: NeuronStepContext;
  }[];
  readonly readout: {
    readonly W: Tensor;
    readonly b?: Tensor;
    /** The fixed leak of a `leaky` readout. */
    readonly kappa: Tensor;
    /** The gate of an `ltc` readout. */
    readonly W_kappa?: Tensor;
    readonly b_kappa?: Tensor;
  };
  readonly kernels: { readonly [K in KernelName]: KernelSignatures[K] };
  /**
   * Present when the whole network runs window by window through the backend's fast kernels
   * ({@link Network.runWindow}): every layer's neuron is a LIF layer (`lifKernel`), the readout is
   * `leaky` over spikes, no synapse hook is given, and the active backend registers fast
   * `spikeflow.lifLayer` and `spikeflow.leakyReadout`. One entry per layer.
   */
  readonly fused?: readonly LifKernelParams[];
  /** How the step computes each synaptic product `x·W` (see {@link PrepareOptions.synapse}). */
  readonly synapse: (x: Tensor, w: Tensor, site: SynapseSite) => Tensor;
}

/** Which synaptic product of a step a {@link SynapseFn} is asked for. */
export interface SynapseSite {
  /** The layer whose input current it makes, or the readout. */
  readonly layer: number | 'readout';
  /** `W` (the feed-forward input: the previous layer's spikes, the data, or what the readout reads) or `W_rec` (the layer's own spikes of the previous step). */
  readonly weight: 'W' | 'W_rec';
  /** The weight's parameter name: `layers.0.W`, `layers.0.W_rec`, `readout.W`. */
  readonly param: string;
}

/**
 * Computes one synaptic product `x·W` of a step; `dense` is the active backend's kernel. The value
 * must be `x·W`: rules substitute only what flows backward (OTTT's presynaptic traces in the
 * weight gradient, a detached input where a local rule cuts the network into blocks).
 */
export type SynapseFn = (x: Tensor, w: Tensor, site: SynapseSite, dense: KernelSignatures['spikeflow.dense']) => Tensor;

/** What {@link Network.runWindow} returns. */
export interface WindowOutput {
  /** Readout y_t of every step of the window, `[k, B, outputs]`. */
  readonly readout: Tensor;
  /** Spikes of every layer, `[k, B, size]` each. */
  readonly spikes: readonly Tensor[];
  /** The state after the window's last step (values: no gradient flows back through it). */
  readonly state: NetState;
}

export interface PrepareOptions {
  /**
   * Replaces the synaptic products of {@link Network.step}: every `x·W` of a layer's input
   * (`W`, `W_rec`) and of the readout goes through it. Default: `dense(x, W)`. Products inside a
   * neuron or a readout gate are not synapses and are not passed.
   */
  readonly synapse?: SynapseFn;
}

export interface StepOutput {
  readonly state: NetState;
  /** Readout y_t, `[B, outputs]`. */
  readonly readout: Tensor;
  /** Spikes of every layer at this step, `[B, size]` each. */
  readonly spikes: readonly Tensor[];
  /** The input current I_t each layer's neuron received at this step, `[B, size]` each. */
  readonly currents: readonly Tensor[];
}

export interface BuildOptions {
  /** Seed of the weight initialisation (default 0): same seed, same weights, on any backend. */
  seed?: number;
  /** Fast kernels registered by backend plugins (default: references only). */
  kernels?: KernelTable;
}

export class Network {
  readonly model: ResolvedModel;
  /** Trainable parameters, by name. */
  readonly params: ParamMap;
  readonly #constants: Tensor[] = [];
  readonly #neuronTensors: { readonly [key: string]: { tensor: Tensor; range?: readonly [number, number] } }[];
  readonly #spikeFns: NeuronStepContext['spike'][];
  readonly #kernels: KernelTable;
  readonly #kappa: Tensor;
  /** Per layer: the constant `1 − I` that masks W_rec's diagonal (layers with `selfConnections: false`). */
  readonly #recMasks: (Tensor | undefined)[];
  #disposed = false;

  constructor(model: ResolvedModel, { seed = 0, kernels = new KernelTable() }: BuildOptions = {}) {
    this.model = model;
    this.#kernels = kernels;
    const params: Record<string, Variable> = {};
    let s = seed * 1000;
    const uniform = (shape: number[], fanIn: number, gain: number) => {
      const bound = gain / Math.sqrt(fanIn);
      return tf.tidy(() => tf.randomUniform(shape, -bound, bound, 'float32', s++));
    };
    const variable = (name: string, init: Tensor) => {
      params[name] = tf.variable(init, true);
      init.dispose();
    };
    try {
      this.#neuronTensors = model.layers.map((l) => {
        variable(`layers.${l.index}.W`, uniform([l.fanIn, l.size], l.fanIn, l.gain));
        if (l.bias) variable(`layers.${l.index}.b`, uniform([l.size], l.fanIn, l.gain));
        if (l.recurrent) {
          const w = uniform([l.size, l.size], l.size, l.gain);
          variable(`layers.${l.index}.W_rec`, l.selfConnections ? w : tf.tidy(() => tf.mul(w, offDiagonal(l.size))));
          if (!l.selfConnections) w.dispose();
        }
        const tensors: Record<string, { tensor: Tensor; range?: readonly [number, number] }> = {};
        for (const [key, p] of Object.entries(l.neuron.tensorParams(l.config, l.size))) {
          const value = neuronParamTensor(p, `${l.neuron.name} parameter '${key}' (layers[${l.index}])`, typeof p.value === 'object' && !(p.value instanceof Float32Array) ? s++ : 0);
          if (p.trainable) {
            const name = `layers.${l.index}.${key}`;
            variable(name, value);
            tensors[key] = { tensor: params[name]!, ...(p.range ? { range: p.range } : {}) };
          } else {
            this.#constants.push(value);
            tensors[key] = { tensor: value };
          }
        }
        return tensors;
      });
      const last = model.layers[model.layers.length - 1]!;
      variable('readout.W', uniform([last.size, model.readout.size], last.size, model.readout.gain));
      if (model.readout.bias) variable('readout.b', uniform([model.readout.size], last.size, model.readout.gain));
      if (model.readout.kind === 'ltc') {
        // PyTorch's nn.Linear initialisation, as in the reference code: uniform in ±1/√fan_in.
        const O = model.readout.size;
        variable('readout.W_kappa', uniform([2 * O, O], 2 * O, 1));
        variable('readout.b_kappa', uniform([O], 2 * O, 1));
      }
      const kappa = tf.scalar(model.readout.kappa);
      this.#constants.push(kappa);
      this.#kappa = kappa;
      this.#recMasks = model.layers.map((l) => {
        if (!l.recurrent || l.selfConnections) return undefined;
        const mask = offDiagonal(l.size);
        this.#constants.push(mask);
        return mask;
      });
    } catch (e) {
      for (const v of Object.values(params)) v.dispose();
      for (const c of this.#constants) c.dispose();
      throw e;
    }
    this.params = params;
    this.#spikeFns = model.layers.map((l) => spikeFn(l.surrogate));
  }

  get inputs(): number {
    return this.model.inputs;
  }
  get outputs(): number {
    return this.model.readout.size;
  }

  /** Zero state for a batch. The caller owns (and disposes) the returned tensors. */
  init(batch: number): NetState {
    return {
      layers: this.model.layers.map((l) => {
        const neuron = l.neuron.init(batch, l.size, l.config) as NeuronState;
        const spikes = 's' in neuron ? neuron['s']! : tf.zeros([batch, l.size]);
        return { neuron, spikes };
      }),
      readout: tf.zeros([batch, this.model.readout.size]),
    };
  }

  /**
   * The parameters as one sequence reads them, with the active backend's kernels. Call it inside
   * the scope that runs the sequence (see {@link StepParams}).
   */
  prepare({ synapse }: PrepareOptions = {}): StepParams {
    this.#assertLive();
    const p = this.params;
    const kernels = this.#kernels.resolve();
    const dense = kernels['spikeflow.dense'];
    const backend = tf.getBackend();
    const fusable =
      !synapse &&
      this.model.readout.kind === 'leaky' &&
      this.model.readout.from === 'spikes' &&
      ([LifLayer, LeakyReadout] as KernelName[]).every((k) => this.#kernels.has(k, backend)) &&
      this.model.layers.every((l) => l.neuron.lifKernel !== undefined);
    const layers = this.model.layers.map((l, i) => {
      const neuron: Record<string, Tensor> = {};
      for (const [key, { tensor, range }] of Object.entries(this.#neuronTensors[i]!)) {
        neuron[key] = range ? tf.clipByValue(tensor, range[0], range[1]) : tensor;
      }
      return {
        W: p[`layers.${i}.W`]!,
        ...(l.bias ? { b: p[`layers.${i}.b`]! } : {}),
        ...(l.recurrent ? { W_rec: this.#recMasks[i] ? tf.mul(p[`layers.${i}.W_rec`]!, this.#recMasks[i]!) : p[`layers.${i}.W_rec`]! } : {}),
        neuron,
        ctx: { spike: this.#spikeFns[i]!, surrogate: l.surrogate, detach, dense },
      };
    });
    const fused = fusable ? this.model.layers.map((l, i) => l.neuron.lifKernel!({ config: l.config, tensors: layers[i]!.neuron })) : undefined;
    return {
      synapse: synapse ? (x, w, site) => synapse(x, w, site, dense) : (x, w) => dense(x, w),
      layers,
      ...(fused && fused.every((f) => f !== undefined) ? { fused: fused as LifKernelParams[] } : {}),
      readout: {
        W: p['readout.W']!,
        ...(this.model.readout.bias ? { b: p['readout.b']! } : {}),
        kappa: this.#kappa,
        ...(this.model.readout.kind === 'ltc' ? { W_kappa: p['readout.W_kappa']!, b_kappa: p['readout.b_kappa']! } : {}),
      },
      kernels,
    };
  }

  /**
   * One time step: every layer in order (layer l reads layer l−1's spikes of the same step), then
   * the readout. Pure: `state` is neither disposed nor changed.
   */
  step(p: StepParams, state: NetState, x: Tensor): StepOutput {
    const dense = p.kernels['spikeflow.dense'];
    const synapse = p.synapse;
    let input = x;
    const layers: LayerState[] = [];
    const spikes: Tensor[] = [];
    const currents: Tensor[] = [];
    this.model.layers.forEach((l, i) => {
      const lp = p.layers[i]!;
      const prev = state.layers[i]!;
      let current = synapse(input, lp.W, { layer: i, weight: 'W', param: `layers.${i}.W` });
      if (lp.b) current = tf.add(current, lp.b);
      if (lp.W_rec) current = tf.add(current, synapse(prev.spikes, lp.W_rec, { layer: i, weight: 'W_rec', param: `layers.${i}.W_rec` }));
      const out = l.neuron.step({ config: l.config, tensors: lp.neuron }, prev.neuron, current, lp.ctx);
      currents.push(current);
      layers.push({ neuron: out.state, spikes: out.spikes });
      spikes.push(out.spikes);
      input = out.spikes;
    });
    const r = p.readout;
    if (this.model.readout.from === 'membrane') {
      const last = this.model.layers[this.model.layers.length - 1]!;
      input = layers[layers.length - 1]!.neuron[last.neuron.membrane!]!;
    }
    let d = synapse(input, r.W, { layer: 'readout', weight: 'W', param: 'readout.W' });
    if (r.b) d = tf.add(d, r.b);
    let y: Tensor;
    if (r.W_kappa) {
      // y_t = y_{t−1} + κ_t·(d_t − y_{t−1}), κ_t = σ([d_t ; y_{t−1}]·W_κ + b_κ)
      const kappa = tf.sigmoid(tf.add(dense(tf.concat([d, state.readout], 1), r.W_kappa), r.b_kappa!));
      y = tf.add(state.readout, tf.mul(kappa, tf.sub(d, state.readout)));
    } else {
      y = tf.add(tf.mul(r.kappa, state.readout), d);
    }
    return { state: { layers, readout: y }, readout: y, spikes, currents };
  }

  /**
   * A whole window of steps `x [k, B, inputs]` from `state`, layer by layer through the backend's
   * fast kernels (requires `p.fused`, see {@link StepParams.fused}): each layer, its input product
   * for all k steps and its neurons through time, in one `spikeflow.lifLayer`; the readout in one
   * `spikeflow.leakyReadout`. Same values and gradients as k calls of {@link step}. Runs in the
   * caller's scope (a tape or a `tf.tidy`).
   */
  runWindow(p: StepParams, state: NetState, x: Tensor): WindowOutput {
    if (!p.fused) {
      throw new SpikeflowError('CONFIG_INVALID', 'runWindow: these step parameters are not fused (a layer is not LIF, the readout is not leaky over spikes, a synapse hook is set, or the backend has no fast kernels); run step by step');
    }
    checkInputs(this, x);
    const [k, B] = x.shape as [number, number];
    const lifLayer = p.kernels[LifLayer];
    let input = x;
    const spikes: Tensor[] = [];
    const layers: LayerState[] = this.model.layers.map((l, i) => {
      const lp = p.layers[i]!;
      const prev = state.layers[i]!.neuron;
      const out = lifLayer(input, lp.W, lp.b, { v: prev['v']!, s: prev['s']! }, lp.W_rec, { ...p.fused![i]!, surrogate: l.surrogate });
      spikes.push(out.spikes);
      input = out.spikes;
      return { neuron: { v: out.final.v, s: out.final.s }, spikes: out.final.s };
    });
    const O = this.model.readout.size;
    const readout = p.kernels[LeakyReadout](input, p.readout.W, p.readout.b, state.readout, this.model.readout.kappa);
    const last = tf.tensor2d((readout.dataSync() as Float32Array).slice((k - 1) * B * O), [B, O]);
    return { readout, spikes, state: { layers, readout: last } };
  }

  /** Copies values into parameters by name (weights from a fixture, a checkpoint, ...). */
  setParams(values: Readonly<Record<string, Tensor | ArrayLike<number> | readonly (readonly number[])[]>>): void {
    for (const [name, value] of Object.entries(values)) {
      const v = this.params[name];
      if (!v) throw new SpikeflowError('UNKNOWN_NAME', `setParams: no parameter '${name}'; ${didYouMean(name, Object.keys(this.params))}`, { name });
      const t = value instanceof tf.Tensor ? value : tf.tensor(value as number[], undefined, 'float32');
      try {
        // A flat list fills the parameter in row-major order; anything shaped must match its shape.
        const fits = t.rank <= 1 ? t.size === v.size : t.shape.join() === v.shape.join();
        if (!fits) {
          throw new SpikeflowError('SHAPE_MISMATCH', `setParams: '${name}' has shape [${v.shape}], got ${t.rank <= 1 ? `${t.size} values` : `shape [${t.shape}]`}`, { name });
        }
        tf.tidy(() => v.assign(t.reshape(v.shape)));
      } finally {
        if (t !== value) t.dispose();
      }
    }
  }

  /** Parameter values as plain arrays (for checkpoints and inspection). */
  getParams(): Record<string, { shape: number[]; values: Float32Array }> {
    const out: Record<string, { shape: number[]; values: Float32Array }> = {};
    for (const [name, v] of Object.entries(this.params)) out[name] = { shape: v.shape, values: Float32Array.from(v.dataSync()) };
    return out;
  }

  /** Releases every tensor the network owns. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const v of Object.values(this.params)) v.dispose();
    for (const c of this.#constants) c.dispose();
  }

  #assertLive(): void {
    if (this.#disposed) throw new SpikeflowError('CONFIG_INVALID', 'this network has been disposed');
  }
}

/** `1 − I`, `[n, n]`: ones off the diagonal. */
function offDiagonal(n: number): Tensor {
  return tf.tidy(() => tf.sub(1, tf.eye(n)));
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

/** Validates a model spec and builds its network. */
export function buildNetwork(spec: unknown, reg: ModelRegistries, options: BuildOptions = {}): Network {
  return new Network(resolveModel(spec, reg), options);
}

// ---------------------------------------------------------------------------------------------
// The one time loop.

/** The steps of a time-major input, made one at a time. */
export interface Steps {
  readonly length: number;
  /** Shape of one step, `[B, ...]`. */
  readonly shape: readonly number[];
  /** Step t as a fresh `[B, ...]` tensor, owned by the enclosing scope (`tf.tidy`, `tf.variableGrads`) or the caller. */
  at(t: number): Tensor;
  /** Steps `[from, to)` as one fresh `[to − from, B, ...]` tensor (a window for {@link Network.runWindow}), owned like {@link at}'s. */
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

/**
 * Runs steps `[from, to)` of `xs` from `state`, calling `onStep` after each. Creates no scope:
 * run it inside `tf.variableGrads` (intermediates kept for the backward pass) or use
 * {@link forward} for inference. Returns the final state.
 */
export function unroll(
  net: Network,
  p: StepParams,
  state: NetState,
  xs: Steps,
  from: number,
  to: number,
  onStep?: (t: number, out: StepOutput) => void,
): NetState {
  let s = state;
  for (let t = from; t < to; t++) {
    const out = net.step(p, s, xs.at(t));
    onStep?.(t, out);
    s = out.state;
  }
  return s;
}

/**
 * Runs steps `[from, to)` of `xs` from `state` without a gradient tape, one `tf.tidy` per step:
 * memory does not grow with the number of steps. `onStep` may return tensors of the step's output
 * to retain (they are then the caller's to dispose). `state` itself is left alone; every
 * intermediate state is disposed. Returns the final state (the caller's to dispose).
 */
export function advance(
  net: Network,
  state: NetState,
  xs: Steps,
  from: number,
  to: number,
  onStep?: (t: number, out: StepOutput) => readonly Tensor[] | void,
): NetState {
  const retained = new Set<Tensor>(treeLeaves(state as never));
  let s = state;
  for (let t = from; t < to; t++) {
    const prev = s;
    const out = tidy(() => net.step(net.prepare(), prev, xs.at(t)));
    for (const x of onStep?.(t, out) ?? []) retained.add(x);
    const live = new Set(treeLeaves(out.state as never));
    for (const x of new Set([...treeLeaves(prev as never), ...out.currents])) if (!live.has(x) && !retained.has(x)) x.dispose();
    s = out.state;
  }
  return s;
}

/**
 * Steps `[from, to)` from `state` in the caller's scope (inside `tf.variableGrads` for a gradient):
 * one {@link Network.runWindow} where `p.fused`, else step by step ({@link unroll}). Hands each
 * step's readout `[B, outputs]` to `onReadout`. Returns the final state; through the fused kernels
 * it carries no gradient back (rules that carry state from window to window detach it anyway).
 */
export function unrollWindow(net: Network, p: StepParams, state: NetState, xs: Steps, from: number, to: number, onReadout?: (t: number, y: Tensor) => void): NetState {
  if (!p.fused) return unroll(net, p, state, xs, from, to, (t, out) => onReadout?.(t, out.readout));
  const out = net.runWindow(p, state, xs.window(from, to));
  if (onReadout) unstackSteps(out.readout).forEach((y, i) => onReadout(from + i, y));
  return out.state;
}

/**
 * Steps `[from, to)` from `state` without a gradient tape: one {@link Network.runWindow} where the
 * network runs fused, else step by step ({@link advance}). Hands each step's readout to
 * `onReadout`, which returns `true` to keep it (it is then the caller's to dispose; the others,
 * whatever else it returns, are disposed). `state` is left alone; returns the new state (the caller's to dispose).
 */
export function advanceWindow(net: Network, state: NetState, xs: Steps, from: number, to: number, onReadout?: (t: number, y: Tensor) => boolean | void): NetState {
  if (!tf.tidy(() => net.prepare().fused !== undefined)) {
    return advance(net, state, xs, from, to, (t, out) => (onReadout?.(t, out.readout) === true ? [out.readout] : []));
  }
  const out = tidy(() => {
    const o = net.runWindow(net.prepare(), state, xs.window(from, to));
    return { readout: o.readout, state: o.state };
  });
  try {
    if (onReadout) {
      for (const [i, y] of splitSteps(out.readout).entries()) if (onReadout(from + i, y) !== true) y.dispose();
    }
  } finally {
    out.readout.dispose();
  }
  return out.state;
}

export interface ForwardResult {
  /** Readout per step, `[T, B, outputs]`. */
  readonly readout: Tensor;
  /** Spikes per layer, `[T, B, size]` each (only with `record: true`). */
  readonly spikes?: readonly Tensor[];
  /** Final state. */
  readonly state: NetState;
}

/**
 * Inference over a whole sequence `[T, B, inputs]`, without a gradient tape and with memory
 * independent of T apart from the outputs it returns. The caller disposes the result's tensors
 * (`disposeTree`).
 */
export function forward(net: Network, inputs: Tensor, { record = false, state }: { record?: boolean; state?: NetState } = {}): ForwardResult {
  checkInputs(net, inputs);
  const [T, B] = inputs.shape as [number, number];
  if (T > 0 && tf.tidy(() => net.prepare().fused !== undefined)) return forwardFused(net, inputs, record, state);
  const xs = stepsOf(inputs);
  const ys: Tensor[] = [];
  const spikes: Tensor[][] = net.model.layers.map(() => []);
  const initial = state ?? net.init(B);
  {
    const final = advance(net, initial, xs, 0, T, (_, out) => {
      ys.push(out.readout);
      if (record) out.spikes.forEach((sp, l) => spikes[l]!.push(sp));
      return record ? [out.readout, ...out.spikes] : [out.readout];
    });
    if (state === undefined && final !== initial) disposeTree(initial as never, final as never);
    const readout = tf.stack(ys);
    const stacked = record ? spikes.map((l) => tf.stack(l)) : undefined;
    disposeTree([...ys, ...spikes.flat()], final as never);
    return { readout, ...(stacked ? { spikes: stacked } : {}), state: final };
  }
}

/**
 * Steps per window of the fused inference path: memory stays independent of T (a fast kernel's
 * scratch holds a window's currents, membrane and spikes: ~200 MB at 1024 steps of the bench's
 * workload). A sequence split into windows is read out of the backend and back in once.
 */
const INFERENCE_WINDOW = 1024;

function forwardFused(net: Network, inputs: Tensor, record: boolean, state: NetState | undefined): ForwardResult {
  const [T, B] = inputs.shape as [number, number];
  // One window: the input as it is; more: each window's steps from one read of the data.
  const xs = T > INFERENCE_WINDOW ? stepsOf(inputs) : undefined;
  const ys: Tensor[] = [];
  const spikes: Tensor[][] = net.model.layers.map(() => []);
  let s = state ?? net.init(B);
  for (let from = 0; from < T; from += INFERENCE_WINDOW) {
    const k = Math.min(INFERENCE_WINDOW, T - from);
    const prev = s;
    const out = tidy(() => {
      const x = xs ? xs.window(from, from + k) : inputs;
      const o = net.runWindow(net.prepare(), prev, x);
      return { readout: o.readout, spikes: record ? o.spikes : [], state: o.state };
    });
    ys.push(out.readout);
    out.spikes.forEach((sp, l) => spikes[l]!.push(sp));
    if (prev !== state) disposeTree(prev as never);
    s = out.state;
  }
  const readout = ys.length === 1 ? ys[0]! : tf.concat(ys);
  const stacked = record ? spikes.map((l) => (l.length === 1 ? l[0]! : tf.concat(l))) : undefined;
  if (ys.length > 1) disposeTree(ys);
  if (record) for (const l of spikes) if (l.length > 1) disposeTree(l);
  return { readout, ...(stacked ? { spikes: stacked } : {}), state: s };
}

export function checkInputs(net: Network, inputs: Tensor): void {
  if (inputs.rank !== 3 || inputs.shape[2] !== net.inputs) {
    throw new SpikeflowError(
      'SHAPE_MISMATCH',
      `inputs must be time-major [T, B, ${net.inputs}] (the model's "inputs"), got [${inputs.shape}]`,
      { expected: [null, null, net.inputs], actual: inputs.shape },
    );
  }
}

export type { SchemaValues };

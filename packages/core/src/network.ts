import { tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';
import type { LocalJacobians, NeuronState, NeuronStepContext } from './neuron.js';
import { spikeFn } from './surrogates.js';
import { KernelTable, detach } from './kernels.js';
import { didYouMean } from './validate.js';
import { hasDropout, resolveModel, type ModelRegistries, type ResolvedModel } from './model.js';
import { sizeOf } from './conv.js';
import { createRng, deriveSeed } from './random.js';
import { createTensors, layerParam, readHeld, readoutParam, type NetworkTensors, type ParamMap } from './params.js';
import { modelStep, stageState, type DropoutMasks, type NetState, type PrepareOptions, type StepOutput, type StepParams } from './step.js';
import { fusableModel, fusedKernelsOn, fusedParams, fusedWindow, type WindowOutput } from './fused.js';
import { checkInputs } from './inference.js';

export { detach };

/** See {@link Network.stepper}. */
export interface Stepper {
  /**
   * `Σ_k pre_k[b]ᵀ ⊗ post_k[b]` for every batch element (`pre [n, B, I]`, `post [n, B, H]` →
   * `[B, I, H]`), by the active backend's `spikeflow.outerSum`: the per-example weight gradient of
   * n steps (e-prop's traces born in a window). Outside a gradient tape.
   */
  outerSum(pre: Tensor, post: Tensor): Tensor;
  /** Whether `t` is one of the parameter tensors the steps read (a Jacobian entry may be one: not to be disposed). */
  isParam(t: Tensor): boolean;
  step(state: NetState, x: Tensor): StepOutput;
  localJacobians(layer: number, before: NeuronState, after: NeuronState, current: Tensor): LocalJacobians;
}

export interface BuildOptions {
  /** Seed of the weight initialisation (default 0): same seed, same weights, on any backend. */
  seed?: number;
  /** Fast kernels registered by backend plugins (default: references only). */
  kernels?: KernelTable;
}

/**
 * A network: its validated model, the parameters it owns (`tf.Variable`s by name), and one time
 * step as a pure function of (parameters, state, input). The time loops, the window engine and
 * inference live in their own modules and drive it.
 */
export class Network {
  readonly model: ResolvedModel;
  /** Trainable parameters, by name (see `layerParam`, `readoutParam`). */
  readonly params: ParamMap;
  /**
   * Untrained state kept with the weights, by name: batch normalisation's running estimates
   * (`layers.0.bn_mean`, `layers.0.bn_var`). Optimizers and rules never see it; checkpoints keep it
   * ({@link variables}), and {@link setParams} sets it.
   */
  readonly buffers: ParamMap;
  readonly #tensors: NetworkTensors;
  readonly #spikeFns: NeuronStepContext['spike'][];
  readonly #kernels: KernelTable;
  /** Whether the model's layers and readout have a fused form (the backend decides the rest). */
  readonly #fusable: boolean;
  /** Inside {@link training}: the batch's dropout masks, where the model has dropout. */
  #training: { readonly dropout?: DropoutMasks } | undefined;
  #disposed = false;

  constructor(model: ResolvedModel, { seed = 0, kernels = new KernelTable() }: BuildOptions = {}) {
    this.model = model;
    this.#kernels = kernels;
    this.#tensors = createTensors(model, seed);
    this.params = this.#tensors.params;
    this.buffers = this.#tensors.buffers;
    this.#spikeFns = model.layers.map((l) => spikeFn(l.surrogate));
    const tensors = this.#tensors.neuron;
    // Whether the layers have the fused form depends on their configs alone; asked once, here.
    this.#fusable = tf.tidy(() =>
      fusableModel(model, (i) => {
        const l = model.layers[i]!;
        const plain = Object.fromEntries(Object.entries(tensors[i]!).map(([k, h]) => [k, h.tensor]));
        return l.neuron.integrateFire?.({ config: l.config, tensors: plain });
      }),
    );
  }

  /** Everything a checkpoint keeps: the parameters and the buffers, by name. */
  get variables(): ParamMap {
    return { ...this.params, ...this.buffers };
  }

  get inputs(): number {
    return this.model.inputs;
  }
  /** The kernels this network was built with (the fast ones registered by backend plugins, or references only). */
  get kernels(): KernelTable {
    return this.#kernels;
  }
  get outputs(): number {
    return this.model.readout.size;
  }

  /**
   * Whether sequences run window by window through the active backend's fast kernels: every
   * layer's neuron has the fused form under its config, the readout is a fixed leak over spikes,
   * and the backend registers the fused kernels. Core's window engine and inference choose the
   * path from it; no rule needs to.
   */
  get fused(): boolean {
    return this.#fusable && fusedKernelsOn(this.#kernels, tf.getBackend(), this.model);
  }

  /** The constant `1 − I` masking layer `layer`'s `W_rec` diagonal, or `undefined` where self-connections are kept. */
  recurrentMask(layer: number): Tensor | undefined {
    return this.#tensors.recurrentMasks[layer];
  }

  /**
   * Runs `f` — one rule update over a batch of `batch` sequences — as training (the trainer calls
   * it around every update; outside it, evaluation and inference): every {@link prepare} inside
   * it says `training`, so that
   * - dropout is on: the prepared parameters carry the batch's masks (`StepParams.dropout`), one
   *   per layer input with dropout and for the readout's input, drawn from `seed` alone and held
   *   for every step and window of the sequences;
   * - batch normalisation uses each pass's own statistics and updates the running estimates.
   *
   * The trainer's seed comes from the run's seed and the batch's position, so a resumed run draws
   * the same masks.
   */
  training<R>(batch: number, seed: number, f: () => R): R {
    this.#assertLive();
    if (this.#training) throw new SpikeflowError('CONFIG_INVALID', 'Network.training: already inside a training pass; one batch of sequences at a time');
    const m = this.model;
    const mask = (features: number, rate: number | undefined, site: number | string) => {
      if (rate === undefined || rate === 0) return undefined;
      const rand = createRng(deriveSeed(seed, 'dropout', site));
      const keep = 1 / (1 - rate);
      const values = new Float32Array(batch * features);
      for (let j = 0; j < values.length; j++) values[j] = rand() < rate ? 0 : keep;
      return tf.tensor2d(values, [batch, features]);
    };
    const dropout: DropoutMasks | undefined = hasDropout(m)
      ? {
          layers: m.layers.map((l) => mask(l.conv ? sizeOf(l.conv.inShape) : l.fanIn, l.dropout, l.index)),
          ...(m.readoutDropout !== undefined ? { readout: mask(m.readoutFanIn, m.readoutDropout, 'readout') } : {}),
        }
      : undefined;
    this.#training = { ...(dropout ? { dropout } : {}) };
    try {
      return f();
    } finally {
      this.#training = undefined;
      if (dropout) for (const t of [...dropout.layers, dropout.readout]) t?.dispose();
    }
  }

  /** Zero state for a batch. The caller owns (and disposes) the returned tensors. */
  init(batch: number): NetState {
    return {
      layers: this.model.layers.map((l) => {
        if (l.type === 'sew_block') {
          // Both stages' states, their fields numbered by stage; the block's output is no neuron field.
          const stages = [1, 2].map((k) => stageState(l.neuron.init(batch, l.size, l.config) as NeuronState, k));
          return { neuron: { ...stages[0]!, ...stages[1]! }, spikes: tf.zeros([batch, l.size]) };
        }
        const neuron = l.neuron.init(batch, l.size, l.config) as NeuronState;
        const key = l.neuron.spikes;
        const spikes = key !== undefined && neuron[key] ? neuron[key] : tf.zeros([batch, l.size]);
        return { neuron, spikes };
      }),
      readout: tf.zeros([batch, this.model.readout.size]),
    };
  }

  /**
   * The parameters as one sequence reads them, with the active backend's kernels. Call it inside
   * the scope that runs the sequence (see {@link StepParams}). Without a synapse hook, on a
   * backend with the fused kernels, the result also carries the fused layers' parameters.
   */
  prepare({ synapse, cut = [], temporal = true, traces }: PrepareOptions = {}): StepParams {
    this.#assertLive();
    const p = this.params;
    const kernels = this.#kernels.resolve();
    const dense = kernels['spikeflow.dense'];
    const layers = this.model.layers.map((l, i) => {
      const neuron: Record<string, Tensor> = {};
      for (const [key, held] of Object.entries(this.#tensors.neuron[i]!)) neuron[key] = readHeld(held);
      const wRec = p[layerParam(i, 'W_rec')];
      const mask = this.#tensors.recurrentMasks[i];
      const sew = l.type === 'sew_block';
      const norm = (stage: string) => ({
        gamma: p[layerParam(i, `${stage}_gamma`)]!,
        beta: p[layerParam(i, `${stage}_beta`)]!,
        mean: this.buffers[layerParam(i, `${stage}_mean`)]!,
        variance: this.buffers[layerParam(i, `${stage}_var`)]!,
      });
      return {
        W: p[layerParam(i, 'W')]!,
        ...(l.batchNorm ? { bn: norm('bn'), ...(sew ? { bn2: norm('bn2') } : {}) } : {}),
        ...(l.bias ? { b: p[layerParam(i, 'b')]! } : {}),
        ...(sew ? { W2: p[layerParam(i, 'W2')]!, ...(l.bias ? { b2: p[layerParam(i, 'b2')]! } : {}) } : {}),
        ...(wRec ? { W_rec: mask ? tf.mul(wRec, mask) : wRec } : {}),
        neuron,
        ctx: { spike: this.#spikeFns[i]!, surrogate: l.surrogate, detach, dense, kernels },
      };
    });
    const fused =
      !synapse && this.fused
        ? fusedParams(
            this.model,
            layers.map((l) => l.neuron),
          )
        : undefined;
    if (traces && !fused) {
      throw new SpikeflowError(
        'INCOMPATIBLE',
        `prepare: presynaptic traces run in the fused kernels only, and this network ${synapse ? 'has a synapse hook' : 'does not run fused on this backend'} (see Network.fused); run the traced products step by step instead (a synapse hook)`,
      );
    }
    if (traces && traces.layers.length !== this.model.layers.length) {
      throw new SpikeflowError('SHAPE_MISMATCH', `prepare: traces for ${traces.layers.length} layers, the network has ${this.model.layers.length}`);
    }
    const readout: Record<string, Tensor> = {};
    for (const [key, held] of Object.entries(this.#tensors.readout)) readout[key] = readHeld(held);
    return {
      synapse: synapse ? (x, w, site) => synapse(x, w, site, dense) : (x, w) => dense(x, w),
      cut: new Set(cut),
      temporal,
      ...(traces ? { traces } : {}),
      training: this.#training !== undefined,
      ...(this.#training?.dropout ? { dropout: this.#training.dropout } : {}),
      layers,
      ...(fused ? { fused } : {}),
      readout: {
        ...(this.model.readout.synapse ? { W: p[readoutParam('W')]! } : {}),
        ...(this.model.readout.bias ? { b: p[readoutParam('b')]! } : {}),
        tensors: readout,
      },
      kernels,
    };
  }

  /**
   * One time step: every layer in order (layer l reads layer l−1's spikes of the same step), then
   * the readout. Pure: `state` is neither disposed nor changed.
   */
  step(p: StepParams, state: NetState, x: Tensor): StepOutput {
    return modelStep(this.model, p, state, x);
  }

  /**
   * The step over the parameters as they are now, for rules that step the network themselves
   * (e-prop's forward pass): `step` as {@link step} with parameters prepared once, and
   * `localJacobians` of layer `layer`'s step from `before` to `after` under the same parameters
   * (the neuron's `localJacobians` capability; `SpikeflowError` where it has none). Make it inside
   * the scope that runs the steps.
   */
  stepper(options: PrepareOptions = {}): Stepper {
    const p = this.prepare(options);
    const own = new Set<Tensor>(p.layers.flatMap((l) => [l.W, ...(l.b ? [l.b] : []), ...(l.W_rec ? [l.W_rec] : []), ...Object.values(l.neuron)]));
    return {
      outerSum: p.kernels['spikeflow.outerSum'],
      isParam: (t) => own.has(t),
      step: (state, x) => this.step(p, state, x),
      localJacobians: (layer, before, after, current) => {
        const l = this.model.layers[layer]!;
        const cap = l.neuron.localJacobians;
        if (!cap) throw new SpikeflowError('INCOMPATIBLE', `layers[${layer}]: neuron '${l.neuron.name}' declares no local Jacobians`, { layer });
        return cap.jacobians({ config: l.config, tensors: p.layers[layer]!.neuron }, before, after, current, p.layers[layer]!.ctx);
      },
    };
  }

  /**
   * A whole window of steps `x [k, B, inputs]` from `state` through the fast kernels (requires
   * `p.fused`). Same values and gradients as k calls of {@link step}. Runs in the caller's scope.
   * Core's window engine and inference call it; rules use the engine.
   */
  runWindow(p: StepParams, state: NetState, x: Tensor): WindowOutput {
    checkInputs(this, x);
    return fusedWindow(this.model, p, state, x);
  }

  /** Copies values into parameters (or buffers) by name (weights from a fixture, a checkpoint, ...). */
  setParams(values: Readonly<Record<string, Tensor | ArrayLike<number> | readonly (readonly number[])[]>>): void {
    for (const [name, value] of Object.entries(values)) {
      const v = this.params[name] ?? this.buffers[name];
      if (!v) throw new SpikeflowError('UNKNOWN_NAME', `setParams: no parameter '${name}'; ${didYouMean(name, Object.keys(this.variables))}`, { name });
      const t = value instanceof tf.Tensor ? value : tf.tensor(value as number[], undefined, 'float32');
      try {
        // A flat list fills the parameter in row-major order; anything shaped must match its shape.
        const fits = t.rank <= 1 ? t.size === v.size : t.shape.join() === v.shape.join();
        if (!fits) {
          throw new SpikeflowError(
            'SHAPE_MISMATCH',
            `setParams: '${name}' has shape [${v.shape}], got ${t.rank <= 1 ? `${t.size} values` : `shape [${t.shape}]`}`,
            { name },
          );
        }
        tf.tidy(() => v.assign(t.reshape(v.shape)));
      } finally {
        if (t !== value) t.dispose();
      }
    }
  }

  /** Parameter (and buffer) values as plain arrays (for checkpoints and inspection). */
  getParams(): Record<string, { shape: number[]; values: Float32Array }> {
    const out: Record<string, { shape: number[]; values: Float32Array }> = {};
    for (const [name, v] of Object.entries(this.variables)) out[name] = { shape: v.shape, values: Float32Array.from(v.dataSync()) };
    return out;
  }

  /** Releases every tensor the network owns. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const v of Object.values(this.variables)) v.dispose();
    for (const c of this.#tensors.constants) c.dispose();
  }

  #assertLive(): void {
    if (this.#disposed) throw new SpikeflowError('CONFIG_INVALID', 'this network has been disposed');
  }
}

/** Validates a model spec and builds its network. */
export function buildNetwork(spec: unknown, reg: ModelRegistries, options: BuildOptions = {}): Network {
  return new Network(resolveModel(spec, reg), options);
}

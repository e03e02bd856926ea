import { tf, type Tensor } from './tf.js';
import type { IntegrateFireParams, NeuronState, NeuronStepContext } from './neuron.js';
import { detach, EventConv2d, MaxPool, type KernelName, type KernelSignatures, type PresynapticTraces } from './kernels.js';
import type { ResolvedModel } from './model.js';
import { layerParam, readoutParam } from './params.js';
import { applyPools, batchNorm, convCurrent, type BatchNormTensors } from './conv.js';
import { SpikeflowError } from './errors.js';

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

export interface PrepareOptions {
  /**
   * Replaces the synaptic products of a step: every `x·W` of a layer's input (`W`, `W_rec`) and of
   * the readout goes through it. Default: `dense(x, W)`. Products inside a neuron or a readout
   * gate are not synapses and are not passed.
   */
  readonly synapse?: SynapseFn;
  /**
   * Layers whose feed-forward input is cut from the gradient (identity forward, zero gradient
   * backward): no gradient flows from layer l back into layer l − 1 (local rules' blocks).
   */
  readonly cut?: readonly number[];
  /**
   * `false`: the backward pass drops every temporal path — the state entering each step (every
   * neuron state field, the previous spikes through W_rec, the readout's y_{t−1}) is a constant of
   * that step, so a step's gradient reaches only what that step feeds (SLTT, OTTT); W_rec still
   * gets its gradient, with s_{t−1} as its input. The fused kernels drop it the same way. Default
   * `true` (BPTT).
   */
  readonly temporal?: boolean;
  /**
   * Presynaptic traces in the weight gradients of a fused window (OTTT; see
   * `PresynapticTraces`): per layer (W, b and W_rec) and for the readout (W and b), the traces
   * before the window's first step. Only where the network runs fused (`Network.fused`, no
   * synapse hook); the caller carries the traces from window to window.
   */
  readonly traces?: NetworkTraces;
}

/** The presynaptic traces of every layer and of the readout before a window (see {@link PrepareOptions.traces}); a layer without an entry has none. */
export interface NetworkTraces {
  readonly layers: readonly (PresynapticTraces | undefined)[];
  readonly readout?: PresynapticTraces;
}

/**
 * The tensors one sequence is run with: the parameters as the step reads them (trainable neuron
 * parameters clamped to their range) and the kernels of the active backend. Made by
 * `Network.prepare` inside the scope (`tf.tidy`, `tf.variableGrads`) that runs the sequence, so
 * that clamps are on the gradient tape and are freed with the scope.
 */
export interface StepParams {
  readonly layers: readonly {
    readonly W: Tensor;
    readonly b?: Tensor;
    readonly W_rec?: Tensor;
    /** A `sew_block`'s second convolution. */
    readonly W2?: Tensor;
    readonly b2?: Tensor;
    /** A batch-normalised conv layer's normalisation (a `sew_block`'s second convolution's: `bn2`). */
    readonly bn?: BatchNormTensors;
    readonly bn2?: BatchNormTensors;
    readonly neuron: { readonly [key: string]: Tensor };
    /** What the layer's neuron step receives besides its parameters (spike op, detach, kernels). */
    readonly ctx: NeuronStepContext;
  }[];
  readonly readout: {
    /** Absent where the readout has no synapse (`Readout.synapse`). */
    readonly W?: Tensor;
    readonly b?: Tensor;
    /** The readout kind's own tensor parameters, by key. */
    readonly tensors: { readonly [key: string]: Tensor };
  };
  readonly kernels: { readonly [K in KernelName]: KernelSignatures[K] };
  /**
   * Present when the whole network runs window by window through the backend's fast kernels: one
   * entry per layer, each layer's parameters of the fused layer kernel. Core's window engine and
   * inference use it; rules never need to.
   */
  readonly fused?: readonly IntegrateFireParams[];
  /** How the step computes each synaptic product `x·W` (see {@link PrepareOptions.synapse}). */
  readonly synapse: (x: Tensor, w: Tensor, site: SynapseSite) => Tensor;
  /** Layers whose feed-forward input is cut (see {@link PrepareOptions.cut}). */
  readonly cut: ReadonlySet<number>;
  /** Whether the backward pass follows the state from step to step (see {@link PrepareOptions.temporal}). */
  readonly temporal: boolean;
  /** The fused kernels' presynaptic traces (see {@link PrepareOptions.traces}). */
  readonly traces?: NetworkTraces;
  /**
   * Whether the parameters were prepared inside `Network.training` (a rule's update from the
   * trainer): batch normalisation then uses each pass's statistics (and updates its running
   * estimates), and `dropout` holds the masks; outside it, the running estimates and no dropout.
   */
  readonly training: boolean;
  /** The dropout masks of the sequences being trained, where the model has dropout (see `Network.training`). */
  readonly dropout?: DropoutMasks;
}

/**
 * One sequence's dropout masks: per layer with dropout on its input, and for the readout's input,
 * `[B, features]` of 0 and 1/(1 − rate), multiplied into that input at every step.
 */
export interface DropoutMasks {
  readonly layers: readonly (Tensor | undefined)[];
  readonly readout?: Tensor;
}

/** `x` (`[B, F]`, or `[k, B, F]` over a window) times its dropout mask `[B, F]`, or `x` where there is none. */
export function masked(x: Tensor, mask: Tensor | undefined): Tensor {
  return mask ? tf.mul(x, mask) : x;
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

/**
 * A conv layer's current `[B, H′·W′·C]` batch-normalised, where the layer has batch normalisation.
 * A step sees one step's images, so it normalises with the running estimates only: training it
 * needs the statistics of every step a pass computes together, which the fused window has.
 */
function normalised(l: ResolvedModel['layers'][number], p: StepParams, current: Tensor, bn: BatchNormTensors | undefined): Tensor {
  if (!l.batchNorm) return current;
  if (p.training) {
    throw new SpikeflowError(
      'INCOMPATIBLE',
      `model.layers[${l.specIndex}] (${l.type}): batch normalisation through time takes its statistics over all the steps a pass computes together, ` +
        'and this network is trained step by step (its neurons have no fused form under their config, the backend has no fused kernels, or the rule steps it through a synapse hook); ' +
        'train it fused (LIF or ALIF neurons on the wasm or cpu backend with the fast kernels, a rule on core\'s window engine) or without "batchNorm"',
      { layer: l.specIndex },
    );
  }
  return batchNorm(current, l.conv!.outShape[2], bn!, l.batchNorm, false);
}

/** A neuron state's fields renamed for stage `k` of a SEW block (`v` → `v1`). */
export function stageState(state: NeuronState, k: number): NeuronState {
  return Object.fromEntries(Object.entries(state).map(([key, t]) => [`${key}${k}`, t]));
}

/** Stage `k`'s fields of a SEW block's state, under the neuron's own names. */
function ofStage(state: NeuronState, keys: readonly string[], k: number): NeuronState {
  return Object.fromEntries(keys.map((key) => [key, state[`${key}${k}`]!]));
}

/**
 * One step of a SEW block: s1 = neuron(conv(x, W) + b), s2 = neuron(conv(s1, W2) + b2), and the
 * connect function of s2 and x (ADD: s2 + x; IAND: (1 − s2)·x; AND: s2·x).
 */
function sewBlockStep(l: ResolvedModel['layers'][number], p: StepParams, lp: StepParams['layers'][number], prev: NeuronState, x: Tensor) {
  const conv = p.kernels[EventConv2d];
  const keys = l.neuron.stateKeys as readonly string[];
  const params = { config: l.config, tensors: lp.neuron };
  const current = normalised(l, p, convCurrent(x, lp.W, lp.b, l.conv!, conv), lp.bn);
  const first = l.neuron.step(params, ofStage(prev, keys, 1), current, lp.ctx);
  const second = l.neuron.step(params, ofStage(prev, keys, 2), normalised(l, p, convCurrent(first.spikes, lp.W2!, lp.b2, l.conv!, conv), lp.bn2), lp.ctx);
  const s2 = second.spikes;
  const out = l.connect === 'ADD' ? tf.add(s2, x) : l.connect === 'IAND' ? tf.mul(tf.sub(1, s2), x) : tf.mul(s2, x);
  return { state: { ...stageState(first.state, 1), ...stageState(second.state, 2) }, out, current };
}

/**
 * One time step of `model`: every layer in order (layer l reads layer l−1's spikes of the same
 * step), then the readout. Pure: `state` is neither disposed nor changed.
 */
export function modelStep(model: ResolvedModel, p: StepParams, state: NetState, x: Tensor): StepOutput {
  const synapse = p.synapse;
  // Without the temporal path, the state entering the step is a constant of it.
  const carried = (t: Tensor) => (p.temporal ? t : detach(t));
  let input = x;
  const layers: LayerState[] = [];
  const spikes: Tensor[] = [];
  const currents: Tensor[] = [];
  model.layers.forEach((l, i) => {
    const lp = p.layers[i]!;
    const entering = state.layers[i]!;
    const prev = p.temporal
      ? entering
      : { neuron: Object.fromEntries(Object.entries(entering.neuron).map(([k, t]) => [k, carried(t)])), spikes: carried(entering.spikes) };
    const cutFeed = p.cut.has(i) ? lp.ctx.detach(input) : input;
    const feed = masked(l.pools.length ? applyPools(cutFeed, l.pools, p.kernels[MaxPool]) : cutFeed, p.dropout?.layers[i]);
    if (l.type === 'sew_block') {
      const block = sewBlockStep(l, p, lp, prev.neuron, feed);
      currents.push(block.current);
      layers.push({ neuron: block.state, spikes: block.out });
      spikes.push(block.out);
      input = block.out;
      return;
    }
    // A conv2d layer's product is a convolution, not a synapse hook's x·W (rules that need the hook refuse such layers).
    let current = l.conv
      ? normalised(l, p, convCurrent(feed, lp.W, lp.b, l.conv, p.kernels[EventConv2d]), lp.bn)
      : synapse(feed, lp.W, { layer: i, weight: 'W', param: layerParam(i, 'W') });
    if (lp.b && !l.conv) current = tf.add(current, lp.b);
    if (lp.W_rec) current = tf.add(current, synapse(prev.spikes, lp.W_rec, { layer: i, weight: 'W_rec', param: layerParam(i, 'W_rec') }));
    const out = l.neuron.step({ config: l.config, tensors: lp.neuron }, prev.neuron, current, lp.ctx);
    currents.push(current);
    layers.push({ neuron: out.state, spikes: out.spikes });
    spikes.push(out.spikes);
    input = out.spikes;
  });
  const r = model.readout;
  if (r.from === 'membrane') {
    const last = model.layers[model.layers.length - 1]!;
    input = layers[layers.length - 1]!.neuron[last.neuron.membrane!]!;
  }
  if (model.readoutPools.length) input = applyPools(input, model.readoutPools, p.kernels[MaxPool]);
  input = masked(input, p.dropout?.readout);
  let d = p.readout.W ? synapse(input, p.readout.W, { layer: 'readout', weight: 'W', param: readoutParam('W') }) : input;
  if (p.readout.b) d = tf.add(d, p.readout.b);
  const y = r.readout.step({ options: r.options, tensors: p.readout.tensors, dense: p.kernels['spikeflow.dense'] }, carried(state.readout), d);
  return { state: { layers, readout: y }, readout: y, spikes, currents };
}

import { tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';
import {
  LeakyReadout,
  IntegrateFireLayer,
  IntegrateFireSequence,
  EventConv2d,
  MaxPool,
  type IntegrateFireSequenceResult,
  type IntegrateFireState,
  type KernelName,
  type KernelTable,
} from './kernels.js';
import type { AnyNeuronModel, IntegrateFireParams, NeuronParams } from './neuron.js';
import type { ResolvedLayer, ResolvedModel } from './model.js';
import { masked, type LayerState, type NetState, type StepParams } from './step.js';
import { applyPools, batchNorm, convCurrent, type BatchNormTensors } from './conv.js';

/**
 * The fused path: a whole window of steps through the backend's fast kernels, layer by layer —
 * each dense layer's input product for all k steps and its neurons through time in one
 * `spikeflow.integrateFireLayer`, the readout in one `spikeflow.leakyReadout` — instead of a dozen ops per
 * step. Spatial layers run the same way: a `conv2d` layer's convolution (and any pooling before a
 * layer or the readout) is one op over the window's k·B images, its neurons one
 * `spikeflow.integrateFireSequence`; a `sew_block` is two such stages and its connect function over
 * the window. Same values and gradients as k steps of `modelStep`.
 *
 * A network can run fused when every layer's neuron declares that its step is core's fused layer
 * equations under its config (`NeuronModel.integrateFire`), on a state of exactly its membrane and
 * spike fields (and its adaptation field, where those equations have an adaptive threshold), and
 * the readout is a fixed leak over the spikes (`Readout.leak`). Whether it runs fused then depends
 * only on the active backend: it must register both fast kernels.
 */
export function fusableModel(model: ResolvedModel, kernelParams: (layer: number) => IntegrateFireParams | undefined): boolean {
  return (
    model.readout.leak !== undefined &&
    model.readout.from === 'spikes' &&
    model.layers.every((l, i) => {
      const k = l.neuron.integrateFire ? kernelParams(i) : undefined;
      return k !== undefined && fusedStateKeys(l.neuron, k.adaptation !== undefined) !== undefined;
    })
  );
}

/** The kernels the fused path needs on the active backend (spatial layers also run the sequence kernel on their own currents). */
const FUSED_KERNELS: readonly KernelName[] = [IntegrateFireLayer, LeakyReadout];
const SPATIAL_KERNELS: readonly KernelName[] = [IntegrateFireSequence];

/** Whether `kernels` has fast versions of every kernel the fused path of `model` needs for `backend`. */
export function fusedKernelsOn(kernels: KernelTable, backend: string, model: ResolvedModel): boolean {
  const spatial = model.layers.some((l) => l.type !== 'dense');
  return [...FUSED_KERNELS, ...(spatial ? SPATIAL_KERNELS : [])].every((k) => kernels.has(k, backend));
}

/** Whether a layer runs its input product as a convolution (`conv2d`, `sew_block`). */
const convolutional = (l: ResolvedLayer) => l.type !== 'dense';

/**
 * Steps per window that keep one window's layer activations (currents, membrane, spikes and a
 * spatial layer's convolution or pooling output: four `[k, B, size]` float32 arrays of its widest
 * layer) within {@link WINDOW_BYTES}: at most `limit`, at least 1, for a network with spatial
 * layers (a conv layer holds B·H·W·C values per step); `limit` for a dense one.
 */
export function fusedWindowSteps(model: ResolvedModel, batch: number, limit: number): number {
  if (!model.layers.some(convolutional)) return limit;
  const widest = Math.max(1, ...model.layers.map((l) => l.size));
  return Math.max(1, Math.min(limit, Math.floor(WINDOW_BYTES / (16 * batch * widest))));
}

/** The memory budget of {@link fusedWindowSteps}. */
const WINDOW_BYTES = 512 << 20;

/** Where a neuron keeps what the fused layer kernel carries from window to window. */
export interface FusedStateKeys {
  readonly v: string;
  readonly s: string;
  /** The adaptation field, with an adaptive threshold. */
  readonly a?: string;
}

/**
 * A neuron's membrane and spike fields (and, where its fused form has an adaptive threshold,
 * `adaptive`, its adaptation field), when its state is exactly those fields (what the fused layer
 * kernel carries from window to window); `undefined` otherwise.
 */
export function fusedStateKeys(neuron: AnyNeuronModel, adaptive = false): FusedStateKeys | undefined {
  const v = neuron.membrane;
  const s = neuron.spikes;
  const a = adaptive ? neuron.adaptation : undefined;
  const fields = [v, s, ...(adaptive ? [a] : [])];
  if (fields.some((k) => k === undefined) || new Set(fields).size !== fields.length) return undefined;
  const keys: readonly string[] = neuron.stateKeys;
  if (keys.length !== fields.length || !fields.every((k) => keys.includes(k!))) return undefined;
  return { v: v!, s: s!, ...(a !== undefined ? { a } : {}) };
}

/** Every layer's fused-kernel parameters under `p` (the step's clamped neuron tensors). */
export function fusedParams(model: ResolvedModel, neuron: readonly NeuronParams<unknown>['tensors'][]): IntegrateFireParams[] | undefined {
  const out: IntegrateFireParams[] = [];
  for (const [i, l] of model.layers.entries()) {
    const k = l.neuron.integrateFire?.({ config: l.config, tensors: neuron[i]! });
    if (!k) return undefined;
    out.push(k);
  }
  return out;
}

/** What a fused window returns. */
export interface WindowOutput {
  /** Readout y_t of every step of the window, `[k, B, outputs]`. */
  readonly readout: Tensor;
  /** Spikes of every layer, `[k, B, size]` each. */
  readonly spikes: readonly Tensor[];
  /** The state after the window's last step (values: no gradient flows back through it). */
  readonly state: NetState;
}

/**
 * A window of steps `x [k, B, inputs]` from `state` through the fast kernels (requires
 * `p.fused`). Runs in the caller's scope (a tape or a `tf.tidy`). With `p.traces`, every layer's
 * and the readout's weight gradients take their presynaptic traces (OTTT).
 */
export function fusedWindow(model: ResolvedModel, p: StepParams, state: NetState, x: Tensor): WindowOutput {
  const fused = p.fused;
  if (!fused) {
    throw new SpikeflowError('CONFIG_INVALID', 'fusedWindow: these step parameters are not fused (see Network.fused); run step by step');
  }
  const [k, B] = x.shape as [number, number];
  const layerKernel = p.kernels[IntegrateFireLayer];
  const sequenceKernel = p.kernels[IntegrateFireSequence];
  // Without the temporal path the kernels drop it too (the default keeps it: no flag passed).
  const temporalOption = p.temporal ? {} : { temporal: false };
  // Spatial ops see the window's k·B images as one batch: `[k, B, F]` ⇄ `[k·B, F]`.
  const images = (t: Tensor) => tf.reshape(t, [k * B, t.shape[2]!]);
  const steps = (t: Tensor) => tf.reshape(t, [k, B, t.size / (k * B)]);
  const pooled = (t: Tensor, pools: ResolvedLayer['pools']) => (pools.length ? steps(applyPools(images(t), pools, p.kernels[MaxPool])) : t);
  const lastStep = (t: Tensor) => tf.reshape(tf.slice(t, [k - 1, 0, 0], [1, B, -1]), [B, t.shape[2]!]);
  let input = x;
  const spikes: Tensor[] = [];
  const layers: LayerState[] = model.layers.map((l, i) => {
    const lp = p.layers[i]!;
    const params = fused[i]!;
    const keys = fusedStateKeys(l.neuron, params.adaptation !== undefined)!;
    const prev = state.layers[i]!.neuron;
    const feed = masked(pooled(p.cut.has(i) ? lp.ctx.detach(input) : input, l.pools), p.dropout?.layers[i]);
    const traces = p.traces?.layers[i];
    if (traces && convolutional(l)) {
      throw new SpikeflowError('INCOMPATIBLE', `fusedWindow: layer ${l.specIndex} (${l.type}) has presynaptic traces, which only dense layers' kernels take`);
    }
    const kernelParams = { ...params, surrogate: l.surrogate, ...temporalOption, ...(traces ? { traces } : {}) };
    // One stage's neurons over the window from the state fields named `v`, `s` (`a`) + `suffix`.
    const stage = (run: (init: IntegrateFireState) => IntegrateFireSequenceResult, suffix = '') => {
      const init = { v: prev[keys.v + suffix]!, s: prev[keys.s + suffix]!, ...(keys.a !== undefined ? { a: prev[keys.a + suffix]! } : {}) };
      const out = run(init);
      const neuron = { [keys.v + suffix]: out.final.v, [keys.s + suffix]: out.final.s, ...(keys.a !== undefined ? { [keys.a + suffix]: out.final.a! } : {}) };
      return { out, neuron };
    };
    if (!convolutional(l)) {
      const { out, neuron } = stage((init) => layerKernel(feed, lp.W, lp.b, init, lp.W_rec, kernelParams));
      spikes.push(out.spikes);
      input = out.spikes;
      return { neuron, spikes: out.final.s };
    }
    // A convolution over the window's k·B images; batch normalisation over all of them (and their positions).
    const conv = (t: Tensor, w: Tensor, b: Tensor | undefined, bn: BatchNormTensors | undefined) => {
      const y = convCurrent(images(t), w, b, l.conv!, p.kernels[EventConv2d]);
      return steps(l.batchNorm ? batchNorm(y, l.conv!.outShape[2], bn!, l.batchNorm, p.training) : y);
    };
    if (l.type === 'conv2d') {
      const { out, neuron } = stage((init) => sequenceKernel(conv(feed, lp.W, lp.b, lp.bn), init, undefined, kernelParams));
      spikes.push(out.spikes);
      input = out.spikes;
      return { neuron, spikes: out.final.s };
    }
    // A SEW block: s1 = neuron(conv(x, W) + b), s2 = neuron(conv(s1, W2) + b2), then the connect function of s2 and x.
    const first = stage((init) => sequenceKernel(conv(feed, lp.W, lp.b, lp.bn), init, undefined, kernelParams), '1');
    const second = stage((init) => sequenceKernel(conv(first.out.spikes, lp.W2!, lp.b2, lp.bn2), init, undefined, kernelParams), '2');
    const s2 = second.out.spikes;
    const out = l.connect === 'ADD' ? tf.add(s2, feed) : l.connect === 'IAND' ? tf.mul(tf.sub(1, s2), feed) : tf.mul(s2, feed);
    spikes.push(out);
    input = out;
    return { neuron: { ...first.neuron, ...second.neuron }, spikes: lastStep(out) };
  });
  const O = model.readout.size;
  const traces = p.traces?.readout;
  const readout = p.kernels[LeakyReadout](
    masked(pooled(input, model.readoutPools), p.dropout?.readout),
    p.readout.W,
    p.readout.b,
    state.readout,
    model.readout.leak!,
    {
      ...temporalOption,
      ...(traces ? { traces } : {}),
    },
  );
  const last = tf.tensor2d((readout.dataSync() as Float32Array).slice((k - 1) * B * O), [B, O]);
  return { readout, spikes, state: { layers, readout: last } };
}

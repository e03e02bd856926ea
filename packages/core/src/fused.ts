import { hostMemoryBackend, tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';
import {
  LeakyReadout,
  IntegrateFireLayer,
  IntegrateFireSequence,
  EventConv2d,
  MaxPool,
  detach,
  type IntegrateFireSequenceResult,
  type PresynapticTraces,
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
    model.readout.synapse &&
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
  /** What each layer's synapse read at every step: the previous layer's output (the inputs for layer 0) after its pooling and dropout, `[k, B, features]`. */
  readonly feeds: readonly Tensor[];
  /** What the readout read at every step (after its pooling and dropout), `[k, B, features]`. */
  readonly readoutFeed: Tensor;
  /** The state after the window's last step (values: no gradient flows back through it). */
  readonly state: NetState;
}

/**
 * The presynaptic traces of every step of a window, `[k, B, n]` (values only), from the inputs
 * `x [k, B, n]` and the trace before the window: â_{t0+j} = λ·â_{t0+j−1} + x_{t0+j}. And the
 * bias traces c_{t0+j} of a constant input 1, from c before the window.
 */
function stepTraces(x: Tensor, t: PresynapticTraces): { input: Tensor; bias: number[] } {
  const k = x.shape[0]!;
  const rows = tf.unstack(detach(x));
  const out: Tensor[] = [];
  const bias: number[] = [];
  let a = t.input;
  let c = t.bias ?? 0;
  for (const row of rows) {
    a = a && t.decay > 0 ? tf.add(tf.mul(a, t.decay), row) : row;
    c = t.decay * c + 1;
    out.push(a);
    bias.push(c);
  }
  return { input: k === 1 ? tf.expandDims(out[0]!, 0) : tf.stack(out), bias };
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
  const feeds: Tensor[] = [];
  const layers: LayerState[] = model.layers.map((l, i) => {
    const lp = p.layers[i]!;
    const params = fused[i]!;
    const keys = fusedStateKeys(l.neuron, params.adaptation !== undefined)!;
    const prev = state.layers[i]!.neuron;
    const feed = masked(pooled(p.cut.has(i) ? lp.ctx.detach(input) : input, l.pools), p.dropout?.layers[i]);
    feeds.push(feed);
    const traces = p.traces?.layers[i];
    if (traces && (l.type === 'sew_block' || l.batchNorm)) {
      throw new SpikeflowError(
        'INCOMPATIBLE',
        `model.layers[${l.specIndex}] (${l.type}${l.batchNorm ? ', batch-normalised' : ''}): presynaptic traces (OTTT) replace the input of a convolution's filter gradient, ` +
          (l.batchNorm
            ? 'which batch normalisation\'s statistics of the same input do not allow; remove "batchNorm" (OTTT\'s authors standardise the weights instead)'
            : "and a SEW block's second convolution reads its first stage's spikes, which have no trace; use conv2d layers"),
      );
    }
    // A convolution's stage takes its currents made (traced where OTTT asks); a dense layer's kernel takes the traces.
    const sequenceParams = { ...params, surrogate: l.surrogate, ...temporalOption };
    const kernelParams = { ...sequenceParams, ...(traces ? { traces } : {}) };
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
    /**
     * OTTT's convolution: the value and the input's gradient of conv(x, W) + b, W's gradient that of
     * conv(â, W) (â: every step's presynaptic trace) and b's Σ c_t·g_t, written with stop-gradients.
     */
    const tracedConv = (x: Tensor, t: PresynapticTraces, w: Tensor, b: Tensor | undefined) => {
      const a = stepTraces(x, t);
      const viaTrace = convCurrent(images(a.input), w, undefined, l.conv!, p.kernels[EventConv2d]);
      const y = steps(tf.add(convCurrent(images(x), detach(w), undefined, l.conv!, p.kernels[EventConv2d]), tf.sub(viaTrace, detach(viaTrace))));
      if (!b) return y;
      const C = l.conv!.outShape[2];
      // Value b, gradient c_t·g_t: b + (c_t − 1)·b − stop((c_t − 1)·b).
      const cb = tf.mul(
        tf.tensor3d(
          a.bias.map((c) => c - 1),
          [k, 1, 1],
        ),
        b,
      );
      const bias = tf.add(b, tf.sub(cb, detach(cb)));
      return tf.reshape(tf.add(tf.reshape(y, [k, -1, C]), bias), [k, B, -1]);
    };
    if (l.type === 'conv2d') {
      const current = traces ? tracedConv(feed, traces, lp.W, lp.b) : conv(feed, lp.W, lp.b, lp.bn);
      const { out, neuron } = stage((init) => sequenceKernel(current, init, undefined, sequenceParams));
      spikes.push(out.spikes);
      input = out.spikes;
      return { neuron, spikes: out.final.s };
    }
    // A SEW block: s1 = neuron(conv(x, W) + b), s2 = neuron(conv(s1, W2) + b2), then the connect function of s2 and x.
    const first = stage((init) => sequenceKernel(conv(feed, lp.W, lp.b, lp.bn), init, undefined, sequenceParams), '1');
    const second = stage((init) => sequenceKernel(conv(first.out.spikes, lp.W2!, lp.b2, lp.bn2), init, undefined, sequenceParams), '2');
    const s2 = second.out.spikes;
    const out = l.connect === 'ADD' ? tf.add(s2, feed) : l.connect === 'IAND' ? tf.mul(tf.sub(1, s2), feed) : tf.mul(s2, feed);
    spikes.push(out);
    input = out;
    return { neuron: { ...first.neuron, ...second.neuron }, spikes: lastStep(out) };
  });
  const O = model.readout.size;
  const traces = p.traces?.readout;
  const readoutFeed = masked(pooled(input, model.readoutPools), p.dropout?.readout);
  const readout = p.kernels[LeakyReadout](readoutFeed, p.readout.W!, p.readout.b, state.readout, model.readout.leak!, {
    ...temporalOption,
    ...(traces ? { traces } : {}),
  });
  return { readout, spikes, feeds, readoutFeed, state: { layers, readout: lastReadout(readout, k, B, O) } };
}

/**
 * The readout's last step `[B, O]`, values only (the state carried to the next window): read from
 * CPU memory where the backend keeps it there (no op, nothing on the tape), else sliced on the
 * device and detached (a GPU backend cannot read synchronously, and should not wait for it).
 */
function lastReadout(readout: Tensor, k: number, B: number, O: number): Tensor {
  if (hostMemoryBackend()) return tf.tensor2d((readout.dataSync() as Float32Array).slice((k - 1) * B * O), [B, O]);
  return tf.tidy(() => detach(tf.reshape(tf.slice(readout, [k - 1, 0, 0], [1, B, O]), [B, O])));
}

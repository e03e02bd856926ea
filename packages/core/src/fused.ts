import { tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';
import { LeakyReadout, IntegrateFireLayer, type KernelName, type KernelTable } from './kernels.js';
import type { AnyNeuronModel, IntegrateFireParams, NeuronParams } from './neuron.js';
import { isDenseModel, type ResolvedModel } from './model.js';
import type { LayerState, NetState, StepParams } from './step.js';

/**
 * The fused path: a whole window of steps through the backend's fast kernels, layer by layer —
 * each layer's input product for all k steps and its neurons through time in one
 * `spikeflow.integrateFireLayer`, the readout in one `spikeflow.leakyReadout` — instead of a dozen ops per
 * step. Same values and gradients as k steps of `modelStep`.
 *
 * A network can run fused when every layer's neuron declares that its step is core's fused layer
 * equations under its config (`NeuronModel.integrateFire`), on a state of exactly its membrane and
 * spike fields (and its adaptation field, where those equations have an adaptive threshold), and
 * the readout is a fixed leak over the spikes (`Readout.leak`). Whether it runs fused then depends
 * only on the active backend: it must register both fast kernels.
 */
export function fusableModel(model: ResolvedModel, kernelParams: (layer: number) => IntegrateFireParams | undefined): boolean {
  return (
    isDenseModel(model) &&
    model.readout.leak !== undefined &&
    model.readout.from === 'spikes' &&
    model.layers.every((l, i) => {
      const k = l.neuron.integrateFire ? kernelParams(i) : undefined;
      return k !== undefined && fusedStateKeys(l.neuron, k.adaptation !== undefined) !== undefined;
    })
  );
}

/** The kernels the fused path needs on the active backend. */
const FUSED_KERNELS: readonly KernelName[] = [IntegrateFireLayer, LeakyReadout];

/** Whether `kernels` has fast versions of every fused kernel for `backend`. */
export function fusedKernelsOn(kernels: KernelTable, backend: string): boolean {
  return FUSED_KERNELS.every((k) => kernels.has(k, backend));
}

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
  // Without the temporal path the kernels drop it too (the default keeps it: no flag passed).
  const temporalOption = p.temporal ? {} : { temporal: false };
  let input = x;
  const spikes: Tensor[] = [];
  const layers: LayerState[] = model.layers.map((l, i) => {
    const lp = p.layers[i]!;
    const params = fused[i]!;
    const keys = fusedStateKeys(l.neuron, params.adaptation !== undefined)!;
    const prev = state.layers[i]!.neuron;
    const feed = p.cut.has(i) ? lp.ctx.detach(input) : input;
    const init = { v: prev[keys.v]!, s: prev[keys.s]!, ...(keys.a !== undefined ? { a: prev[keys.a]! } : {}) };
    const traces = p.traces?.layers[i];
    const out = layerKernel(feed, lp.W, lp.b, init, lp.W_rec, { ...params, surrogate: l.surrogate, ...temporalOption, ...(traces ? { traces } : {}) });
    spikes.push(out.spikes);
    input = out.spikes;
    const neuron = { [keys.v]: out.final.v, [keys.s]: out.final.s, ...(keys.a !== undefined ? { [keys.a]: out.final.a! } : {}) };
    return { neuron, spikes: out.final.s };
  });
  const O = model.readout.size;
  const traces = p.traces?.readout;
  const readout = p.kernels[LeakyReadout](input, p.readout.W, p.readout.b, state.readout, model.readout.leak!, {
    ...temporalOption,
    ...(traces ? { traces } : {}),
  });
  const last = tf.tensor2d((readout.dataSync() as Float32Array).slice((k - 1) * B * O), [B, O]);
  return { readout, spikes, state: { layers, readout: last } };
}

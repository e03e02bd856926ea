import { tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';
import { disposeTree, tidy } from './state.js';
import type { Network } from './network.js';
import type { NetState } from './step.js';
import { inputShape, isStepSource, stepsOf, type StepInput } from './steps.js';
import { advance } from './loops.js';
import { fusedWindowSteps } from './fused.js';

export interface ForwardResult {
  /** Readout per step, `[T, B, outputs]`. */
  readonly readout: Tensor;
  /** Spikes per layer, `[T, B, size]` each (only with `record: true`). */
  readonly spikes?: readonly Tensor[];
  /** Final state. */
  readonly state: NetState;
}

/**
 * Inference over a whole sequence `[T, B, inputs]` (a tensor or a step source), without a gradient
 * tape and with memory independent of T apart from the outputs it returns (and a tensor input
 * itself). The caller disposes the result's tensors (`disposeTree`).
 */
export function forward(net: Network, inputs: StepInput, { record = false, state }: { record?: boolean; state?: NetState } = {}): ForwardResult {
  checkInputs(net, inputs);
  const [T, B] = inputShape(inputs) as [number, number];
  if (T > 0 && net.fused) return forwardFused(net, inputs, record, state);
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
    if (state === undefined && final !== initial) disposeTree(initial, final);
    const readout = tf.stack(ys);
    const stacked = record ? spikes.map((l) => tf.stack(l)) : undefined;
    disposeTree([...ys, ...spikes.flat()], final);
    return { readout, ...(stacked ? { spikes: stacked } : {}), state: final };
  }
}

/**
 * Steps per window of the fused inference path: memory stays independent of T (a fast kernel's
 * scratch holds a window's currents, membrane and spikes: ~200 MB at 1024 steps of the bench's
 * workload). A sequence split into windows is read out of the backend and back in once.
 */
const INFERENCE_WINDOW = 1024;

function forwardFused(net: Network, inputs: StepInput, record: boolean, state: NetState | undefined): ForwardResult {
  const [T, B] = inputShape(inputs) as [number, number];
  // A conv network's activations are far wider than a dense one's: shorter windows keep the memory in bounds.
  const window = fusedWindowSteps(net.model, B, INFERENCE_WINDOW);
  // A float32 tensor of one window: as it is; else each window's steps (from one read of a tensor's data, or made by the source).
  const xs = T > window || !(inputs instanceof tf.Tensor) || inputs.dtype !== 'float32' ? stepsOf(inputs) : undefined;
  const ys: Tensor[] = [];
  const spikes: Tensor[][] = net.model.layers.map(() => []);
  let s = state ?? net.init(B);
  for (let from = 0; from < T; from += window) {
    const k = Math.min(window, T - from);
    const prev = s;
    const out = tidy(() => {
      const x = xs ? xs.window(from, from + k) : (inputs as Tensor);
      const o = net.runWindow(net.prepare(), prev, x);
      return { readout: o.readout, spikes: record ? o.spikes : [], state: o.state };
    });
    ys.push(out.readout);
    out.spikes.forEach((sp, l) => spikes[l]!.push(sp));
    if (prev !== state) disposeTree(prev);
    s = out.state;
  }
  const readout = ys.length === 1 ? ys[0]! : tf.concat(ys);
  const stacked = record ? spikes.map((l) => (l.length === 1 ? l[0]! : tf.concat(l))) : undefined;
  if (ys.length > 1) disposeTree(ys);
  if (record) for (const l of spikes) if (l.length > 1) disposeTree(l);
  return { readout, ...(stacked ? { spikes: stacked } : {}), state: s };
}

/**
 * Checks a sequence's inputs against a network: time-major `[T, B, net.inputs]`, a tensor or a
 * step source (whose declared steps, step shape and dtype are checked too); `SHAPE_MISMATCH` otherwise.
 */
export function checkInputs(net: Network, inputs: StepInput): void {
  const shape = inputShape(inputs);
  if (shape.length !== 3 || shape[2] !== net.inputs) {
    const what = isStepSource(inputs) ? ' from a step source (steps, stepShape)' : '';
    throw new SpikeflowError('SHAPE_MISMATCH', `inputs must be time-major [T, B, ${net.inputs}] (the model's "inputs"), got [${shape}]${what}`, {
      expected: [null, null, net.inputs],
      actual: shape,
    });
  }
}

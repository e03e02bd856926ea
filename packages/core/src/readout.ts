import { tf, type Tensor } from './tf.js';
import type { NeuronTensorParam } from './neuron.js';
import type { Schema, SchemaValues } from './validate.js';

/** A tensor parameter of a readout besides `W` and `b`, named `readout.<key>` (same initialisation rules as a neuron's). */
export type ReadoutTensorParam = NeuronTensorParam;

/** What a readout's step receives. */
export interface ReadoutStepParams<C = Readonly<Record<string, string | number | boolean>>> {
  /** The readout kind's validated options (`kappa` of `leaky`, ...). */
  readonly options: C;
  /** Its tensor parameters besides `W` and `b` (the weights of a gate), by key. */
  readonly tensors: { readonly [key: string]: Tensor };
  /** `x·W` with the active backend's fast kernel, for a readout's own matrices (gates). */
  readonly dense: (x: Tensor, w: Tensor) => Tensor;
}

/**
 * A non-spiking readout over the last layer: the network computes the drive `d_t = x_t·W_out + b_out`
 * from the layer's spikes (or membrane), and the readout integrates it, `y_t = f(y_{t−1}, d_t)`.
 * Core provides `leaky`; plugins provide others (a liquid-time-constant readout, ...) in their
 * plugin object's `readouts`. Like a neuron, a readout is a pure step over explicit state.
 */
export interface Readout<Sch extends Schema = Schema> {
  /** The name a spec's `"kind"` selects (`leaky`, ...). */
  readonly name: string;
  readonly description: string;
  /** Options of this kind, given next to `size` in the spec (`"kappa": 0.9`). */
  readonly optionsSchema: Sch;
  /** Tensor parameters besides `W` and `b` under `options`, for `size` outputs (drawn after `W` and `b`, in key order). */
  tensorParams?(options: SchemaValues<Sch>, size: number): Readonly<Record<string, ReadoutTensorParam>>;
  /** One step: `y_t` from `y_{t−1}` and the drive `d_t`, `[B, size]` each. Pure. */
  step(p: ReadoutStepParams<SchemaValues<Sch>>, y: Tensor, d: Tensor): Tensor;
  /**
   * The fixed leak κ when the step under `options` is exactly `y_t = κ·y_{t−1} + d_t` (`undefined`
   * otherwise). Such a readout runs a whole window in one `spikeflow.leakyReadout` kernel, and rules
   * that follow the readout's leak (OTTT's traces, e-prop's filtered signals) read it.
   */
  leak?(options: SchemaValues<Sch>): number | undefined;
  /**
   * `false`: the readout has no synapse — no `W` and no `b`; its drive `d_t` is what it reads,
   * unchanged, so its `size` must be that many features (a network whose last layer is its output
   * layer, as TSSL-BP's). Default true.
   */
  readonly synapse?: boolean;
}

/** Any readout, for registries. */
// biome-ignore lint/suspicious/noExplicitAny: entries keep their own option types
export type AnyReadout = Readout<any>;

/** Keeps a readout's literal schema type. */
export function defineReadout<Sch extends Schema>(readout: Readout<Sch>): Readout<Sch> {
  return readout;
}

const leakySchema = {
  kappa: { type: 'number', default: 0.9, min: 0, max: 1, doc: 'leak κ in [0, 1]; 0 gives an instantaneous linear readout' },
} as const;

/** `y_t = κ·y_{t−1} + d_t` with a fixed leak κ (default 0.9). Core's default readout. */
export const leakyReadout = defineReadout({
  name: 'leaky',
  description: 'leaky integrator y_t = κ·y_{t−1} + d_t with a fixed leak κ',
  optionsSchema: leakySchema,
  // κ as a constant the network holds, so that a step makes no scalar of its own.
  tensorParams: (o) => ({ kappa: { value: o.kappa, trainable: false } }),
  step: ({ tensors }, y, d) => tf.add(tf.mul(tensors['kappa']!, y), d),
  leak: (o) => o.kappa,
});

/**
 * `y_t = x_t`: the last layer's output itself (its spikes, or what its neuron passes on — TSSL-BP's
 * PSPs), with no weights; `size` must be the number of features it reads.
 */
export const identityReadout = defineReadout({
  name: 'identity',
  description: "the last layer's output as it is (no weights): y_t = x_t",
  optionsSchema: {},
  synapse: false,
  step: (_p, _y, d) => d,
});

/** The readouts core provides. */
export const builtinReadouts: readonly AnyReadout[] = [leakyReadout, identityReadout];

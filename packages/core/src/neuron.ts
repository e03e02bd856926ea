import type { SpikeTimingParams } from './spike-timing.js';
import type { Tensor } from './tf.js';
import type { SpikeFn, Surrogate, SurrogateSpec } from './surrogates.js';
import type { Schema, SchemaValues } from './validate.js';
import type { IntegrateFireSequenceParams, KernelName, KernelSignatures } from './kernels.js';

/**
 * A layer's parameters for core's `spikeflow.integrateFireSequence` kernel (the surrogate is the
 * layer's; whether the backward pass keeps the temporal path is the caller's, `PrepareOptions.temporal`).
 */
export type IntegrateFireParams = Omit<IntegrateFireSequenceParams, 'surrogate' | 'temporal'>;

/** A neuron's state: a record of `[batch, size]` tensors (`{ v, s }` for a leaky integrate-and-fire neuron, `{ v, a, s }` with an adaptation). */
export type NeuronState = { readonly [key: string]: Tensor };

/**
 * One tensor parameter of a neuron layer (a decay, a time constant, the weights of a gate, ...).
 * Trainable ones become `tf.Variable`s in the network's parameter map, named `layers.<i>.<key>`;
 * fixed ones are constants owned by the network.
 */
export interface NeuronTensorParam {
  /**
   * Initial value: one shared scalar, explicit values (row-major), or `{ uniform: bound }` drawn
   * uniformly in ±bound from the network's seed (same seed, same values, on any backend).
   */
  readonly value: Float32Array | number | { readonly uniform: number };
  /**
   * Shape of the tensor. Default: `[]` for a scalar, `[n]` for `n` explicit values; required with
   * `uniform`. Any shape is allowed (a gate's `[2·size, size]` weight matrix, a `[size]` decay).
   */
  readonly shape?: readonly number[];
  readonly trainable: boolean;
  /** Optional clamp applied when the neuron reads it (keeps a trainable decay in [0, 1]). */
  readonly range?: readonly [number, number];
}

/** What a neuron's step receives: its validated config and its tensor parameters. */
export interface NeuronParams<C> {
  readonly config: C;
  readonly tensors: { readonly [key: string]: Tensor };
}

/** What a neuron's step receives from the layer around it. */
export interface NeuronStepContext {
  /** The layer's spike op: Heaviside forward, surrogate derivative backward. */
  readonly spike: SpikeFn;
  /** The layer's surrogate itself (its `derivative` ψ is what local Jacobians use). */
  readonly surrogate: Surrogate;
  /** Identity in the forward pass, zero gradient in the backward pass. */
  readonly detach: (x: Tensor) => Tensor;
  /**
   * `x·W` with the active backend's fast kernel (`spikeflow.dense`), for neurons with synapses of
   * their own (gates). Use it instead of `tf.matMul` for parameter matrices in the hot loop.
   */
  readonly dense: (x: Tensor, w: Tensor) => Tensor;
  /**
   * The active backend's kernels (core's composite references where it has none of its own), for
   * neurons whose step is one of them (an LTC-SN layer's `spikeflow.ltcStep`). Absent (a context
   * made by hand): use core's references (`referenceKernels`).
   */
  readonly kernels?: { readonly [K in KernelName]: KernelSignatures[K] };
}

/**
 * A spiking neuron model: a **pure** step from (state, input current) to (new state, spikes).
 * State is explicit and typed; nothing is hidden on the object, so any rule can unroll,
 * truncate, detach or trace any neuron.
 *
 * `S` is the state record, `Sch` the schema of its JSON config (validated by core, which names
 * the offending field on error).
 */
export interface NeuronModel<Sch extends Schema = Schema, S extends NeuronState = NeuronState> {
  /** Name used in model specs (`"neuron": "<name>"`). */
  readonly name: string;
  /** One line for `spikeflow plugins` and error messages. */
  readonly description: string;
  /** Config fields with types, ranges and defaults. */
  readonly configSchema: Sch;
  /**
   * The surrogate this neuron was designed and tuned with, used when neither the layer nor the
   * model names one (otherwise core's default, fast sigmoid with slope 25).
   */
  readonly defaultSurrogate?: SurrogateSpec;
  /** State fields, in a stable order (checkpoints, fixtures and tests read them by name). */
  readonly stateKeys: readonly (keyof S & string)[];
  /**
   * The state field holding the layer's spikes of the step (`step` returns it as `spikes` too):
   * the recurrent input of the next step starts from it, learning signals enter there (e-prop),
   * and the fused path carries it from window to window. Absent: the neuron keeps no spikes in
   * its state (the layer's first recurrent input is then zeros).
   */
  readonly spikes?: keyof S & string;
  /**
   * The state field holding the membrane potential, for readouts that read it instead of the
   * spikes (`"readout": { "from": "membrane" }`). Absent: the neuron offers no analog readout.
   */
  readonly membrane?: keyof S & string;
  /**
   * The state field holding the adaptation a of an adaptive threshold (ϑ + β_a·a_t, with
   * a_t = ρ·a_{t−1} + s_{t−1}), for neurons whose fused form has one (`integrateFire` returning
   * `adaptation`): the fused path carries it from window to window. Absent: no such field.
   */
  readonly adaptation?: keyof S & string;
  /**
   * The fixed per-step decay of the membrane under `config` (β in v_t = β·v_{t−1} + …),
   * or `undefined` where it has none (a trainable decay, gated dynamics). Rules that follow the
   * membrane's leak with presynaptic traces (OTTT) read it.
   */
  membraneDecay?(config: SchemaValues<Sch>): number | undefined;
  /**
   * Checks relations between config fields (each field alone is checked by `configSchema`).
   * Throw `configError(\`${path}.field\`, ...)`; `path` is the layer's params path, e.g.
   * `model.layers[1].params`. Runs before any tensor is allocated.
   */
  validate?(config: SchemaValues<Sch>, path: string): void;
  /** Tensor parameters of a layer of `size` neurons under `config`. */
  tensorParams(config: SchemaValues<Sch>, size: number): Readonly<Record<string, NeuronTensorParam>>;
  /** Initial state (all zeros for the neurons shipped). */
  init(batch: number, size: number, config: SchemaValues<Sch>): S;
  /** One time step. Must not dispose or mutate `state`; returns fresh tensors (or inputs). */
  step(params: NeuronParams<SchemaValues<Sch>>, state: S, current: Tensor, ctx: NeuronStepContext): { state: S; spikes: Tensor };
  /**
   * Optional capability: under `params` the step is exactly the equations of core's fused layer
   * kernel (see `IntegrateFireSequenceParams`: subtractive reset, Heaviside spike with the layer's
   * surrogate, and an adaptive threshold where the returned parameters have `adaptation`) on a
   * state of exactly its `membrane` and `spikes` fields, plus its `adaptation` field with an
   * adaptive threshold. Backends with the fast kernel then run a whole window of the layer in one
   * kernel instead of step by step. Return `undefined` where the config leaves those equations;
   * the answer (and whether it adapts) must depend on the config alone. The neuron conformance
   * suite checks the kernel against `step`. (`temporal` is the caller's: leave it out.)
   */
  integrateFire?(params: NeuronParams<SchemaValues<Sch>>): IntegrateFireParams | undefined;
  /**
   * Optional capability: under `config` the step is TSSL-BP's neuron as core's
   * `spikeTimingSequence` computes it — reset to zero, a first-order PSP filter whose output the
   * step returns as what the layer passes on — after, with `filterInput`, passing the incoming
   * current through the same filter (psp(x)·W = psp(x·W): the network's input PSP-filtered, as the
   * authors do). Rules built on spike timing (TSSL-BP) run whole layers through
   * `spikeTimingSequence` with these parameters. `undefined` where the config leaves them.
   */
  spikeTiming?(config: SchemaValues<Sch>): (SpikeTimingParams & { readonly filterInput: boolean }) | undefined;
  /**
   * Optional capability: the step's local Jacobians, for neurons whose update is local to each
   * neuron. Rules that need it (e-prop) refuse neurons without it with a clear error.
   */
  readonly localJacobians?: LocalJacobiansCapability<S, SchemaValues<Sch>>;
}

/**
 * One entry of a local Jacobian, per neuron: a tensor broadcastable to `[batch, size]` (a `[size]`
 * per-neuron decay, a scalar, a full `[batch, size]` tensor), a plain number, or `null` for an
 * entry that is zero by construction (rules skip it).
 */
export type JacobianEntry = Tensor | number | null;

/**
 * The derivatives of one step of a neuron whose update is **local**: neuron j's next state
 * depends only on its own previous state and its own input current (the same j), so every
 * Jacobian is diagonal across neurons and is given by one `[batch, size]` entry per pair of state
 * fields. Indices follow `stateKeys`.
 */
export interface LocalJacobians {
  /** `state[k][k']` = ∂ next[stateKeys[k]] / ∂ prev[stateKeys[k']] (the gradient paths the step itself has: a detached reset gives `null`). */
  readonly state: readonly (readonly JacobianEntry[])[];
  /** `current[k]` = ∂ next[stateKeys[k]] / ∂ I_t. */
  readonly current: readonly JacobianEntry[];
}

/**
 * A capability a neuron declares when its step is local (see {@link LocalJacobians}): what
 * e-prop's eligibility traces need (Bellec et al. 2020: ε_t = ∂h_t/∂h_{t−1}·ε_{t−1} + ∂h_t/∂W).
 * The neuron conformance suite checks `jacobians` against automatic differentiation of `step`.
 */
export interface LocalJacobiansCapability<S extends NeuronState = NeuronState, C = Readonly<Record<string, string | number | boolean>>> {
  /**
   * The Jacobians of the step that took `prev` to `next` with input `current`. Called outside any
   * gradient tape; entries are fresh tensors (the caller disposes them), the params' own tensors
   * (left alone), numbers or `null`.
   */
  jacobians(params: NeuronParams<C>, prev: S, next: S, current: Tensor, ctx: NeuronStepContext): LocalJacobians;
}

/** Any neuron model, for registries and loaders. */
// biome-ignore lint/suspicious/noExplicitAny: registries hold neurons of every config type
export type AnyNeuronModel = NeuronModel<any, any>;

/**
 * Open registry of neuron configs, filled by declaration merging:
 *
 * ```ts
 * declare module '@spikeflow/core' {
 *   interface NeuronRegistry { myNeuron: MyNeuronConfig }
 * }
 * ```
 *
 * so a TypeScript model spec naming `'myNeuron'` has its `params` type-checked, while core knows no
 * neuron.
 */
// biome-ignore lint/suspicious/noEmptyInterface: filled by declaration merging
export interface NeuronRegistry {}

/** Helper for neuron authors: keeps the literal schema type. */
export function defineNeuron<Sch extends Schema, S extends NeuronState>(model: NeuronModel<Sch, S>): NeuronModel<Sch, S> {
  return model;
}

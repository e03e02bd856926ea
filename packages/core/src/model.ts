import { SpikeflowError } from './errors.js';
import type { AnyNeuronModel, NeuronRegistry } from './neuron.js';
import { surrogateFromSpec, type Surrogate, type SurrogateEntry, type SurrogateSpec } from './surrogates.js';
import { builtinReadouts, type AnyReadout } from './readout.js';
import { configError, didYouMean, expectObject, join, parseSchema, rejectUnknownKeys } from './validate.js';

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
 * potentials): the drive `d_t = s_t·W_out + b_out` integrated by the readout's kind — core's
 * `leaky` (default), `y_t = κ·y_{t−1} + d_t` with a fixed leak `kappa` (default 0.9), or a kind a
 * plugin provides (a liquid-time-constant readout, ...). Options of
 * the kind sit next to `size` (`"kappa": 0.5`).
 */
export interface ReadoutSpec {
  size: number;
  /** The readout kind (default `leaky`). */
  kind?: string;
  /**
   * What the readout reads from the last layer: its `spikes` (default) or its `membrane`
   * potentials (the state field its neuron names as `membrane`; the Add-task model of Yin et al.
   * 2023 reads its neurons' membrane).
   */
  from?: 'spikes' | 'membrane';
  /** Leak κ in [0, 1] of the `leaky` readout (default 0.9); κ = 0 gives an instantaneous linear readout. */
  kappa?: number;
  bias?: boolean;
  gain?: number;
  /** Options of a plugin's readout kind. */
  [option: string]: unknown;
}

/** A readout spec after validation. */
export interface ResolvedReadout {
  readonly size: number;
  readonly kind: string;
  readonly from: 'spikes' | 'membrane';
  readonly bias: boolean;
  readonly gain: number;
  /** The kind's options, validated against its schema (defaults filled). */
  readonly options: Readonly<Record<string, string | number | boolean>>;
  /** The readout itself. */
  readonly readout: AnyReadout;
  /** Its fixed leak κ (`Readout.leak`), or `undefined` for a readout without one. */
  readonly leak: number | undefined;
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
  readonly readout: ResolvedReadout;
}

/** The plain fields of a model, a layer and a readout: one schema each, parsed once (the other keys name plugins' values). */
const modelFields = { inputs: { type: 'number', integer: true, min: 1, required: true, doc: 'input channels' } } as const;
const layerFields = {
  size: { type: 'number', integer: true, min: 1, required: true, doc: 'number of neurons' },
  recurrent: { type: 'boolean', default: false },
  selfConnections: { type: 'boolean', default: true },
  bias: { type: 'boolean', default: true },
  gain: { type: 'number', default: 1, min: 0, exclusiveMin: true },
} as const;
const readoutFields = {
  size: { type: 'number', integer: true, min: 1, required: true, doc: 'number of outputs' },
  kind: { type: 'string', default: 'leaky' },
  from: { type: 'string', default: 'spikes', oneOf: ['spikes', 'membrane'] },
  bias: { type: 'boolean', default: true },
  gain: { type: 'number', default: 1, min: 0, exclusiveMin: true },
} as const;

/** The entries of `obj` whose keys `schema` names (the rest are checked elsewhere). */
function fieldsOf(obj: Record<string, unknown>, schema: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(obj).filter(([k]) => k in schema));
}

const LAYER_KEYS = ['neuron', 'size', 'recurrent', 'selfConnections', 'bias', 'gain', 'surrogate', 'params'] as const;
const MODEL_KEYS = ['inputs', 'layers', 'readout', 'surrogate'] as const;
const READOUT_KEYS = Object.keys(readoutFields);

export interface ModelRegistries {
  readonly neurons: ReadonlyMap<string, AnyNeuronModel>;
  /** Surrogate entries (a registry's map of them works too). */
  readonly surrogates: Iterable<SurrogateEntry> | ReadonlyMap<string, SurrogateEntry>;
  /** Readout kinds besides core's (`leaky`), e.g. a plugin registry's `readouts`. */
  readonly readouts?: Iterable<AnyReadout> | ReadonlyMap<string, AnyReadout>;
}

/**
 * Validates a model spec against the installed neurons and surrogates. Every error is a
 * `SpikeflowError` whose message and `details.path` name the offending field, e.g.
 * `model.layers[0].size: must be > 0, got -3`.
 */
export function resolveModel(spec: unknown, reg: ModelRegistries, path = 'model'): ResolvedModel {
  const obj = expectObject(spec, path);
  rejectUnknownKeys(obj, MODEL_KEYS, path);
  const surrogates = [...valuesOf(reg.surrogates)];
  const { inputs } = parseSchema(modelFields, fieldsOf(obj, modelFields), path);
  const modelSurrogate = obj['surrogate'] === undefined ? undefined : surrogateFromSpec(obj['surrogate'], surrogates, join(path, 'surrogate'));
  let coreDefault: Surrogate | undefined;
  const fallback = () => {
    coreDefault ??= surrogateFromSpec({ name: 'fast_sigmoid', slope: 25 }, surrogates, join(path, 'surrogate'));
    return coreDefault;
  };
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
    const { size, recurrent, selfConnections, bias, gain } = parseSchema(layerFields, fieldsOf(l, layerFields), lp);
    if (!selfConnections && !recurrent)
      throw configError(join(lp, 'selfConnections'), 'only a recurrent layer has self-connections to mask; add "recurrent": true or remove "selfConnections"');
    // Precedence: the layer's surrogate, the model's, the neuron's own default, core's default.
    const surrogate =
      l['surrogate'] !== undefined
        ? surrogateFromSpec(l['surrogate'], surrogates, join(lp, 'surrogate'))
        : (modelSurrogate ??
          (neuron.defaultSurrogate ? surrogateFromSpec(neuron.defaultSurrogate, surrogates, `${lp}.neuron (default surrogate of '${name}')`) : fallback()));
    const config = parseSchema(neuron.configSchema, l['params'], join(lp, 'params'));
    neuron.validate?.(config, join(lp, 'params'));
    const layer: ResolvedLayer = { index, neuron, config: config as ResolvedLayer['config'], size, fanIn, recurrent, selfConnections, bias, gain, surrogate };
    fanIn = size;
    return layer;
  });
  const readout = resolveReadout(obj['readout'], reg, layers[layers.length - 1]!.neuron, join(path, 'readout'));
  return { spec: spec as ModelSpec, inputs, layers, readout };
}

function resolveReadout(raw: unknown, reg: ModelRegistries, lastNeuron: AnyNeuronModel, rp: string): ResolvedReadout {
  const r = expectObject(raw, rp);
  const kinds = new Map<string, AnyReadout>(builtinReadouts.map((k) => [k.name, k]));
  for (const k of valuesOf(reg.readouts ?? [])) kinds.set(k.name, k);
  const { size, kind, from, bias, gain } = parseSchema(readoutFields, fieldsOf(r, readoutFields), rp);
  const model = kinds.get(kind);
  if (!model) {
    throw new SpikeflowError(
      'UNKNOWN_NAME',
      `${rp}.kind: unknown readout '${kind}'; ${didYouMean(kind, kinds.keys())}. A readout kind comes from a plugin listed in "plugins" (a neuron's plugin may bring the readout its model was designed with).`,
      { path: join(rp, 'kind'), name: kind },
    );
  }
  const own = Object.keys(model.optionsSchema);
  const options: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(r)) {
    if (READOUT_KEYS.includes(key)) continue;
    if (own.includes(key)) {
      options[key] = value;
      continue;
    }
    // An option of another kind: say whose it is.
    const owner = [...kinds.values()].find((k) => key in k.optionsSchema);
    if (owner) throw configError(join(rp, key), `is an option of the '${owner.name}' readout, not of '${kind}'; remove it or use "kind": "${owner.name}"`);
    rejectUnknownKeys({ [key]: value }, [...READOUT_KEYS, ...own], rp);
  }
  if (from === 'membrane' && !lastNeuron.membrane) {
    throw configError(join(rp, 'from'), `neuron '${lastNeuron.name}' of the last layer names no membrane state to read; use "from": "spikes"`);
  }
  const parsed = parseSchema(model.optionsSchema, options, rp) as Record<string, string | number | boolean>;
  return {
    size,
    kind,
    from,
    bias,
    gain,
    options: parsed,
    readout: model,
    leak: model.leak?.(parsed),
  };
}

/** The values of a map, or the items of any other iterable. */
function valuesOf<T>(items: Iterable<T> | ReadonlyMap<string, T>): Iterable<T> {
  return items instanceof Map ? items.values() : (items as Iterable<T>);
}

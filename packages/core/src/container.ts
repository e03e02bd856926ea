import type { DependencyContainer } from 'tsyringe';
import { SpikeflowError } from './errors.js';
import { createContainer, token, type Registry, type Token } from './plugin.js';
import { configError, didYouMean, parseSchema } from './validate.js';
import type { Dataset, DatasetContext, DatasetDescription } from './dataset.js';
import { buildNetwork, type Network } from './network.js';
import type { ModelSpec } from './model.js';
import { KernelTable } from './kernels.js';
import { lossFromSpec, type TemporalLoss } from './losses.js';
import { optimizerFromSpec, type Optimizer } from './optim.js';
import { ruleFromSpec, type LearningRule } from './rule.js';
import type { ComposedRun, RunConfig, RunTrainOptions } from './config.js';

/**
 * The composition of one run, as a tsyringe child container: each part of the run — dataset,
 * model spec, kernels, network, rule, loss, optimizer, train options, logger, clock — is a
 * provider under a typed token of {@link RunTokens}, and each factory resolves what it needs from
 * the container (the network factory the model spec, which reads the dataset's description; the
 * optimizer factory the rule, for its updates per sequence). {@link resolveRun} resolves the run
 * once into a {@link ComposedRun} of plain values; apps and tests replace a provider (an in-memory
 * dataset, a spy optimizer) with {@link override} before that, without touching code. The
 * container never reaches model math or hot loops: it is dropped once the run is resolved.
 */

/** Progress and notices for people (the CLI writes them to stderr). */
export type RunLogger = (message: string) => void;
/** The run's clock, in milliseconds (default `performance.now()`). */
export type RunClock = () => number;
/** Opens the run's dataset (datasets open asynchronously: files, downloads). */
export type DatasetOpener = () => Promise<Dataset>;
/** A run's container (a tsyringe child container). */
export type RunContainer = DependencyContainer;

/** Typed tokens of a run's container; each holds one provider. */
export const RunTokens = {
  /** The parsed run config (`parseRunConfig`). */
  config: token<RunConfig>('spikeflow.run.config'),
  /** The loaded plugins' contents. */
  registry: token<Registry>('spikeflow.run.registry'),
  /** Where datasets find and keep files, and where they log. */
  datasetContext: token<DatasetContext>('spikeflow.run.datasetContext'),
  /** Opens the configured dataset (`config.data`, its options parsed under `data`). */
  openDataset: token<DatasetOpener>('spikeflow.run.openDataset'),
  /**
   * The open dataset. Not registered by {@link runContainer}: {@link resolveRun} awaits
   * `openDataset` and registers the result as a value, unless a dataset was registered already
   * (an override), which is then used and nothing is opened.
   */
  dataset: token<Dataset>('spikeflow.run.dataset'),
  /** The dataset's `describe()`. */
  description: token<DatasetDescription>('spikeflow.run.description'),
  /** The model spec: `config.model` with `inputs` and `readout.size` from the description (checked against it). */
  model: token<ModelSpec>('spikeflow.run.model'),
  /** The fast kernels the network uses: the registry's, or none (`kernels: false`). */
  kernels: token<KernelTable>('spikeflow.run.kernels'),
  network: token<Network>('spikeflow.run.network'),
  rule: token<LearningRule>('spikeflow.run.rule'),
  /** `config.loss`, or the default for the dataset's targets. */
  loss: token<TemporalLoss>('spikeflow.run.loss'),
  /** `config.optimizer`; a decaying schedule spans every update of the run unless it sets `decaySteps`. */
  optimizer: token<Optimizer>('spikeflow.run.optimizer'),
  trainOptions: token<RunTrainOptions>('spikeflow.run.trainOptions'),
  /** `ctx.log`, or a no-op. */
  logger: token<RunLogger>('spikeflow.run.logger'),
  /** `performance.now()`. */
  clock: token<RunClock>('spikeflow.run.clock'),
} as const;

/** A provider of one token: a value, or a factory that resolves what it needs from the run's container (called once per run). */
export type RunProvider<T> = { readonly useValue: T } | { readonly useFactory: (c: RunContainer) => T };

/** A change to a run's container before it is resolved (e.g. `override(RunTokens.dataset, { useValue: ds })`). */
export type RunOverride = (c: RunContainer) => unknown;

/** The value of a typed token in `c`. */
export function resolveToken<T>(c: RunContainer, t: Token<T>): T {
  return c.resolve<T>(t);
}

/** A factory that runs once: every resolution in the run gets the same network, rule, optimizer. */
function once<T>(factory: (c: RunContainer) => T): (c: RunContainer) => T {
  let made = false;
  let value: T;
  return (c) => {
    if (!made) {
      value = factory(c);
      made = true;
    }
    return value;
  };
}

/** Registers `provider` under `t` in `c` (the last registration of a token wins); a factory is called at most once. */
export function provide<T>(c: RunContainer, t: Token<T>, provider: RunProvider<T>): RunContainer {
  return 'useValue' in provider ? c.register<T>(t, { useValue: provider.useValue }) : c.register<T>(t, { useFactory: once(provider.useFactory) });
}

/** An override of one provider, for {@link composeRun}'s `overrides`: `override(RunTokens.optimizer, { useFactory: (c) => spy(...) })`. */
export function override<T>(t: Token<T>, provider: RunProvider<T>): RunOverride {
  return (c) => provide(c, t, provider);
}

export interface RunContainerOptions {
  /** `false`: the network gets no fast kernels, only core's composite references (`--no-kernels`). Default true. */
  readonly kernels?: boolean;
  /** The container the run's is a child of (default: tsyringe's root container). */
  readonly parent?: DependencyContainer;
}

const defaultLoss = { labels: 'ce_mean', 'values-last': 'mse_last', 'values-every-step': 'mse_every_step' } as const;

const get = resolveToken;

/** The open dataset, with a clear message where the run was not resolved through {@link resolveRun}. */
function datasetOf(c: RunContainer): Dataset {
  if (!c.isRegistered(RunTokens.dataset, true)) {
    throw new SpikeflowError(
      'UNKNOWN_NAME',
      'RunTokens.dataset: the run has no open dataset yet; resolve the run with resolveRun (composeRun does), or register one (override(RunTokens.dataset, { useValue: dataset }))',
      { token: 'RunTokens.dataset' },
    );
  }
  return get(c, RunTokens.dataset);
}

/**
 * A child container holding the providers of one run (see {@link RunTokens}): `config`,
 * `registry`, `datasetContext`, `logger` and `clock` as values, the rest as factories that read
 * what they need from the container. Nothing is built until something is resolved; override
 * providers with {@link provide} or {@link override}, then {@link resolveRun}.
 */
export function runContainer(config: RunConfig, registry: Registry, ctx: DatasetContext, { kernels = true, parent }: RunContainerOptions = {}): RunContainer {
  const c = createContainer(parent);
  provide(c, RunTokens.config, { useValue: config });
  provide(c, RunTokens.registry, { useValue: registry });
  provide(c, RunTokens.datasetContext, { useValue: ctx });
  provide(c, RunTokens.logger, { useValue: ctx.log ?? (() => {}) });
  provide(c, RunTokens.clock, { useValue: () => performance.now() });
  provide(c, RunTokens.kernels, { useFactory: (c) => (kernels ? get(c, RunTokens.registry).kernels : new KernelTable()) });
  provide(c, RunTokens.openDataset, {
    useFactory: (c) => {
      const { data } = get(c, RunTokens.config);
      const datasets = get(c, RunTokens.registry).datasets;
      const entry = datasets.get(data.name);
      if (!entry) {
        throw new SpikeflowError(
          'UNKNOWN_NAME',
          `data.name: unknown dataset '${data.name}'; ${didYouMean(data.name, datasets.keys())}. A dataset comes from a plugin (e.g. @spikeflow/dataset-${data.name}) listed in "plugins".`,
          { path: 'data.name' },
        );
      }
      const { name: _d, ...options } = data;
      const parsed = parseSchema(entry.optionsSchema, options, 'data');
      return () => entry.open(parsed, get(c, RunTokens.datasetContext));
    },
  });
  provide(c, RunTokens.description, { useFactory: (c) => datasetOf(c).describe() });
  provide(c, RunTokens.model, {
    useFactory: (c) => {
      const { model } = get(c, RunTokens.config);
      const d = get(c, RunTokens.description);
      const name = datasetOf(c).name;
      // A spatial first layer (after an input dropout) reads the dataset's image shape unless the model gives one.
      const first = (model.layers as { type?: string }[]).find((l) => l?.type !== 'dropout');
      const spatialFirst =
        first?.type === 'conv2d' || first?.type === 'sew_block' || first?.type === 'avgpool' || first?.type === 'maxpool' || first?.type === 'sumpool';
      const shape = model.inputShape ?? (spatialFirst && model.inputs === undefined && d.shape ? ([...d.shape] as [number, number, number]) : undefined);
      const fromShape = Array.isArray(shape) ? shape.reduce((a, b) => a * b, 1) : undefined;
      if (fromShape !== undefined && model.inputs === undefined && fromShape !== d.channels) {
        throw configError(
          'model.inputShape',
          `[${shape}] holds ${fromShape} features, but dataset '${name}' has ${d.channels} input channels per step; give the shape its steps are laid out in (rows, columns, channels)`,
        );
      }
      const spec = {
        ...model,
        ...(shape ? { inputShape: shape } : {}),
        inputs: model.inputs ?? fromShape ?? d.channels,
        readout: { ...model.readout, size: model.readout.size ?? d.outputs },
      } as ModelSpec;
      if (spec.inputs !== d.channels)
        throw configError('model.inputs', `is ${spec.inputs} but dataset '${name}' has ${d.channels} input channels per step (omit it to take the dataset's)`);
      if (spec.readout.size !== d.outputs)
        throw configError('model.readout.size', `is ${spec.readout.size} but dataset '${name}' has ${d.outputs} outputs (omit it to take the dataset's)`);
      return spec;
    },
  });
  provide(c, RunTokens.network, {
    useFactory: (c) => {
      const registry = get(c, RunTokens.registry);
      return buildNetwork(
        get(c, RunTokens.model),
        { neurons: registry.neurons, surrogates: registry.surrogates.values(), readouts: registry.readouts },
        { seed: get(c, RunTokens.config).seed, kernels: get(c, RunTokens.kernels) },
      );
    },
  });
  provide(c, RunTokens.rule, { useFactory: (c) => ruleFromSpec(get(c, RunTokens.config).rule, get(c, RunTokens.registry).rules, 'rule') });
  provide(c, RunTokens.loss, {
    useFactory: (c) =>
      lossFromSpec(get(c, RunTokens.config).loss ?? defaultLoss[get(c, RunTokens.description).target], get(c, RunTokens.registry).losses, 'loss'),
  });
  provide(c, RunTokens.optimizer, {
    useFactory: (c) => {
      const { optimizer, train: t } = get(c, RunTokens.config);
      const scheduled = optimizer['schedule'] !== undefined && optimizer['schedule'] !== 'constant';
      if (!scheduled || optimizer['decaySteps'] !== undefined) return optimizerFromSpec(optimizer, 'optimizer');
      // A decaying schedule spans the whole run unless the config says otherwise.
      const perEpoch = Math.min(datasetOf(c).batchCount('train', { batchSize: t.batchSize }), t.maxBatchesPerEpoch ?? Infinity);
      const perSequence = get(c, RunTokens.rule).updatesPerSequence?.(get(c, RunTokens.description).steps) ?? 1;
      return optimizerFromSpec({ ...optimizer, decaySteps: t.epochs * perEpoch * perSequence }, 'optimizer');
    },
  });
  provide(c, RunTokens.trainOptions, {
    useFactory: (c) => {
      const { train: t, seed } = get(c, RunTokens.config);
      return {
        epochs: t.epochs,
        batchSize: t.batchSize,
        seed,
        evalEvery: t.evalEvery,
        ...(t.checkpointEvery !== undefined ? { checkpointEvery: t.checkpointEvery } : {}),
        ...(t.maxBatchesPerEpoch !== undefined ? { maxBatchesPerEpoch: t.maxBatchesPerEpoch } : {}),
        prediction: t.prediction,
      };
    },
  });
  return c;
}

/**
 * The run's open dataset: the one registered under `RunTokens.dataset` (an override), else the
 * one `RunTokens.openDataset` opens, which is then registered as a value.
 */
export async function openRunDataset(c: RunContainer): Promise<Dataset> {
  if (c.isRegistered(RunTokens.dataset, true)) return get(c, RunTokens.dataset);
  const dataset = await get(c, RunTokens.openDataset)();
  provide(c, RunTokens.dataset, { useValue: dataset });
  return dataset;
}

/**
 * Resolves a run's container once, in this order: dataset (opened, see {@link openRunDataset}),
 * network, rule, loss, optimizer, train options, logger, clock. The run owns what it resolves:
 * where a step fails, the network is disposed and the dataset closed (overridden ones too), and
 * the error passes on.
 */
export async function resolveRun(c: RunContainer): Promise<ComposedRun> {
  const dataset = await openRunDataset(c);
  try {
    const network = get(c, RunTokens.network);
    try {
      return {
        dataset,
        network,
        rule: get(c, RunTokens.rule),
        loss: get(c, RunTokens.loss),
        optimizer: get(c, RunTokens.optimizer),
        trainOptions: get(c, RunTokens.trainOptions),
        logger: get(c, RunTokens.logger),
        clock: get(c, RunTokens.clock),
      };
    } catch (e) {
      network.dispose();
      throw e;
    }
  } catch (e) {
    await dataset.close();
    throw e;
  }
}

import { checkField, configError, expectObject, join, parseSchema, rejectUnknownKeys } from './validate.js';
import type { Registry } from './plugin.js';
import type { Dataset, DatasetContext } from './dataset.js';
import type { Network } from './network.js';
import type { ModelSpec } from './model.js';
import type { TemporalLoss } from './losses.js';
import type { Optimizer } from './optim.js';
import type { LearningRule } from './rule.js';
import type { TrainOptions } from './trainer.js';
import { resolveRun, runContainer, type RunClock, type RunContainerOptions, type RunLogger, type RunOverride } from './container.js';

/**
 * A training run as plain data (a JSON or YAML file for the CLI). `model.inputs` and
 * `model.readout.size` may be omitted: they are taken from the dataset.
 */
export interface RunConfig {
  /** Plugin packages to load, by name. */
  plugins: string[];
  /** Backend name (default `wasm`), or a fallback list tried in order (`node-gpu,wasm`). */
  backend: string;
  /** Seeds weight initialisation, batch order and encodings (default 0). */
  seed: number;
  data: { name: string; [option: string]: unknown };
  model: Omit<ModelSpec, 'inputs' | 'readout'> & { inputs?: number; readout: Omit<ModelSpec['readout'], 'size'> & { size?: number } };
  rule: { name: string; [option: string]: unknown };
  /** Loss name; default from the dataset's targets (labels → ce_mean, last-step values → mse_last). */
  loss?: string | { name: string };
  optimizer: { name: string; [option: string]: unknown };
  train: { epochs: number; batchSize: number; evalEvery: number; checkpointEvery?: number; maxBatchesPerEpoch?: number; prediction: 'sum' | 'last' };
}

const TOP = ['plugins', 'backend', 'seed', 'data', 'model', 'rule', 'loss', 'optimizer', 'train', '$schema', 'description'] as const;
const trainSchema = {
  epochs: { type: 'number', integer: true, min: 1, required: true, doc: 'passes over the training split' },
  batchSize: { type: 'number', integer: true, min: 1, default: 64 },
  evalEvery: { type: 'number', integer: true, min: 0, default: 1, doc: 'evaluate every this many epochs (0: never)' },
  checkpointEvery: { type: 'number', integer: true, min: 1, doc: 'also checkpoint every this many steps' },
  maxBatchesPerEpoch: { type: 'number', integer: true, min: 1, doc: 'cap on batches per epoch' },
  prediction: {
    type: 'string',
    default: 'sum',
    oneOf: ['sum', 'last'],
    doc: "accuracy from the argmax of the summed readout ('sum') or of the last step's ('last', for terminal-target training)",
  },
} as const;

/**
 * Validates the shape of a run config (top-level keys, `plugins`, `train`, names present). What
 * depends on plugins — neuron params, rule options, dataset options — is validated by
 * {@link composeRun} against the loaded registry. Errors name the field.
 */
export function parseRunConfig(raw: unknown, path = ''): RunConfig {
  const obj = expectObject(raw, path || 'config');
  rejectUnknownKeys(obj, TOP, path);
  const plugins = obj['plugins'];
  if (!Array.isArray(plugins) || plugins.some((p) => typeof p !== 'string' || p.length === 0)) {
    throw configError(
      join(path, 'plugins'),
      `expected an array of plugin package names, e.g. ["@spikeflow/neuron-<name>", "@spikeflow/rule-bptt"], got ${JSON.stringify(plugins)}`,
    );
  }
  const named = (key: string) => {
    const v = expectObject(obj[key], join(path, key));
    if (typeof v['name'] !== 'string') throw configError(join(join(path, key), 'name'), `is required (a string)`);
    return v as { name: string };
  };
  const model = expectObject(obj['model'], join(path, 'model'));
  expectObject(model['readout'] ?? {}, join(join(path, 'model'), 'readout'));
  return {
    plugins: plugins as string[],
    backend: checkField({ type: 'string', default: 'wasm' }, obj['backend'], join(path, 'backend')) as string,
    seed: checkField({ type: 'number', integer: true, min: 0, default: 0 }, obj['seed'], join(path, 'seed')) as number,
    data: named('data') as RunConfig['data'],
    model: { ...model, readout: (model['readout'] ?? {}) as RunConfig['model']['readout'] } as RunConfig['model'],
    rule: named('rule') as RunConfig['rule'],
    ...(obj['loss'] !== undefined ? { loss: obj['loss'] as RunConfig['loss'] } : {}),
    optimizer: named('optimizer') as RunConfig['optimizer'],
    train: parseSchema(trainSchema, obj['train'], join(path, 'train')) as RunConfig['train'],
  };
}

/** The trainer options a run config gives (`TrainOptions` less where checkpoints go and what they store). */
export type RunTrainOptions = Omit<TrainOptions, 'checkpointPath' | 'meta'>;

/** A run as plain values, resolved once from its container (see {@link composeRun}). */
export interface ComposedRun {
  readonly dataset: Dataset;
  readonly network: Network;
  readonly rule: LearningRule;
  readonly loss: TemporalLoss;
  readonly optimizer: Optimizer;
  readonly trainOptions: RunTrainOptions;
  /** Progress and notices for people: the dataset context's `log`, or a no-op (`RunTokens.logger`). */
  readonly logger: RunLogger;
  /**
   * The run's clock in milliseconds (`RunTokens.clock`; `performance.now()` unless overridden).
   * What times the run should read it, so that a test can drive time. (The `Trainer` still reads
   * `performance.now()` itself for its events' `elapsedMs`; it is to take this clock.)
   */
  readonly clock: RunClock;
}

export interface ComposeOptions extends RunContainerOptions {
  /**
   * Changes to the run's container before it is resolved: providers replaced with
   * `override(RunTokens.x, { useValue } | { useFactory })` (an in-memory dataset, a spy
   * optimizer), or any `(c) => c.register(...)`.
   */
  readonly overrides?: RunOverride | readonly RunOverride[];
}

/**
 * Resolves a parsed config against the loaded plugins: builds the run's container
 * ({@link runContainer}: a tsyringe child container with a provider per part of the run), applies
 * `overrides`, and resolves it once ({@link resolveRun}) — the dataset opened, the network, rule,
 * loss and optimizer built. `kernels: false` builds the network without the backends' fast kernels
 * (core's composite references only: the baseline, or a check that a result does not depend on
 * them). Where composition fails, what was made is released (network disposed, dataset closed).
 * The caller owns the result: dispose `network` and close `dataset` when done.
 */
export async function composeRun(
  config: RunConfig,
  registry: Registry,
  ctx: DatasetContext,
  { overrides, ...options }: ComposeOptions = {},
): Promise<ComposedRun> {
  const c = runContainer(config, registry, ctx, options);
  const list: readonly RunOverride[] = overrides === undefined ? [] : typeof overrides === 'function' ? [overrides] : overrides;
  for (const o of list) o(c);
  return resolveRun(c);
}

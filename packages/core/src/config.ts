import { SpikeflowError } from './errors.js';
import { checkField, configError, didYouMean, expectObject, join, parseSchema, rejectUnknownKeys } from './validate.js';
import type { Registry } from './plugin.js';
import type { Dataset, DatasetContext } from './dataset.js';
import { buildNetwork, type ModelSpec, type Network } from './network.js';
import { lossFromSpec, type TemporalLoss } from './losses.js';
import { optimizerFromSpec, type Optimizer } from './optim.js';
import { ruleFromSpec, type LearningRule } from './rule.js';
import type { TrainOptions } from './trainer.js';

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
  prediction: { type: 'string', default: 'sum', oneOf: ['sum', 'last'], doc: "accuracy from the argmax of the summed readout ('sum') or of the last step's ('last', for terminal-target training)" },
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
    throw configError(join(path, 'plugins'), `expected an array of plugin package names, e.g. ["@spikeflow/neuron-lif", "@spikeflow/rule-bptt"], got ${JSON.stringify(plugins)}`);
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

export interface ComposedRun {
  readonly dataset: Dataset;
  readonly network: Network;
  readonly rule: LearningRule;
  readonly loss: TemporalLoss;
  readonly optimizer: Optimizer;
  readonly trainOptions: Omit<TrainOptions, 'checkpointPath' | 'meta'>;
}

const defaultLoss = { labels: 'ce_mean', 'values-last': 'mse_last', 'values-every-step': 'mse_every_step' } as const;

/**
 * Resolves a parsed config against the loaded plugins: opens the dataset, builds the network, rule,
 * loss and optimizer. `kernels: false` builds the network without the backends' fast kernels
 * (core's composite references only: the baseline, or a check that a result does not depend on them).
 */
export async function composeRun(config: RunConfig, registry: Registry, ctx: DatasetContext, { kernels = true }: { kernels?: boolean } = {}): Promise<ComposedRun> {
  const entry = registry.datasets.get(config.data.name);
  if (!entry) {
    throw new SpikeflowError(
      'UNKNOWN_NAME',
      `data.name: unknown dataset '${config.data.name}'; ${didYouMean(config.data.name, registry.datasets.keys())}. A dataset comes from a plugin (e.g. @spikeflow/dataset-${config.data.name}) listed in "plugins".`,
      { path: 'data.name' },
    );
  }
  const { name: _d, ...dataOptions } = config.data;
  const dataset = await entry.open(parseSchema(entry.optionsSchema, dataOptions, 'data'), ctx);
  try {
    return composeOn(dataset, config, registry, kernels);
  } catch (e) {
    await dataset.close();
    throw e;
  }
}

/** The rest of {@link composeRun} once the dataset is open (the caller closes it if this throws). */
function composeOn(dataset: Dataset, config: RunConfig, registry: Registry, kernels: boolean): ComposedRun {
  const d = dataset.describe();
  const spec: ModelSpec = {
    ...config.model,
    inputs: config.model.inputs ?? d.channels,
    readout: { ...config.model.readout, size: config.model.readout.size ?? d.outputs },
  } as ModelSpec;
  if (spec.inputs !== d.channels) throw configError('model.inputs', `is ${spec.inputs} but dataset '${dataset.name}' has ${d.channels} input channels per step (omit it to take the dataset's)`);
  if (spec.readout.size !== d.outputs) throw configError('model.readout.size', `is ${spec.readout.size} but dataset '${dataset.name}' has ${d.outputs} outputs (omit it to take the dataset's)`);
  const network = buildNetwork(spec, { neurons: registry.neurons, surrogates: registry.surrogates.values() }, { seed: config.seed, ...(kernels ? { kernels: registry.kernels } : {}) });
  try {
    const rule = ruleFromSpec(config.rule, registry.rules, 'rule');
    const loss = lossFromSpec(config.loss ?? defaultLoss[d.target], registry.losses, 'loss');
    const t = config.train;
    const perEpoch = Math.min(dataset.batchCount('train', { batchSize: t.batchSize }), t.maxBatchesPerEpoch ?? Infinity);
    const scheduled = config.optimizer['schedule'] !== undefined && config.optimizer['schedule'] !== 'constant';
    // A decaying schedule spans the whole run unless the config says otherwise.
    const optimizer = optimizerFromSpec(
      scheduled && config.optimizer['decaySteps'] === undefined
        ? { ...config.optimizer, decaySteps: t.epochs * perEpoch * (rule.updatesPerSequence?.(d.steps) ?? 1) }
        : config.optimizer,
      'optimizer',
    );
    return {
      dataset,
      network,
      rule,
      loss,
      optimizer,
      trainOptions: {
        epochs: t.epochs,
        batchSize: t.batchSize,
        seed: config.seed,
        evalEvery: t.evalEvery,
        ...(t.checkpointEvery !== undefined ? { checkpointEvery: t.checkpointEvery } : {}),
        ...(t.maxBatchesPerEpoch !== undefined ? { maxBatchesPerEpoch: t.maxBatchesPerEpoch } : {}),
        prediction: t.prediction,
      },
    };
  } catch (e) {
    network.dispose();
    throw e;
  }
}

import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import {
  SpikeflowError,
  composeRun,
  disposeTree,
  evaluate,
  evaluationSeed,
  isPlainObject,
  isSpikeflowError,
  loadCheckpoint,
  readCheckpointMeta,
  parseRunConfig,
  parseRunMeta,
  tf,
  type EvalResult,
  type Registry,
  type RunCheckpointMeta,
  type TensorTree,
  type RunConfig,
  type Tensor,
} from '@spikeflow/core';
import { activated, cacheDirOf, CHECKPOINT } from './train.js';
import { loadFrom, loadStored } from './plugins.js';

export interface EvalFlags {
  readonly split?: string;
  readonly batchSize?: number;
  readonly cacheDir?: string;
  /**
   * Plugins to load, named by the user (package names or paths: the user's choice), instead of
   * those the checkpoint's stored config names.
   */
  readonly plugins?: readonly string[];
}

/** The run config a checkpoint stores, checked as data. */
function storedConfig(meta: Record<string, unknown>, path: string): RunConfig {
  if (meta['config'] === undefined)
    throw new SpikeflowError('CHECKPOINT_INVALID', `${path}: not a checkpoint written by 'spikeflow train' (it has no run config)`, { path });
  try {
    return parseRunConfig(meta['config']);
  } catch (e) {
    if (!isSpikeflowError(e)) throw e;
    throw new SpikeflowError('CHECKPOINT_INVALID', `${path}: its stored run config is invalid: ${e.message}`, { path }, { cause: e });
  }
}

/**
 * `spikeflow eval <runDir|checkpoint>`: the checkpoint's weights (or those its rule evaluates
 * with, such as FPTT's running average) on a split of the run's dataset — the same evaluation the
 * trainer logs: its seed, batch size, prediction rule and kernels. The checkpoint is data:
 * the plugins its stored config names are loaded only by installed package name
 * (`PLUGIN_REFUSED` otherwise, before anything is imported), unless the user names them with
 * `--plugins`. The backend may be a fallback list, as in training.
 */
/** A run's checkpoint opened for a command that reads it (`eval`, `export`): its config, plugins, backend and tensors. */
export interface OpenedRun {
  readonly ckpt: string;
  readonly meta: RunCheckpointMeta;
  readonly config: RunConfig;
  readonly registry: Registry;
  /** The checkpoint's tensors (the caller disposes them: `disposeTree(trees)`). */
  readonly trees: Readonly<Record<string, TensorTree>>;
  /** Its parameters, checked to be float32 tensors. */
  readonly params: Readonly<Record<string, Tensor>>;
}

/**
 * Opens the checkpoint of `target` (a run directory or a checkpoint file): the metadata first, every
 * field checked (no tensors before the run's backend is active), the plugins its stored config names
 * loaded only by installed package name (or the user's `plugins`), the backend activated, then the
 * tensors. `command` names the command in the remedy of a refused plugin.
 */
export async function openRun(target: string, plugins: readonly string[] | undefined, command: string): Promise<OpenedRun> {
  const path = resolve(target);
  const dir = existsSync(path) && statSync(path).isDirectory();
  const ckpt = dir ? join(path, CHECKPOINT) : path;
  const runDir = dir ? path : dirname(path);
  const meta = parseRunMeta(readCheckpointMeta(ckpt).meta, ckpt);
  const config = storedConfig(meta, ckpt);
  const loaded = plugins
    ? await loadFrom(plugins, process.cwd())
    : await loadStored(config.plugins, {
        bases: [runDir, process.cwd()],
        source: `checkpoint ${ckpt}`,
        instead: `name its plugins yourself: spikeflow ${command} ${target} --plugins ${config.plugins.join(',') || '<names>'}`,
      });
  const { registry } = await activated(config, loaded, [runDir, process.cwd()]);
  const ck = loadCheckpoint<unknown>(ckpt, { warn: () => {} });
  const params = (ck.trees as { params?: unknown }).params;
  if (!isPlainObject(params) || !Object.values(params).every((t) => t instanceof tf.Tensor && t.dtype === 'float32')) {
    disposeTree(ck.trees);
    throw new SpikeflowError('CHECKPOINT_INVALID', `${ckpt}: it holds no float32 parameter tensors`, { path: ckpt });
  }
  return { ckpt, meta, config, registry, trees: ck.trees, params: params as Record<string, Tensor> };
}

export async function evalRun(target: string, { split = 'test', batchSize, cacheDir, plugins }: EvalFlags = {}): Promise<EvalResult> {
  const { meta, config, registry, trees, params } = await openRun(target, plugins, 'eval');
  try {
    const run = await composeRun(config, registry, { cacheDir: cacheDirOf(cacheDir) }, { kernels: meta.fingerprint?.['fastKernels'] !== false });
    try {
      // A rule may ask to be evaluated with other weights (FPTT's running average W̄).
      const ruleState = trees['rule'];
      const swap = ruleState ? run.rule.evalParams?.(ruleState) : undefined;
      run.network.setParams(params);
      if (swap) run.network.setParams(swap);
      return await evaluate(run.network, run.dataset, run.loss, split, {
        batchSize: batchSize ?? config.train.batchSize,
        prediction: config.train.prediction,
        seed: evaluationSeed(config.seed),
      });
    } finally {
      run.network.dispose();
      await run.dataset.close();
    }
  } finally {
    disposeTree(trees);
  }
}

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
export function storedConfig(meta: Record<string, unknown>, path: string): RunConfig {
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
export async function evalRun(target: string, { split = 'test', batchSize, cacheDir, plugins }: EvalFlags = {}): Promise<EvalResult> {
  const path = resolve(target);
  const dir = existsSync(path) && statSync(path).isDirectory();
  const ckpt = dir ? join(path, CHECKPOINT) : path;
  const runDir = dir ? path : dirname(path);
  // The metadata first (no tensors before the run's backend is active), every field checked.
  const meta = parseRunMeta(readCheckpointMeta(ckpt).meta, ckpt);
  const config = storedConfig(meta, ckpt);
  const loaded = plugins
    ? await loadFrom(plugins, process.cwd())
    : await loadStored(config.plugins, {
        bases: [runDir, process.cwd()],
        source: `checkpoint ${ckpt}`,
        instead: `name its plugins yourself: spikeflow eval ${target} --plugins ${config.plugins.join(',') || '<names>'}`,
      });
  const { registry } = await activated(config, loaded, [runDir, process.cwd()]);
  const ck = loadCheckpoint<unknown>(ckpt, { warn: () => {} });
  try {
    const params = (ck.trees as { params?: unknown }).params;
    if (!isPlainObject(params) || !Object.values(params).every((t) => t instanceof tf.Tensor && t.dtype === 'float32')) {
      throw new SpikeflowError('CHECKPOINT_INVALID', `${ckpt}: it holds no float32 parameter tensors`, { path: ckpt });
    }
    const run = await composeRun(config, registry, { cacheDir: cacheDirOf(cacheDir) }, { kernels: meta.fingerprint?.['fastKernels'] !== false });
    try {
      // A rule may ask to be evaluated with other weights (FPTT's running average W̄).
      const ruleState = ck.trees['rule'];
      const swap = ruleState ? run.rule.evalParams?.(ruleState) : undefined;
      run.network.setParams(params as Record<string, Tensor>);
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
    disposeTree(ck.trees);
  }
}

import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SpikeflowError, composeRun, evaluate, loadCheckpoint, parseRunConfig, disposeTree, type EvalResult, type RunCheckpointMeta, type Tensor } from '@spikeflow/core';
import { registryOf } from './plugins.js';
import { CHECKPOINT } from './train.js';

/** `spikeflow eval <runDir|checkpoint>`: the checkpoint's weights (or those its rule evaluates with) on a split of the run's dataset. */
export async function evalRun(target: string, { split = 'test', batchSize, cacheDir }: { split?: string; batchSize?: number; cacheDir?: string }): Promise<EvalResult> {
  const path = resolve(target);
  const ckpt = existsSync(path) && statSync(path).isDirectory() ? join(path, CHECKPOINT) : path;
  const ck = loadCheckpoint<RunCheckpointMeta & { config?: unknown }>(ckpt);
  const params = (ck.trees as { params?: Record<string, Tensor> }).params;
  try {
    if (ck.meta?.kind !== 'spikeflow-run' || !params || ck.meta.config === undefined) {
      throw new SpikeflowError('CHECKPOINT_INVALID', `${ckpt}: not a checkpoint written by 'spikeflow train' (it has no run config)`, { path: ckpt });
    }
    const config = parseRunConfig(ck.meta.config);
    const registry = await registryOf(config.plugins, process.cwd());
    const backend = registry.backends.get(config.backend);
    if (!backend) throw new SpikeflowError('UNKNOWN_NAME', `backend '${config.backend}' is not installed`, { path: 'backend' });
    await backend.activate();
    const run = await composeRun(config, registry, { cacheDir: resolve(cacheDir ?? join(process.env['HOME'] ?? '.', '.cache', 'spikeflow')) });
    try {
      // A rule may ask to be evaluated with other weights (FPTT's running average W̄).
      const ruleState = (ck.trees as { rule?: unknown }).rule;
      const swap = ruleState ? run.rule.evalParams?.(ruleState as never) : undefined;
      run.network.setParams(params);
      if (swap) run.network.setParams(swap);
      return await evaluate(run.network, run.dataset, run.loss, split, { batchSize: batchSize ?? config.train.batchSize, prediction: config.train.prediction });
    } finally {
      run.network.dispose();
    }
  } finally {
    disposeTree(ck.trees as never);
  }
}

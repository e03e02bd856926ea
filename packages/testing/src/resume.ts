import { expect } from 'vitest';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Trainer, loadCheckpoint, treeLeaves, type TensorTree, type TrainerParts } from '@spikeflow/core';

/**
 * Trains one run straight through and another that crashes right after its checkpoint at `crashAt`
 * (checkpoints every `every` steps) and resumes from it in fresh parts; asserts that the resumed run
 * ends at bitwise the same network parameters and rule state (every tensor and number of it,
 * through a checkpoint file). Returns the straight run's rule state as saved (the caller disposes
 * it with `disposeTree`) for rule-specific checks.
 */
export async function expectExactResume(
  parts: () => TrainerParts,
  {
    epochs = 2,
    batchSize = 16,
    seed = 3,
    every = 3,
    crashAt = 6,
  }: { epochs?: number; batchSize?: number; seed?: number; every?: number; crashAt?: number } = {},
): Promise<TensorTree> {
  const dir = mkdtempSync(join(tmpdir(), 'sf-resume-'));
  const options = { epochs, batchSize, seed, evalEvery: 0 };
  const full = parts();
  const tFull = new Trainer(full, options);
  await tFull.run();
  const ckpt = join(dir, 'ck.sfck');
  const first = parts();
  const t1 = new Trainer(first, { ...options, checkpointPath: ckpt, checkpointEvery: every });
  t1.on((e) => {
    if (e.type === 'checkpoint' && e.position.step === crashAt) throw new Error('simulated crash');
  });
  await expect(t1.run()).rejects.toThrow('simulated crash');
  const second = parts();
  const t2 = new Trainer(second, { ...options, checkpointPath: ckpt });
  expect(t2.resume(ckpt).step).toBe(crashAt);
  await t2.run();
  for (const [k, v] of Object.entries(full.network.params)) {
    expect(Array.from(second.network.params[k]!.dataSync()), k).toEqual(Array.from(v.dataSync()));
  }
  const saved = (t: Trainer, name: string) => {
    t.save(join(dir, name));
    return loadCheckpoint(join(dir, name)).trees['rule'] as TensorTree;
  };
  const a = saved(tFull, 'full.sfck');
  const b = saved(t2, 'resumed.sfck');
  // Same structure and numbers; every tensor bitwise.
  const plain = (tree: TensorTree) => JSON.stringify(tree, (_k, v: unknown) => (v && typeof v === 'object' && 'dataSync' in v ? '<tensor>' : v));
  expect(plain(b)).toBe(plain(a));
  const [la, lb] = [treeLeaves(a), treeLeaves(b)];
  la.forEach((x, i) => expect(Array.from(lb[i]!.dataSync()), `rule state tensor ${i}`).toEqual(Array.from(x.dataSync())));
  for (const t of lb) t.dispose();
  [tFull, t1, t2].forEach((t) => t.dispose());
  [full, first, second].forEach((p) => p.network.dispose());
  return a;
}

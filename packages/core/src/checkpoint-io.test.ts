import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { isSpikeflowError } from './errors.js';
import { disposeTree } from './state.js';
import { tf, type Tensor } from './tf.js';
import { useCpuBackend } from './test-support.js';

// The disk fills up on demand: every write fails with ENOSPC after `budget` more bytes.
const disk = vi.hoisted(() => ({ budget: Infinity }));
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const writeSync = (fd: number, buffer: Uint8Array, offset = 0, length = buffer.byteLength - offset, ...rest: unknown[]): number => {
    const n = Math.min(length, disk.budget);
    if (n <= 0) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    disk.budget -= n;
    return (fs.writeSync as (...a: unknown[]) => number)(fd, buffer, offset, n, ...rest);
  };
  return { ...fs, writeSync, default: { ...fs, writeSync } };
});

useCpuBackend();

describe('a checkpoint write that fails', () => {
  it('keeps the previous checkpoint intact, removes its temporary file and says why (ENOSPC)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sf-enospc-'));
    const path = join(dir, 'checkpoint.sfck');
    const v1 = tf.fill([64], 1);
    saveCheckpoint(path, { meta: { step: 1 }, trees: { w: v1 } });
    const before = readFileSync(path);
    const v2 = tf.fill([64], 2);
    for (const budget of [0, 10, 200]) {
      disk.budget = budget; // the disk fills up part way through (a short write, then ENOSPC)
      let err: unknown;
      try {
        saveCheckpoint(path, { meta: { step: 2 }, trees: { w: v2 } });
      } catch (e) {
        err = e;
      }
      disk.budget = Infinity;
      expect(isSpikeflowError(err, 'IO_FAILED'), String(err)).toBe(true);
      expect((err as Error).message).toMatch(/could not be written: the disk is full \(ENOSPC\)\. The previous checkpoint there .*is unchanged/);
      expect(readFileSync(path).equals(before)).toBe(true);
      expect(readdirSync(dir)).toEqual(['checkpoint.sfck']);
    }
    const ck = loadCheckpoint<{ step: number }>(path);
    expect(ck.meta.step).toBe(1);
    expect(Array.from((ck.trees['w'] as Tensor).dataSync())[0]).toBe(1);
    disposeTree([v1, v2, ck.trees]);
  });
});

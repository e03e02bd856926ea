import { denseInputs, disposeBatch, inputShape, isSpikeflowError, type BatchOptions, type Dataset, type SpikeflowError } from '@spikeflow/core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { nodeFiles, type FileAccess } from './files.js';

// What the package's tests share (not built, not published).

/** The SpikeflowError of `code` that `p` throws or rejects with (the test fails on anything else). */
export async function refusal(p: Promise<unknown> | (() => unknown), code: 'DATA_INVALID' | 'CONFIG_INVALID' = 'DATA_INVALID'): Promise<SpikeflowError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(isSpikeflowError(err, code), String(err)).toBe(true);
  return err as SpikeflowError;
}

/** Whether two arrays hold the same values. */
export function same(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** One batch, read out and disposed. */
export interface Got {
  shape: number[];
  x: Float32Array;
  y: number[];
}

/** Every batch of a pass, read out (each also handed to `each`) and disposed. */
export async function collect(ds: Dataset, split: string, o: BatchOptions, each?: (g: Got) => void): Promise<Got[]> {
  const out: Got[] = [];
  for await (const b of ds.batches(split, o)) {
    const x = denseInputs(b.inputs);
    const g = { shape: inputShape(b.inputs), x: x.dataSync() as Float32Array, y: Array.from(b.targets.dataSync()) };
    x.dispose();
    disposeBatch(b);
    each?.(g);
    out.push(g);
  }
  return out;
}

/**
 * Fresh directories under one temporary directory made for the test file (`prefix` names it) and
 * removed after it: call at the top of the file, then call the result for each new directory.
 */
export function tempDirs(prefix: string): () => string {
  let tmp = '';
  let fresh = 0;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), prefix));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  return () => {
    const d = join(tmp, `t${fresh++}`);
    mkdirSync(d, { recursive: true });
    return d;
  };
}

/** A file system that records what is opened and every read. */
export function counting(): { files: FileAccess; opened: string[]; reads: { path: string; position: number; length: number }[] } {
  const opened: string[] = [];
  const reads: { path: string; position: number; length: number }[] = [];
  const files: FileAccess = {
    stat: nodeFiles.stat,
    list: nodeFiles.list,
    async open(path) {
      opened.push(path);
      const f = await nodeFiles.open(path);
      return {
        path: f.path,
        size: f.size,
        read: async (position, length) => {
          const b = await f.read(position, length);
          reads.push({ path, position, length: b.length });
          return b;
        },
        close: () => f.close(),
      };
    },
  };
  return { files, opened, reads };
}

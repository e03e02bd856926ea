import { createRegistry, isSpikeflowError } from '@spikeflow/core';
import { describeBackend } from '@spikeflow/testing';
import { describe, expect, it } from 'vitest';
import plugin, { nodeGpu, parseNvidiaSmi } from './index.js';

// The repo's skip convention (scripts/test-summary.mjs): a test that can be skipped says why in its
// meta, `skipReason`. The skips here name no `requires`: the workspace never installs
// @tensorflow/tfjs-node-gpu (an optional peer whose install script downloads libtensorflow, and
// which needs CUDA), so they are how every checkout is, CI's included, not a setup step that CI
// could take; they stay skips under CI=true.
declare module 'vitest' {
  interface TaskMeta {
    skipReason?: string;
    requires?: string;
  }
}

const available = await nodeGpu.isAvailable();
/** Why the binding cannot be used here (activate()'s message), where it cannot. */
const unavailable = available
  ? undefined
  : await nodeGpu.activate().then(
      () => 'isAvailable() said no',
      (e: unknown) => (e as Error).message,
    );

describe('backend node-gpu', () => {
  it('is a plugin providing the node-gpu backend', () => {
    expect(createRegistry([plugin]).backends.get('node-gpu')).toBe(nodeGpu);
  });

  // @tensorflow/tfjs-node-gpu is an optional peer dependency, absent from this workspace.
  it('without @tensorflow/tfjs-node-gpu: unavailable, and activate() names the package, CUDA and cuDNN versions and the mirrors', {
    skip: available,
    meta: { skipReason: '@tensorflow/tfjs-node-gpu is installed and loads here, so the conformance suite runs instead' },
  }, async () => {
    expect(await nodeGpu.isAvailable()).toBe(false);
    const e: unknown = await nodeGpu.activate().catch((x: unknown) => x);
    expect(isSpikeflowError(e, 'BACKEND_UNAVAILABLE')).toBe(true);
    const m = (e as Error).message;
    expect(m).toMatch(
      /^backend 'node-gpu': @tensorflow\/tfjs-node-gpu is not installed\. Install it with: npm i @tensorflow\/tfjs-node-gpu@4\.22\.0 on a machine with/,
    );
    expect(m).toContain('CUDA Toolkit 11.2 and cuDNN 8.1');
    expect(m).toContain('TFJS_NODE_CDN_STORAGE or TFJS_NODE_BASE_URI');
  });

  it('reads the GPUs nvidia-smi lists', () => {
    expect(parseNvidiaSmi('NVIDIA H100 80GB HBM3, 81559, 550.54.15\nNVIDIA A10, 23028, 550.54.15\n\n')).toEqual([
      { name: 'NVIDIA H100 80GB HBM3', memoryMiB: 81559, driver: '550.54.15' },
      { name: 'NVIDIA A10', memoryMiB: 23028, driver: '550.54.15' },
    ]);
    expect(parseNvidiaSmi('')).toEqual([]);
  });
});

// The conformance suite, wherever the binding loads (a machine with the libtensorflow download,
// and CUDA); elsewhere its tests are listed as skipped, with activate()'s reason.
describe('with @tensorflow/tfjs-node-gpu', { skip: !available, meta: { skipReason: unavailable } }, () => describeBackend(nodeGpu));

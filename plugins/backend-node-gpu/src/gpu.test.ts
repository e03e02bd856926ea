import { createRegistry, isSpikeflowError } from '@spikeflow/core';
import { describeBackend } from '@spikeflow/testing';
import { describe, expect, it } from 'vitest';
import plugin, { nodeGpu, parseNvidiaSmi } from './index.js';

const available = await nodeGpu.isAvailable();

describe('backend node-gpu', () => {
  it('is a plugin providing the node-gpu backend', () => {
    expect(createRegistry([plugin]).backends.get('node-gpu')).toBe(nodeGpu);
  });

  // @tensorflow/tfjs-node-gpu is an optional peer dependency, absent from this workspace.
  it.skipIf(available)('without @tensorflow/tfjs-node-gpu: unavailable, and activate() names the package, CUDA and cuDNN versions and the mirrors', async () => {
    expect(await nodeGpu.isAvailable()).toBe(false);
    const e: unknown = await nodeGpu.activate().catch((x: unknown) => x);
    expect(isSpikeflowError(e, 'BACKEND_UNAVAILABLE')).toBe(true);
    const m = (e as Error).message;
    expect(m).toMatch(/^backend 'node-gpu': @tensorflow\/tfjs-node-gpu is not installed\. Install it with: npm i @tensorflow\/tfjs-node-gpu@4\.22\.0 on a machine with/);
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

// The conformance suite runs wherever the binding loads (a machine with the libtensorflow download, and CUDA).
if (available) describeBackend(nodeGpu);

import { createRegistry, isSpikeflowError } from '@spikeflow/core';
import { describeBackend } from '@spikeflow/testing';
import { describe, expect, it } from 'vitest';
import plugin, { node } from './index.js';

const available = await node.isAvailable();

describe('backend node', () => {
  it('is a plugin providing the node backend', () => {
    expect(createRegistry([plugin]).backends.get('node')).toBe(node);
  });

  // @tensorflow/tfjs-node is an optional peer dependency, absent from this workspace (its install
  // script downloads libtensorflow from outside the npm registry): the backend must say so.
  it.skipIf(available)('without @tensorflow/tfjs-node: unavailable, and activate() says what to install and how', async () => {
    expect(await node.isAvailable()).toBe(false);
    const e: unknown = await node.activate().catch((x: unknown) => x);
    expect(isSpikeflowError(e, 'BACKEND_UNAVAILABLE')).toBe(true);
    expect((e as Error).message).toMatch(/^backend 'node': @tensorflow\/tfjs-node is not installed\. Install it with: npm i @tensorflow\/tfjs-node@4\.22\.0 \(its install script downloads libtensorflow .*TFJS_NODE_CDN_STORAGE or TFJS_NODE_BASE_URI/);
  });
});

// The conformance suite runs wherever the binding loads (a machine with the libtensorflow download).
if (available) describeBackend(node);

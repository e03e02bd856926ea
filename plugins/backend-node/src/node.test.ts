import { createRegistry, isSpikeflowError } from '@spikeflow/core';
import { describe, expect, it } from 'vitest';
import plugin, { node } from './index.js';

describe('backend node', () => {
  it('is a plugin providing the node backend', () => {
    expect(createRegistry([plugin]).backends.get('node')).toBe(node);
  });

  // @tensorflow/tfjs-node is an optional peer dependency, absent from this workspace (its install
  // script downloads libtensorflow from outside the npm registry): the backend must say so.
  it('without @tensorflow/tfjs-node: unavailable, and activate() says what to install and how', async () => {
    expect(await node.isAvailable()).toBe(false);
    const e: unknown = await node.activate().catch((x: unknown) => x);
    expect(isSpikeflowError(e, 'BACKEND_UNAVAILABLE')).toBe(true);
    expect((e as Error).message).toMatch(/^backend 'node': @tensorflow\/tfjs-node is not installed\. Install it with: npm i @tensorflow\/tfjs-node@4\.22\.0 \(its install script downloads libtensorflow .*TFJS_NODE_CDN_STORAGE or TFJS_NODE_BASE_URI/);
  });
});

import { createRegistry, isSpikeflowError } from '@spikeflow/core';
import { describeBackend } from '@spikeflow/testing';
import { describe, expect, it } from 'vitest';
import plugin, { node } from './index.js';

// The repo's skip convention (scripts/test-summary.mjs): a test that can be skipped says why in its
// meta, `skipReason`. The skips here name no `requires`: the workspace never installs
// @tensorflow/tfjs-node (an optional peer whose install script downloads libtensorflow from
// outside the npm registry), so they are how every checkout is, CI's included, not a setup step
// that CI could take; they stay skips under CI=true.
declare module 'vitest' {
  interface TaskMeta {
    skipReason?: string;
    requires?: string;
  }
}

const available = await node.isAvailable();
/** Why the binding cannot be used here (activate()'s message), where it cannot. */
const unavailable = available
  ? undefined
  : await node.activate().then(
      () => 'isAvailable() said no',
      (e: unknown) => (e as Error).message,
    );

describe('backend node', () => {
  it('is a plugin providing the node backend', () => {
    expect(createRegistry([plugin]).backends.get('node')).toBe(node);
  });

  // @tensorflow/tfjs-node is an optional peer dependency, absent from this workspace (its install
  // script downloads libtensorflow from outside the npm registry): the backend must say so.
  it('without @tensorflow/tfjs-node: unavailable, and activate() says what to install and how', {
    skip: available,
    meta: { skipReason: '@tensorflow/tfjs-node is installed and loads here, so the conformance suite runs instead' },
  }, async () => {
    expect(await node.isAvailable()).toBe(false);
    const e: unknown = await node.activate().catch((x: unknown) => x);
    expect(isSpikeflowError(e, 'BACKEND_UNAVAILABLE')).toBe(true);
    expect((e as Error).message).toMatch(
      /^backend 'node': @tensorflow\/tfjs-node is not installed\. Install it with: npm i @tensorflow\/tfjs-node@4\.22\.0 \(its install script downloads libtensorflow .*TFJS_NODE_CDN_STORAGE or TFJS_NODE_BASE_URI/,
    );
  });
});

// The conformance suite, wherever the binding loads (a machine with the libtensorflow download);
// elsewhere its tests are listed as skipped, with activate()'s reason.
describe('with @tensorflow/tfjs-node', { skip: !available, meta: { skipReason: unavailable } }, () => describeBackend(node));

import { createRegistry, isSpikeflowError } from '@spikeflow/core';
import { describe, expect, it } from 'vitest';
import plugin, { hasWebGL2, webgl } from './index.js';

// The plugin runs in browsers; the browser test (apps/playground) trains on it in headless
// Chromium. Here, in Node, it must say that it cannot run.
describe('backend webgl in Node', () => {
  it('is a plugin providing the webgl backend', () => {
    expect(createRegistry([plugin]).backends.get('webgl')).toBe(webgl);
  });

  it('is unavailable without WebGL 2, and activate() says where it runs', async () => {
    expect(hasWebGL2()).toBe(false);
    expect(await webgl.isAvailable()).toBe(false);
    const e: unknown = await webgl.activate().catch((x: unknown) => x);
    expect(isSpikeflowError(e, 'BACKEND_UNAVAILABLE')).toBe(true);
    expect((e as Error).message).toMatch(/^backend 'webgl' runs in a browser with WebGL 2 and has none here/);
  });
});

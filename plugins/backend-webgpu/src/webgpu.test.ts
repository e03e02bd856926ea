import { createRegistry, isSpikeflowError } from '@spikeflow/core';
import { describe, expect, it } from 'vitest';
import plugin, { webgpu, webgpuUnavailableReason } from './index.js';

// The plugin runs in browsers (apps/playground's browser test runs it where Chromium has an
// adapter, and reports it skipped otherwise). Here, in Node, it must say that it cannot run.
describe('backend webgpu in Node', () => {
  it('is a plugin providing the webgpu backend', () => {
    expect(createRegistry([plugin]).backends.get('webgpu')).toBe(webgpu);
  });

  it('is unavailable without navigator.gpu, and activate() says why', async () => {
    expect(await webgpuUnavailableReason()).toMatch(/no navigator\.gpu/);
    expect(await webgpu.isAvailable()).toBe(false);
    const e: unknown = await webgpu.activate().catch((x: unknown) => x);
    expect(isSpikeflowError(e, 'BACKEND_UNAVAILABLE')).toBe(true);
    expect((e as Error).message).toMatch(/^backend 'webgpu': this environment has no navigator\.gpu .*; use webgl or wasm there$/);
  });
});

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { tf } from '@spikeflow/core';
import alifPlugin from '@spikeflow/neuron-alif';
import lifPlugin from '@spikeflow/neuron-lif';
import bpttPlugin from '@spikeflow/rule-bptt';
import { checkFixtureDir } from '@spikeflow/testing';
import { afterAll, describe, expect, it } from 'vitest';
import webgpuPlugin, { webgpu, webgpuUnavailableReason } from './index.js';

// The gradient fixtures (PyTorch autograd in float64) on WebGPU in Node: Dawn on the machine's
// Vulkan driver (SwiftShader without a GPU; vitest.config.mjs). Every read is asynchronous.
const missing = await webgpuUnavailableReason();
const requires = 'a Vulkan driver for WebGPU in Node (SwiftShader: Debian chromium-common)';
const fixturesDir = join(dirname(createRequire(import.meta.url).resolve('@spikeflow/testing/package.json')), 'fixtures');
const plugins = [lifPlugin, alifPlugin, bpttPlugin, webgpuPlugin];

describe('gradient fixtures on webgpu in Node', { skip: missing !== undefined, timeout: 600_000, meta: { requires, skipReason: missing } }, () => {
  afterAll(() => tf.env().set('WEBGPU_CPU_FORWARD', true));

  for (const [dir, count] of [
    [fixturesDir, 8],
    [join(fixturesDir, 'conv'), 5],
  ] as const) {
    it(`every fixture in ${dir.split('/').at(-1)} passes: identical spikes, loss/readout/state/grads/tbptt within 1e-4`, async () => {
      // Every op on the GPU: small tensors too (by default tfjs-webgpu runs them on the CPU; the flag exists once the backend is loaded).
      await webgpu.activate();
      tf.env().set('WEBGPU_CPU_FORWARD', false);
      const reports = await checkFixtureDir(dir, { backend: 'webgpu', plugins });
      expect(reports.length).toBeGreaterThanOrEqual(count);
      for (const r of reports) {
        expect(r.failures, r.name).toEqual([]);
        expect(r.spikeMismatches, r.name).toBe(0);
        expect(r.worst, r.name).toBeLessThan(1e-4);
      }
    });
  }
});

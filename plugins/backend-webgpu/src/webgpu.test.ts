import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRegistry, forward, isSpikeflowError, paramGrads, tf } from '@spikeflow/core';
import lifPlugin from '@spikeflow/neuron-lif';
import { describeBackend, smallNetwork } from '@spikeflow/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { noAdapterReason } from './node.js';
import plugin, { webgpu, webgpuAdapter, webgpuUnavailableReason } from './index.js';

declare module 'vitest' {
  interface TaskMeta {
    skipReason?: string;
    requires?: string;
  }
}

// WebGPU in Node: Dawn (npm `webgpu`, a devDependency here) on a Vulkan driver. Without a GPU,
// vitest.config.mjs adds SwiftShader's driver where Debian's chromium-common installs it (CI's
// setup step installs Chromium, which depends on it). Small ops would run on the CPU unless told.
const missing = await webgpuUnavailableReason();
const requires = 'a Vulkan driver for WebGPU in Node (SwiftShader: Debian chromium-common)';

describe('backend webgpu', () => {
  it('is a plugin providing the webgpu backend', () => {
    expect(createRegistry([plugin]).backends.get('webgpu')).toBe(webgpu);
  });

  describe('without an adapter, the reason names the Vulkan loader, the drivers tried and the remedy', () => {
    const saved = { ...process.env };
    const dir = mkdtempSync(join(tmpdir(), 'spikeflow-vulkan-'));
    afterAll(() => {
      process.env = saved;
      rmSync(dir, { recursive: true, force: true });
    });

    it.runIf(process.platform === 'linux')('a loader and the drivers listed in VK_ICD_FILENAMES', async () => {
      writeFileSync(join(dir, 'libvulkan.so.1'), '');
      process.env.LD_LIBRARY_PATH = dir;
      process.env.VK_ICD_FILENAMES = '/nowhere/a_icd.json:/nowhere/b_icd.json';
      delete process.env.VK_DRIVER_FILES;
      const why = await noAdapterReason();
      expect(why).toContain(`Vulkan loader ${dir}/libvulkan.so.1`);
      expect(why).toContain('drivers tried: /nowhere/a_icd.json, /nowhere/b_icd.json (from VK_ICD_FILENAMES)');
      expect(why).toMatch(/SwiftShader/);
    });
  });

  describe('in Node on Dawn', { skip: missing !== undefined, meta: { requires, skipReason: missing } }, () => {
    afterAll(() => tf.env().set('WEBGPU_CPU_FORWARD', true));

    it('names its adapter', async () => {
      await webgpu.activate();
      tf.env().set('WEBGPU_CPU_FORWARD', false);
      const a = webgpuAdapter()!;
      expect(a.runtime).toBe('node');
      const info = webgpu.describe();
      expect(info.tfBackend).toBe('webgpu');
      expect(info.details.runtime).toBe('node');
      expect(info.details.fallback).toBe(a.fallback);
      expect(info.device).toContain(a.description || a.vendor);
      // SwiftShader says it is a fallback adapter; so does the description of the device.
      if (/swiftshader/i.test(`${a.vendor} ${a.description}`)) {
        expect(a.fallback).toBe(true);
        expect(info.device).toMatch(/fallback adapter/);
      }
    });

    it('computes on the GPU and reads back asynchronously; a synchronous read is a clear error', async () => {
      await webgpu.activate();
      const x = tf.tensor2d([
        [1, 2],
        [3, 4],
      ]);
      const y = tf.matMul(x, x);
      expect(Array.from(await y.data())).toEqual([7, 10, 15, 22]);
      const z = tf.square(x);
      const e: unknown = (() => {
        try {
          z.dataSync();
        } catch (err) {
          return err;
        }
      })();
      expect(isSpikeflowError(e, 'BACKEND_UNAVAILABLE')).toBe(true);
      expect((e as Error).message).toMatch(/cannot read GPU memory synchronously.*await tensor\.data\(\)/);
      // Values not yet on the GPU still read synchronously.
      expect(Array.from(tf.tensor1d([5, 6]).dataSync())).toEqual([5, 6]);
      tf.dispose([x, y, z]);
    });

    it('adds more tensors at once than a shader may bind (tf.addN in groups)', async () => {
      await webgpu.activate();
      // 29 inputs in groups of 7 leave the last one alone in its group: it passes through, and stays the caller's.
      for (const n of [29, 30]) {
        const xs = Array.from({ length: n }, (_, i) => tf.fill([3], i + 1));
        const before = tf.memory().numTensors;
        const sum = tf.addN(xs);
        expect(Array.from(await sum.data())).toEqual(Array(3).fill((n * (n + 1)) / 2));
        // The partial sums are freed: only the result is new, and every input still reads.
        expect(tf.memory().numTensors).toBe(before + 1);
        expect(Array.from(await xs[n - 1]!.data())).toEqual([n, n, n]);
        tf.dispose([...xs, sum]);
      }
    });

    it('runs a network fused on its WGSL kernels: the same readout and gradients as the composite ops', async () => {
      await webgpu.activate();
      tf.env().set('WEBGPU_CPU_FORWARD', false);
      const registry = createRegistry([plugin, lifPlugin]);
      const lif = registry.neurons.get('lif')!;
      const fast = smallNetwork(lif, { inputs: 12, size: 40, outputs: 3, seed: 5, kernels: registry.kernels });
      const plain = smallNetwork(lif, { inputs: 12, size: 40, outputs: 3, seed: 5 });
      expect(fast.fused).toBe(true);
      expect(plain.fused).toBe(false);
      const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([25, 4, 12], 0, 1, 'float32', 3), 0.3), 'float32'));
      const run = async (net: typeof fast) => {
        const { value, grads } = paramGrads(net, () => tf.sum(tf.square(forward(net, x).readout)) as tf.Scalar);
        const out = { loss: (await value.data())[0]!, grads: new Map<string, Float32Array>() };
        for (const [name, g] of Object.entries(grads)) out.grads.set(name, (await g.data()) as Float32Array);
        tf.dispose([value, ...Object.values(grads)]);
        return out;
      };
      const [a, b] = [await run(fast), await run(plain)];
      expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5 * Math.abs(b.loss));
      expect(b.grads.size).toBeGreaterThan(2);
      expect([...a.grads.keys()].sort()).toEqual([...b.grads.keys()].sort());
      for (const [name, g] of b.grads) {
        const scale = Math.max(...g.map(Math.abs));
        const diff = Math.max(...a.grads.get(name)!.map((v, i) => Math.abs(v - g[i]!)));
        expect(diff, name).toBeLessThan(1e-4 * scale);
      }
      x.dispose();
      fast.dispose();
      plain.dispose();
    });

    describeBackend(webgpu);
  });
});

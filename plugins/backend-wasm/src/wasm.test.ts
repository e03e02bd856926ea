import { expect, it } from 'vitest';
import os from 'node:os';
import { createRegistry, tf } from '@spikeflow/core';
import { describeBackend } from '@spikeflow/testing';
import { KERNELS_VERSION, activeThreads } from '@spikeflow/kernels';
import plugin, { wasm } from './index.js';

describeBackend(wasm);

it("reports SIMD, one tfjs thread in Node, the fused kernels' version and the threads they run on, and registers its fast kernels through the registry", async () => {
  await wasm.activate();
  const info = wasm.describe();
  expect(info.tfBackend).toBe('wasm');
  expect(info.details['simd']).toBe(true);
  expect(typeof info.details['tfjsSimd']).toBe('boolean');
  expect(info.details['tfjsThreads']).toBe(1);
  expect(info.details['kernels']).toBe(KERNELS_VERSION);
  expect(info.details['kernels']).toMatch(/^\d+\.\d+\.\d+.*\+[0-9a-f]{12}$/);
  expect(info.details['kernelThreads']).toBe(activeThreads());
  expect(info.threads).toBe(info.details['kernelThreads']);
  expect(info.threads).toBeGreaterThanOrEqual(Math.min(2, os.availableParallelism()));
  const reg = createRegistry([plugin]);
  expect(reg.backends.get('wasm')).toBe(wasm);
  expect(reg.kernels.has('spikeflow.dense', 'wasm')).toBe(true);
  expect(reg.kernels.has('spikeflow.dense', 'cpu')).toBe(false);
  for (const k of ['spikeflow.eventDense', 'spikeflow.integrateFireSequence', 'spikeflow.leakyScan'] as const) expect(reg.kernels.has(k, 'wasm')).toBe(true);
  expect(tf.getBackend()).toBe('wasm');
});

it('dense: the gradient follows the weight after an update, and cached transposes are freed with their weights', async () => {
  const { wasmDense, clearTransposeCache } = await import('./index.js');
  await wasm.activate();
  clearTransposeCache();
  const base = tf.memory().numTensors;
  const init = tf.tensor2d([
    [1, 2],
    [3, 4],
    [5, 6],
  ]);
  const w = tf.variable(init);
  init.dispose();
  const x = tf.tensor2d([[1, 0, 1]]);
  const dxOf = () => {
    const g = tf.grad((xi: tf.Tensor) => tf.sum(wasmDense(xi, w)))(x);
    const v = Array.from(g.dataSync());
    g.dispose();
    return v;
  };
  expect(dxOf()).toEqual([3, 7, 11]);
  expect(dxOf()).toEqual([3, 7, 11]);
  const next = tf.tensor2d([
    [1, 0],
    [0, 1],
    [2, 2],
  ]);
  w.assign(next);
  next.dispose();
  expect(dxOf()).toEqual([1, 1, 4]);
  // w, x and one transpose cached for the live weight; the stale one was freed by the lookup.
  expect(tf.memory().numTensors).toBe(base + 3);
  w.dispose();
  x.dispose();
  clearTransposeCache();
  expect(tf.memory().numTensors).toBe(base);
});

it('a clone shares its buffer (no copy), outlives its source, and gradients through ops that save their inputs are unchanged', async () => {
  await wasm.activate();
  const x = tf.tensor2d([
    [1, -2, 3],
    [4, 5, -6],
  ]);
  const buffers = tf.memory().numDataBuffers;
  const y = tf.clone(x);
  expect(tf.memory().numDataBuffers).toBe(buffers);
  x.dispose();
  expect(Array.from(y.dataSync())).toEqual([1, -2, 3, 4, 5, -6]);
  // Mul and Square save their inputs through clones; the gradient reads them after the forward.
  const w = tf.tensor2d([[0.5, -1, 2]]);
  const g = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.square(v), w)))(y);
  expect(Array.from(g.dataSync())).toEqual([1, 4, 12, 4, -10, -24]);
  tf.dispose([y, w, g]);
  expect(tf.memory().numDataBuffers).toBe(buffers - 1);
});

it("conv2d's weight gradient (Conv2DBackpropFilter, which tfjs-wasm lacks) and input gradient (asked of Conv2D) equal the cpu backend's for strides 1–3, 'same' and 'valid' padding, without leaking", async () => {
  const cases = [
    [8, 3, 1, 'valid'],
    [8, 3, 2, 'valid'],
    [7, 3, 2, 'valid'],
    [6, 3, 1, 'same'],
    [8, 3, 2, 'same'],
    [7, 2, 3, 'same'],
  ] as const;
  const gradients = () =>
    cases.map(([H, k, s, pad]) =>
      tf.tidy(() => {
        const x = tf.randomUniform([2, H, H + 1, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
        const w = tf.randomUniform([k, k + 1, 3, 4], -1, 1, 'float32', 2) as tf.Tensor4D;
        const dy = tf.randomUniform(tf.conv2d(x, w, s, pad).shape, -1, 1, 'float32', 3);
        const [dx, dw] = tf.grads((xi: tf.Tensor, v: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(xi as tf.Tensor4D, v as tf.Tensor4D, s, pad), dy)))([x, w]);
        // Each gradient compared to its own largest entry.
        return [Array.from(dw!.dataSync()), Array.from(dx!.dataSync())];
      }),
    );
  await wasm.activate();
  expect((tf.getKernel('Conv2DBackpropInput', 'wasm')!.kernelFunc as { viaConv2D?: boolean }).viaConv2D).toBe(true);
  const tensors = tf.memory().numTensors;
  const buffers = tf.memory().numDataBuffers;
  const onWasm = gradients();
  expect(tf.memory().numTensors).toBe(tensors);
  expect(tf.memory().numDataBuffers).toBe(buffers);
  await tf.setBackend('cpu');
  const onCpu = gradients();
  await wasm.activate();
  cases.forEach((c, i) => {
    for (const g of [0, 1]) {
      const [want, got] = [onCpu[i]![g]!, onWasm[i]![g]!];
      expect(got.length).toBe(want.length);
      const worst = Math.max(...want.map((v, j) => Math.abs(v - got[j]!)));
      expect(worst, `${g ? 'dx' : 'dW'}: ${c.join(', ')}`).toBeLessThan(1e-5 * Math.max(...want.map(Math.abs)));
    }
  });
});

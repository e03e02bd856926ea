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

it("a sum over leading axes (a bias gradient) runs in place, in row order per column, with keepDims and negative axes; other sums are tfjs-wasm's own", async () => {
  await wasm.activate();
  expect((tf.getKernel('Sum', 'wasm')!.kernelFunc as { inPlace?: boolean }).inPlace).toBe(true);
  const [A, B, C] = [37, 5, 11];
  const values = Float32Array.from({ length: A * B * C }, (_, i) => Math.sin(i * 0.7) * (1 + (i % 13)));
  const x = tf.tensor3d(values, [A, B, C]);
  // Σ in row order, float32 after every addition: what the column sum computes.
  const rowOrder = (rows: number, cols: number) => {
    const out = new Float32Array(cols);
    for (let n = 0; n < rows; n++) for (let m = 0; m < cols; m++) out[m] = Math.fround(out[m]! + values[n * cols + m]!);
    return Array.from(out);
  };
  const tensors = tf.memory().numTensors;
  const cases: [number | number[], boolean, number[], number[]][] = [
    [0, false, [B, C], rowOrder(A, B * C)],
    [[1, 0], true, [1, 1, C], rowOrder(A * B, C)],
    [-3, false, [B, C], rowOrder(A, B * C)],
  ];
  for (const [axis, keepDims, shape, want] of cases) {
    const s = tf.sum(x, axis, keepDims);
    expect(s.shape, JSON.stringify(axis)).toEqual(shape);
    expect(Array.from(s.dataSync())).toEqual(want);
    s.dispose();
  }
  // Inner axes, all axes and integer tensors: tfjs-wasm's kernel, against a plain double-precision sum.
  const inner = tf.sum(x, 2);
  const full = tf.sum(x);
  const ints = tf.tidy(() => tf.sum(tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2], 'int32'), 0));
  expect(inner.shape).toEqual([A, B]);
  const wantInner = Array.from({ length: A * B }, (_, r) => values.slice(r * C, r * C + C).reduce((p, v) => p + v, 0));
  inner.dataSync().forEach((v, i) => expect(v).toBeCloseTo(wantInner[i]!, 3));
  expect(full.dataSync()[0]).toBeCloseTo(
    values.reduce((p, v) => p + v, 0),
    1,
  );
  expect(Array.from(ints.dataSync())).toEqual([9, 12]);
  expect(ints.dtype).toBe('int32');
  // The gradient of a broadcast bias is that column sum.
  const bias = tf.tidy(() => tf.grad((b: tf.Tensor) => tf.sum(tf.mul(tf.add(x, b), x)))(tf.zeros([C])));
  expect(Array.from(bias.dataSync())).toEqual(rowOrder(A * B, C));
  tf.dispose([inner, full, ints, bias]);
  expect(tf.memory().numTensors).toBe(tensors);
  x.dispose();
});

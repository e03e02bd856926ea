import { beforeAll, describe, expect, it } from 'vitest';
import { disposeTree, tf, type Tensor } from '@spikeflow/core';
import { describeKernels } from '@spikeflow/testing';
import '@tensorflow/tfjs-backend-wasm';
import { cpuMemoryKernels, eventDense } from './index.js';
import { activeThreads } from './wasm.js';
import { SNN_SHARED_WASM_BASE64, SNN_WASM_BASE64 } from './snn-wasm.js';
// @ts-expect-error: a plain ES module without types
import { compileKernels } from '../tools/build-wasm.mjs';

for (const backend of ['wasm', 'cpu']) {
  describe(`on ${backend}`, () => {
    const setup = async () => {
      expect(await tf.setBackend(backend)).toBe(true);
      await tf.ready();
    };
    beforeAll(setup);

    describeKernels(cpuMemoryKernels(backend), setup);

    it('eventDense computes no input gradient when the input is data (only W is differentiated)', () => {
      const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([20, 30], 0, 1, 'float32', 4), 0.05), 'float32'));
      const w = tf.variable(tf.randomNormal([30, 8], 0, 1, 'float32', 5));
      const before = tf.memory().numTensors;
      const prof = tf.profile(() => {
        const { grads, value } = tf.variableGrads(() => tf.sum(eventDense(x, w)) as tf.Scalar, [w]);
        const ref = tf.tidy(() => tf.matMul(tf.transpose(x), tf.ones([20, 8])));
        const g = grads[w.name]!.dataSync();
        const r = ref.dataSync();
        for (let i = 0; i < r.length; i++) expect(g[i]).toBeCloseTo(r[i]!, 5);
        disposeTree([grads, value, ref]);
      });
      return prof.then((p) => {
        // dy·Wᵀ (the input gradient) would be a [20, 8]·[8, 30] product: none was run.
        const products = p.kernels.filter((k) => k.name === 'BatchMatMul' && k.outputShapes[0]?.join() === '20,30');
        expect(products).toEqual([]);
        expect(tf.memory().numTensors).toBe(before);
        disposeTree([x, w] as Tensor[]);
      });
    });
  });
}

it('runs on every core: the worker threads started (2 cores here → 2 threads, unless SPIKEFLOW_THREADS says otherwise)', () => {
  const expected = process.env['SPIKEFLOW_THREADS'] ? Number(process.env['SPIKEFLOW_THREADS']) : Math.min(4, (process as unknown as { getBuiltinModule(m: string): { availableParallelism(): number } }).getBuiltinModule('node:os').availableParallelism());
  expect(activeThreads()).toBe(expected);
});

it('the embedded WebAssembly is assembly/snn.ts as compiled now (run `pnpm build:wasm` after editing it)', async () => {
  const own = (await compileKernels(false)) as Buffer;
  const shared = (await compileKernels(true)) as Buffer;
  expect(own.toString('base64')).toBe(SNN_WASM_BASE64);
  expect(shared.toString('base64')).toBe(SNN_SHARED_WASM_BASE64);
}, 60_000);

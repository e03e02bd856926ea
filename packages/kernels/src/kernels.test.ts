import { beforeAll, describe, expect, it } from 'vitest';
import { disposeTree, tf, type Tensor } from '@spikeflow/core';
import { describeKernels } from '@spikeflow/testing';
import '@tensorflow/tfjs-backend-wasm';
import { disposeTree as dispose, fastSigmoid, referenceKernels } from '@spikeflow/core';
import { cpuMemoryKernels, eventConv2d, eventDense, leakyReadout, integrateFireLayer, integrateFireSequence } from './index.js';
import { activeThreads } from './wasm.js';
import { KERNELS_DIGEST, SNN_SHARED_WASM_BASE64, SNN_WASM_BASE64, UPDATE_WASM_BASE64 } from './snn-wasm.js';
import { KERNELS_VERSION } from './index.js';
import pkg from '../package.json' with { type: 'json' };
// @ts-expect-error: a plain ES module without types
import { compileKernels, compileUpdates, kernelsDigest, kernelsSource } from '../tools/build-wasm.mjs';

for (const backend of ['wasm', 'cpu']) {
  describe(`on ${backend}`, () => {
    const setup = async () => {
      expect(await tf.setBackend(backend)).toBe(true);
      await tf.ready();
    };
    beforeAll(setup);

    // tfjs-wasm alone has no Conv2DBackpropFilter, so the reference convolution has no gradient
    // there: eventConv2d is checked on wasm by @spikeflow/backend-wasm's suite, which registers one.
    describeKernels(
      cpuMemoryKernels(backend).filter((r) => backend !== 'wasm' || r.kernel !== 'spikeflow.eventConv2d'),
      setup,
    );

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

    it('integrateFireLayer and leakyReadout without a tape take the event path on sparse input (no dense product) on every thread, and equal the references', async () => {
      // 6400 rows of 700 inputs (17.9 MB): staged in two chunks, each split over the threads,
      // each range in blocks of rows.
      const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([100, 64, 700], 0, 1, 'float32', 7), 0.05), 'float32'));
      const w = tf.randomNormal([700, 40], 0, 0.15, 'float32', 8);
      const b = tf.randomNormal([40], 0.1, 0.2, 'float32', 9);
      const init = { v: tf.zeros([64, 40]), s: tf.zeros([64, 40]) };
      const p = { beta: tf.scalar(0.9), threshold: 1, resetDetach: false, surrogate: fastSigmoid({ slope: 5 }) };
      const r = tf.randomNormal([40, 20], 0, 1, 'float32', 10);
      const y0 = tf.zeros([64, 20]);
      let fast: Tensor[] = [];
      const prof = await tf.profile(() => {
        const out = integrateFireLayer(x, w, b, init, undefined, p);
        fast = [out.spikes, leakyReadout(out.spikes, r, undefined, y0, 0.8), out.final.v, out.final.s];
      });
      const rate = tf.tidy(() => tf.mean(fast[0]!).dataSync()[0]!);
      expect(rate).toBeGreaterThan(0.02);
      expect(rate).toBeLessThan(0.3);
      expect(prof.kernels.filter((k) => k.name === 'BatchMatMul')).toEqual([]);
      const ref = referenceKernels['spikeflow.integrateFireLayer'](x, w, b, init, undefined, p);
      const refY = referenceKernels['spikeflow.leakyReadout'](ref.spikes, r, undefined, y0, 0.8);
      expect(Array.from(fast[0]!.dataSync())).toEqual(Array.from(ref.spikes.dataSync()));
      const fy = fast[1]!.dataSync();
      refY.dataSync().forEach((v, i) => expect(fy[i]).toBeCloseTo(v, 4));
      dispose([fast, ref.spikes, ref.final.v, ref.final.s, refY, x, w, b, init.v, init.s, p.beta, r, y0] as never);
    });
  });
}

it("eventConv2d on tfjs-wasm alone (no filter gradient kernel) takes a dense input's filter gradient by events: the cpu backend's conv2d gradient", async () => {
  const grads = () =>
    tf.tidy(() => {
      const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([3, 7, 6, 2], 0, 1, 'float32', 5), 0.7), 'float32'));
      const w = tf.randomNormal([3, 2, 2, 5], 0, 1, 'float32', 6);
      const dy = tf.randomNormal([3, 4, 3, 5], 0, 1, 'float32', 7);
      const conv = tf.getBackend() === 'wasm' ? eventConv2d : referenceKernels['spikeflow.eventConv2d'];
      const [dw] = tf.grads((v: Tensor) => tf.sum(tf.mul(conv(x, v, { stride: [2, 2], padding: 'same' }), dy)))([w]);
      return Array.from(dw!.dataSync());
    });
  await tf.setBackend('wasm');
  expect(tf.getKernel('Conv2DBackpropFilter', 'wasm')).toBeUndefined();
  const onWasm = grads();
  await tf.setBackend('cpu');
  const want = grads();
  const scale = Math.max(...want.map(Math.abs));
  onWasm.forEach((v, i) => expect(Math.abs(v - want[i]!) / scale).toBeLessThan(1e-5));
});

it('refuses arguments that do not fit, naming the kernel and the shapes', async () => {
  await tf.setBackend('wasm');
  const p = { beta: tf.scalar(0.9), threshold: 1, resetDetach: false, surrogate: fastSigmoid({ slope: 5 }) };
  const x = tf.zeros([3, 2, 5]);
  const init = { v: tf.zeros([2, 4]), s: tf.zeros([2, 4]) };
  const shapeError = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      expect((e as { code?: string }).code).toBe('SHAPE_MISMATCH');
      return (e as Error).message;
    }
    throw new Error('no error');
  };
  const w = tf.zeros([5, 4]);
  expect(shapeError(() => integrateFireLayer(x, tf.zeros([6, 4]), undefined, init, undefined, p))).toMatch(
    /^spikeflow\.integrateFireLayer: expected x \[T, B, I\], W \[I, O\] and b \[O\] or none, got \[3,2,5\], \[6,4\] and none/,
  );
  expect(shapeError(() => integrateFireLayer(x, w, tf.zeros([3]), init, undefined, p))).toMatch(/got \[3,2,5\], \[5,4\] and \[3\]/);
  expect(shapeError(() => integrateFireLayer(x, w, undefined, init, tf.zeros([3, 3]), p))).toMatch(
    /^spikeflow\.integrateFireLayer: with W \[5,4\], expected the state v and s \[2, 4\] and W_rec \[4, 4\] or none, got \[2,4\], \[2,4\] and \[3,3\]/,
  );
  expect(shapeError(() => integrateFireLayer(x, w, undefined, init, undefined, { ...p, beta: tf.zeros([3]) }))).toMatch(
    /^spikeflow\.integrateFireLayer: β must be a scalar or one value per neuron \[4\], got \[3\]/,
  );
  const rho = tf.scalar(0.9);
  expect(shapeError(() => integrateFireLayer(x, w, undefined, init, undefined, { ...p, adaptation: { rho, strength: 1 } }))).toMatch(
    /^spikeflow\.integrateFireLayer: with an adaptive threshold, expected the adaptation a \[2, 4\] in the initial state, got none \(pass \{ v, s, a \}\)/,
  );
  expect(
    shapeError(() => integrateFireSequence(tf.zeros([3, 2, 4]), { ...init, a: tf.zeros([4]) }, undefined, { ...p, adaptation: { rho, strength: 1 } })),
  ).toMatch(/^spikeflow\.integrateFireSequence: with an adaptive threshold, expected the adaptation a \[2, 4\] in the initial state, got \[4\]/);
  expect(
    shapeError(() => integrateFireLayer(x, w, undefined, { ...init, a: init.v }, undefined, { ...p, adaptation: { rho: tf.zeros([3]), strength: 1 } })),
  ).toMatch(/^spikeflow\.integrateFireLayer: ρ must be a scalar or one value per neuron \[4\], got \[3\]/);
  expect(shapeError(() => leakyReadout(x, w, undefined, tf.zeros([2, 3]), 0.9))).toMatch(
    /^spikeflow\.leakyReadout: with W \[5,4\], expected y0 \[2, 4\], got \[2,3\]/,
  );
  dispose([p.beta, x, init.v, init.s, w, rho] as never);
});

it('runs on every core: the worker threads started (2 cores here → 2 threads, unless SPIKEFLOW_THREADS says otherwise)', () => {
  const expected = process.env['SPIKEFLOW_THREADS']
    ? Number(process.env['SPIKEFLOW_THREADS'])
    : Math.min(
        4,
        (process as unknown as { getBuiltinModule(m: string): { availableParallelism(): number } }).getBuiltinModule('node:os').availableParallelism(),
      );
  expect(activeThreads()).toBe(expected);
});

it("the embedded WebAssembly is assembly/ as compiled now, and the kernels' digest is that of it and of the TypeScript in src/ now (run `pnpm build:wasm` after editing either)", async () => {
  const own = (await compileKernels(false)) as Buffer;
  const shared = (await compileKernels(true)) as Buffer;
  const updates = (await compileUpdates()) as Buffer;
  expect(own.toString('base64')).toBe(SNN_WASM_BASE64);
  expect(shared.toString('base64')).toBe(SNN_SHARED_WASM_BASE64);
  expect(updates.toString('base64')).toBe(UPDATE_WASM_BASE64);
  expect(kernelsDigest(own, shared, kernelsSource(), updates)).toBe(KERNELS_DIGEST);
  // One more character in the source, another digest; and the source holds the files that order the sums.
  expect(kernelsDigest(own, shared, `${kernelsSource()} `, updates)).not.toBe(KERNELS_DIGEST);
  for (const f of ['kernels.ts', 'eprop.ts', 'timing.ts', 'updates.ts', 'wasm.ts']) expect(kernelsSource()).toContain(`// ${f}\n`);
  expect(KERNELS_VERSION).toBe(`${pkg.version}+${KERNELS_DIGEST.slice(0, 12)}`);
}, 60_000);

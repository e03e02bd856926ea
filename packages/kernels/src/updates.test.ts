import { beforeAll, describe, expect, it } from 'vitest';
import '@tensorflow/tfjs-backend-wasm';
import { adam, disposeTree, KernelTable, OptimizerRunner, referenceKernels, SpikeflowError, tf, type Tensor } from '@spikeflow/core';
import { adamMoments, cpuMemoryKernels, fpttAdamStep, fpttAnchor, fpttPull, updatesInPlace } from './index.js';
import { UPDATE_WASM_BASE64 } from './snn-wasm.js';

const bits = (t: Tensor) => Array.from(new Uint32Array(Float32Array.from(t.dataSync() as Float32Array).buffer));

for (const backend of ['wasm', 'cpu']) {
  describe(`update kernels on ${backend}`, () => {
    beforeAll(async () => {
      expect(await tf.setBackend(backend)).toBe(true);
      await tf.ready();
    });

    // The references' float32 ops in the same order: not close, the same bits (odd sizes: SIMD lanes and the rest).
    it('adamMoments gives the reference’s bits: step direction and both moments', () => {
      for (const [n, count] of [
        [1, 1],
        [7, 3],
        [1031, 250],
      ] as const) {
        const [g, mu, nu] = [
          tf.randomNormal([n], 0, 1, 'float32', n),
          tf.randomNormal([n], 0, 0.1, 'float32', n + 1),
          tf.randomUniform([n], 0, 0.01, 'float32', n + 2),
        ];
        const p = { beta1: 0.9, beta2: 0.999, eps: 1e-8, count };
        const f = adamMoments(g, mu, nu, p);
        const r = referenceKernels['spikeflow.adamMoments'](g, mu, nu, p);
        expect(bits(f.update)).toEqual(bits(r.update));
        expect(bits(f.mu)).toEqual(bits(r.mu));
        expect(bits(f.nu)).toEqual(bits(r.nu));
        disposeTree([g, mu, nu, f, r]);
      }
    });

    it('fpttPull and fpttAnchor give the references’ bits', () => {
      const [g, w, wbar, aux] = [0, 1, 2, 3].map((i) => tf.randomNormal([13, 11], 0, 1, 'float32', 40 + i)) as [Tensor, Tensor, Tensor, Tensor];
      for (const [withG, shiftScale] of [
        [true, 1],
        [false, 0.5],
      ] as const) {
        const f = fpttPull(withG ? g : undefined, w, wbar, aux, { alpha: 0.1, shiftScale });
        const r = referenceKernels['spikeflow.fpttPull'](withG ? g : undefined, w, wbar, aux, { alpha: 0.1, shiftScale });
        expect(bits(f)).toEqual(bits(r));
        disposeTree([f, r]);
      }
      const f = fpttAnchor(w, wbar, aux, { alpha: 0.1, beta: 0.5 });
      const r = referenceKernels['spikeflow.fpttAnchor'](w, wbar, aux, { alpha: 0.1, beta: 0.5 });
      expect(bits(f.wbar)).toEqual(bits(r.wbar));
      expect(bits(f.lambda)).toEqual(bits(r.lambda));
      disposeTree([g, w, wbar, aux, f, r]);
    });

    it('fpttAdamStep gives the reference’s bits: weights, anchor, multipliers and moments, with and without a gradient', () => {
      for (const [n, count, withG] of [
        [1, 1, true],
        [7, 3, false],
        [1031, 250, true],
      ] as const) {
        const [g, w, wbar, lambda, mu] = [0, 1, 2, 3, 4].map((i) => tf.randomNormal([n], 0, i === 4 ? 0.1 : 1, 'float32', 60 + i)) as Tensor[];
        const nu = tf.randomUniform([n], 0, 0.01, 'float32', 70);
        const p = { alpha: 0.1, beta: 0.5, beta1: 0.9, beta2: 0.999, eps: 1e-8, count, lr: 3e-3 };
        const f = fpttAdamStep(withG ? g : undefined, w!, wbar!, lambda!, mu!, nu, p);
        const r = referenceKernels['spikeflow.fpttAdamStep'](withG ? g : undefined, w!, wbar!, lambda!, mu!, nu, p);
        for (const k of ['w', 'wbar', 'lambda', 'mu', 'nu'] as const) expect(bits(f[k]), k).toEqual(bits(r[k]));
        disposeTree([g, w, wbar, lambda, mu, nu, f, r] as never);
      }
    });

    it(`runs ${backend === 'wasm' ? 'in place in tfjs’ heap' : 'on copies in the kernels’ memory'}: new tensors out, the inputs untouched, nothing left behind`, () => {
      expect(updatesInPlace()).toBe(backend === 'wasm');
      const [g, mu, nu] = [
        tf.randomNormal([9, 5], 0, 1, 'float32', 1),
        tf.randomNormal([9, 5], 0, 1, 'float32', 2),
        tf.randomUniform([9, 5], 0, 1, 'float32', 3),
      ];
      const before = [g, mu, nu].map(bits);
      const steady = tf.memory().numTensors;
      const r = adamMoments(g, mu, nu, { beta1: 0.9, beta2: 0.999, eps: 1e-8, count: 2 });
      expect(tf.memory().numTensors).toBe(steady + 3);
      expect([g, mu, nu].map(bits)).toEqual(before);
      expect(new Set([r.update, r.mu, r.nu, g, mu, nu].map((t) => t.dataId)).size).toBe(6);
      disposeTree(r);
      expect(tf.memory().numTensors).toBe(steady);
      disposeTree([g, mu, nu]);
    });

    it('refuses tensors of different shapes, naming them', () => {
      const [a, b] = [tf.zeros([3, 4]), tf.zeros([4, 3])];
      expect(() => adamMoments(a, a, b, { beta1: 0.9, beta2: 0.999, eps: 1e-8, count: 1 })).toThrow(SpikeflowError);
      expect(() => adamMoments(a, a, b, { beta1: 0.9, beta2: 0.999, eps: 1e-8, count: 1 })).toThrow(/nu is \[4,3\]/);
      expect(() => fpttAnchor(a, b, a, { alpha: 0.1, beta: 0.5 })).toThrow(/wbar is \[4,3\]/);
      expect(() => fpttAdamStep(a, a, a, a, a, b, { alpha: 0.1, beta: 0.5, beta1: 0.9, beta2: 0.999, eps: 1e-8, count: 1, lr: 1e-3 })).toThrow(/nu is \[4,3\]/);
      disposeTree([a, b]);
    });

    it('an Adam run with the kernels ends on the same parameters, bit for bit, as one on the references', () => {
      const run = (kernels?: KernelTable) => {
        const params = { w: tf.variable(tf.randomNormal([50, 9], 0, 1, 'float32', 5)), b: tf.variable(tf.zeros([9])) };
        const runner = new OptimizerRunner(adam({ lr: 0.01, clipNorm: 1 }), params, kernels ? { kernels } : {});
        for (let i = 0; i < 5; i++) {
          // Gradients that depend on the parameters (the moments see different values each update); b's only twice.
          const grads = tf.tidy(() => ({ w: tf.sin(params.w), ...(i % 2 === 0 ? { b: tf.cos(params.b) } : {}) }));
          runner.apply(grads);
          disposeTree(grads);
        }
        const out = { w: bits(params.w), b: bits(params.b) };
        runner.dispose();
        disposeTree(params);
        return out;
      };
      const fast = new KernelTable();
      for (const r of cpuMemoryKernels(backend)) fast.register(r);
      expect(run(fast)).toEqual(run());
    });
  });
}

it('the update module has no data of its own: instantiating it on a memory (tfjs’) writes nothing there', () => {
  const memory = new WebAssembly.Memory({ initial: 1 });
  const bytes = new Uint8Array(memory.buffer);
  bytes.fill(0xa5);
  new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(UPDATE_WASM_BASE64, 'base64')), { env: { memory } });
  expect(bytes.every((b) => b === 0xa5)).toBe(true);
});

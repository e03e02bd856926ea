import { describe, expect, it } from 'vitest';
import { detach, disposeTree, fastSigmoid, nonDifferentiableKernels, referenceKernels, spikeFn, tf, type Backend, type KernelName, type Tensor } from '@spikeflow/core';

function maxRelDiff(a: Tensor, b: Tensor): number {
  const x = a.dataSync();
  const y = b.dataSync();
  let num = 0;
  let den = 0;
  for (let i = 0; i < y.length; i++) {
    num = Math.max(num, Math.abs(x[i]! - y[i]!));
    den = Math.max(den, Math.abs(y[i]!));
  }
  return den > 0 ? num / den : num;
}

/** Arguments for each kernel's comparison: a sparse 0/1 spike matrix and dense weights. */
const kernelArgs: { readonly [K in KernelName]: () => Tensor[] } = {
  'spikeflow.dense': () => [
    tf.cast(tf.less(tf.randomUniform([16, 40], 0, 1, 'float32', 1), 0.2), 'float32'),
    tf.randomNormal([40, 24], 0, 1, 'float32', 2),
  ],
  // Presynaptic activity with zeros, ones and other values (analog inputs), over 6 steps and batch 3.
  'spikeflow.outerSum': () => [
    tf.tidy(() => {
      const u = tf.randomUniform([6, 3, 40], 0, 1, 'float32', 4);
      return tf.where(tf.less(u, 0.7), tf.zerosLike(u), tf.where(tf.less(u, 0.85), tf.onesLike(u), tf.mul(u, 3)));
    }),
    tf.randomNormal([6, 3, 24], 0, 1, 'float32', 5),
  ],
};

/**
 * The backend battery every backend plugin runs: it activates, `tf.grad` and custom gradients
 * work, and each fast kernel it registers equals core's composite reference, values and
 * gradients of every argument (values only for kernels used outside the tape).
 */
export function describeBackend(backend: Backend): void {
  describe(`backend conformance: ${backend.name}`, () => {
    it('is available, activates, and describes itself', async () => {
      expect(await backend.isAvailable()).toBe(true);
      await backend.activate();
      const info = backend.describe();
      expect(tf.getBackend()).toBe(info.tfBackend);
      expect(info.threads).toBeGreaterThanOrEqual(1);
      expect(info.device.length).toBeGreaterThan(0);
    });

    it('tf.grad works: d/dx Σ x³ = 3x²', async () => {
      await backend.activate();
      const x = tf.tensor1d([-2, -0.5, 0, 1.5]);
      const g = tf.grad((v: Tensor) => tf.sum(tf.pow(v, 3)))(x);
      expect(Array.from(g.dataSync())).toEqual([12, 0.75, 0, 6.75]);
      disposeTree([x, g]);
    });

    it('custom gradients work: spike op backward and detach', async () => {
      await backend.activate();
      const s = fastSigmoid({ slope: 4 });
      const x = tf.tensor1d([-1, -0.25, 0.5, 2]);
      const g = tf.grad((v: Tensor) => tf.sum(spikeFn(s)(v)))(x);
      const d = s.derivative(x);
      expect(maxRelDiff(g, d)).toBeLessThan(1e-6);
      const gd = tf.grad((v: Tensor) => tf.sum(tf.add(v, detach(tf.mul(v, 3)))))(x);
      expect(Array.from(gd.dataSync())).toEqual([1, 1, 1, 1]);
      disposeTree([x, g, d, gd]);
    });

    for (const reg of backend.kernels ?? []) {
      it(`kernel ${reg.kernel}@${reg.backend} equals the composite reference (values and gradients)`, async () => {
        await backend.activate();
        expect(reg.backend).toBe(backend.describe().tfBackend);
        const args = kernelArgs[reg.kernel]();
        const fast = reg.impl as (...a: Tensor[]) => Tensor;
        const ref = referenceKernels[reg.kernel] as (...a: Tensor[]) => Tensor;
        const yf = fast(...args);
        const yr = ref(...args);
        expect(yf.shape).toEqual(yr.shape);
        expect(maxRelDiff(yf, yr)).toBeLessThan(1e-5);
        if (nonDifferentiableKernels.has(reg.kernel)) {
          const steady = tf.memory().numTensors;
          (fast(...args) as Tensor).dispose();
          expect(tf.memory().numTensors).toBe(steady);
          disposeTree([yf, yr, args]);
          return;
        }
        const dy = tf.randomNormal(yr.shape, 0, 1, 'float32', 3);
        const gf = tf.grads((...a: Tensor[]) => tf.sum(tf.mul(fast(...a), dy)))(args);
        const gr = tf.grads((...a: Tensor[]) => tf.sum(tf.mul(ref(...a), dy)))(args);
        gf.forEach((g, i) => {
          expect(g.shape).toEqual(args[i]!.shape);
          expect(maxRelDiff(g, gr[i]!)).toBeLessThan(1e-5);
        });
        disposeTree([yf, yr, dy, gf, gr]);
        // No leak: a second forward and backward leaves the tensor count where the first left it
        // (a kernel may cache per-weight data, such as a transpose, but must not grow).
        const steady = tf.memory().numTensors;
        const again = tf.grads((...a: Tensor[]) => tf.sum(fast(...a)))(args);
        disposeTree(again);
        expect(tf.memory().numTensors).toBe(steady);
        disposeTree(args);
      });
    }
  });
}

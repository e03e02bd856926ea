import { describe, expect, it } from 'vitest';
import {
  detach,
  disposeTree,
  fastSigmoid,
  nonDifferentiableKernels,
  referenceKernels,
  spikeFn,
  tf,
  triangle,
  type Backend,
  type KernelName,
  type KernelRegistration,
  type KernelSignatures,
  type IntegrateFireSequenceParams,
  type Tensor,
} from '@spikeflow/core';

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

/** 0/1 spikes with probability `p`. */
function spikes(shape: number[], p: number, seed: number): Tensor {
  return tf.tidy(() => tf.cast(tf.less(tf.randomUniform(shape, 0, 1, 'float32', seed), p), 'float32'));
}

/** One comparison of a kernel with its reference: tensor arguments, and how to call the kernel on them. */
interface KernelCase {
  readonly name: string;
  readonly args: () => Tensor[];
  /** The kernel's output as one tensor (what the gradients are taken of). */
  readonly call: (impl: never, args: Tensor[]) => Tensor;
  /** Relative tolerance, where float32 sums over many terms (a shared β's gradient) need more than the suite's. */
  readonly tolerance?: number;
}

const lifCase = (
  name: string,
  o: {
    T?: number;
    B?: number;
    H?: number;
    rec?: boolean;
    recScale?: number;
    resetDetach?: boolean;
    perNeuron?: boolean;
    mean?: number;
    analogS0?: boolean;
    surrogate?: IntegrateFireSequenceParams['surrogate'];
    tolerance?: number;
  } = {},
): KernelCase => {
  const {
    T = 7,
    B = 3,
    H = 6,
    rec = true,
    recScale = 0.5,
    resetDetach = false,
    perNeuron = false,
    mean = 0.4,
    analogS0 = false,
    surrogate = fastSigmoid({ slope: 5 }),
  } = o;
  return {
    name,
    ...(o.tolerance ? { tolerance: o.tolerance } : {}),
    args: () => [
      tf.randomNormal([T, B, H], mean, 0.8, 'float32', 11),
      tf.randomNormal([B, H], 0, 0.5, 'float32', 12),
      analogS0 ? tf.tidy(() => tf.mul(spikes([B, H], 0.3, 13), tf.randomUniform([B, H], -1, 2, 'float32', 16))) : spikes([B, H], 0.3, 13),
      perNeuron ? tf.randomUniform([H], 0.5, 0.95, 'float32', 15) : tf.scalar(0.85),
      ...(rec ? [tf.randomNormal([H, H], 0, recScale, 'float32', 14)] : []),
    ],
    call: (impl: KernelSignatures['spikeflow.integrateFireSequence'], [currents, v, s, beta, wRec]) => {
      const r = impl(currents!, { v: v!, s: s! }, wRec, { beta: beta!, threshold: 0.7, resetDetach, surrogate });
      // The final state is values only: it must equal the last step of the window.
      const lastS = tf.tidy(() => tf.reshape(tf.slice(r.spikes, [r.spikes.shape[0]! - 1, 0, 0], [1, -1, -1]), r.final.s.shape));
      expect(Array.from(r.final.s.dataSync())).toEqual(Array.from(lastS.dataSync()));
      disposeTree([r.final.v, r.final.s, lastS]);
      return r.spikes;
    },
  } as KernelCase;
};

/** Input of a window: 0/1 spikes with probability `p`, or (`analog`) some of them scaled by other values. */
function windowInput(shape: number[], p: number, analog: boolean, seed: number): Tensor {
  return analog ? tf.tidy(() => tf.mul(spikes(shape, p, seed), tf.randomUniform(shape, -1, 2, 'float32', seed + 1))) : spikes(shape, p, seed);
}

const lifLayerCase = (
  name: string,
  o: {
    T?: number;
    B?: number;
    I?: number;
    H?: number;
    p?: number;
    analog?: boolean;
    bias?: boolean;
    rec?: boolean;
    resetDetach?: boolean;
    perNeuron?: boolean;
    tolerance?: number;
  } = {},
): KernelCase => {
  const { T = 7, B = 3, I = 30, H = 37, p = 0.2, analog = false, bias = true, rec = true, resetDetach = false, perNeuron = false } = o;
  return {
    name,
    ...(o.tolerance ? { tolerance: o.tolerance } : {}),
    args: () => [
      windowInput([T, B, I], p, analog, 21),
      tf.randomNormal([I, H], 0, 0.5, 'float32', 22),
      tf.randomNormal([B, H], 0, 0.5, 'float32', 23),
      spikes([B, H], 0.3, 24),
      perNeuron ? tf.randomUniform([H], 0.5, 0.95, 'float32', 25) : tf.scalar(0.85),
      ...(bias ? [tf.randomNormal([H], 0.2, 0.3, 'float32', 26)] : []),
      ...(rec ? [tf.randomNormal([H, H], 0, 0.3, 'float32', 27)] : []),
    ],
    call: (impl: KernelSignatures['spikeflow.integrateFireLayer'], [x, w, v, s, beta, ...rest]) => {
      const b = bias ? rest[0] : undefined;
      const wRec = rec ? rest[bias ? 1 : 0] : undefined;
      const r = impl(x!, w!, b, { v: v!, s: s! }, wRec, { beta: beta!, threshold: 0.7, resetDetach, surrogate: fastSigmoid({ slope: 5 }) });
      // The final state is values only: it must equal the last step of the window.
      const lastS = tf.tidy(() => tf.reshape(tf.slice(r.spikes, [r.spikes.shape[0]! - 1, 0, 0], [1, -1, -1]), r.final.s.shape));
      expect(Array.from(r.final.s.dataSync())).toEqual(Array.from(lastS.dataSync()));
      disposeTree([r.final.v, r.final.s, lastS]);
      return r.spikes;
    },
  } as KernelCase;
};

const leakyReadoutCase = (
  name: string,
  o: { T?: number; B?: number; H?: number; O?: number; p?: number; analog?: boolean; bias?: boolean } = {},
): KernelCase => {
  const { T = 6, B = 3, H = 40, O = 20, p = 0.15, analog = false, bias = true } = o;
  return {
    name,
    args: () => [
      windowInput([T, B, H], p, analog, 41),
      tf.randomNormal([H, O], 0, 1, 'float32', 42),
      tf.randomNormal([B, O], 0, 1, 'float32', 43),
      ...(bias ? [tf.randomNormal([O], 0, 1, 'float32', 44)] : []),
    ],
    call: (impl: KernelSignatures['spikeflow.leakyReadout'], [x, w, y0, b]) => impl(x!, w!, bias ? b : undefined, y0!, 0.8),
  } as KernelCase;
};

/**
 * Cases for each kernel: sparse 0/1 spikes and dense weights, and the edges — no spikes, all
 * spikes, one step, one batch row, no recurrence, the reset detached, a decay per neuron, a
 * surrogate other than the fast sigmoid. The values are compared outside a gradient tape (where a
 * fast kernel may take an inference path) and the gradients on one.
 */
export const kernelCases: { readonly [K in KernelName]: readonly KernelCase[] } = {
  'spikeflow.dense': [
    {
      name: '20% spikes',
      args: () => [spikes([16, 40], 0.2, 1), tf.randomNormal([40, 24], 0, 1, 'float32', 2)],
      call: (impl: KernelSignatures['spikeflow.dense'], [x, w]) => impl(x!, w!),
    } as KernelCase,
  ],
  // Presynaptic activity with zeros, ones and other values (analog inputs), over 6 steps and batch 3.
  'spikeflow.outerSum': [
    {
      name: 'mixed activity',
      args: () => [
        tf.tidy(() => {
          const u = tf.randomUniform([6, 3, 40], 0, 1, 'float32', 4);
          return tf.where(tf.less(u, 0.7), tf.zerosLike(u), tf.where(tf.less(u, 0.85), tf.onesLike(u), tf.mul(u, 3)));
        }),
        tf.randomNormal([6, 3, 24], 0, 1, 'float32', 5),
      ],
      call: (impl: KernelSignatures['spikeflow.outerSum'], [pre, post]) => impl(pre!, post!),
    } as KernelCase,
  ],
  'spikeflow.eventDense': (
    [
      ['5% spikes', [40, 30], 0.05],
      ['no spikes', [12, 30], 0],
      ['all spikes', [12, 30], 1],
      ['one row', [1, 30], 0.1],
      ['a dense input (past the event path)', [12, 30], 0.6],
      // The kernels read the input a slice of rows at a time: this one is found dense after a slice.
      ['a dense input of 3000 rows', [3000, 30], 0.6],
      ['3000 rows (work enough to split over threads)', [3000, 30], 0.1],
      ['30 000 rows (the weight gradient in chunks of rows)', [30000, 8], 0.3],
    ] as const
  )
    .map(
      ([name, shape, p]) =>
        ({
          name,
          args: () => [spikes([...shape], p, 1), tf.randomNormal([shape[1], 37], 0, 1, 'float32', 2)],
          call: (impl: KernelSignatures['spikeflow.eventDense'], [x, w]) => impl(x!, w!),
        }) as KernelCase,
    )
    .concat({
      // Analog input (zeros, ones and other values): the event values are multiplied, not only
      // added; 23 outputs, fewer than a block of 32 (5 groups of 4 and 3 single columns).
      name: 'analog values, 23 outputs',
      args: () => [
        tf.tidy(() => {
          const u = tf.randomUniform([500, 30], 0, 1, 'float32', 3);
          return tf.where(tf.less(u, 0.8), tf.zerosLike(u), tf.where(tf.less(u, 0.9), tf.onesLike(u), tf.mul(u, -2)));
        }),
        tf.randomNormal([30, 23], 0, 1, 'float32', 2),
      ],
      call: (impl: KernelSignatures['spikeflow.eventDense'], [x, w]) => impl(x!, w!),
    } as KernelCase),
  'spikeflow.integrateFireSequence': [
    lifCase('recurrent, reset attached'),
    lifCase('recurrent, reset detached', { resetDetach: true }),
    lifCase('feed-forward', { rec: false }),
    lifCase('per-neuron β', { perNeuron: true }),
    lifCase('no spikes', { mean: -3 }),
    lifCase('all spikes', { mean: 5 }),
    lifCase('T = 1', { T: 1 }),
    lifCase('batch 1', { B: 1 }),
    lifCase('odd sizes (B 5, H 37)', { B: 5, H: 37 }),
    // The shared β's gradient sums 33 120 float32 terms (the reference in float32 order, the kernel in float64).
    lifCase('work enough to split over threads (T 16, B 9, H 230)', { T: 16, B: 9, H: 230, mean: 0.1, tolerance: 1e-4 }),
    lifCase('triangle surrogate', { surrogate: triangle({ width: 0.8 }) }),
    // A state to start from that is not 0/1 (the recurrent product multiplies, not only adds), over more than 32 neurons.
    lifCase('analog initial spikes (H 40)', { H: 40, analogS0: true }),
    // ~0.1% of 655 360 neuron-steps spike: the threads list adjacent ranges of few events,
    // where one writing past its range would overwrite the next one's (the weight gradient).
    lifCase('sparse spikes over a long window (T 40, B 64, H 256)', { T: 40, B: 64, H: 256, mean: -0.8, recScale: 0.02, perNeuron: true }),
  ],
  'spikeflow.integrateFireLayer': [
    lifLayerCase('spikes, bias, recurrent, 37 neurons (a block of 32 and 5 more)'),
    lifLayerCase('no bias, feed-forward', { bias: false, rec: false }),
    lifLayerCase('analog input', { analog: true }),
    lifLayerCase('no input events', { p: 0 }),
    lifLayerCase('a dense input (past the event path)', { p: 0.9 }),
    lifLayerCase('reset detached, per-neuron β', { resetDetach: true, perNeuron: true }),
    lifLayerCase('T = 1', { T: 1 }),
    lifLayerCase('batch 1', { B: 1 }),
    lifLayerCase('work enough to split over threads (T 16, B 9, I 200, H 230)', { T: 16, B: 9, I: 200, H: 230, p: 0.05, perNeuron: true }),
    // 1500 rows of 700 inputs: the input product is split over threads, each in blocks of rows.
    lifLayerCase('1500 rows of 700 inputs (the product in blocks of rows)', { T: 30, B: 50, I: 700, H: 40, p: 0.05, perNeuron: true }),
  ],
  'spikeflow.leakyReadout': [
    leakyReadoutCase('spikes, 20 outputs, bias'),
    leakyReadoutCase('37 outputs, no bias', { O: 37, bias: false }),
    leakyReadoutCase('analog input', { analog: true }),
    leakyReadoutCase('T = 1, batch 1', { T: 1, B: 1 }),
    leakyReadoutCase('a dense input (past the event path)', { p: 0.9 }),
    leakyReadoutCase('work enough to split over threads (T 40, B 16, H 256, 20 outputs)', { T: 40, B: 16, H: 256, p: 0.1 }),
  ],
  'spikeflow.leakyScan': (
    [
      [6, 3],
      [1, 2],
      [4, 1],
    ] as const
  ).map(
    ([T, B]) =>
      ({
        name: `T = ${T}, B = ${B}`,
        args: () => [tf.randomNormal([T, B, 5], 0, 1, 'float32', 31), tf.randomNormal([B, 5], 0, 1, 'float32', 32)],
        call: (impl: KernelSignatures['spikeflow.leakyScan'], [d, y0]) => impl(d!, y0!, 0.8),
      }) as KernelCase,
  ),
};

/**
 * Checks fast kernels against core's composite references on the active backend: for every case,
 * values and the gradient of every argument, and no tensor left behind by a second forward and
 * backward pass. `setup` activates the backend the registrations are for.
 */
export function describeKernels(registrations: readonly KernelRegistration[], setup: () => Promise<void> | void, tolerance = 2e-5): void {
  for (const reg of registrations) {
    describe(`kernel ${reg.kernel}@${reg.backend} equals the composite reference`, () => {
      for (const c of kernelCases[reg.kernel]) {
        it(`${c.name}: values${nonDifferentiableKernels.has(reg.kernel) ? '' : ' and gradients'}`, async () => {
          await setup();
          expect(tf.getBackend()).toBe(reg.backend);
          const fast = (...a: Tensor[]) => c.call(reg.impl as never, a);
          const ref = (...a: Tensor[]) => c.call(referenceKernels[reg.kernel] as never, a);
          const args = c.args();
          const yf = fast(...args);
          const yr = ref(...args);
          expect(yf.shape).toEqual(yr.shape);
          const tol = c.tolerance ?? tolerance;
          expect(maxRelDiff(yf, yr)).toBeLessThan(tol);
          if (nonDifferentiableKernels.has(reg.kernel)) {
            const steady = tf.memory().numTensors;
            fast(...args).dispose();
            expect(tf.memory().numTensors).toBe(steady);
            disposeTree([yf, yr, args]);
            return;
          }
          const dy = tf.randomNormal(yr.shape, 0, 1, 'float32', 3);
          const gf = tf.grads((...a: Tensor[]) => tf.sum(tf.mul(fast(...a), dy)))(args);
          const gr = tf.grads((...a: Tensor[]) => tf.sum(tf.mul(ref(...a), dy)))(args);
          gf.forEach((g, i) => {
            expect(g.shape, `gradient of argument ${i}`).toEqual(args[i]!.shape);
            expect(maxRelDiff(g, gr[i]!), `gradient of argument ${i}`).toBeLessThan(tol);
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
}

/**
 * The backend battery every backend plugin runs: it activates, `tf.grad` and custom gradients
 * work, and each fast kernel it registers equals core's composite reference on every case of
 * {@link kernelCases}, values and gradients of every argument (values only for kernels used
 * outside the tape).
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

    it('its kernels are for its own tfjs backend', async () => {
      await backend.activate();
      for (const reg of backend.kernels ?? []) expect(reg.backend).toBe(backend.describe().tfBackend);
    });

    describeKernels(backend.kernels ?? [], () => backend.activate());
  });
}

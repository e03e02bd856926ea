import { describe, expect, it } from 'vitest';
import { tf, type Tensor } from './tf.js';
import { Dense, KernelTable, outerSumByEvents, referenceKernels, type KernelName } from './kernels.js';
import { disposeTree } from './state.js';
import { errorOf, useCpuBackend } from './test-support.js';

useCpuBackend();

const fast = (x: Tensor, w: Tensor) => tf.matMul(x, w);

describe('kernels', () => {
  it('the dense reference is x·W for x [B, I], W [I, O]', () => {
    expect(Dense).toBe('spikeflow.dense');
    const x = tf.tensor2d([
      [1, 0, 1],
      [0, 1, 1],
    ]);
    const w = tf.tensor2d([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    const y = referenceKernels[Dense](x, w);
    expect(y.shape).toEqual([2, 2]);
    expect(Array.from(y.dataSync())).toEqual([6, 8, 8, 10]);
    tf.dispose([x, w, y]);
  });

  it('an empty table falls back to the reference on every backend', () => {
    const table = new KernelTable();
    expect(table.get(Dense)).toBe(referenceKernels[Dense]);
    expect(table.get(Dense, 'cpu')).toBe(referenceKernels[Dense]);
    expect(table.get(Dense, 'wasm')).toBe(referenceKernels[Dense]);
    expect(table.has(Dense, 'cpu')).toBe(false);
    expect(table.resolve()).toEqual(referenceKernels);
  });

  it('a registered kernel is returned for its backend only', () => {
    const table = new KernelTable();
    table.register({ kernel: Dense, backend: 'wasm', impl: fast });
    expect(table.get(Dense, 'wasm')).toBe(fast);
    expect(table.has(Dense, 'wasm')).toBe(true);
    expect(table.get(Dense, 'cpu')).toBe(referenceKernels[Dense]);
    expect(table.has(Dense, 'cpu')).toBe(false);
    // The default backend is the active one (cpu here).
    expect(tf.getBackend()).toBe('cpu');
    expect(table.get(Dense)).toBe(referenceKernels[Dense]);
    expect(table.resolve('wasm')[Dense]).toBe(fast);
    expect(table.resolve()[Dense]).toBe(referenceKernels[Dense]);
    table.register({ kernel: Dense, backend: 'cpu', impl: fast });
    expect(table.get(Dense)).toBe(fast);
    expect(table.resolve()[Dense]).toBe(fast);
  });

  it('a later registration for the same kernel and backend replaces the earlier one', () => {
    const table = new KernelTable();
    const other = (x: Tensor, w: Tensor) => tf.matMul(x, w);
    table.register({ kernel: Dense, backend: 'cpu', impl: fast });
    table.register({ kernel: Dense, backend: 'cpu', impl: other });
    expect(table.get(Dense, 'cpu')).toBe(other);
  });

  it('tables are independent', () => {
    const a = new KernelTable();
    const b = new KernelTable();
    a.register({ kernel: Dense, backend: 'cpu', impl: fast });
    expect(b.get(Dense, 'cpu')).toBe(referenceKernels[Dense]);
  });

  it('registering an unknown kernel name is UNKNOWN_NAME listing the known kernels', () => {
    const table = new KernelTable();
    const e = errorOf(() => table.register({ kernel: 'spikeflow.conv' as KernelName, backend: 'cpu', impl: fast }));
    expect(e.code).toBe('UNKNOWN_NAME');
    expect(e.message).toBe(
      "kernel 'spikeflow.conv' is not a spikeflow kernel (known: spikeflow.dense, spikeflow.eventDense, spikeflow.eventConv2d, spikeflow.maxPool, spikeflow.integrateFireSequence, spikeflow.leakyScan, spikeflow.integrateFireLayer, spikeflow.leakyReadout, spikeflow.outerSum, spikeflow.integrateFireEligibility, spikeflow.decayedSum, spikeflow.adamMoments, spikeflow.fpttPull, spikeflow.fpttAnchor, spikeflow.fpttAdamStep, spikeflow.spikeTimingSequence, spikeflow.ltcStep)",
    );
    expect(table.has('spikeflow.conv' as KernelName, 'cpu')).toBe(false);
  });
});

describe('spikeflow.outerSum', () => {
  it('the event-driven version equals the batched-matMul reference, skipping zeros and scaling analog entries; shapes are checked', () => {
    const pre = tf.tensor3d([
      [
        [0, 1, 0],
        [2.5, 0, 1],
      ],
      [
        [1, 1, 0],
        [0, 0, -1],
      ],
    ]); // [n = 2, B = 2, I = 3]
    const post = tf.tensor3d([
      [
        [1, 2],
        [3, 4],
      ],
      [
        [5, 6],
        [7, 8],
      ],
    ]); // [n = 2, B = 2, H = 2]
    // b = 0: Σ_k pre_k[0]ᵀ ⊗ post_k[0] = [0,1,0]ᵀ⊗[1,2] + [1,1,0]ᵀ⊗[5,6]; b = 1: [2.5,0,1]ᵀ⊗[3,4] + [0,0,−1]ᵀ⊗[7,8]
    const want = [5, 6, 6, 8, 0, 0, 7.5, 10, 0, 0, -4, -4];
    const fast = outerSumByEvents(pre, post);
    const ref = referenceKernels['spikeflow.outerSum'](pre, post);
    expect(fast.shape).toEqual([2, 3, 2]);
    expect(Array.from(fast.dataSync())).toEqual(want);
    expect(Array.from(ref.dataSync())).toEqual(want);
    expect(() => outerSumByEvents(pre, tf.zeros([3, 2, 2]))).toThrow(/expected pre \[n, B, I\] and post \[n, B, H\]/);
    disposeTree([pre, post, fast, ref]);
  });
});

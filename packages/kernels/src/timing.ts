import { SpikeflowError, spikeTimingConstants, spikeTimingResult, type SpikeTimingParams, type SpikeTimingSequence, type Tensor } from '@spikeflow/core';
import { customOp, readF32, tensorOf } from './kernels.js';
import { arena, parallelRows, type Arena } from './wasm.js';

const f64 = (a: Arena, at: number, n: number) => new Float64Array(a.f32(at, 2 * n).buffer, at, n);

/**
 * `spikeflow.spikeTimingSequence`: TSSL-BP's neurons over a whole sequence, core's reference
 * (`spikeTimingSequence`: the equations, and the authors' backward pass) with its two passes in
 * WebAssembly (assembly/timing.ts), the neurons split over the threads. float64 state as the
 * reference: the same spikes and PSPs, and the same gradient to the rounding of `exp`.
 */
export function spikeTimingSequence(x: Tensor, p: SpikeTimingParams): SpikeTimingSequence {
  if (x.rank !== 3) throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.spikeTimingSequence: expected input currents x [T, B, H], got [${x.shape}]`);
  const [T, B, H] = x.shape as [number, number, number];
  const { leak, thetaM, r, threshold, fallback, rhoMax, width, clamp } = spikeTimingConstants(p);
  const n = B * H;
  const N = T * n;
  const size = { T, batch: B, width: H };
  // What the backward pass reads, copied out of the kernels' scratch memory after the forward pass.
  let u = new Float64Array(0);
  let du = new Float64Array(0);
  let a64 = new Float64Array(0);
  let o = new Uint8Array(0);
  const psp = customOp('spikeflow.spikeTimingSequence', {
    inputs: { x },
    forwardFunc: () => {
      const m = arena(size);
      const px = m.alloc(N);
      const [post, psp, pu, pdu, pa] = [m.alloc(2 * n), m.alloc(2 * n), m.alloc(2 * N), m.alloc(2 * N), m.alloc(2 * N)];
      const po = m.alloc(Math.ceil(N / 4));
      const pa32 = m.alloc(N);
      m.commit().f32(px, N).set(readF32(x));
      parallelRows('spikeTimingForward', n, (i0, i1) => [px, T, n, i0, i1, thetaM, threshold, r, post, psp, pu, pdu, po, pa, pa32], N * 8);
      u = f64(m, pu, N).slice();
      du = f64(m, pdu, N).slice();
      a64 = f64(m, pa, N).slice();
      o = new Uint8Array(m.f32(po, Math.ceil(N / 4)).buffer, po, N).slice();
      return tensorOf(m.f32(pa32, N), [T, B, H]);
    },
    backwardsFunc: (dy) => ({
      x: () => {
        const m = arena(size);
        const pg = m.alloc(N);
        const [pu, pdu, pa, e, G] = [m.alloc(2 * N), m.alloc(2 * N), m.alloc(2 * N), m.alloc(2 * n), m.alloc(2 * n)];
        const po = m.alloc(Math.ceil(N / 4));
        const pd = m.alloc(N);
        m.commit()
          .f32(pg, N)
          .set(readF32(dy as Tensor));
        f64(m, pu, N).set(u);
        f64(m, pdu, N).set(du);
        f64(m, pa, N).set(a64);
        new Uint8Array(m.f32(po, Math.ceil(N / 4)).buffer, po, N).set(o);
        parallelRows(
          'spikeTimingBackward',
          n,
          (i0, i1) => [pg, T, n, i0, i1, r, leak, thetaM, rhoMax, fallback, threshold, width, clamp, pu, pdu, po, pa, e, G, pd],
          N * 16,
        );
        return tensorOf(m.f32(pd, N), [T, B, H]);
      },
    }),
  });
  return spikeTimingResult(psp, [T, B, H], o, u, du);
}

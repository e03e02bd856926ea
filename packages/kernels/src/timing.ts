import { SpikeflowError, type SpikeTimingParams, type SpikeTimingSequence, type Tensor, tf } from '@spikeflow/core';
import { customOp, readF32, tensorOf } from './kernels.js';
import { arena, parallelRows, type Arena } from './wasm.js';

function decayOf(tau: number, what: string): number {
  if (!(Number.isFinite(tau) && tau >= 1))
    throw new SpikeflowError('CONFIG_INVALID', `spikeflow.spikeTimingSequence: ${what} must be a number of steps >= 1, got ${tau}`);
  return 1 - 1 / tau;
}

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
  const leak = decayOf(p.tauM, 'tauM');
  const thetaM = 1 - leak;
  const r = decayOf(p.tauS, 'tauS');
  const { threshold } = p;
  const fallback = p.fallbackPsp ?? 1 / (4 * p.tauS);
  const rhoMax = p.rhoMax ?? 8;
  const width = p.surrogateWidth ?? 0.2;
  const clamp = p.surrogateClamp ?? 8;
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
  // The values beside the PSPs, made where they are read (a training pass reads none of them).
  const lazy = (make: () => Tensor) => {
    let t: Tensor | undefined;
    return () => (t ??= make());
  };
  const spikes = lazy(() => tf.tensor3d(Float32Array.from(o), [T, B, H]));
  const membrane = lazy(() => tf.tensor3d(Float32Array.from(u), [T, B, H]));
  const deltaU = lazy(() => tf.tensor3d(Float32Array.from(du), [T, B, H]));
  return {
    psp,
    get spikes() {
      return spikes();
    },
    get membrane() {
      return membrane();
    },
    get deltaU() {
      return deltaU();
    },
  };
}

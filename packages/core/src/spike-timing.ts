import { tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';

/**
 * TSSL-BP's neuron (Zhang & Li, "Temporal Spike Sequence Learning via Backpropagation for Deep
 * Spiking Neural Networks", NeurIPS 2020), as the authors' code computes it (stonezwr/TSSL-BP at
 * `ffaac71`, `layers/tsslbp.py`), and the gradient their rule gives it. Time constants are in steps
 * (θ_m = 1/τ_m, r = 1 − 1/τ_s). For the input current x_t of every step, from u = a = 0:
 *
 *     Δu_t = x_t − θ_m·u^post_{t−1}       u_t = u^post_{t−1} + Δu_t     (u_t: before the reset)
 *     o_t  = [u_t > ϑ]                    u^post_t = u_t·(1 − o_t)      (reset to zero; no refractory period)
 *     a_t  = r·a_{t−1} + o_t/τ_s          (the PSP: what the layer passes on)
 */
export interface SpikeTimingParams {
  /** τ_m, the membrane's time constant in steps (≥ 1). */
  readonly tauM: number;
  /** τ_s, the synaptic (PSP) filter's time constant in steps (≥ 1). */
  readonly tauS: number;
  /** ϑ, the firing threshold. */
  readonly threshold: number;
  /** The PSP below which a step's gradient is the surrogate fallback (default 1/(4τ_s), the authors'). */
  readonly fallbackPsp?: number;
  /** The cap of 1/Δu at a spike (default 8). */
  readonly rhoMax?: number;
  /** The fallback's sigmoid width (default 0.2) and the clamp of its argument (default 8). */
  readonly surrogateWidth?: number;
  readonly surrogateClamp?: number;
}

/** A layer of TSSL-BP's neurons over a whole sequence. */
export interface SpikeTimingSequence {
  /** The PSPs a_t, `[T, B, H]`: the layer's output, whose gradient is TSSL-BP's. */
  readonly psp: Tensor;
  /** The spikes o_t (values; made on first read, then the reader's to dispose). */
  readonly spikes: Tensor;
  /** The membrane u_t before the reset (values; made on first read, then the reader's to dispose). */
  readonly membrane: Tensor;
  /** The increments Δu_t (values; made on first read, then the reader's to dispose). */
  readonly deltaU: Tensor;
}

/** `1 − 1/τ` after checking τ ≥ 1 (a step is the unit of time). */
function decayOf(tau: number, what: string): number {
  if (!(Number.isFinite(tau) && tau >= 1))
    throw new SpikeflowError('CONFIG_INVALID', `spikeTimingSequence: ${what} must be a number of steps >= 1, got ${tau}`);
  return 1 - 1 / tau;
}

/** The constants of {@link SpikeTimingParams} as the passes use them (τ checked, defaults filled in). */
export interface SpikeTimingConstants {
  /** The membrane's decay 1 − θ_m, and θ_m = 1 − leak (exactly as the reference computes it). */
  readonly leak: number;
  readonly thetaM: number;
  /** The PSP filter's decay r = 1 − 1/τ_s. */
  readonly r: number;
  readonly threshold: number;
  readonly fallback: number;
  readonly rhoMax: number;
  readonly width: number;
  readonly clamp: number;
}

/** {@link SpikeTimingParams} as the two passes use them, for a kernel that runs them elsewhere. */
export function spikeTimingConstants(p: SpikeTimingParams): SpikeTimingConstants {
  const leak = decayOf(p.tauM, 'tauM');
  return {
    leak,
    thetaM: 1 - leak,
    r: decayOf(p.tauS, 'tauS'),
    threshold: p.threshold,
    fallback: p.fallbackPsp ?? 1 / (4 * p.tauS),
    rhoMax: p.rhoMax ?? 8,
    width: p.surrogateWidth ?? 0.2,
    clamp: p.surrogateClamp ?? 8,
  };
}

/**
 * A {@link SpikeTimingSequence} from its PSPs and the forward pass's values `[T, B, H]` (time-major
 * arrays): the spikes, membrane and Δu tensors made on first read.
 */
export function spikeTimingResult(
  psp: Tensor,
  shape: readonly [number, number, number],
  o: Uint8Array,
  u: Float64Array,
  du: Float64Array,
): SpikeTimingSequence {
  const lazy = (values: ArrayLike<number>) => {
    let t: Tensor | undefined;
    return () => (t ??= tf.tensor3d(Float32Array.from(values), [...shape]));
  };
  const [spikes, membrane, deltaU] = [lazy(o), lazy(u), lazy(du)];
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

/**
 * TSSL-BP's neurons over a whole sequence of input currents `x [T, B, H]` (see
 * {@link SpikeTimingParams}). The gradient of the PSPs is not a derivative: it is the authors'
 * backward pass, which maps g_t = ∂L/∂a_t to δ_t = ∂L/∂x_t per neuron (in closed form, O(T)):
 *
 *     e_t = g_t/τ_s + r·e_{t+1}                                  (e_T = 0: the PSP kernel's reach)
 *     G_t = ρ_t·(e_t + θ_m·u_t·G_{t+1})   at a spike, ρ_t = min(1/Δu_t, ρ_max)
 *                                          (the inter-neuron term through ∂t_spike/∂u, and the intra-neuron one through the reset)
 *     G_t = (1 − θ_m)·G_{t+1}              between spikes (the leak path to the next spike)     (G_T = 0)
 *     δ_t = G_t                            where a_t ≥ the fallback PSP
 *     δ_t = σ'((u_t − ϑ)/w)/w · e_t         elsewhere (before the first spike, a silent neuron)
 *
 * with σ' the logistic sigmoid's derivative and its argument clamped to ±8. The forward pass runs
 * in float64 on the main thread (a reference; the layers are small next to the products around
 * them).
 */
export function spikeTimingSequence(x: Tensor, p: SpikeTimingParams): SpikeTimingSequence {
  if (x.rank !== 3) throw new SpikeflowError('SHAPE_MISMATCH', `spikeTimingSequence: expected input currents x [T, B, H], got [${x.shape}]`);
  const [T, B, H] = x.shape as [number, number, number];
  const { leak, thetaM, r, threshold, fallback, rhoMax, width, clamp } = spikeTimingConstants(p);
  const n = B * H;
  const u = new Float64Array(T * n);
  const du = new Float64Array(T * n);
  const o = new Uint8Array(T * n);
  const a = new Float64Array(T * n);
  // Step by step over all B·H neurons at once, so that every pass reads and writes memory in order.
  const forward = (xs: Float32Array) => {
    const post = new Float64Array(n);
    const psp = new Float64Array(n);
    for (let t = 0, j = 0; t < T; t++) {
      for (let i = 0; i < n; i++, j++) {
        const d = xs[j]! - thetaM * post[i]!;
        const ut = post[i]! + d;
        const fired = ut > threshold;
        psp[i] = r * psp[i]! + (fired ? 1 - r : 0);
        du[j] = d;
        u[j] = ut;
        o[j] = fired ? 1 : 0;
        a[j] = psp[i]!;
        post[i] = fired ? 0 : ut;
      }
    }
  };
  const backward = (g: Float32Array): Float32Array => {
    const delta = new Float32Array(T * n);
    const e = new Float64Array(n);
    const G = new Float64Array(n);
    for (let t = T - 1; t >= 0; t--) {
      for (let i = 0, j = t * n; i < n; i++, j++) {
        const et = g[j]! * (1 - r) + r * e[i]!;
        e[i] = et;
        const Gt = o[j] ? Math.min(1 / du[j]!, rhoMax) * (et + thetaM * u[j]! * G[i]!) : leak * G[i]!;
        G[i] = Gt;
        if (a[j]! >= fallback) delta[j] = Gt;
        else {
          const f = Math.exp(Math.min(clamp, Math.max(-clamp, (threshold - u[j]!) / width)));
          delta[j] = (f / ((1 + f) * (1 + f) * width)) * et;
        }
      }
    }
    return delta;
  };
  const op = tf.customGrad(((xin: Tensor) => {
    forward(xin.dataSync() as Float32Array);
    return {
      value: tf.tensor3d(Float32Array.from(a), [T, B, H]),
      gradFunc: (dy: Tensor) => tf.tensor3d(backward(dy.dataSync() as Float32Array), [T, B, H]),
    };
  }) as never) as unknown as (x: Tensor) => Tensor;
  return spikeTimingResult(op(x), [T, B, H], o, u, du);
}

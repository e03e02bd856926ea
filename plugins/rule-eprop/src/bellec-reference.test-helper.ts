/**
 * An independent float64 implementation of e-prop, stepped forward one time step at a time with
 * the per-synapse traces exactly as Bellec et al. (Nature Communications 11:3625, 2020, Methods)
 * write them, translated to spikeflow's convention (x_t enters v_t, s_{t−1} enters through W_rec):
 *
 *     z̄_t = β·z̄_{t−1} + pre_t                      (pre = x_t, s_{t−1}, or 1 for the bias)
 *     ALIF: ε^a_t = ψ_{t−1}·z̄_{t−1} + (ρ − ψ_{t−1}·β_a)·ε^a_{t−1}
 *     e_t = ψ_t·(z̄_t − β_a·ε^a_t)                   (LIF: ψ_t·z̄_t)
 *     F_κ(e)_t = κ·F_κ(e)_{t−1} + e_t
 *     L_t = (∂E_t/∂y_t)·Bᵀ,  ∇W = Σ_t L_t·F_κ(e)_t  (+ Σ_t r·e_t for the rate regulariser)
 *
 * Plain nested loops over plain arrays, nothing shared with the rule: a test helper, not shipped.
 * Only for the reset detached from the gradient (the traces above ignore the reset's derivative).
 */
export interface RefProblem {
  readonly T: number;
  readonly B: number;
  readonly I: number;
  readonly H: number;
  readonly O: number;
  readonly neuron: 'lif' | 'alif';
  readonly beta: number;
  readonly threshold: number;
  readonly rho: number;
  readonly betaA: number;
  readonly kappa: number;
  readonly W: number[][];
  readonly b: number[];
  readonly Wrec?: number[][];
  readonly Wout: number[][];
  readonly bout: number[];
  /** `[T][B][I]` */
  readonly x: number[][][];
  readonly loss: 'ce_every_step' | 'mse_every_step';
  readonly labels?: number[];
  /** `[T][B][O]` for mse_every_step. */
  readonly targets?: number[][][];
  /** The surrogate derivative ψ(v − A). */
  readonly psi: (x: number) => number;
  /** B `[H][O]`; default W_out (symmetric). */
  readonly feedback?: number[][];
  /** Per-neuron coefficient r_j of the rate regulariser's learning signal. */
  readonly reg?: number[];
}

export interface RefResult {
  readonly grads: Record<string, number[]>;
  /** Smallest |v − A| seen: a draw is only usable if float32 reproduces its spikes. */
  readonly margin: number;
  readonly spikeRate: number;
}

const z1 = (n: number): number[] => new Array<number>(n).fill(0);
const z2 = (a: number, b: number): number[][] => Array.from({ length: a }, () => z1(b));
const z3 = (a: number, b: number, c: number): number[][][] => Array.from({ length: a }, () => z2(b, c));

export function bellecEprop(p: RefProblem): RefResult {
  const { T, B, I, H, O, beta, threshold, rho, betaA, kappa } = p;
  const alif = p.neuron === 'alif';
  const fb = p.feedback ?? p.Wout;
  // Presynaptic groups: 0 = input (fan I), 1 = recurrent (fan H), 2 = bias (fan 1).
  const fans = [I, p.Wrec ? H : 0, 1];
  const zbar = fans.map((f) => z2(B, Math.max(f, 1)));
  const zbarPrev = fans.map((f) => z2(B, Math.max(f, 1)));
  const epsA = fans.map((f) => z3(B, Math.max(f, 1), H));
  const fe = fans.map((f) => z3(B, Math.max(f, 1), H));
  const g = fans.map((f) => z2(Math.max(f, 1), H));
  const gWout = z2(H, O);
  const gbout = z1(O);
  let v = z2(B, H);
  let a = z2(B, H);
  let s = z2(B, H);
  let psiPrev = z2(B, H);
  let y = z2(B, O);
  const sbar = z2(B, H);
  let cbar = 0;
  let margin = Infinity;
  let spikes = 0;
  for (let t = 0; t < T; t++) {
    const pre = [p.x[t]!, s, Array.from({ length: B }, () => [1])];
    // ε^a_t from step t−1's ψ and z̄, before z̄ moves on.
    if (alif) {
      for (let gi = 0; gi < 3; gi++) {
        if (!fans[gi]) continue;
        for (let bb = 0; bb < B; bb++)
          for (let i = 0; i < Math.max(fans[gi]!, 1); i++)
            for (let j = 0; j < H; j++) {
              const ps = psiPrev[bb]![j]!;
              epsA[gi]![bb]![i]![j] = ps * zbarPrev[gi]![bb]![i]! + (rho - ps * betaA) * epsA[gi]![bb]![i]![j]!;
            }
      }
    }
    for (let gi = 0; gi < 3; gi++) {
      if (!fans[gi]) continue;
      for (let bb = 0; bb < B; bb++)
        for (let i = 0; i < Math.max(fans[gi]!, 1); i++) {
          zbar[gi]![bb]![i] = beta * zbar[gi]![bb]![i]! + pre[gi]![bb]![i]!;
        }
    }
    const vN = z2(B, H);
    const aN = z2(B, H);
    const sN = z2(B, H);
    const psi = z2(B, H);
    for (let bb = 0; bb < B; bb++)
      for (let j = 0; j < H; j++) {
        let cur = p.b[j]!;
        for (let i = 0; i < I; i++) cur += p.x[t]![bb]![i]! * p.W[i]![j]!;
        if (p.Wrec) for (let i = 0; i < H; i++) cur += s[bb]![i]! * p.Wrec[i]![j]!;
        aN[bb]![j] = alif ? rho * a[bb]![j]! + s[bb]![j]! : 0;
        vN[bb]![j] = beta * v[bb]![j]! + cur - threshold * s[bb]![j]!;
        const d = vN[bb]![j]! - (threshold + (alif ? betaA * aN[bb]![j]! : 0));
        margin = Math.min(margin, Math.abs(d));
        sN[bb]![j] = d > 0 ? 1 : 0;
        spikes += sN[bb]![j]!;
        psi[bb]![j] = p.psi(d);
      }
    // Readout, loss gradient, learning signal.
    const yN = z2(B, O);
    const dEdy = z2(B, O);
    for (let bb = 0; bb < B; bb++) {
      for (let k = 0; k < O; k++) {
        let d = p.bout[k]!;
        for (let j = 0; j < H; j++) d += sN[bb]![j]! * p.Wout[j]![k]!;
        yN[bb]![k] = kappa * y[bb]![k]! + d;
      }
      if (p.loss === 'ce_every_step') {
        const mx = Math.max(...yN[bb]!);
        const ex = yN[bb]!.map((u) => Math.exp(u - mx));
        const z = ex.reduce((u, w) => u + w, 0);
        for (let k = 0; k < O; k++) dEdy[bb]![k] = (ex[k]! / z - (p.labels![bb] === k ? 1 : 0)) / (T * B);
      } else {
        for (let k = 0; k < O; k++) dEdy[bb]![k] = (2 * (yN[bb]![k]! - p.targets![t]![bb]![k]!)) / (T * B * O);
      }
    }
    cbar = kappa * cbar + 1;
    for (let bb = 0; bb < B; bb++)
      for (let j = 0; j < H; j++) {
        sbar[bb]![j] = kappa * sbar[bb]![j]! + sN[bb]![j]!;
        for (let k = 0; k < O; k++) gWout[j]![k] = gWout[j]![k]! + sbar[bb]![j]! * dEdy[bb]![k]!;
      }
    for (let k = 0; k < O; k++) for (let bb = 0; bb < B; bb++) gbout[k] = gbout[k]! + cbar * dEdy[bb]![k]!;
    for (let gi = 0; gi < 3; gi++) {
      if (!fans[gi]) continue;
      for (let bb = 0; bb < B; bb++)
        for (let j = 0; j < H; j++) {
          let L = 0;
          for (let k = 0; k < O; k++) L += dEdy[bb]![k]! * fb[j]![k]!;
          const r = p.reg?.[j] ?? 0;
          for (let i = 0; i < Math.max(fans[gi]!, 1); i++) {
            const e = psi[bb]![j]! * (zbar[gi]![bb]![i]! - (alif ? betaA * epsA[gi]![bb]![i]![j]! : 0));
            fe[gi]![bb]![i]![j] = kappa * fe[gi]![bb]![i]![j]! + e;
            g[gi]![i]![j] = g[gi]![i]![j]! + L * fe[gi]![bb]![i]![j]! + r * e;
          }
        }
      for (let bb = 0; bb < B; bb++) for (let i = 0; i < Math.max(fans[gi]!, 1); i++) zbarPrev[gi]![bb]![i] = zbar[gi]![bb]![i]!;
    }
    v = vN;
    a = aN;
    s = sN;
    psiPrev = psi;
    y = yN;
  }
  const grads: Record<string, number[]> = {
    'layers.0.W': g[0]!.flat(),
    'layers.0.b': g[2]!.flat(),
    'readout.W': gWout.flat(),
    'readout.b': gbout,
  };
  if (p.Wrec) grads['layers.0.W_rec'] = g[1]!.flat();
  return { grads, margin, spikeRate: spikes / (T * B * H) };
}

// e-prop's eligibility traces of an integrate-and-fire layer (core's
// `spikeflow.integrateFireEligibility`; Bellec et al. 2020, "A solution to the learning dilemma for
// recurrent networks of spiking neurons", Nature Communications 11:3625), window by window: the
// layer's forward pass with the surrogate derivatives ψ_t, the per-neuron reverse sweeps that turn
// a window's learning signals into coefficients, and the one pass per window over the per-synapse
// traces. Wrapped by src/eprop.ts, which also states the algebra. Pointers are byte offsets into
// the module's memory; float32 arithmetic.

@inline function at(base: usize, i: i32): usize {
  return base + (<usize>i << 2);
}

/**
 * The layer through `n` steps for batch rows `[b0, b1)` (rows are independent: a thread can take
 * each range), in the float32 operations of the fused forward pass (`lifForward`):
 *
 *     I_t = c_t + s_{t−1}·W_rec                 (W_rec's rows of the active s_{t−1}, in index order)
 *     v_t = (β·v_{t−1} + I_t) − ϑ·s_{t−1}
 *     a_t = ρ·a_{t−1} + s_{t−1},  A_t = ϑ + β_a·a_t   (with an adaptive threshold; else A_t = ϑ)
 *     s_t = v_t > A_t
 *
 * `C [n, B, H]` the input currents (x_t·W + b); `S [n + 1, B, H]`: `S[0]` the spikes before the
 * window, `S[t + 1]` written; `v`, `a` `[B, H]` the state before (`a` = 0: no adaptation), left
 * at the last step's; `w` W_rec `[H, H]` (0: none); `beta`, `rho` H values (`perNeuron…`) or
 * one. Writes `X [n, B, H]`: ψ_t = 1/(1 + slope·|v_t − A_t|)² where `slope` > 0 (core's fast
 * sigmoid), else v_t − A_t (the caller applies the surrogate). `rec` is scratch, `[B, H]`. Also
 * writes, per batch row and neuron, `F [B, H]` = Σ_t κ^{n−1−t}·s_t (as F ← κ·F + s_t) and
 * `cnt [B, H]` = Σ_t s_t.
 */
export function epropForward(
  C: usize,
  S: usize,
  v: usize,
  a: usize,
  w: usize,
  beta: usize,
  perNeuron: bool,
  rho: usize,
  perNeuronRho: bool,
  strength: f32,
  thr: f32,
  slope: f32,
  n: i32,
  B: i32,
  H: i32,
  b0: i32,
  b1: i32,
  X: usize,
  rec: usize,
  kappa: f32,
  F: usize,
  cnt: usize,
): void {
  const H4 = H & ~3;
  const BH = <usize>B * <usize>H;
  const kappav = f32x4.splat(kappa);
  const one = f32x4.splat(1);
  const zero = f32x4.splat(0);
  const thrv = f32x4.splat(thr);
  const kv = f32x4.splat(strength);
  const sv = f32x4.splat(slope);
  const beta0 = load<f32>(beta);
  const betav = f32x4.splat(beta0);
  const rho0 = a != 0 ? load<f32>(rho) : 0;
  const rhov = f32x4.splat(rho0);
  for (let b = b0; b < b1; b++) {
    const row = <usize>b * <usize>H;
    const vr = at(v, <i32>row);
    const ar = a != 0 ? at(a, <i32>row) : 0;
    const rr = at(rec, <i32>row);
    const fr = at(F, <i32>row);
    const cr0 = at(cnt, <i32>row);
    memory.fill(fr, 0, <usize>H << 2);
    memory.fill(cr0, 0, <usize>H << 2);
    for (let t = 0; t < n; t++) {
      const o = (<usize>t * BH + row) << 2;
      const sp = S + o;
      const so = sp + (BH << 2);
      const cr = C + o;
      const xr = X + o;
      // The recurrent currents: W_rec's rows of the neurons that spiked, added in index order
      // from 0 (each column's sum in the order of the fused kernel's), and none without a spike.
      let hasRec = false;
      if (w != 0) {
        let k = 0;
        for (; k < H4; k += 4) {
          let m = i32x4.bitmask(f32x4.ne(v128.load(at(sp, k)), zero));
          while (m != 0) {
            const i = k + ctz(m);
            if (!hasRec) memory.fill(rr, 0, <usize>H << 2);
            hasRec = true;
            addRow(rr, load<f32>(at(sp, i)), w + ((<usize>i * <usize>H) << 2), H);
            m &= m - 1;
          }
        }
        for (; k < H; k++) {
          const sk = load<f32>(at(sp, k));
          if (sk != 0) {
            if (!hasRec) memory.fill(rr, 0, <usize>H << 2);
            hasRec = true;
            addRow(rr, sk, w + ((<usize>k * <usize>H) << 2), H);
          }
        }
      }
      for (let j = 0; j < H4; j += 4) {
        let cur = v128.load(at(cr, j));
        if (hasRec) cur = f32x4.add(cur, v128.load(at(rr, j)));
        const s = v128.load(at(sp, j));
        const bv = perNeuron ? v128.load(at(beta, j)) : betav;
        const vn = f32x4.sub(f32x4.add(f32x4.mul(bv, v128.load(at(vr, j))), cur), f32x4.mul(thrv, s));
        let A = thrv;
        if (a != 0) {
          const rv = perNeuronRho ? v128.load(at(rho, j)) : rhov;
          const an = f32x4.add(f32x4.mul(rv, v128.load(at(ar, j))), s);
          v128.store(at(ar, j), an);
          A = f32x4.add(thrv, f32x4.mul(kv, an));
        }
        v128.store(at(vr, j), vn);
        const sn = v128.and(f32x4.gt(vn, A), one);
        v128.store(at(so, j), sn);
        v128.store(at(fr, j), f32x4.add(f32x4.mul(kappav, v128.load(at(fr, j))), sn));
        v128.store(at(cr0, j), f32x4.add(v128.load(at(cr0, j)), sn));
        let x = f32x4.sub(vn, A);
        if (slope > 0) {
          const d = f32x4.add(one, f32x4.mul(sv, f32x4.abs(x)));
          x = f32x4.div(one, f32x4.mul(d, d));
        }
        v128.store(at(xr, j), x);
      }
      for (let j = H4; j < H; j++) {
        let cur = load<f32>(at(cr, j));
        if (hasRec) cur += load<f32>(at(rr, j));
        const s = load<f32>(at(sp, j));
        const bj = perNeuron ? load<f32>(at(beta, j)) : beta0;
        const vn: f32 = bj * load<f32>(at(vr, j)) + cur - thr * s;
        let A = thr;
        if (a != 0) {
          const rj = perNeuronRho ? load<f32>(at(rho, j)) : rho0;
          const an: f32 = rj * load<f32>(at(ar, j)) + s;
          store<f32>(at(ar, j), an);
          A = thr + strength * an;
        }
        store<f32>(at(vr, j), vn);
        const sn: f32 = vn > A ? 1 : 0;
        store<f32>(at(so, j), sn);
        store<f32>(at(fr, j), kappa * load<f32>(at(fr, j)) + sn);
        store<f32>(at(cr0, j), load<f32>(at(cr0, j)) + sn);
        let x: f32 = vn - A;
        if (slope > 0) {
          const d: f32 = 1 + slope * abs<f32>(x);
          x = 1 / (d * d);
        }
        store<f32>(at(xr, j), x);
      }
    }
  }
}

/** `dst [H] += s·src [H]`. */
@inline function addRow(dst: usize, s: f32, src: usize, H: i32): void {
  const H4 = H & ~3;
  const sv = f32x4.splat(s);
  let j = 0;
  for (; j < H4; j += 4) v128.store(at(dst, j), f32x4.add(v128.load(at(dst, j)), f32x4.mul(sv, v128.load(at(src, j)))));
  for (; j < H; j++) store<f32>(at(dst, j), load<f32>(at(dst, j)) + s * load<f32>(at(src, j)));
}

/** Neurons per lane block of the traces' layout: 16 floats, one cache line. */
const L = 16;

/**
 * The per-neuron reverse sweeps of one window, for batch rows `[b0, b1)` (rows are independent).
 * A per-synapse quantity J = Σ_u c_u·e_u + d_V·V_n + d_E·E_n of the window's n steps is linear in
 * the presynaptic activity of each step and in the traces V_0, E_0 carried in; each output `x`
 * (its own c_u and d) gets, per neuron, the coefficient of pre_u at every step and those of V_0
 * and E_0. Outputs, in order: the gradient (c_u = M_u, the learning signal `M [n, B, H]`), then
 * with `X` > 1 F (c_u = κ^{n−1−u}), V (d_V = 1, with `withV`) and E (d_E = 1, with `withE`).
 * From the last step down, with g_V, g_E the adjoints of V_{u+1}, E_{u+1}:
 *
 *     g_e = c_u − ϑ_r·g_V + g_E        (ϑ_r: the reset's ϑ where it is attached, else 0)
 *     AZ_u = β·g_V + ψ_u·g_e           (the adjoint of ε^v_u, which pre_u enters)
 *     g_E ← ρ·g_E − β_a·ψ_u·g_e,   g_V ← AZ_u
 *
 * Written in blocks of {@link L} neurons (`LB` of them; the lanes past H hold zeros), as
 * {@link epropTraces} reads them: `AZ [B, LB, n, X, L]`, `COEF [B, LB, X, 2, L]` (the
 * coefficients of V_0 and E_0), and `Ct [B, LB, L]` the carried signal `C [B, H]`.
 */
export function epropSweep(
  psi: usize,
  M: usize,
  C: usize,
  n: i32,
  B: i32,
  H: i32,
  LB: i32,
  b0: i32,
  b1: i32,
  beta: usize,
  perNeuron: bool,
  rho: usize,
  perNeuronRho: bool,
  strength: f32,
  thrR: f32,
  kappa: f32,
  X: i32,
  withV: bool,
  withE: bool,
  AZ: usize,
  COEF: usize,
  Ct: usize,
): void {
  const H4 = H & ~3;
  const BH = <usize>B * <usize>H;
  const XL = <usize>X * L;
  const nXL = <usize>n * XL;
  const zero = f32x4.splat(0);
  const trv = f32x4.splat(thrR);
  const nsv = f32x4.splat(-strength);
  const beta0 = load<f32>(beta);
  const betav = f32x4.splat(beta0);
  const rho0 = withE ? load<f32>(rho) : 0;
  const rhov = f32x4.splat(rho0);
  const Hp = LB * L;
  for (let b = b0; b < b1; b++) {
    const row = <usize>b * <usize>H;
    // The padding lanes of the last block: zeros.
    if (Hp > H) {
      const lb = <usize>(LB - 1);
      for (let u = 0; u < n; u++) {
        for (let x = 0; x < X; x++) memory.fill(AZ + ((((<usize>b * <usize>LB + lb) * <usize>n + <usize>u) * XL + <usize>x * L + <usize>(H - (LB - 1) * L)) << 2), 0, <usize>(Hp - H) << 2);
      }
      for (let q = 0; q < 2 * X; q++) memory.fill(COEF + ((((<usize>b * <usize>LB + lb) * <usize>X * 2 + <usize>q) * L + <usize>(H - (LB - 1) * L)) << 2), 0, <usize>(Hp - H) << 2);
      memory.fill(Ct + (((<usize>b * <usize>LB + lb) * L + <usize>(H - (LB - 1) * L)) << 2), 0, <usize>(Hp - H) << 2);
    }
    for (let j = 0; j < H; j++) store<f32>(Ct + (((<usize>b * <usize>LB + <usize>(j / L)) * L + <usize>(j % L)) << 2), load<f32>(C + ((row + <usize>j) << 2)));
    for (let x = 0; x < X; x++) {
      // Which output: 0 the gradient, 1 F, then V (withV), then E (withE).
      const kind = x < 2 ? x : withV && x == 2 ? 2 : 3;
      for (let j = 0; j < H4; j += 4) {
        // Lanes j … j + 3 lie in one block (L is a multiple of 4).
        const blockAt = <usize>b * <usize>LB + <usize>(j / L);
        const lane = <usize>(j % L);
        const az = AZ + ((blockAt * nXL + <usize>x * L + lane) << 2);
        const cf = COEF + (((blockAt * <usize>X + <usize>x) * 2 * L + lane) << 2);
        let gV = kind == 2 ? f32x4.splat(1) : zero;
        let gE = kind == 3 ? f32x4.splat(1) : zero;
        let kp: f32 = 1;
        const bv = perNeuron ? v128.load(at(beta, j)) : betav;
        const rv = withE && perNeuronRho ? v128.load(at(rho, j)) : rhov;
        for (let u = n - 1; u >= 0; u--) {
          const o = (<usize>u * BH + row + <usize>j) << 2;
          const ps = v128.load(psi + o);
          let ge = f32x4.sub(gE, f32x4.mul(trv, gV));
          if (kind == 0) ge = f32x4.add(v128.load(M + o), ge);
          else if (kind == 1) ge = f32x4.add(f32x4.splat(kp), ge);
          const gv = f32x4.add(f32x4.mul(bv, gV), f32x4.mul(ps, ge));
          v128.store(az + ((<usize>u * XL) << 2), gv);
          if (withE) gE = f32x4.add(f32x4.mul(rv, gE), f32x4.mul(nsv, f32x4.mul(ps, ge)));
          gV = gv;
          kp *= kappa;
        }
        v128.store(cf, gV);
        v128.store(cf + (L << 2), gE);
      }
      for (let j = H4; j < H; j++) {
        const blockAt = <usize>b * <usize>LB + <usize>(j / L);
        const lane = <usize>(j % L);
        const az = AZ + ((blockAt * nXL + <usize>x * L + lane) << 2);
        const cf = COEF + (((blockAt * <usize>X + <usize>x) * 2 * L + lane) << 2);
        let gV: f32 = kind == 2 ? 1 : 0;
        let gE: f32 = kind == 3 ? 1 : 0;
        let kp: f32 = 1;
        const bj = perNeuron ? load<f32>(at(beta, j)) : beta0;
        const rj = withE && perNeuronRho ? load<f32>(at(rho, j)) : rho0;
        for (let u = n - 1; u >= 0; u--) {
          const o = (<usize>u * BH + row + <usize>j) << 2;
          const ps = load<f32>(psi + o);
          let ge: f32 = gE - thrR * gV;
          if (kind == 0) ge = load<f32>(M + o) + ge;
          else if (kind == 1) ge = kp + ge;
          const gv: f32 = bj * gV + ps * ge;
          store<f32>(az + ((<usize>u * XL) << 2), gv);
          if (withE) gE = rj * gE + -strength * (ps * ge);
          gV = gv;
          kp *= kappa;
        }
        store<f32>(cf, gV);
        store<f32>(cf + (L << 2), gE);
      }
    }
  }
}

/**
 * The events of a window `[n, B, C]` (time-major) by column, from its events by row (`ptr`, `cols`,
 * `vals`: compressed rows, row w·B + b for step w of batch row b; see `events` in assembly/snn.ts):
 * each column's in the order of batch row, then step, as row r = b·n + w (a counting sort).
 * Writes `cptr [C + 1]`, `crows` and `cvals` (as many as the events).
 */
export function epropColumns(ptr: usize, cols: usize, vals: usize, n: i32, B: i32, C: i32, cptr: usize, crows: usize, cvals: usize): void {
  const nnz = load<i32>(at(ptr, n * B));
  memory.fill(cptr, 0, (<usize>C + 1) << 2);
  for (let k = 0; k < nnz; k++) {
    const c = at(cptr, load<i32>(at(cols, k)) + 1);
    store<i32>(c, load<i32>(c) + 1);
  }
  for (let i = 0; i < C; i++) store<i32>(at(cptr, i + 1), load<i32>(at(cptr, i + 1)) + load<i32>(at(cptr, i)));
  // cptr[i] serves as column i's cursor, then is shifted back.
  for (let b = 0; b < B; b++) {
    for (let w = 0; w < n; w++) {
      const row = w * B + b;
      const r = b * n + w;
      const k1 = load<i32>(at(ptr, row + 1));
      for (let k = load<i32>(at(ptr, row)); k < k1; k++) {
        const c = at(cptr, load<i32>(at(cols, k)));
        const d = load<i32>(c);
        store<i32>(at(crows, d), r);
        store<f32>(at(cvals, d), load<f32>(at(vals, k)));
        store<i32>(c, d + 1);
      }
    }
  }
  for (let i = C; i > 0; i--) store<i32>(at(cptr, i), load<i32>(at(cptr, i - 1)));
  store<i32>(cptr, 0);
}

/**
 * One window's pass over the per-synapse traces of one presynaptic group, its columns
 * (presynaptic units) `[i0, i1)` (columns are independent, and each column's gradient row is
 * summed over the batch in the same order on any number of threads). The traces lie in blocks of
 * {@link L} neurons, `P [B, LB, fan, K, L]` (the group's columns from `off`): F, then V with
 * `withV`, then E with `withE`; with the presynaptic trace instead, V = β·z̄ from `Z [B, fan]`
 * (`Z` at the group's first column). For each batch row b, block of neurons and column i, over the
 * events of (i, b) (`ptr`, `rows`, `vals` as {@link epropColumns} lists them; `cursor` scratch
 * `[2·cols]`):
 *
 *     grad[i] += C[b]·F + Φ_G,V[b]·V + Φ_G,E[b]·E + Σ_events val·AZ_G[b, w]
 *     F ← κⁿ·F + Φ_F,V·V + Φ_F,E·E + Σ_events val·AZ_F[b, w]      (with `advance`; V and E
 *     z̄ ← βⁿ·z̄ + Σ_events val·β^{n−1−w}                            alike, without the κⁿ term)
 *
 * reading and writing each trace once, in the order they lie, with a block's coefficients of
 * every step (`AZ`) in the first cache. `carry` = false: no traces carried in yet (taken as 0).
 * `Ct`, `COEF` and `AZ` as {@link epropSweep} leaves them (`X` outputs), `betaPow [n]` the
 * β^{n−1−w}. Sums into `gt [LB, cols, L]` (scratch), then writes `grad [cols, H]` rows `[i0, i1)`.
 */
export function epropTraces(
  ptr: usize,
  rows: usize,
  vals: usize,
  cursor: usize,
  cols: i32,
  i0: i32,
  i1: i32,
  n: i32,
  B: i32,
  H: i32,
  LB: i32,
  P: usize,
  fan: i32,
  off: i32,
  K: i32,
  Z: usize,
  beta: f32,
  betaN: f32,
  betaPow: usize,
  kappaN: f32,
  Ct: usize,
  COEF: usize,
  AZ: usize,
  X: i32,
  withV: bool,
  withE: bool,
  carry: bool,
  advance: bool,
  gt: usize,
  grad: usize,
): void {
  for (let lb = 0; lb < LB; lb++) memory.fill(gt + (((<usize>lb * <usize>cols + <usize>i0) * L) << 2), 0, (<usize>(i1 - i0) * L) << 2);
  for (let i = i0; i < i1; i++) store<i32>(at(cursor, i), load<i32>(at(ptr, i)));
  const steady = carry && advance;
  for (let b = 0; b < B; b++) {
    // The events of (i, b): the next ones of column i, up to the first of a later batch row.
    const next = (b + 1) * n;
    for (let i = i0; i < i1; i++) {
      const kEnd = load<i32>(at(ptr, i + 1));
      let k1 = load<i32>(at(cursor, i));
      while (k1 < kEnd && load<i32>(at(rows, k1)) < next) k1++;
      store<i32>(at(cursor, cols + i), k1);
    }
    for (let lb = 0; lb < LB; lb++) {
      // The loop specialised on which traces there are and, for the windows between the first
      // and the last, on carry and advance: the flags are constants once inlined.
      if (steady) {
        if (withV && withE) traceBlock(rows, vals, cursor, cols, i0, i1, b, lb, n, LB, P, fan, off, K, Z, beta, kappaN, Ct, COEF, AZ, X, true, true, true, true, gt);
        else if (withV) traceBlock(rows, vals, cursor, cols, i0, i1, b, lb, n, LB, P, fan, off, K, Z, beta, kappaN, Ct, COEF, AZ, X, true, false, true, true, gt);
        else if (withE) traceBlock(rows, vals, cursor, cols, i0, i1, b, lb, n, LB, P, fan, off, K, Z, beta, kappaN, Ct, COEF, AZ, X, false, true, true, true, gt);
        else traceBlock(rows, vals, cursor, cols, i0, i1, b, lb, n, LB, P, fan, off, K, Z, beta, kappaN, Ct, COEF, AZ, X, false, false, true, true, gt);
      } else {
        if (withV && withE) traceBlock(rows, vals, cursor, cols, i0, i1, b, lb, n, LB, P, fan, off, K, Z, beta, kappaN, Ct, COEF, AZ, X, true, true, carry, advance, gt);
        else if (withV) traceBlock(rows, vals, cursor, cols, i0, i1, b, lb, n, LB, P, fan, off, K, Z, beta, kappaN, Ct, COEF, AZ, X, true, false, carry, advance, gt);
        else if (withE) traceBlock(rows, vals, cursor, cols, i0, i1, b, lb, n, LB, P, fan, off, K, Z, beta, kappaN, Ct, COEF, AZ, X, false, true, carry, advance, gt);
        else traceBlock(rows, vals, cursor, cols, i0, i1, b, lb, n, LB, P, fan, off, K, Z, beta, kappaN, Ct, COEF, AZ, X, false, false, carry, advance, gt);
      }
    }
    for (let i = i0; i < i1; i++) {
      const k0 = load<i32>(at(cursor, i));
      const k1 = load<i32>(at(cursor, cols + i));
      if (advance && Z != 0) {
        const zAt = at(Z, b * fan + i);
        let z: f32 = carry ? betaN * load<f32>(zAt) : 0;
        for (let k = k0; k < k1; k++) z += load<f32>(at(vals, k)) * load<f32>(at(betaPow, load<i32>(at(rows, k)) - b * n));
        store<f32>(zAt, z);
      }
      store<i32>(at(cursor, i), k1);
    }
  }
  for (let i = i0; i < i1; i++) {
    for (let j = 0; j < H; j++) store<f32>(grad + (((<usize>i * <usize>H) + <usize>j) << 2), load<f32>(gt + ((((<usize>(j / L)) * <usize>cols + <usize>i) * L + <usize>(j % L)) << 2)));
  }
}

/** {@link epropTraces} for batch row `b`, block of neurons `lb` and columns `[i0, i1)`. */
@inline function traceBlock(
  rows: usize,
  vals: usize,
  cursor: usize,
  cols: i32,
  i0: i32,
  i1: i32,
  b: i32,
  lb: i32,
  n: i32,
  LB: i32,
  P: usize,
  fan: i32,
  off: i32,
  K: i32,
  Z: usize,
  beta: f32,
  kappaN: f32,
  Ct: usize,
  COEF: usize,
  AZ: usize,
  X: i32,
  withV: bool,
  withE: bool,
  carry: bool,
  advance: bool,
  gt: usize,
): void {
  const Lb: usize = L << 2;
  const KLb = <usize>K * Lb;
  const XLb = <usize>X * Lb;
  const kn = f32x4.splat(kappaN);
  const zero = f32x4.splat(0);
  // Byte offsets of V and E in a (row, block, column) piece of P, and of each output's coefficients and AZ.
  const offV: usize = Lb;
  const offE: usize = withV ? 2 * Lb : Lb;
  const xV: usize = 2;
  const xE: usize = withV ? 3 : 2;
  const blockAt = <usize>b * <usize>LB + <usize>lb;
  const cf = COEF + blockAt * <usize>X * 2 * Lb;
  const cfF = cf + 2 * Lb;
  const cfV = cf + xV * 2 * Lb;
  const cfE = cf + xE * 2 * Lb;
  const cr = Ct + blockAt * Lb;
  const azb = AZ + blockAt * <usize>n * XLb;
  const first = b * n;
  const base = P + (blockAt * <usize>fan + <usize>off) * KLb;
  const gb = gt + <usize>lb * <usize>cols * Lb;
  for (let i = i0; i < i1; i++) {
    const blk = base + <usize>i * KLb;
    const g = gb + <usize>i * Lb;
    const k0 = load<i32>(at(cursor, i));
    const k1 = load<i32>(at(cursor, cols + i));
    if (!carry && k0 == k1) {
      if (advance) memory.fill(blk, 0, KLb);
      continue;
    }
    const zs = f32x4.splat(carry && Z != 0 ? beta * load<f32>(at(Z, b * fan + i)) : 0);
    for (let jo: usize = 0; jo < Lb; jo += 16) {
      let acc = v128.load(g + jo);
      let fn = zero;
      let vn = zero;
      let en = zero;
      if (carry) {
        const f = v128.load(blk + jo);
        const vv = withV ? v128.load(blk + offV + jo) : zs;
        const e = withE ? v128.load(blk + offE + jo) : zero;
        acc = f32x4.add(acc, f32x4.add(f32x4.mul(v128.load(cr + jo), f), f32x4.mul(v128.load(cf + jo), vv)));
        if (withE) acc = f32x4.add(acc, f32x4.mul(v128.load(cf + Lb + jo), e));
        if (advance) {
          fn = f32x4.add(f32x4.mul(kn, f), f32x4.mul(v128.load(cfF + jo), vv));
          if (withE) fn = f32x4.add(fn, f32x4.mul(v128.load(cfF + Lb + jo), e));
          if (withV) {
            vn = f32x4.mul(v128.load(cfV + jo), vv);
            if (withE) vn = f32x4.add(vn, f32x4.mul(v128.load(cfV + Lb + jo), e));
          }
          if (withE) en = f32x4.add(f32x4.mul(v128.load(cfE + jo), vv), f32x4.mul(v128.load(cfE + Lb + jo), e));
        }
      }
      // The window's own steps: each event of (i, b) adds its step's coefficients, in step order.
      for (let k = k0; k < k1; k++) {
        const val = v128.load32_splat(at(vals, k));
        const az = azb + <usize>(load<i32>(at(rows, k)) - first) * XLb + jo;
        acc = f32x4.add(acc, f32x4.mul(val, v128.load(az)));
        if (advance) {
          fn = f32x4.add(fn, f32x4.mul(val, v128.load(az + Lb)));
          if (withV) vn = f32x4.add(vn, f32x4.mul(val, v128.load(az + xV * Lb)));
          if (withE) en = f32x4.add(en, f32x4.mul(val, v128.load(az + xE * Lb)));
        }
      }
      v128.store(g + jo, acc);
      if (advance) {
        v128.store(blk + jo, fn);
        if (withV) v128.store(blk + offV + jo, vn);
        if (withE) v128.store(blk + offE + jo, en);
      }
    }
  }
}

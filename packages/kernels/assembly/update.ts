// Elementwise parameter updates (core's `spikeflow.adamMoments`, `spikeflow.fpttPull`,
// `spikeflow.fpttAnchor` and `spikeflow.fpttAdamStep`): one SIMD pass over a parameter in place of a dozen tfjs ops, each of
// which reads and writes the whole parameter. The float32 operations and their order are those of
// core's composite references (packages/core/src/updates.ts), so the results are the same bits.
// Pointers are byte offsets into the module's memory; the arrays may be any length, and an output
// may be one of the inputs (each entry is read before it is written). Also here: column sums, for
// a sum over a tensor's leading axes. tools/build-wasm.mjs also compiles this file alone into a
// module that imports tfjs-wasm's own memory, where these loops read and write tensors in place.

@inline function at(base: usize, i: i32): usize {
  return base + (<usize>i << 2);
}

/**
 * Adam over `n` entries: `muOut = b1·mu + om1·g`, `nuOut = b2·nu + om2·(g·g)`, and
 * `out = (muOut / c1) / (sqrt(nuOut / c2) + eps)` (`om1` = 1 − β1 and `om2` = 1 − β2 as float32).
 */
export function adamMoments(
  g: usize,
  mu: usize,
  nu: usize,
  n: i32,
  b1: f32,
  om1: f32,
  b2: f32,
  om2: f32,
  c1: f32,
  c2: f32,
  eps: f32,
  out: usize,
  muOut: usize,
  nuOut: usize,
): void {
  const vb1 = f32x4.splat(b1);
  const vom1 = f32x4.splat(om1);
  const vb2 = f32x4.splat(b2);
  const vom2 = f32x4.splat(om2);
  const vc1 = f32x4.splat(c1);
  const vc2 = f32x4.splat(c2);
  const veps = f32x4.splat(eps);
  const n4 = n & ~3;
  for (let i = 0; i < n4; i += 4) {
    const gv = v128.load(at(g, i));
    const m = f32x4.add(f32x4.mul(vb1, v128.load(at(mu, i))), f32x4.mul(vom1, gv));
    const v = f32x4.add(f32x4.mul(vb2, v128.load(at(nu, i))), f32x4.mul(vom2, f32x4.mul(gv, gv)));
    v128.store(at(muOut, i), m);
    v128.store(at(nuOut, i), v);
    v128.store(at(out, i), f32x4.div(f32x4.div(m, vc1), f32x4.add(f32x4.sqrt(f32x4.div(v, vc2)), veps)));
  }
  for (let i = n4; i < n; i++) {
    const gi = load<f32>(at(g, i));
    const m = b1 * load<f32>(at(mu, i)) + om1 * gi;
    const v = b2 * load<f32>(at(nu, i)) + om2 * (gi * gi);
    store<f32>(at(muOut, i), m);
    store<f32>(at(nuOut, i), v);
    store<f32>(at(out, i), m / c1 / (sqrt<f32>(v / c2) + eps));
  }
}

/**
 * FPTT's regularised gradient over `n` entries: `out = g + (alpha·(w − wbar) − scale·shift)`,
 * or without `g` (`hasG` false) `alpha·(w − wbar) − scale·shift`; `scale` 1 leaves `shift` as it is.
 */
export function fpttPull(g: usize, hasG: bool, w: usize, wbar: usize, shift: usize, n: i32, alpha: f32, scale: f32, out: usize): void {
  const va = f32x4.splat(alpha);
  const vs = f32x4.splat(scale);
  const scaled = scale != 1;
  const n4 = n & ~3;
  for (let i = 0; i < n4; i += 4) {
    let sh = v128.load(at(shift, i));
    if (scaled) sh = f32x4.mul(vs, sh);
    let r = f32x4.sub(f32x4.mul(va, f32x4.sub(v128.load(at(w, i)), v128.load(at(wbar, i)))), sh);
    if (hasG) r = f32x4.add(v128.load(at(g, i)), r);
    v128.store(at(out, i), r);
  }
  for (let i = n4; i < n; i++) {
    let sh = load<f32>(at(shift, i));
    if (scaled) sh = scale * sh;
    let r = alpha * (load<f32>(at(w, i)) - load<f32>(at(wbar, i))) - sh;
    if (hasG) r = load<f32>(at(g, i)) + r;
    store<f32>(at(out, i), r);
  }
}

/**
 * FPTT's anchor update (dual form) over `n` entries: `lambdaOut = lambda − alpha·(w − wbar)`, then
 * `wbarOut = (omb·wbar + beta·w) − ba·lambdaOut` (`omb` = 1 − β and `ba` = β/α as float32).
 */
export function fpttAnchor(w: usize, wbar: usize, lambda: usize, n: i32, alpha: f32, omb: f32, beta: f32, ba: f32, wbarOut: usize, lambdaOut: usize): void {
  const va = f32x4.splat(alpha);
  const vomb = f32x4.splat(omb);
  const vb = f32x4.splat(beta);
  const vba = f32x4.splat(ba);
  const n4 = n & ~3;
  for (let i = 0; i < n4; i += 4) {
    const wv = v128.load(at(w, i));
    const old = v128.load(at(wbar, i));
    const l = f32x4.sub(v128.load(at(lambda, i)), f32x4.mul(va, f32x4.sub(wv, old)));
    v128.store(at(lambdaOut, i), l);
    v128.store(at(wbarOut, i), f32x4.sub(f32x4.add(f32x4.mul(vomb, old), f32x4.mul(vb, wv)), f32x4.mul(vba, l)));
  }
  for (let i = n4; i < n; i++) {
    const wi = load<f32>(at(w, i));
    const old = load<f32>(at(wbar, i));
    const l = load<f32>(at(lambda, i)) - alpha * (wi - old);
    store<f32>(at(lambdaOut, i), l);
    store<f32>(at(wbarOut, i), omb * old + beta * wi - ba * l);
  }
}

/**
 * FPTT's whole update (dual form) of `n` entries with Adam, in one pass: the regularised gradient
 * `gt = g + (alpha·(w − wbar) − lambda)` (without `g`, `hasG` false: `alpha·(w − wbar) − lambda`),
 * Adam's moments and direction `u` from `gt` as {@link adamMoments}, the step `wOut = w + u·neglr`
 * (`neglr` = −lr as float32), then the anchor at `wOut` as {@link fpttAnchor}. The float32
 * operations of those passes one after another (core's `fpttAdamStepReference`), in one read of
 * six arrays and one write of five.
 */
export function fpttAdamStep(
  g: usize,
  hasG: bool,
  w: usize,
  wbar: usize,
  lambda: usize,
  mu: usize,
  nu: usize,
  n: i32,
  alpha: f32,
  omb: f32,
  beta: f32,
  ba: f32,
  b1: f32,
  om1: f32,
  b2: f32,
  om2: f32,
  c1: f32,
  c2: f32,
  eps: f32,
  neglr: f32,
  wOut: usize,
  wbarOut: usize,
  lambdaOut: usize,
  muOut: usize,
  nuOut: usize,
): void {
  const va = f32x4.splat(alpha);
  const vomb = f32x4.splat(omb);
  const vb = f32x4.splat(beta);
  const vba = f32x4.splat(ba);
  const vb1 = f32x4.splat(b1);
  const vom1 = f32x4.splat(om1);
  const vb2 = f32x4.splat(b2);
  const vom2 = f32x4.splat(om2);
  const vc1 = f32x4.splat(c1);
  const vc2 = f32x4.splat(c2);
  const veps = f32x4.splat(eps);
  const vlr = f32x4.splat(neglr);
  const n4 = n & ~3;
  for (let i = 0; i < n4; i += 4) {
    const wv = v128.load(at(w, i));
    const old = v128.load(at(wbar, i));
    const l0 = v128.load(at(lambda, i));
    let gt = f32x4.sub(f32x4.mul(va, f32x4.sub(wv, old)), l0);
    if (hasG) gt = f32x4.add(v128.load(at(g, i)), gt);
    const m = f32x4.add(f32x4.mul(vb1, v128.load(at(mu, i))), f32x4.mul(vom1, gt));
    const v = f32x4.add(f32x4.mul(vb2, v128.load(at(nu, i))), f32x4.mul(vom2, f32x4.mul(gt, gt)));
    const u = f32x4.div(f32x4.div(m, vc1), f32x4.add(f32x4.sqrt(f32x4.div(v, vc2)), veps));
    const w2 = f32x4.add(wv, f32x4.mul(u, vlr));
    const l = f32x4.sub(l0, f32x4.mul(va, f32x4.sub(w2, old)));
    v128.store(at(muOut, i), m);
    v128.store(at(nuOut, i), v);
    v128.store(at(wOut, i), w2);
    v128.store(at(lambdaOut, i), l);
    v128.store(at(wbarOut, i), f32x4.sub(f32x4.add(f32x4.mul(vomb, old), f32x4.mul(vb, w2)), f32x4.mul(vba, l)));
  }
  for (let i = n4; i < n; i++) {
    const wi = load<f32>(at(w, i));
    const old = load<f32>(at(wbar, i));
    const l0 = load<f32>(at(lambda, i));
    let gt = alpha * (wi - old) - l0;
    if (hasG) gt = load<f32>(at(g, i)) + gt;
    const m = b1 * load<f32>(at(mu, i)) + om1 * gt;
    const v = b2 * load<f32>(at(nu, i)) + om2 * (gt * gt);
    const w2 = wi + (m / c1 / (sqrt<f32>(v / c2) + eps)) * neglr;
    const l = l0 - alpha * (w2 - old);
    store<f32>(at(muOut, i), m);
    store<f32>(at(nuOut, i), v);
    store<f32>(at(wOut, i), w2);
    store<f32>(at(lambdaOut, i), l);
    store<f32>(at(wbarOut, i), omb * old + beta * w2 - ba * l);
  }
}

/**
 * Column sums of `x` seen as `rows × cols` (row-major): `out[m] = Σ_n x[n·cols + m]`, each a float32
 * sum in row order, four columns at a time. A sum over a tensor's leading axes (a bias's gradient)
 * without the transpose tfjs-wasm's Sum makes first. `out` must not overlap `x`.
 */
export function columnSums(x: usize, rows: i32, cols: i32, out: usize): void {
  const c4 = cols & ~3;
  for (let m = 0; m < cols; m++) store<f32>(at(out, m), 0);
  for (let n = 0; n < rows; n++) {
    const row = x + (<usize>n * <usize>cols << 2);
    for (let m = 0; m < c4; m += 4) v128.store(at(out, m), f32x4.add(v128.load(at(out, m)), v128.load(at(row, m))));
    for (let m = c4; m < cols; m++) store<f32>(at(out, m), load<f32>(at(out, m)) + load<f32>(at(row, m)));
  }
}

/**
 * exp(x) in float32 without lookup tables (the standard library's `Mathf.exp` keeps one in a data
 * segment, which instantiating this module on tfjs' memory would write there): x = n·ln 2 + r with
 * |r| ≤ ln 2 / 2 (ln 2 split in two for the reduction), e^r by its Taylor polynomial to r⁶ (relative
 * error below 2·10⁻⁷), times 2ⁿ made from its bits; x clamped to [−87, 88].
 */
@inline function expf(x: f32): f32 {
  const c = min<f32>(max<f32>(x, -87), 88);
  const n = floor<f32>(c * 1.4426950408889634 + 0.5);
  const r = c - n * 0.693145751953125 - n * 1.428606765330187e-6;
  const p: f32 = 1 + r * (1 + r * (0.5 + r * (0.16666667 + r * (0.041666668 + r * (0.008333334 + r * 0.0013888889)))));
  return p * reinterpret<f32>((<i32>n + 127) << 23);
}

@inline function sigmoid(z: f32): f32 {
  return 1 / (1 + expf(-z));
}

/** {@link expf} on four lanes: the same operations, so the same values. */
@inline function expf4(x: v128): v128 {
  const c = f32x4.min(f32x4.max(x, f32x4.splat(-87)), f32x4.splat(88));
  const n = f32x4.floor(f32x4.add(f32x4.mul(c, f32x4.splat(1.4426950408889634)), f32x4.splat(0.5)));
  const r = f32x4.sub(f32x4.sub(c, f32x4.mul(n, f32x4.splat(0.693145751953125))), f32x4.mul(n, f32x4.splat(1.428606765330187e-6)));
  let p = f32x4.add(f32x4.splat(0.008333334), f32x4.mul(r, f32x4.splat(0.0013888889)));
  p = f32x4.add(f32x4.splat(0.041666668), f32x4.mul(r, p));
  p = f32x4.add(f32x4.splat(0.16666667), f32x4.mul(r, p));
  p = f32x4.add(f32x4.splat(0.5), f32x4.mul(r, p));
  p = f32x4.add(f32x4.splat(1), f32x4.mul(r, p));
  p = f32x4.add(f32x4.splat(1), f32x4.mul(r, p));
  const scale = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23);
  return f32x4.mul(p, scale);
}

@inline function sigmoid4(z: v128): v128 {
  const one = f32x4.splat(1);
  return f32x4.div(one, f32x4.add(one, expf4(f32x4.neg(z))));
}

/**
 * The elementwise part of one LTC-SN step over `n` entries (core's `spikeflow.ltcStep`; the
 * equations in core's `LtcStepParams`): from the gates' pre-activations `zA` (and `zR`, with
 * `adaptive`), the current `cur` and the state before (`u`, and `b`, `s` with `adaptive`), writes
 * the state after (`uOut`, `sOut`, and `bOut` with `adaptive`) and what the backward pass reads:
 * α (`aOut`), ρ (`rOut`, with `adaptive`), v (`vOut`) and v − θ (`xOut`). Float32 in the
 * reference's order; σ(z) = 1 / (1 + exp(−z)) with {@link expf}, four entries at a time.
 */
export function ltcForward(
  zA: usize,
  zR: usize,
  cur: usize,
  u: usize,
  b: usize,
  s: usize,
  n: i32,
  thr: f32,
  k: f32,
  adaptive: bool,
  uOut: usize,
  sOut: usize,
  bOut: usize,
  aOut: usize,
  rOut: usize,
  vOut: usize,
  xOut: usize,
): void {
  const n4 = n & ~3;
  const one = f32x4.splat(1);
  const thrv = f32x4.splat(thr);
  const kv = f32x4.splat(k);
  for (let i = 0; i < n4; i += 4) {
    const a = sigmoid4(v128.load(at(zA, i)));
    let theta = thrv;
    if (adaptive) {
      const r = sigmoid4(v128.load(at(zR, i)));
      const bt = f32x4.add(f32x4.mul(r, v128.load(at(b, i))), f32x4.mul(f32x4.sub(one, r), v128.load(at(s, i))));
      theta = f32x4.add(thrv, f32x4.mul(kv, bt));
      v128.store(at(rOut, i), r);
      v128.store(at(bOut, i), bt);
    }
    const ui = v128.load(at(u, i));
    const v = f32x4.add(ui, f32x4.mul(a, f32x4.sub(v128.load(at(cur, i)), ui)));
    const x = f32x4.sub(v, theta);
    const sp = v128.and(f32x4.gt(x, f32x4.splat(0)), one);
    v128.store(at(aOut, i), a);
    v128.store(at(vOut, i), v);
    v128.store(at(xOut, i), x);
    v128.store(at(sOut, i), sp);
    v128.store(at(uOut, i), f32x4.mul(f32x4.sub(one, sp), v));
  }
  for (let i = n4; i < n; i++) {
    const a = sigmoid(load<f32>(at(zA, i)));
    let theta = thr;
    if (adaptive) {
      const r = sigmoid(load<f32>(at(zR, i)));
      const bt = r * load<f32>(at(b, i)) + (1 - r) * load<f32>(at(s, i));
      theta = thr + k * bt;
      store<f32>(at(rOut, i), r);
      store<f32>(at(bOut, i), bt);
    }
    const ui = load<f32>(at(u, i));
    const v = ui + a * (load<f32>(at(cur, i)) - ui);
    const x = v - theta;
    const sp: f32 = x > 0 ? 1 : 0;
    store<f32>(at(aOut, i), a);
    store<f32>(at(vOut, i), v);
    store<f32>(at(xOut, i), x);
    store<f32>(at(sOut, i), sp);
    store<f32>(at(uOut, i), (1 - sp) * v);
  }
}

/**
 * The backward pass of {@link ltcForward} over `n` entries: from the gradients of the state after
 * (`gu`, `gs`, and `gb` with `adaptive`), the surrogate derivative ψ(v − θ) (`psi`) and what the forward
 * pass kept (α `a`, ρ `r`, v `v`, the new spikes `sp`) with its inputs (`cur`, `u`, `b`, `s`), writes
 * the gradients of the pre-activations (`dzA`, and `dzR` with `adaptive`), of the current (`dCur`),
 * and of the state before (`dU`, and `dB`, `dS` with `adaptive`).
 */
export function ltcBackward(
  gu: usize,
  gs: usize,
  gb: usize,
  psi: usize,
  a: usize,
  r: usize,
  v: usize,
  sp: usize,
  cur: usize,
  u: usize,
  b: usize,
  s: usize,
  n: i32,
  k: f32,
  adaptive: bool,
  dzA: usize,
  dzR: usize,
  dCur: usize,
  dU: usize,
  dB: usize,
  dS: usize,
): void {
  const n4 = n & ~3;
  const one = f32x4.splat(1);
  const kv = f32x4.splat(k);
  for (let i = 0; i < n4; i += 4) {
    const g = v128.load(at(gu, i));
    const vi = v128.load(at(v, i));
    let dv = f32x4.mul(g, f32x4.sub(one, v128.load(at(sp, i))));
    const dsp = f32x4.add(v128.load(at(gs, i)), f32x4.neg(f32x4.mul(g, vi)));
    const dx = f32x4.mul(dsp, v128.load(at(psi, i)));
    dv = f32x4.add(dv, dx);
    if (adaptive) {
      const db = f32x4.add(v128.load(at(gb, i)), f32x4.neg(f32x4.mul(kv, dx)));
      const ri = v128.load(at(r, i));
      const dr = f32x4.sub(f32x4.mul(db, v128.load(at(b, i))), f32x4.mul(db, v128.load(at(s, i))));
      v128.store(at(dzR, i), f32x4.mul(dr, f32x4.mul(ri, f32x4.sub(one, ri))));
      v128.store(at(dB, i), f32x4.mul(db, ri));
      v128.store(at(dS, i), f32x4.mul(db, f32x4.sub(one, ri)));
    }
    const ai = v128.load(at(a, i));
    const ui = v128.load(at(u, i));
    const da = f32x4.mul(dv, f32x4.sub(v128.load(at(cur, i)), ui));
    v128.store(at(dzA, i), f32x4.mul(da, f32x4.mul(ai, f32x4.sub(one, ai))));
    v128.store(at(dCur, i), f32x4.mul(dv, ai));
    v128.store(at(dU, i), f32x4.sub(dv, f32x4.mul(dv, ai)));
  }
  for (let i = n4; i < n; i++) {
    const g = load<f32>(at(gu, i));
    const vi = load<f32>(at(v, i));
    // u_t = (1 − s_t)·v_t: to v, and to s_t (then through the surrogate to v − θ).
    let dv = g * (1 - load<f32>(at(sp, i)));
    const dsp: f32 = load<f32>(at(gs, i)) + -(g * vi);
    const dx = dsp * load<f32>(at(psi, i));
    dv = dv + dx;
    if (adaptive) {
      // θ = b_0 + β·b_t, b_t = ρ·b + (1 − ρ)·s.
      const db: f32 = load<f32>(at(gb, i)) + -(k * dx);
      const ri = load<f32>(at(r, i));
      const dr = db * load<f32>(at(b, i)) - db * load<f32>(at(s, i));
      store<f32>(at(dzR, i), dr * (ri * (1 - ri)));
      store<f32>(at(dB, i), db * ri);
      store<f32>(at(dS, i), db * (1 - ri));
    }
    // v = u + α·(I − u).
    const ai = load<f32>(at(a, i));
    const ui = load<f32>(at(u, i));
    const da = dv * (load<f32>(at(cur, i)) - ui);
    store<f32>(at(dzA, i), da * (ai * (1 - ai)));
    store<f32>(at(dCur, i), dv * ai);
    store<f32>(at(dU, i), dv - dv * ai);
  }
}

// The adaptive threshold of spikeflow's integrate-and-fire kernels (core's
// `IntegrateFireSequenceParams.adaptation`; Bellec et al. 2018, "Long short-term memory and
// learning-to-learn in networks of spiking neurons"): the neuron updates of one batch row, forward
// and backward, that `lifForward` and `lifBackward` (assembly/snn.ts) call in place of their own
// where the layer adapts. Pointers are byte offsets into the module's memory; float32 arithmetic in
// the order of core's composite reference.

@inline function at(base: usize, i: i32): usize {
  return base + (<usize>i << 2);
}

/**
 * One step of one batch row of `H` neurons with an adaptive threshold:
 *
 *     v_t = (β·v_{t−1} + (c_t + r_t)) − ϑ·s_{t−1}
 *     a_t = ρ·a_{t−1} + s_{t−1}
 *     s_t = v_t > ϑ + β_a·a_t
 *
 * `c` the row's input currents, `rec` its recurrent currents r_t (0: none, I_t = c_t); `vp`, `sp`,
 * `ap` the state before; `beta` and `rho` H values (`perNeuron…`) or one; writes `vo`, `so`, `ao`.
 */
export function adaptiveRow(
  c: usize,
  rec: usize,
  vp: usize,
  sp: usize,
  ap: usize,
  beta: usize,
  perNeuron: bool,
  rho: usize,
  perNeuronRho: bool,
  thr: f32,
  strength: f32,
  H: i32,
  vo: usize,
  so: usize,
  ao: usize,
): void {
  const H4 = H & ~3;
  const one = f32x4.splat(1);
  const thrv = f32x4.splat(thr);
  const kv = f32x4.splat(strength);
  const beta0 = load<f32>(beta);
  const betav = f32x4.splat(beta0);
  const rho0 = load<f32>(rho);
  const rhov = f32x4.splat(rho0);
  for (let j = 0; j < H4; j += 4) {
    let cur = v128.load(at(c, j));
    if (rec != 0) cur = f32x4.add(cur, v128.load(at(rec, j)));
    const s = v128.load(at(sp, j));
    const bv = perNeuron ? v128.load(at(beta, j)) : betav;
    const v = f32x4.sub(f32x4.add(f32x4.mul(bv, v128.load(at(vp, j))), cur), f32x4.mul(thrv, s));
    const rv = perNeuronRho ? v128.load(at(rho, j)) : rhov;
    const a = f32x4.add(f32x4.mul(rv, v128.load(at(ap, j))), s);
    v128.store(at(vo, j), v);
    v128.store(at(ao, j), a);
    v128.store(at(so, j), v128.and(f32x4.gt(v, f32x4.add(thrv, f32x4.mul(kv, a))), one));
  }
  for (let j = H4; j < H; j++) {
    let cur = load<f32>(at(c, j));
    if (rec != 0) cur += load<f32>(at(rec, j));
    const s = load<f32>(at(sp, j));
    const bj = perNeuron ? load<f32>(at(beta, j)) : beta0;
    const v = bj * load<f32>(at(vp, j)) + cur - thr * s;
    const rj = perNeuronRho ? load<f32>(at(rho, j)) : rho0;
    const a = rj * load<f32>(at(ap, j)) + s;
    store<f32>(at(vo, j), v);
    store<f32>(at(ao, j), a);
    store<f32>(at(so, j), v > thr + strength * a ? 1 : 0);
  }
}

/**
 * One step of the backward pass with an adaptive threshold, for `B` rows of `H` neurons. With
 * ψ_t = σ'(v_t − ϑ − β_a·a_t), g = ∂L/∂v and h = ∂L/∂a:
 *
 *     ∂L/∂s_t = dS_t + carry − ϑ_a·g_{t+1} + h_{t+1}    (carry = g_{t+1}·W_recᵀ, 0: none)
 *     e_t     = ∂L/∂s_t·ψ_t
 *     g_t     = e_t + β·g_{t+1}
 *     h_t     = ρ·h_{t+1} − β_a·e_t
 *
 * and `dRho` (float64, `[B, H]`) accumulates h_t·a_{t−1}, ∂L/∂ρ per row. `gNext` = g_{t+1} (0: none, the
 * last step or no temporal path: then h_{t+1} = 0 too); `h` holds h_{t+1} on entry (read only with
 * `gNext`) and h_t on return. ψ_t is read from `psi`, or with `slope` > 0 is core's fast sigmoid
 * 1/(1 + slope·|v_t − (ϑ + β_a·a_t)|)² of the membrane at `psi` and the adaptation at `a`; `aPrev`
 * is a_{t−1}.
 */
export function adaptiveBackStep(
  dS: usize,
  psi: usize,
  a: usize,
  aPrev: usize,
  slope: f32,
  thr: f32,
  strength: f32,
  carry: usize,
  gNext: usize,
  beta: usize,
  perNeuron: bool,
  rho: usize,
  perNeuronRho: bool,
  thrAttached: f32,
  B: i32,
  H: i32,
  g: usize,
  h: usize,
  dRho: usize,
): void {
  const H4 = H & ~3;
  const tv = f32x4.splat(thrAttached);
  const kv = f32x4.splat(slope);
  const thrv = f32x4.splat(thr);
  const sv = f32x4.splat(strength);
  const nsv = f32x4.splat(-strength);
  const onev = f32x4.splat(1);
  const beta0 = load<f32>(beta);
  const betav = f32x4.splat(beta0);
  const rho0 = load<f32>(rho);
  const rhov = f32x4.splat(rho0);
  for (let b = 0; b < B; b++) {
    const row = b * H;
    for (let j = 0; j < H4; j += 4) {
      const i = row + j;
      let gs = v128.load(at(dS, i));
      let next = f32x4.splat(0);
      let hNext = f32x4.splat(0);
      if (gNext != 0) {
        next = v128.load(at(gNext, i));
        hNext = v128.load(at(h, i));
        gs = f32x4.add(f32x4.sub(gs, f32x4.mul(tv, next)), hNext);
      }
      if (carry != 0) gs = f32x4.add(gs, v128.load(at(carry, i)));
      let ps = v128.load(at(psi, i));
      if (slope > 0) {
        const x = f32x4.sub(ps, f32x4.add(thrv, f32x4.mul(sv, v128.load(at(a, i)))));
        const d = f32x4.add(onev, f32x4.mul(kv, f32x4.abs(x)));
        ps = f32x4.div(onev, f32x4.mul(d, d));
      }
      const e = f32x4.mul(gs, ps);
      const bv = perNeuron ? v128.load(at(beta, j)) : betav;
      const rv = perNeuronRho ? v128.load(at(rho, j)) : rhov;
      v128.store(at(g, i), f32x4.add(e, f32x4.mul(bv, next)));
      const ht = f32x4.add(f32x4.mul(rv, hNext), f32x4.mul(nsv, e));
      v128.store(at(h, i), ht);
      // ∂L/∂ρ: the products in float32 (as the reference forms them), summed in float64.
      const prod = f32x4.mul(ht, v128.load(at(aPrev, i)));
      const acc = dRho + (<usize>i << 3);
      v128.store(acc, f64x2.add(v128.load(acc), f64x2.promote_low_f32x4(prod)));
      v128.store(acc, f64x2.add(v128.load(acc, 16), f64x2.promote_low_f32x4(v128.shuffle<i32>(prod, prod, 2, 3, 0, 1))), 16);
    }
    for (let j = H4; j < H; j++) {
      const i = row + j;
      let gs = load<f32>(at(dS, i));
      let next: f32 = 0;
      let hNext: f32 = 0;
      if (gNext != 0) {
        next = load<f32>(at(gNext, i));
        hNext = load<f32>(at(h, i));
        gs = gs - thrAttached * next + hNext;
      }
      if (carry != 0) gs += load<f32>(at(carry, i));
      let ps = load<f32>(at(psi, i));
      if (slope > 0) {
        const d: f32 = 1 + slope * abs<f32>(ps - (thr + strength * load<f32>(at(a, i))));
        ps = 1 / (d * d);
      }
      const e = gs * ps;
      const bj = perNeuron ? load<f32>(at(beta, j)) : beta0;
      const rj = perNeuronRho ? load<f32>(at(rho, j)) : rho0;
      store<f32>(at(g, i), e + bj * next);
      const ht = rj * hNext + -strength * e;
      store<f32>(at(h, i), ht);
      const acc = dRho + (<usize>i << 3);
      store<f64>(acc, load<f64>(acc) + <f64>(ht * load<f32>(at(aPrev, i))));
    }
  }
}

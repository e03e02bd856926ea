// TSSL-BP's neurons over a whole sequence (Zhang & Li, NeurIPS 2020; the equations and the backward
// pass of core's `spikeTimingSequence`, which documents them): the forward pass and the authors'
// backward pass for the neurons [i0, i1) of n, step by step over all of them so that memory is read
// in order. float64 state and arithmetic, as core's reference, so that both agree to the rounding of
// `exp`. Arrays are time-major `[T, n]`: x, g and delta float32; u, du and a float64; o one byte.

/** The forward pass: membrane before the reset u, its increment du, spikes o and PSPs a (float64, and float32 in a32). */
export function spikeTimingForward(
  x: usize,
  T: i32,
  n: i32,
  i0: i32,
  i1: i32,
  thetaM: f64,
  threshold: f64,
  r: f64,
  post: usize,
  psp: usize,
  u: usize,
  du: usize,
  o: usize,
  a: usize,
  a32: usize,
): void {
  for (let i = i0; i < i1; i++) {
    store<f64>(post + (<usize>i << 3), 0);
    store<f64>(psp + (<usize>i << 3), 0);
  }
  for (let t = 0; t < T; t++) {
    const row = <usize>t * <usize>n;
    for (let i = i0; i < i1; i++) {
      const j = row + <usize>i;
      const pi = post + (<usize>i << 3);
      const si = psp + (<usize>i << 3);
      const before = load<f64>(pi);
      const d = <f64>load<f32>(x + (j << 2)) - thetaM * before;
      const ut = before + d;
      const fired = ut > threshold;
      const at = r * load<f64>(si) + (fired ? 1 - r : 0);
      store<f64>(si, at);
      store<f64>(du + (j << 3), d);
      store<f64>(u + (j << 3), ut);
      store<u8>(o + j, fired ? 1 : 0);
      store<f64>(a + (j << 3), at);
      store<f32>(a32 + (j << 2), <f32>at);
      store<f64>(pi, fired ? 0 : ut);
    }
  }
}

/** The backward pass: δ_t = ∂L/∂x_t from g_t = ∂L/∂a_t, from the last step down (e and G: scratch of n float64). */
export function spikeTimingBackward(
  g: usize,
  T: i32,
  n: i32,
  i0: i32,
  i1: i32,
  r: f64,
  leak: f64,
  thetaM: f64,
  rhoMax: f64,
  fallback: f64,
  threshold: f64,
  width: f64,
  clamp: f64,
  u: usize,
  du: usize,
  o: usize,
  a: usize,
  e: usize,
  G: usize,
  delta: usize,
): void {
  for (let i = i0; i < i1; i++) {
    store<f64>(e + (<usize>i << 3), 0);
    store<f64>(G + (<usize>i << 3), 0);
  }
  for (let t = T - 1; t >= 0; t--) {
    const row = <usize>t * <usize>n;
    for (let i = i0; i < i1; i++) {
      const j = row + <usize>i;
      const ei = e + (<usize>i << 3);
      const gi = G + (<usize>i << 3);
      const et = <f64>load<f32>(g + (j << 2)) * (1 - r) + r * load<f64>(ei);
      store<f64>(ei, et);
      const ut = load<f64>(u + (j << 3));
      const Gt = load<u8>(o + j) ? min(1 / load<f64>(du + (j << 3)), rhoMax) * (et + thetaM * ut * load<f64>(gi)) : leak * load<f64>(gi);
      store<f64>(gi, Gt);
      if (load<f64>(a + (j << 3)) >= fallback) store<f32>(delta + (j << 2), <f32>Gt);
      else {
        const f = Math.exp(min(clamp, max(-clamp, (threshold - ut) / width)));
        store<f32>(delta + (j << 2), <f32>((f / ((1 + f) * (1 + f) * width)) * et));
      }
    }
  }
}

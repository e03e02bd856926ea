import { tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';
import type { IntegrateFireSequenceParams, IntegrateFireSequenceResult } from './kernels.js';

/**
 * What `spikeflow.integrateFireEligibility` traces: one integrate-and-fire layer (the equations of
 * {@link IntegrateFireSequenceParams}, an adaptive threshold included) of `size` neurons fed by
 * `inputs` channels, whose spikes a leaky readout with leak κ reads.
 */
export interface EligibilitySpec {
  readonly batch: number;
  readonly inputs: number;
  readonly size: number;
  /** Whether the layer has recurrent weights W_rec (presynaptic activity s_{t−1}). */
  readonly recurrent: boolean;
  /** Whether the layer has a bias (presynaptic activity 1). */
  readonly bias: boolean;
  /** The layer's equations. Its tensors (β, ρ) are read once, when the traces are made: they are constants of the sequence. */
  readonly neuron: IntegrateFireSequenceParams;
  /** κ, the readout's leak, which filters the eligibility traces: F_t = κ·F_{t−1} + e_t. */
  readonly kappa: number;
}

/** What {@link EligibilityTraces.forward} returns: the layer's window, and two sums of its spikes. */
export interface EligibilityWindow extends IntegrateFireSequenceResult {
  /** Σ_k κ^{n−1−k}·s_k over the window's n steps, `[B, H]`: its spikes filtered by the readout's leak, at its last step. */
  readonly filtered: Tensor;
  /** Each neuron's spikes over the window's steps and the batch, `[H]`. */
  readonly count: Tensor;
}

/** A window's gradient by presynaptic group: `w [I, H]`, `wRec [H, H]` (recurrent layers), `b [H]` (with a bias). */
export interface EligibilityGradient {
  readonly w: Tensor;
  readonly wRec?: Tensor;
  readonly b?: Tensor;
}

/**
 * The eligibility traces of e-prop (Bellec et al., "A solution to the learning dilemma for
 * recurrent networks of spiking neurons", Nature Communications 11:3625, 2020) for one layer, run
 * window by window. Per synapse (i, j) — presynaptic activity pre_t = (x_t, s_{t−1}, 1) over the
 * groups W, W_rec and b — with ψ_t = σ'(v_t − ϑ − β_a·a_t) the surrogate derivative of neuron j:
 *
 *     ε^v_t = β·ε^v_{t−1} − ϑ_r·e_{t−1} + pre_t       ϑ_r = ϑ with the reset attached, 0 if detached
 *     ε^a_t = ρ·ε^a_{t−1} + e_{t−1}                   (adaptive threshold only; else ε^a = 0)
 *     e_t   = ψ_t·(ε^v_t − β_a·ε^a_t)                 the eligibility trace
 *     F_t   = κ·F_{t−1} + e_t                         filtered by the readout's leak
 *
 * from zero at the start of the sequence. With the reset detached, ε^v is the presynaptic trace
 * z̄_t = β·z̄_{t−1} + pre_t of Bellec et al.; with an adaptive threshold these are their traces
 * for adaptive neurons. The layer itself starts at zero state and runs as the integrate-and-fire equations say.
 *
 * Use: `forward` a window, then `backward` once for it, window after window.
 */
export interface EligibilityTraces {
  /**
   * Runs the layer through the next window `x [n, B, I]` (float32) from where the previous window
   * left it, under `w [I, H]`, `b [H]` and `wRec [H, H]` as this window reads them (they may
   * change between windows: online updates). Returns the spikes `[n, B, H]`, the state after the
   * window and two sums of the spikes (tensors the caller owns). Keeps what {@link backward} needs.
   */
  forward(x: Tensor, w: Tensor, b: Tensor | undefined, wRec: Tensor | undefined): EligibilityWindow;
  /**
   * For the window `forward` ran last (steps t0 … t0 + n − 1): per synapse
   *
   *     Σ_{t in the window} Σ_b m_t[b, j]·e_t[b, i, j]  +  Σ_b c[b, j]·F_{t0−1}[b, i, j]
   *
   * for `m [n, B, H]` and `c [B, H]` (undefined: no such term), by presynaptic group. With
   * `advance`, the traces then move to the window's end; without (the last window), they are
   * spent: neither method may be called again.
   */
  backward(m: Tensor, c: Tensor | undefined, advance: boolean): EligibilityGradient;
  /** Frees what the traces hold. */
  dispose(): void;
}

function fail(message: string): never {
  throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.integrateFireEligibility: ${message}`);
}

/** Checks a spec: sizes, and decays that are scalars or one value per neuron. */
export function checkEligibilitySpec(spec: EligibilitySpec): void {
  for (const k of ['batch', 'inputs', 'size'] as const) {
    if (!(Number.isInteger(spec[k]) && spec[k] >= 1)) fail(`${k} must be a whole number >= 1, got ${spec[k]}`);
  }
  const H = spec.size;
  const perNeuron = (t: Tensor, name: string) => {
    if (t.size !== 1 && !(t.rank === 1 && t.size === H)) fail(`${name} must be a scalar or one value per neuron [${H}], got [${t.shape}]`);
  };
  perNeuron(spec.neuron.beta, 'β');
  if (spec.neuron.adaptation) perNeuron(spec.neuron.adaptation.rho, 'ρ');
  if (spec.neuron.temporal === false) fail('the traces follow the layer through time: temporal: false has no meaning here');
  if (!Number.isFinite(spec.kappa)) fail(`κ must be a number, got ${spec.kappa}`);
}

/** Checks a window's tensors against the spec. */
export function checkEligibilityWindow(spec: EligibilitySpec, x: Tensor, w: Tensor, b: Tensor | undefined, wRec: Tensor | undefined): void {
  const { batch: B, inputs: I, size: H } = spec;
  if (x.rank !== 3 || x.shape[1] !== B || x.shape[2] !== I || x.dtype !== 'float32') fail(`expected x float32 [n, ${B}, ${I}], got ${x.dtype} [${x.shape}]`);
  if (w.shape.join() !== `${I},${H}`) fail(`expected W [${I}, ${H}], got [${w.shape}]`);
  if (Boolean(b) !== spec.bias || (b && b.shape.join() !== `${H}`)) fail(`expected ${spec.bias ? `b [${H}]` : 'no bias'}, got ${b ? `[${b.shape}]` : 'none'}`);
  if (Boolean(wRec) !== spec.recurrent || (wRec && wRec.shape.join() !== `${H},${H}`)) {
    fail(`expected ${spec.recurrent ? `W_rec [${H}, ${H}]` : 'no W_rec'}, got ${wRec ? `[${wRec.shape}]` : 'none'}`);
  }
}

/** Checks `backward`'s signals against the window `forward` ran (`n` steps). */
export function checkEligibilitySignals(spec: EligibilitySpec, n: number, m: Tensor, c: Tensor | undefined): void {
  const { batch: B, size: H } = spec;
  if (m.shape.join() !== `${n},${B},${H}`) fail(`expected m [${n}, ${B}, ${H}] (the window forward ran), got [${m.shape}]`);
  if (c && c.shape.join() !== `${B},${H}`) fail(`expected c [${B}, ${H}], got [${c.shape}]`);
}

/** The order of calls: forward, backward, forward, …; nothing after a backward without `advance`. */
export function eligibilityOrder(what: 'forward' | 'backward', pending: boolean, spent: boolean): void {
  if (spent) throw new SpikeflowError('CLOSED', `spikeflow.integrateFireEligibility: ${what} after the last window (a backward without advance)`);
  if (what === 'forward' && pending)
    throw new SpikeflowError('CONFIG_INVALID', 'spikeflow.integrateFireEligibility: forward twice: call backward for a window first');
  if (what === 'backward' && !pending)
    throw new SpikeflowError('CONFIG_INVALID', 'spikeflow.integrateFireEligibility: backward without a window: call forward first');
}

/**
 * The composite reference of `spikeflow.integrateFireEligibility`: the equations above one step at
 * a time in plain tfjs ops, with every trace a `[B, fan, H]` tensor (fan = I + H + 1 over the
 * groups). Slow; correct on every backend.
 */
export function integrateFireEligibilityReference(spec: EligibilitySpec): EligibilityTraces {
  checkEligibilitySpec(spec);
  const { batch: B, inputs: I, size: H, kappa } = spec;
  const p = spec.neuron;
  const adapt = p.adaptation;
  const fan = I + (spec.recurrent ? H : 0) + (spec.bias ? 1 : 0);
  // Everything held across calls is kept: the calls may run inside a caller's tf.tidy.
  const held = tf.tidy(() => {
    const z = tf.zeros([B, fan, H]);
    const keepAll = <T extends Record<string, Tensor | undefined>>(o: T): T => {
      for (const t of Object.values(o)) if (t) tf.keep(t);
      return o;
    };
    return keepAll({
      beta: tf.clone(p.beta),
      rho: adapt ? tf.clone(adapt.rho) : undefined,
      v: tf.zeros([B, H]),
      s: tf.zeros([B, H]),
      a: adapt ? tf.zeros([B, H]) : undefined,
      // The traces at the window's start: ε^v_{t0−1}, ε^a_{t0−1}, e_{t0−1} and F_{t0−1}.
      epsV: z,
      epsA: tf.clone(z),
      e: tf.clone(z),
      F: tf.clone(z),
    });
  });
  let window: { readonly pre: Tensor[]; readonly psi: Tensor[] } | undefined;
  let spent = false;
  const thrR = p.resetDetach ? 0 : p.threshold;
  const replace = <K extends keyof typeof held>(key: K, value: (typeof held)[K]) => {
    const old = held[key] as Tensor | undefined;
    if (old && old !== value) old.dispose();
    if (value) tf.keep(value as Tensor);
    (held as Record<string, unknown>)[key] = value;
  };
  return {
    forward(x, w, b, wRec) {
      eligibilityOrder('forward', window !== undefined, spent);
      checkEligibilityWindow(spec, x, w, b, wRec);
      const pre: Tensor[] = [];
      const psi: Tensor[] = [];
      const spikes: Tensor[] = [];
      for (const xt of tf.unstack(x)) {
        const out = tf.tidy(() => {
          const sPrev = held.s;
          let current = tf.matMul(xt, w);
          if (b) current = tf.add(current, b);
          if (wRec) current = tf.add(current, tf.matMul(sPrev, wRec));
          const v = tf.sub(tf.add(tf.mul(held.beta, held.v), current), tf.mul(p.threshold, sPrev));
          const a = adapt ? tf.add(tf.mul(held.rho!, held.a!), sPrev) : undefined;
          const diff = a ? tf.sub(v, tf.add(p.threshold, tf.mul(adapt!.strength, a))) : tf.sub(v, p.threshold);
          const groups = [xt, ...(wRec ? [sPrev] : []), ...(b ? [tf.ones([B, 1])] : [])];
          return {
            v,
            a,
            s: tf.cast(tf.greater(diff, 0), 'float32'),
            psi: p.surrogate.derivative(diff),
            pre: groups.length === 1 ? tf.clone(xt) : tf.concat(groups, 1),
          };
        });
        xt.dispose();
        replace('v', out.v);
        replace('s', out.s);
        if (out.a) replace('a', out.a);
        pre.push(tf.keep(out.pre));
        psi.push(tf.keep(out.psi));
        spikes.push(tf.clone(out.s));
      }
      window = { pre, psi };
      const result = tf.tidy(() => {
        let filtered = tf.zeros([B, H]);
        for (const s of spikes) filtered = tf.add(tf.mul(kappa, filtered), s);
        const stacked = tf.stack(spikes);
        return { spikes: stacked, filtered, count: tf.sum(stacked, [0, 1]) };
      });
      tf.dispose(spikes);
      return { ...result, final: { v: tf.clone(held.v), s: tf.clone(held.s), ...(held.a ? { a: tf.clone(held.a) } : {}) } };
    },
    backward(m, c, advance) {
      eligibilityOrder('backward', window !== undefined, spent);
      const { pre, psi } = window!;
      checkEligibilitySignals(spec, pre.length, m, c);
      const out = tf.tidy(() => {
        let { epsV, epsA, e, F } = held;
        let grad: Tensor = c ? tf.sum(tf.mul(F, tf.expandDims(c, 1)), 0) : tf.zeros([fan, H]);
        tf.unstack(m).forEach((mt, t) => {
          epsV = tf.add(tf.sub(tf.mul(held.beta, epsV), tf.mul(thrR, e)), tf.expandDims(pre[t]!, 2));
          if (adapt) epsA = tf.add(tf.mul(held.rho!, epsA), e);
          e = tf.mul(tf.expandDims(psi[t]!, 1), adapt ? tf.sub(epsV, tf.mul(adapt.strength, epsA)) : epsV);
          grad = tf.add(grad, tf.sum(tf.mul(tf.expandDims(mt, 1), e), 0));
          F = tf.add(tf.mul(kappa, F), e);
        });
        const w = tf.slice(grad, [0, 0], [I, H]);
        const wRec = spec.recurrent ? tf.slice(grad, [I, 0], [H, H]) : undefined;
        const b = spec.bias ? tf.reshape(tf.slice(grad, [fan - 1, 0], [1, H]), [H]) : undefined;
        return { grads: { w, ...(wRec ? { wRec } : {}), ...(b ? { b } : {}) }, traces: { epsV, epsA, e, F } };
      });
      tf.dispose([...pre, ...psi]);
      window = undefined;
      if (advance) {
        replace('epsV', out.traces.epsV);
        replace('epsA', out.traces.epsA);
        replace('e', out.traces.e);
        replace('F', out.traces.F);
      } else {
        tf.dispose(Object.values(out.traces).filter((t) => !Object.values(held).includes(t)));
        spent = true;
      }
      return out.grads;
    },
    dispose() {
      if (window) tf.dispose([...window.pre, ...window.psi]);
      window = undefined;
      spent = true;
      tf.dispose(Object.values(held).filter((t): t is Tensor => t !== undefined));
    },
  };
}

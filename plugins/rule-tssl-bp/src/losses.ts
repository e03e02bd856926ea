import { SpikeflowError, configError, tf, type Scalar, type Schema, type Tensor, type TemporalLoss } from '@spikeflow/core';

/**
 * TSSL-BP's losses (Zhang & Li 2020, as the authors' code computes them: `functions/loss_f.py` and
 * the targets of `main.py` in stonezwr/TSSL-BP at `ffaac71`). They read the readout of every step as
 * the output layer's PSPs A_t (`"readout": { "kind": "identity" }` over a layer of the `tssl`
 * neuron) and are summed over the batch, as the authors' are (the gradient scales with B; their
 * training clips the global norm to 1).
 */

/** Integer labels `[B]` as a one-hot `[B, O]`, checked. */
function oneHotOf(loss: string, target: Tensor, batch: number, outputs: number): Tensor {
  if (target.rank !== 1 || target.shape[0] !== batch) {
    throw new SpikeflowError('SHAPE_MISMATCH', `loss '${loss}': targets must be integer labels [${batch}], got shape [${target.shape}]`);
  }
  const labels = Array.from(target.dataSync());
  const bad = labels.find((l) => !Number.isInteger(l) || l < 0 || l >= outputs);
  if (bad !== undefined) throw new SpikeflowError('DATA_INVALID', `loss '${loss}': label ${bad} is not a class in [0, ${outputs})`);
  // By hand: tf.oneHot needs two classes or more, and a single output neuron is a valid TSSL-BP net.
  const hot = new Float32Array(batch * outputs);
  labels.forEach((l, b) => {
    hot[b * outputs + l] = 1;
  });
  return tf.tensor2d(hot, [batch, outputs]);
}

/**
 * The desired output spikes of the kernel loss over T steps: `pattern` (a string of 0s and 1s)
 * repeated, or the authors' — `0101010101` repeated for T ≥ 10, `01111` repeated for T < 10 (T
 * must then be a multiple of the pattern's length, as their code requires).
 */
export function desiredSpikes(T: number, pattern = ''): number[] {
  const p = pattern || (T >= 10 ? '0101010101' : '01111');
  if (!/^[01]+$/.test(p)) throw configError('loss.desired', `must be a string of 0s and 1s (the desired spike at each step, repeated), got '${p}'`);
  if (T % p.length !== 0) {
    throw configError(
      'loss.desired',
      `the pattern '${p}' (${p.length} steps) does not divide the ${T} steps of the sequence; give a pattern whose length divides T${pattern ? '' : ' (the default needs T = 5 or a multiple of 10)'}`,
    );
  }
  return Array.from({ length: T }, (_, t) => Number(p[t % p.length]));
}

/** `passes` first-order PSP filters of a sequence: out_t = r·out_{t−1} + x_t/τ_s (TSSL-BP's `psp`). */
export function pspFiltered(xs: readonly number[], tauS: number, passes: number): number[] {
  let out = [...xs];
  const r = 1 - 1 / tauS;
  for (let k = 0; k < passes; k++) {
    let acc = 0;
    out = out.map((x) => (acc = r * acc + x / tauS));
  }
  return out;
}

const kernelSchema = {
  tauS: { type: 'number', default: 3, min: 1, doc: "τ_s of the PSP filter the desired spikes pass through (the network's)" },
  passes: { type: 'number', integer: true, default: 2, min: 1, max: 2, doc: "filter passes of the desired spikes: 2 as the authors' code, 1 as the paper" },
  desired: { type: 'string', default: '', doc: "the desired spikes of the label's neuron, a string of 0s and 1s repeated over T (default: the authors')" },
} as const satisfies Schema;

/**
 * `tssl_kernel`: ½·Σ_{b,c,t} (A_t − ψ_t)², with ψ = psp(psp(d)) — the desired spikes d twice PSP-
 * filtered — on the label's neuron and 0 on the others. Decomposes over time.
 */
export function tsslKernel(options: { tauS?: number; passes?: number; desired?: string } = {}): TemporalLoss {
  const tauS = options.tauS ?? 3;
  const passes = options.passes ?? 2;
  const desired = options.desired ?? '';
  return {
    name: 'tssl_kernel',
    decomposesOverTime: true,
    hasTerminal: false,
    target: 'integer labels [B]',
    bind(target, { steps: T, batch, outputs }) {
      const psi = pspFiltered(desiredSpikes(T, desired), tauS, passes);
      const oneHot = oneHotOf('tssl_kernel', target, batch, outputs);
      const term = (y: Tensor, t: number) => tf.tidy(() => tf.mul(0.5, tf.sum(tf.squaredDifference(y, tf.mul(oneHot, psi[t]!)))) as Scalar);
      const targets = tf.tidy(() => tf.mul(tf.reshape(tf.tensor1d(psi), [T, 1, 1]), oneHot));
      return {
        sequence: (ys) => tf.tidy(() => tf.addN(ys.map((y, t) => term(y, t))) as Scalar),
        stacked: (y) => tf.tidy(() => tf.mul(0.5, tf.sum(tf.squaredDifference(y, targets))) as Scalar),
        step: (y, t) => term(y, t),
        hasTerm: () => true,
        dispose: () => tf.dispose([oneHot, targets]),
      };
    },
    optionsSchema: kernelSchema,
    configure: (o) => tsslKernel(o as { tauS: number; passes: number; desired: string }),
  };
}

const countSchema = {
  desired: { type: 'number', default: 15, min: 0, doc: "the label's neuron's desired Σ_t A_t" },
  undesired: { type: 'number', default: 3, min: 0, doc: 'the other neurons’ allowed Σ_t A_t' },
} as const satisfies Schema;

/**
 * `tssl_count`: with C = Σ_t A_t (the summed PSP, not the spike count) and δ = (C − target)/T,
 * target `desired` on the label's neuron and `undesired` on the others, the label's neuron is
 * penalised only below `desired` and the others only above `undesired`: L = ½·T·Σ_{b,c} δ²,
 * ∂L/∂A_t = δ at every step. Does not decompose over time.
 */
export function tsslCount(options: { desired?: number; undesired?: number } = {}): TemporalLoss {
  const want = options.desired ?? 15;
  const allowed = options.undesired ?? 3;
  const sequenceOf = (oneHot: Tensor, T: number) => (A: Tensor) =>
    tf.tidy(() => {
      const C = tf.sum(A, 0);
      const targets = tf.add(tf.mul(oneHot, want), tf.mul(tf.sub(1, oneHot), allowed));
      const delta = tf.div(tf.sub(C, targets), T);
      // Which entries are penalised: constants of the rule (no gradient through the test).
      const dv = delta.dataSync();
      const hv = oneHot.dataSync();
      const keep = tf.tensor(
        Array.from(dv, (d, i) => ((hv[i] ? d < 0 : d > 0) ? 1 : 0)),
        delta.shape,
      );
      const kept = tf.mul(delta, keep);
      return tf.mul(0.5 * T, tf.sum(tf.square(kept))) as Scalar;
    });
  return {
    name: 'tssl_count',
    decomposesOverTime: false,
    hasTerminal: false,
    target: 'integer labels [B]',
    bind(target, { steps: T, batch, outputs }) {
      const oneHot = oneHotOf('tssl_count', target, batch, outputs);
      const loss = sequenceOf(oneHot, T);
      return { sequence: (ys) => tf.tidy(() => loss(tf.stack([...ys]))), stacked: loss, dispose: () => oneHot.dispose() };
    },
    optionsSchema: countSchema,
    configure: (o) => tsslCount(o as { desired: number; undesired: number }),
  };
}

/**
 * `tssl_softmax`: the softmax cross-entropy of C = Σ_t A_t against the labels, averaged over the
 * batch; ∂L/∂A_t = (softmax(C) − onehot)/B at every step. Does not decompose over time.
 */
export const tsslSoftmax: TemporalLoss = {
  name: 'tssl_softmax',
  decomposesOverTime: false,
  hasTerminal: false,
  target: 'integer labels [B]',
  bind(target, { batch, outputs }) {
    const oneHot = oneHotOf('tssl_softmax', target, batch, outputs);
    const loss = (A: Tensor) => tf.tidy(() => tf.losses.softmaxCrossEntropy(oneHot, tf.sum(A, 0)) as Scalar);
    return { sequence: (ys) => tf.tidy(() => loss(tf.stack([...ys]))), stacked: loss, dispose: () => oneHot.dispose() };
  },
};

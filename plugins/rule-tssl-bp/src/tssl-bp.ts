import {
  LeakyScan,
  defineRule,
  masked,
  disposeTree,
  inputShape,
  paramGrads,
  parseSchema,
  spikeTimingSequence,
  stepsOf,
  tf,
  type LearningRule,
  type RuleContext,
  type SequenceBatch,
  type Tensor,
} from '@spikeflow/core';

export const tsslBpSchema = {} as const;

/** TSSL-BP keeps no state between sequences. */
export type TsslBpState = Record<string, never>;

/** `x [T, B, F]·W` (+ b) as one product over the T·B rows. */
function product(x: Tensor, w: Tensor, b: Tensor | undefined): Tensor {
  const [T, B] = x.shape as [number, number];
  const y = tf.reshape(tf.matMul(tf.reshape(x, [T * B, -1]), w), [T, B, -1]);
  return b ? tf.add(y, b) : y;
}

/**
 * TSSL-BP (Zhang & Li, "Temporal Spike Sequence Learning via Backpropagation for Deep Spiking
 * Neural Networks", NeurIPS 2020), as the authors' code computes it (stonezwr/TSSL-BP at `ffaac71`).
 * It does not differentiate a surrogate: it backpropagates through spike *timing*. Every layer's
 * neuron must declare the `spikeTiming` capability (`@spikeflow/neuron-tssl`): each layer then runs
 * over the whole sequence at once through core's `spikeTimingSequence`, whose gradient maps
 * ∂L/∂a_t (the layer's PSPs) to ∂L/∂x_t (its input currents) by the authors' rule — the
 * inter-neuron term ∂a/∂u at a spike through 1/Δu (capped at 8), the intra-neuron term through the
 * reset that links consecutive spikes of a neuron, the leak path between spikes, and a sigmoid
 * fallback where the PSP is small (before the first spike, a silent neuron). The products between
 * layers (x_l = a_{l−1}·W_l, the first layer's input PSP-filtered where its neuron says
 * `filterInput`) and the readout are differentiated as they are; dropout masks of the model apply.
 * Its gradient is "exact" in that sense: the authors' rule to float32 rounding, not a derivative of
 * the loss. One update per sequence; memory grows with T (the whole sequence is on one tape).
 *
 * Losses: `tssl_kernel`, `tssl_count` and `tssl_softmax` (this plugin's), or any of core's.
 */
export function tsslBp(options: Record<string, never> = {}): LearningRule<TsslBpState> {
  parseSchema(tsslBpSchema, options, 'rule');
  return defineRule({
    name: 'tssl-bp',
    memory: 'O(T)',
    gradient: 'exact',
    requires: { neuron: ['spikeTiming'], denseLayers: true, feedForward: true },
    init: () => ({}),
    update(batch: SequenceBatch, state: TsslBpState, ctx: RuleContext) {
      const net = ctx.network;
      const [T, B] = inputShape(batch.inputs) as [number, number];
      const bound = ctx.loss.bind(batch.targets, { steps: T, batch: B, outputs: net.outputs });
      const model = net.model;
      try {
        const { value, grads } = paramGrads(net, () => {
          const p = net.prepare();
          let a = stepsOf(batch.inputs).window(0, T);
          model.layers.forEach((l, i) => {
            const k = l.neuron.spikeTiming!(l.config)!;
            let x = product(masked(a, p.dropout?.layers[i]), p.layers[i]!.W, p.layers[i]!.b);
            // The PSP filter over time, out_t = r·out_{t−1} + x_t/τ_s: the backend's leaky scan of x/τ_s.
            if (k.filterInput) x = p.kernels[LeakyScan](tf.div(x, k.tauS), tf.zeros(x.shape.slice(1)), 1 - 1 / k.tauS);
            a = spikeTimingSequence(x, k).psp;
          });
          // The readout, step by step from zero (the identity readout: the output layer's PSPs).
          const r = model.readout;
          const fed = masked(a, p.dropout?.readout);
          const d = p.readout.W ? product(fed, p.readout.W, p.readout.b) : fed;
          let y: Tensor = tf.zeros([B, r.size]);
          const ys = tf
            .unstack(d)
            .map((dt) => (y = r.readout.step({ options: r.options, tensors: p.readout.tensors, dense: p.kernels['spikeflow.dense'] }, y, dt)));
          if (ctx.observe) ys.forEach((yt, t) => ctx.observe!(t, yt));
          return bound.sequence(ys);
        });
        ctx.apply(grads);
        disposeTree(grads);
        const loss = value.dataSync()[0]!;
        value.dispose();
        return { state, report: { loss, updates: 1 } };
      } finally {
        bound.dispose();
      }
    },
  });
}

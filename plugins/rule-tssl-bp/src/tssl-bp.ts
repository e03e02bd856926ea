import {
  EventConv2d,
  EventDense,
  LeakyScan,
  MaxPool,
  SpikeTiming,
  applyPools,
  convCurrent,
  defineRule,
  masked,
  disposeTree,
  inputShape,
  paramGrads,
  parseSchema,
  stepsOf,
  tf,
  type LearningRule,
  type RuleContext,
  type ResolvedLayer,
  type SequenceBatch,
  type StepParams,
  type Tensor,
} from '@spikeflow/core';

export const tsslBpSchema = {} as const;

/** TSSL-BP keeps no state between sequences. */
export type TsslBpState = Record<string, never>;

/**
 * A sequence `[T, B, F]` through a spatial op on its T·B images (pooling, a convolution: flat
 * `[N, H·W·C]` in and out), back as `[T, B, F′]`.
 */
function overImages(x: Tensor, f: (images: Tensor) => Tensor): Tensor {
  const [T, B, F] = x.shape as [number, number, number];
  return tf.reshape(f(tf.reshape(x, [T * B, F])), [T, B, -1]);
}

/**
 * `a·W` (+ b) for `a [T, B, F]` as one product over the T·B rows: the backend's event product
 * (the rows' non-zero entries only where they are sparse — spikes, PSPs before the first spike —
 * and gradients by explicit transposes, which wasm's matMul needs to be fast).
 */
function dense(p: StepParams, a: Tensor, w: Tensor, b: Tensor | undefined): Tensor {
  const y = overImages(a, (rows) => p.kernels[EventDense](rows, w));
  return b ? tf.add(y, b) : y;
}

/** A layer's input currents `[T, B, size]` from what it reads `[T, B, F]`: the dense product, or the convolution over the T·B images. */
function synapse(l: ResolvedLayer, p: StepParams, a: Tensor, w: Tensor, b: Tensor | undefined): Tensor {
  if (l.type === 'conv2d') return overImages(a, (images) => convCurrent(images, w, b, l.conv!, p.kernels[EventConv2d]));
  return dense(p, a, w, b);
}

/** The pooling `pools` on a sequence's images (none: the sequence itself). */
function pooled(a: Tensor, pools: ResolvedLayer['pools'], p: StepParams): Tensor {
  return pools.length ? overImages(a, (images) => applyPools(images, pools, p.kernels[MaxPool])) : a;
}

/**
 * TSSL-BP (Zhang & Li, "Temporal Spike Sequence Learning via Backpropagation for Deep Spiking
 * Neural Networks", NeurIPS 2020), as the authors' code computes it (stonezwr/TSSL-BP at `ffaac71`).
 * It does not differentiate a surrogate: it backpropagates through spike *timing*. Every layer's
 * neuron must declare the `spikeTiming` capability (`@spikeflow/neuron-tssl`): each layer then runs
 * over the whole sequence at once through core's `spikeTimingSequence` (the backend's kernel
 * `spikeflow.spikeTimingSequence` where it has one), whose gradient maps
 * ∂L/∂a_t (the layer's PSPs) to ∂L/∂x_t (its input currents) by the authors' rule — the
 * inter-neuron term ∂a/∂u at a spike through 1/Δu (capped at 8), the intra-neuron term through the
 * reset that links consecutive spikes of a neuron, the leak path between spikes, and a sigmoid
 * fallback where the PSP is small (before the first spike, a silent neuron). The products between
 * layers (x_l = a_{l−1}·W_l, the first layer's input PSP-filtered where its neuron says
 * `filterInput`; dense or `conv2d`, the pooling before it — TSSL-BP's own is `sumpool` × 1.1 on
 * the PSPs) and the readout are differentiated as they are; dropout masks of the model apply.
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
    requires: { neuron: ['spikeTiming'], feedForward: true, plainLayers: true },
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
            let x = synapse(l, p, masked(pooled(a, l.pools, p), p.dropout?.layers[i]), p.layers[i]!.W, p.layers[i]!.b);
            // The PSP filter over time, out_t = r·out_{t−1} + x_t/τ_s: the backend's leaky scan of x/τ_s.
            if (k.filterInput) x = p.kernels[LeakyScan](tf.div(x, k.tauS), tf.zeros(x.shape.slice(1)), 1 - 1 / k.tauS);
            a = p.kernels[SpikeTiming](x, k).psp;
          });
          // The readout, step by step from zero (the identity readout: the output layer's PSPs).
          const r = model.readout;
          const fed = masked(pooled(a, model.readoutPools, p), p.dropout?.readout);
          const d = p.readout.W ? dense(p, fed, p.readout.W, p.readout.b) : fed;
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

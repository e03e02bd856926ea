import {
  SpikeflowError,
  createRng,
  defineRule,
  disposeTree,
  inputShape,
  keepTree,
  parseSchema,
  trainWindows,
  tf,
  tidy,
  stepTerms,
  windowHasTerm,
  type LearningRule,
  type NamedTensorMap,
  type Network,
  type RuleContext,
  type Scalar,
  type SchemaInput,
  type SchemaValues,
  type SequenceBatch,
  type Tensor,
  type TensorTree,
  type WindowObjective,
} from '@spikeflow/core';

/**
 * The rule's options (`{ "name": "local-tbptt", ... }` in a config), the one definition of their
 * types, ranges and defaults: `truncation` k, the steps per window (the state crosses window
 * boundaries detached); `blockSize`, the layers per block (each block but the last has an
 * auxiliary classifier); `mode`, `accumulate` (the windows' gradients summed, one update per
 * sequence) or `per-window` (an update after every window); `seed` of the heads' initial weights.
 */
export const localTbpttSchema = {
  truncation: { type: 'number', integer: true, default: 10, min: 1, doc: 'k: steps per window; no gradient crosses a window boundary' },
  blockSize: { type: 'number', integer: true, default: 1, min: 1, doc: 'layers per block; every block but the last trains through an auxiliary classifier' },
  mode: {
    type: 'string',
    default: 'accumulate',
    oneOf: ['accumulate', 'per-window'],
    doc: 'accumulate: one update per sequence; per-window: an update after every window',
  },
  seed: { type: 'number', integer: true, default: 0, doc: "seed of the auxiliary heads' initial weights" },
} as const;

export type LocalTbpttOptions = SchemaInput<typeof localTbpttSchema>;
export type LocalMode = SchemaValues<typeof localTbpttSchema>['mode'];

/** The auxiliary heads (`aux.<block>.W` `[size, outputs]`, `aux.<block>.b`) and the run optimizer's state for them. */
export type LocalTbpttState = { readonly heads: Readonly<Record<string, Tensor>>; readonly optimizer: TensorTree };

/** The blocks of a network of `layers` layers: `[first, last]` layer indices, in order. */
export function blocksOf(layers: number, blockSize: number): [number, number][] {
  const out: [number, number][] = [];
  for (let first = 0; first < layers; first += blockSize) out.push([first, Math.min(first + blockSize, layers) - 1]);
  return out;
}

/** The leak of the heads where the network's readout has no fixed one (an `ltc` readout): the leaky readout's default. */
const DEFAULT_HEAD_LEAK = 0.9;

/**
 * Temporally-truncated local BPTT (Guo, Fouda, Eltawil & Salama, "Efficient training of spiking
 * neural networks with temporally-truncated local backpropagation through time", Frontiers in
 * Neuroscience 17:1047008, 2023).
 *
 * Two localities of BPTT at once:
 *
 * - **spatial**: the layers are cut into blocks of `blockSize`. Block b (all but the last) feeds
 *   an auxiliary classifier of its last layer's spikes, a leaky readout with the network readout's
 *   leak κ, `y^b_t = κ·y^b_{t−1} + s_t·W_aux + b_aux`, scored by the run's loss (a `conv2d` layer's
 *   or SEW block's spikes averaged over the map's positions first: one input per channel); the last block is
 *   scored through the network's own readout. The spikes entering a block are detached, so block b's
 *   parameters follow ∂L_b/∂θ_b only — no gradient crosses a block boundary.
 * - **temporal**: the sequence is cut into windows of k steps (`truncation`); inside a window
 *   BPTT is exact, the state (membranes, spikes, readout and heads' traces) is carried into the
 *   next window detached.
 *
 * So each parameter's gradient is Σ_windows ∂L^{(w)}_b/∂θ_b: the truncated-BPTT gradient of its
 * block's local loss. Every block's window is on the tape at once, and freed before the next
 * window: **memory O(k)**, independent of T. On core's window engine, so the network runs through the backend's
 * window kernels where it can (the block boundaries are gradient cuts the engine keeps, and the
 * heads are leaky integrators over a window). The heads are trained by the run's optimizer
 * (`ctx.optimizer`, a state of their own kept in the rule's state, so checkpoints carry them) and
 * are dropped at inference: the network evaluates as it is. With one block it is truncated BPTT.
 *
 * Needs a loss that decomposes over time (`ce_every_step`, `mse_every_step`, `mse_last`).
 */
export function localTbptt(options: LocalTbpttOptions = {}): LearningRule<LocalTbpttState> {
  const { truncation, blockSize, mode, seed } = parseSchema(localTbpttSchema, options, 'rule');
  const perWindow = mode === 'per-window';
  return defineRule({
    name: `local-tbptt(k=${truncation}, blocks of ${blockSize}, ${mode})`,
    memory: 'O(k)',
    gradient: 'approximate',
    requires: { lossDecomposesOverTime: true },
    init(network: Network): LocalTbpttState {
      const blocks = blocksOf(network.model.layers.length, blockSize);
      const heads: Record<string, Tensor> = {};
      const rand = createRng(seed);
      blocks.slice(0, -1).forEach(([, last], b) => {
        const H = headInputs(network, last);
        const O = network.outputs;
        const bound = 1 / Math.sqrt(H);
        heads[`aux.${b}.W`] = tf.tensor2d(
          Float32Array.from({ length: H * O }, () => (rand() * 2 - 1) * bound),
          [H, O],
        );
        heads[`aux.${b}.b`] = tf.tensor1d(Float32Array.from({ length: O }, () => (rand() * 2 - 1) * bound));
      });
      return { heads, optimizer: null };
    },
    updatesPerSequence: (T) => (perWindow ? Math.ceil(T / truncation) : 1),
    update(batch: SequenceBatch, state: LocalTbpttState, ctx: RuleContext) {
      const net = ctx.network;
      const blocks = blocksOf(net.model.layers.length, blockSize);
      checkHeads(net, blocks, state);
      const optimizer = ctx.optimizer;
      if (blocks.length > 1 && !optimizer) {
        throw new SpikeflowError(
          'INCOMPATIBLE',
          `rule 'local-tbptt' trains its auxiliary heads with the run's optimizer, but the rule context has none; pass ctx.optimizer (the Trainer and the bench do)`,
          { rule: 'local-tbptt' },
        );
      }
      const heads = blocks.slice(0, -1).map(([, last], b) => ({ layer: last, W: `aux.${b}.W`, b: `aux.${b}.b` }));
      const kappa = net.model.readout.leak ?? DEFAULT_HEAD_LEAK;
      const B = inputShape(batch.inputs)[1]!;
      // The heads' traces y^b, carried across windows like the network's state (detached).
      let traces: Tensor[] = heads.map(() => tf.zeros([B, net.outputs]));
      let pending: Tensor[] | undefined;
      let ruleState = state;
      // Σ of the readout's terms and every head's: the blocks' local losses at once (each block's
      // parameters reach only its own, through the cuts).
      const objective: WindowObjective = (out, w) => {
        // Each output's terms from its stacked window (a few ops) where the network runs fused.
        const readout = stepTerms(out.loss, out.fused ? out.stacked() : out.readouts(), w.from);
        const aux: Scalar[] = [];
        pending = heads.map((h, b) => {
          const ys = out.leaky(headFeatures(net, h.layer, out.spikes(h.layer)), out.extra[h.W]!, out.extra[h.b], traces[b]!, kappa);
          const term = stepTerms(out.loss, ys, w.from);
          if (term) aux.push(term);
          const k = ys.shape[0]!;
          return tf.keep(tf.reshape(tf.slice(ys, [k - 1, 0, 0], [1, -1, -1]), ys.shape.slice(1)));
        });
        if (!readout && aux.length === 0) return null;
        const readoutLoss = readout ?? (tf.scalar(0) as Scalar);
        return { objective: (aux.length ? tf.add(readoutLoss, tf.addN(aux)) : readoutLoss) as Scalar, report: readoutLoss };
      };
      try {
        const report = trainWindows(batch, ctx, {
          window: truncation,
          update: perWindow ? 'window' : 'sequence',
          objective,
          // The spikes entering a block's first layer are cut: no gradient crosses a block boundary.
          cut: blocks.slice(1).map(([first]) => first),
          backward: (w, loss) => windowHasTerm(loss, w.from, w.to),
          extra: () => ruleState.heads,
          // The network's share through ctx.apply, the heads' with the run's optimizer.
          apply: (grads) => {
            ruleState = applyHeads(ctx, grads, ruleState, state);
          },
          afterWindow: () => {
            if (!pending) return;
            disposeTree(traces, pending);
            traces = pending;
            pending = undefined;
          },
        });
        return { state: ruleState, report };
      } catch (e) {
        // States made during this call are ours to free; the one handed in is the caller's.
        if (ruleState !== state) disposeTree(ruleState, state);
        throw e;
      } finally {
        disposeTree([traces, pending ?? null]);
      }
    },
  });
}

/**
 * Applies the network's gradients through `ctx.apply` and the heads' (`aux.*`) with the run's
 * optimizer (its state for the heads made on their first update). Returns the rule state after.
 */
function applyHeads(ctx: RuleContext, grads: NamedTensorMap, prev: LocalTbpttState, initial: LocalTbpttState): LocalTbpttState {
  const netGrads: NamedTensorMap = {};
  const headGrads: NamedTensorMap = {};
  for (const [k, g] of Object.entries(grads)) (k.startsWith('aux.') ? headGrads : netGrads)[k] = g;
  ctx.apply(netGrads);
  const optimizer = ctx.optimizer;
  if (!optimizer || Object.keys(prev.heads).length === 0) return prev;
  const params = prev.heads;
  const optState = prev.optimizer ?? keepTree(tidy(() => optimizer.init(params)));
  const next = tidy(() => {
    const { updates, state } = optimizer.update(headGrads, optState as TensorTree, params);
    const moved = Object.fromEntries(Object.entries(prev.heads).map(([k, w]) => [k, updates[k] ? tf.add(w, updates[k]!) : tf.clone(w)]));
    return keepTree({ heads: moved, optimizer: state });
  }) as LocalTbpttState;
  if (prev !== initial) disposeTree(prev, next);
  if (prev.optimizer === null) disposeTree(optState, next);
  return next;
}

function checkHeads(net: Network, blocks: readonly [number, number][], state: LocalTbpttState): void {
  const want = blocks.slice(0, -1).flatMap((_, b) => [`aux.${b}.W`, `aux.${b}.b`]);
  const have = Object.keys(state?.heads ?? {});
  if (want.length !== have.length || want.some((k) => !state.heads[k])) {
    throw new SpikeflowError(
      'INCOMPATIBLE',
      `rule 'local-tbptt': the state holds auxiliary heads [${have.join(', ')}] but this network's ${blocks.length} blocks need [${want.join(', ')}]; start from rule.init(network)`,
      { rule: 'local-tbptt' },
    );
  }
  blocks.slice(0, -1).forEach(([, last], b) => {
    const shape = state.heads[`aux.${b}.W`]!.shape;
    if (shape[0] !== headInputs(net, last) || shape[1] !== net.outputs) {
      throw new SpikeflowError(
        'SHAPE_MISMATCH',
        `rule 'local-tbptt': auxiliary head ${b} has shape [${shape}], the network needs [${headInputs(net, last)},${net.outputs}]`,
      );
    }
  });
}

/** What a head reads of layer `layer`: a dense layer's neurons, a spatial layer's channels (pooled over its positions). */
function headInputs(net: Network, layer: number): number {
  const l = net.model.layers[layer]!;
  return l.conv ? l.conv.outShape[2] : l.size;
}

/**
 * A head's input from a block's last layer's spikes `[k, B, size]`: as they are for a dense layer;
 * for a `conv2d` layer or SEW block, each channel's mean over the map's H′·W′ positions, `[k, B, C]`
 * (global average pooling: a head as small as a channel count, whatever the map's size).
 */
function headFeatures(net: Network, layer: number, spikes: Tensor): Tensor {
  const l = net.model.layers[layer]!;
  if (!l.conv) return spikes;
  const [Ho, Wo, C] = l.conv.outShape;
  const [k, B] = spikes.shape as [number, number];
  return tf.mean(tf.reshape(spikes, [k, B, Ho * Wo, C]), 2);
}

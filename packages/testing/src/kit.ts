import {
  lossNow,
  OptimizerRunner,
  buildNetwork,
  builtinSurrogates,
  disposeTree,
  inputShape,
  isSpikeflowError,
  sgd,
  type AnyNeuronModel,
  type AnyReadout,
  type KernelTable,
  type LearningRule,
  type Network,
  type Optimizer,
  type SequenceBatch,
  type SpikeflowError,
  type SurrogateSpec,
  type TemporalLoss,
  type Tensor,
  type TensorTree,
} from '@spikeflow/core';
import { gradsOf, randomBatch, type Grads } from './capture.js';

/**
 * The kit: small helpers that rule tests (and other plugin tests) would otherwise each write
 * again — a small network around a neuron, a random batch shaped for it, one training step with
 * the trainer's state hand-over, and the `SpikeflowError` a call throws. They work with the
 * gradient helpers of `capture.ts` (`captureUpdates`, `bpttGrads`, `expectGradsClose`).
 *
 * ```ts
 * const net = smallNetwork(lif, { layers: 2, size: 7, inputs: 6, outputs: 3 });
 * const batch = batchFor(net, ceEveryStep, { steps: 12 });
 * let state = rule.init(net);
 * ({ state } = trainStep(rule, net, batch, ceEveryStep, { state }));
 * ```
 */

/** What {@link smallNetwork} builds; every field has a default. */
export interface SmallNetworkOptions {
  /** Input channels (default 8: the channels of `toyTask`). */
  readonly inputs?: number;
  /** Hidden layers: how many, each of `size` neurons, or the size of each (default 1). */
  readonly layers?: number | readonly number[];
  /** Neurons per layer where `layers` is a count (default 16). */
  readonly size?: number;
  /** Readout units (default 2: the classes of `toyTask`). */
  readonly outputs?: number;
  /** Recurrent weights `W_rec` in every layer (default true). */
  readonly recurrent?: boolean;
  /** Scale of the initial weights, uniform in ±gain/√fan_in (default 2, so that a toy input makes the layers spike). */
  readonly gain?: number;
  /** The neuron's `params` in every layer (default: its defaults). */
  readonly params?: Readonly<Record<string, unknown>>;
  /** Other fields of every layer's spec (`{ bias: false, selfConnections: false, surrogate: ... }`). */
  readonly layer?: Readonly<Record<string, unknown>>;
  /** The readout's spec besides `size` (default `{ kappa: 0.8 }`; `{ kind: 'ltc' }` with `readouts` for a plugin's kind). */
  readonly readout?: Readonly<Record<string, unknown>>;
  /** Readout kinds besides core's `leaky` (a plugin's `readouts`). */
  readonly readouts?: readonly AnyReadout[];
  /** The model's surrogate (default: the neuron's own default, else core's). */
  readonly surrogate?: SurrogateSpec;
  /** Seed of the weights (default 0). */
  readonly seed?: number;
  /** Fast kernels (a registry's `kernels`), so that the network may run windows fused. */
  readonly kernels?: KernelTable;
}

/**
 * A small network of `neuron` for a rule test: `inputs` → `layers` of `neuron` → a readout. With
 * no options it is the network `describeRule` trains — 8 inputs, one recurrent layer of 16
 * neurons at gain 2, a leaky readout of 2 units with κ = 0.8 — which `toyTask` batches fit. The
 * caller disposes it (`net.dispose()`).
 */
export function smallNetwork(neuron: AnyNeuronModel, options: SmallNetworkOptions = {}): Network {
  const {
    inputs = 8,
    layers = 1,
    size = 16,
    outputs = 2,
    recurrent = true,
    gain = 2,
    params,
    layer,
    readout = {},
    readouts,
    surrogate,
    seed = 0,
    kernels,
  } = options;
  const sizes = typeof layers === 'number' ? Array.from({ length: layers }, () => size) : [...layers];
  const kind = readout['kind'];
  const leaky = kind === undefined || kind === 'leaky';
  return buildNetwork(
    {
      inputs,
      layers: sizes.map((n) => ({ neuron: neuron.name, size: n, recurrent, gain, ...(params ? { params } : {}), ...layer })),
      readout: { size: outputs, ...(leaky ? { kappa: 0.8 } : {}), ...readout },
      ...(surrogate ? { surrogate } : {}),
    },
    { neurons: new Map([[neuron.name, neuron]]), surrogates: builtinSurrogates, ...(readouts ? { readouts } : {}) },
    { seed, ...(kernels ? { kernels } : {}) },
  );
}

/**
 * A random batch shaped for `network`: `[steps, batch, network.inputs]` Bernoulli(`density`)
 * spikes and the targets `loss` expects for `network.outputs` readout units (see `randomBatch`).
 * Seeded; the caller disposes its tensors. `streamed(batch)` gives the same batch with its inputs
 * as a step source, as datasets yield them.
 */
export function batchFor(
  network: Network,
  loss: TemporalLoss,
  { steps, batch = 4, density, seed }: { readonly steps: number; readonly batch?: number; readonly density?: number; readonly seed?: number },
): SequenceBatch<Tensor> {
  return randomBatch({ steps, loss, batch, inputs: network.inputs, outputs: network.outputs, density, seed });
}

export interface TrainStepOptions {
  /** The rule's state going in (default: `rule.init(network)`). It is handed over as the trainer does: once a new state replaces it, it is freed. */
  readonly state?: TensorTree;
  /**
   * What applies the updates: an `OptimizerRunner` kept across steps (its moments carry over), or an
   * optimizer used for this step only. Default `sgd({ lr: 0.05 })`, which keeps no state, so a
   * loop of `trainStep`s is plain SGD. The runner's `optimizer` is the context's `optimizer` too
   * (for rules with parameters of their own).
   */
  readonly optimizer?: OptimizerRunner | Optimizer;
  /** Receives the readout of every step (`ctx.observe`). */
  readonly observe?: (t: number, y: Tensor) => void;
  /** Records each update's gradients as plain numbers in `grads` (default false). */
  readonly record?: boolean;
  /** Seed of the step's dropout masks (default 0), as the trainer's per-batch seed. */
  readonly seed?: number;
}

export interface TrainStepResult {
  /** The rule's state after the step: the caller's to pass on or free. */
  readonly state: TensorTree;
  /** The loss the rule reported. */
  readonly loss: number;
  /** Optimizer updates the rule applied. */
  readonly updates: number;
  /** With `record`: the gradients of every update, in order (else empty). */
  readonly grads: Grads[];
}

/**
 * One training step of `rule` on `batch`, as the trainer runs it: `rule.update` inside
 * `Network.training` (dropout masks drawn from `options.seed`, default 0; batch statistics) with a
 * context whose `apply` changes the network's weights through an optimizer, then the state
 * hand-over. For gradients without changing any weight, use `captureUpdates`.
 */
export function trainStep(rule: LearningRule, network: Network, batch: SequenceBatch, loss: TemporalLoss, options: TrainStepOptions = {}): TrainStepResult {
  const { optimizer = sgd({ lr: 0.05 }), observe, record = false } = options;
  const state = options.state ?? rule.init(network);
  const runner = optimizer instanceof OptimizerRunner ? optimizer : new OptimizerRunner(optimizer, network.params);
  const grads: Grads[] = [];
  let done = false;
  try {
    const r = network.training(inputShape(batch.inputs)[1]!, options.seed ?? 0, () =>
      rule.update(batch, state, {
        network,
        loss,
        apply: (g) => {
          if (record) grads.push(gradsOf(g));
          runner.apply(g);
        },
        optimizer: runner.optimizer,
        ...(observe ? { observe } : {}),
      }),
    );
    done = true;
    if (r.state !== state) disposeTree(state, r.state);
    return { state: r.state, loss: lossNow(r.report), updates: r.report.updates, grads };
  } finally {
    if (runner !== optimizer) runner.dispose();
    // A refused update leaves nothing behind of what this call made.
    if (!done && options.state === undefined) disposeTree(state);
  }
}

/**
 * The `SpikeflowError` that `f` throws, for assertions on its code and message:
 * `expect(errorOf(() => rule.update(...)).code).toBe('INCOMPATIBLE')`. Any other error is thrown
 * on, and a call that throws nothing fails the test.
 */
export function errorOf(f: () => unknown): SpikeflowError {
  try {
    f();
  } catch (e) {
    if (isSpikeflowError(e)) return e;
    throw e;
  }
  throw new Error('expected a SpikeflowError; the call returned normally');
}

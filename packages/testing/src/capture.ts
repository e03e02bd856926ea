import { expect } from 'vitest';
import {
  lossNow,
  disposeTree,
  inputShape,
  paramGrads,
  stepSource,
  stepsOf,
  tf,
  type LearningRule,
  type NamedTensorMap,
  type Network,
  type Optimizer,
  type SequenceBatch,
  type StepSource,
  type TemporalLoss,
  type Tensor,
  type TensorTree,
} from '@spikeflow/core';
import { relativeError } from './fixtures.js';

/** Gradients by parameter name, as plain numbers. */
export type Grads = Record<string, number[]>;

export function gradsOf(g: NamedTensorMap): Grads {
  return Object.fromEntries(Object.entries(g).map(([k, v]) => [k, Array.from(v.dataSync())]));
}

/**
 * Runs one `update` of `rule` and records the gradient maps it hands to `ctx.apply`, in order,
 * without changing any weight. Frees the states (`state` defaults to `rule.init(net)`) unless
 * `keepState` asks for the new one back.
 */
export function captureUpdates(
  rule: LearningRule,
  net: Network,
  batch: SequenceBatch,
  loss: TemporalLoss,
  { state = rule.init(net), optimizer, keepState = false }: { state?: TensorTree; optimizer?: Optimizer; keepState?: boolean } = {},
): { grads: Grads[]; loss: number; updates: number; state?: TensorTree } {
  const grads: Grads[] = [];
  const r = rule.update(batch, state, { network: net, loss, apply: (g) => grads.push(gradsOf(g)), ...(optimizer ? { optimizer } : {}) });
  if (r.state !== state) disposeTree(state, r.state);
  if (!keepState) disposeTree(r.state);
  return { grads, loss: lossNow(r.report), updates: r.report.updates, ...(keepState ? { state: r.state } : {}) };
}

/** Full BPTT's gradient of `loss` on `batch` (inputs a tensor or a step source), by automatic differentiation over the network's own steps. */
export function bpttGrads(net: Network, batch: SequenceBatch, loss: TemporalLoss): Grads {
  const [T, B] = inputShape(batch.inputs) as [number, number];
  const bound = loss.bind(batch.targets, { steps: T, batch: B, outputs: net.outputs });
  const steps = stepsOf(batch.inputs);
  const xs = Array.from({ length: T }, (_, t) => steps.at(t));
  try {
    const { value, grads } = paramGrads(net, () => {
      const p = net.prepare();
      let s = net.init(B);
      const ys = xs.map((x) => {
        const out = net.step(p, s, x);
        s = out.state;
        return out.readout;
      });
      return bound.sequence(ys);
    });
    value.dispose();
    const out = gradsOf(grads);
    disposeTree(grads);
    return out;
  } finally {
    disposeTree(xs);
    bound.dispose();
  }
}

/** Same parameters, and every gradient within `tolerance` relative error (max-abs over max-abs). */
export function expectGradsClose(got: Grads, want: Grads, tolerance = 1e-4): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const [k, w] of Object.entries(want)) {
    expect(got[k]!.length, k).toBe(w.length);
    expect(relativeError(got[k]!, w), k).toBeLessThan(tolerance);
  }
}

/** Sums gradient records by name (absent = zero). */
export function sumGrads(...gs: Grads[]): Grads {
  const out: Grads = {};
  for (const g of gs) for (const [k, v] of Object.entries(g)) out[k] = out[k] ? out[k]!.map((a, i) => a + v[i]!) : [...v];
  return out;
}

/** The largest absolute difference between two gradient records over the names of `a` (absent in `b` = 0), optionally only names `only` accepts. */
export function maxGradDiff(a: Grads, b: Grads, only?: (name: string) => boolean): number {
  let m = 0;
  for (const [k, v] of Object.entries(a)) if (!only || only(k)) v.forEach((x, i) => (m = Math.max(m, Math.abs(x - (b[k]?.[i] ?? 0)))));
  return m;
}

/**
 * A small random batch for gradient tests: `[steps, batch, inputs]` Bernoulli(`density`) spikes,
 * and the targets `loss` expects (its `target`): labels `b mod outputs`, or values uniform in
 * ±1 for every step `[T, B, O]` or for the last `[B, O]`. Seeded.
 */
export function randomBatch({
  steps,
  loss,
  batch = 4,
  inputs = 6,
  outputs = 3,
  density = 0.35,
  seed = 2,
}: {
  steps: number;
  loss: TemporalLoss;
  batch?: number;
  inputs?: number;
  outputs?: number;
  density?: number;
  seed?: number;
}): SequenceBatch<Tensor> {
  return tf.tidy(() => {
    const x = tf.cast(tf.less(tf.randomUniform([steps, batch, inputs], 0, 1, 'float32', seed), density), 'float32');
    if (loss.target.startsWith('values [T')) return { inputs: x, targets: tf.randomUniform([steps, batch, outputs], -1, 1, 'float32', seed + 1) };
    if (loss.target.startsWith('values')) return { inputs: x, targets: tf.randomUniform([batch, outputs], -1, 1, 'float32', seed + 1) };
    return {
      inputs: x,
      targets: tf.tensor1d(
        Array.from({ length: batch }, (_, b) => b % outputs),
        'int32',
      ),
    };
  }) as unknown as SequenceBatch<Tensor>;
}

/**
 * A step source with the values of the `[T, B, ...]` tensor `x` (copied once): each window a fresh
 * tensor, as a dataset's lazily made batches give them. `calls` lists the windows asked for, in
 * order. Tests train from it and from `x` and compare.
 */
export function sourceOf(x: Tensor): StepSource & { readonly calls: readonly (readonly [number, number])[] } {
  if (x.dtype !== 'float32') throw new Error(`sourceOf: expected a float32 tensor, got ${x.dtype}`);
  const [T, ...step] = x.shape;
  const data = Float32Array.from(x.dataSync());
  const per = step.reduce((a, b) => a * b, 1);
  const calls: [number, number][] = [];
  const source = stepSource({
    steps: T!,
    stepShape: step,
    fill: (from, to, out) => {
      calls.push([from, to]);
      out.set(data.subarray(from * per, to * per));
    },
  });
  return Object.assign(source, { calls });
}

/** `batch` with its inputs as a step source of the same values ({@link sourceOf}); the targets are the batch's own (not copied). */
export function streamed(batch: SequenceBatch<Tensor>): SequenceBatch<StepSource & { readonly calls: readonly (readonly [number, number])[] }> {
  return { inputs: sourceOf(batch.inputs), targets: batch.targets };
}

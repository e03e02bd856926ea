import { describe, expect, it } from 'vitest';
import { tf, type Tensor } from './tf.js';
import { hasDropout, resolveModel } from './model.js';
import { buildNetwork, type Network } from './network.js';
import { forward } from './inference.js';
import { disposeTree } from './state.js';
import { checkRequirements, type LearningRule } from './rule.js';
import { ceEveryStep, ceMean } from './losses.js';
import { trainWindows } from './windows.js';
import { errorOf, iafRegistry, referenceFusedKernels, useCpuBackend } from './test-support.js';

useCpuBackend();

const reg = iafRegistry();

/** Input dropout, a recurrent layer, dropout between the layers and before the readout. */
const denseSpec = (neuron: string, dropout = true) => ({
  inputs: 7,
  layers: [
    ...(dropout ? [{ type: 'dropout', rate: 0.5 }] : []),
    { neuron, size: 8, recurrent: true, gain: 2 },
    ...(dropout ? [{ type: 'dropout', rate: 0.3 }] : []),
    { neuron, size: 6, gain: 2 },
    ...(dropout ? [{ type: 'dropout', rate: 0.4 }] : []),
  ],
  readout: { size: 3 },
});

/** A conv layer, pooling, then dropout of the pooled map before a dense layer. */
const convSpec = (neuron: string) => ({
  inputShape: [6, 6, 2],
  layers: [
    { type: 'conv2d', neuron, channels: 3, kernel: 3, padding: 'same', gain: 3 },
    { type: 'maxpool', size: 2 },
    { type: 'dropout', rate: 0.25 },
    { type: 'flatten' },
    { neuron, size: 5, gain: 3 },
  ],
  readout: { size: 3 },
});

/** Σ y² over the window and its gradient, from `x [T, B, F]` in one window (fused) or step by step, inside the batch's dropout. */
function lossAndGrads(net: Network, x: Tensor, seed: number) {
  const [T, B] = x.shape as [number, number];
  const names = new Map(Object.entries(net.params).map(([k, v]) => [v.name, k]));
  return net.training(B, seed, () => {
    const { value, grads } = tf.variableGrads(() => {
      const p = net.prepare();
      if (net.fused) {
        const o = net.runWindow(p, net.init(B), x);
        return tf.sum(tf.mul(o.readout, o.readout)) as tf.Scalar;
      }
      let s = net.init(B);
      const ys: Tensor[] = [];
      for (let t = 0; t < T; t++) {
        const o = net.step(p, s, tf.squeeze(tf.slice(x, [t, 0, 0], [1, -1, -1]), [0]));
        ys.push(o.readout);
        s = o.state;
      }
      return tf.sum(tf.square(tf.stack(ys))) as tf.Scalar;
    }, Object.values(net.params));
    return { value, grads: Object.fromEntries(Object.entries(grads).map(([k, g]) => [names.get(k)!, g])) };
  });
}

const spikes = (shape: number[], seed: number) => tf.tidy(() => tf.cast(tf.less(tf.randomUniform(shape, 0, 1, 'float32', seed), 0.4), 'float32'));

function expectClose(got: Tensor, want: Tensor, what: string, tol = 1e-5) {
  const w = want.dataSync();
  const scale = Math.max(1e-6, ...Array.from(w, Math.abs));
  expect(scale, `${what} is not all zero`).toBeGreaterThan(1e-6);
  got.dataSync().forEach((v, i) => expect(Math.abs(v - w[i]!) / scale, `${what}[${i}]`).toBeLessThan(tol));
}

describe('dropout', () => {
  it('resolves onto the input of the layer (or readout) after it, and refuses what does not fit, naming the entry', () => {
    const m = resolveModel(denseSpec('iaf'), reg);
    expect(m.layers.map((l) => [l.specIndex, l.dropout])).toEqual([
      [1, 0.5],
      [3, 0.3],
    ]);
    expect(m.readoutDropout).toBe(0.4);
    expect(hasDropout(m)).toBe(true);
    expect(hasDropout(resolveModel(denseSpec('iaf', false), reg))).toBe(false);
    const c = resolveModel(convSpec('iaf'), reg);
    expect(c.layers[1]!.pools.length).toBe(1);
    expect(c.layers[1]!.dropout).toBe(0.25);

    const bad = (layers: object[], match: RegExp) => {
      const e = errorOf(() => resolveModel({ inputs: 4, layers, readout: { size: 2 } }, reg));
      expect(e.code).toBe('CONFIG_INVALID');
      expect(e.message).toMatch(match);
    };
    bad(
      [
        { type: 'dropout', rate: 1 },
        { neuron: 'iaf', size: 3 },
      ],
      /model\.layers\[0\]\.rate: must be < 1, got 1/,
    );
    bad(
      [
        { type: 'dropout', rate: -0.1 },
        { neuron: 'iaf', size: 3 },
      ],
      /model\.layers\[0\]\.rate: must be >= 0/,
    );
    bad([{ type: 'dropout' }, { neuron: 'iaf', size: 3 }], /model\.layers\[0\]\.rate/);
    bad(
      [
        { type: 'dropout', rate: 0.1, p: 2 },
        { neuron: 'iaf', size: 3 },
      ],
      /model\.layers\[0\]/,
    );
    bad(
      [
        { type: 'dropout', rate: 0.1 },
        { type: 'dropout', rate: 0.2 },
        { neuron: 'iaf', size: 3 },
      ],
      /layers\[1\]\.type: follows the dropout of layers\[0\].*merge them/,
    );
    const pooled = errorOf(() =>
      resolveModel(
        {
          inputShape: [4, 4, 1],
          layers: [{ type: 'dropout', rate: 0.1 }, { type: 'avgpool', size: 2 }, { type: 'flatten' }, { neuron: 'iaf', size: 2 }],
          readout: { size: 2 },
        },
        reg,
      ),
    );
    expect(pooled.message).toMatch(/layers\[1\]\.type: pools what the dropout of layers\[0\] masked; put the dropout after the pooling/);
  });

  it('draws one mask per sequence and feature from the seed alone, 0 or 1/(1 − rate), only inside a training pass', () => {
    const net = buildNetwork(denseSpec('iaf'), reg);
    try {
      expect(net.prepare().dropout).toBeUndefined();
      const B = 200;
      const read = (seed: number) =>
        net.training(B, seed, () => {
          const d = net.prepare().dropout!;
          expect(() => net.training(B, seed, () => 0)).toThrow(/already inside a training pass/);
          return { layers: d.layers.map((t) => ({ shape: t!.shape, values: Array.from(t!.dataSync()) })), readout: Array.from(d.readout!.dataSync()) };
        });
      const before = tf.memory().numTensors;
      const a = read(11);
      expect(tf.memory().numTensors).toBe(before);
      expect(a.layers.map((l) => l.shape)).toEqual([
        [B, 7],
        [B, 8],
      ]);
      expect(a.readout.length).toBe(B * 6);
      const rates = [0.5, 0.3];
      a.layers.forEach((l, i) => {
        const keep = 1 / (1 - rates[i]!);
        expect(new Set(l.values)).toEqual(new Set([0, keep].map(Math.fround)));
        const dropped = l.values.filter((v) => v === 0).length / l.values.length;
        expect(Math.abs(dropped - rates[i]!)).toBeLessThan(0.05);
      });
      expect(read(11)).toEqual(a);
      expect(read(12).layers[0]!.values).not.toEqual(a.layers[0]!.values);
      expect(net.prepare().dropout).toBeUndefined();
      // A model without dropout runs the function as it is.
      const plain = buildNetwork(denseSpec('iaf', false), reg);
      expect(plain.training(4, 1, () => plain.prepare().dropout)).toBeUndefined();
      plain.dispose();
    } finally {
      net.dispose();
    }
  });

  for (const fused of [false, true]) {
    it(`is the network with each mask folded into the weights it feeds, at every step (one sequence${fused ? ', fused window' : ''})`, () => {
      const neuron = fused ? 'iaf-fused' : 'iaf';
      const options = fused ? { kernels: referenceFusedKernels(), seed: 3 } : { seed: 3 };
      const net = buildNetwork(denseSpec(neuron), reg, options);
      const plain = buildNetwork(denseSpec(neuron, false), reg, options);
      expect(net.fused).toBe(fused);
      const x = spikes([9, 1, 7], 5);
      const masks = net.training(1, 21, () => {
        const d = net.prepare().dropout!;
        return [...d.layers, d.readout].map((t) => tf.keep(tf.reshape(t!, [-1, 1])));
      });
      // (x ⊙ m)·W = x·(diag(m)·W): fold each mask into the rows of the weight its input meets.
      const folded = { 'layers.0.W': 0, 'layers.1.W': 1, 'readout.W': 2 } as const;
      tf.tidy(() =>
        plain.setParams(
          Object.fromEntries(Object.entries(net.params).map(([k, v]) => [k, k in folded ? tf.mul(v, masks[folded[k as keyof typeof folded]]!) : v])),
        ),
      );
      const a = lossAndGrads(net, x, 21);
      const b = lossAndGrads(plain, x, 21);
      try {
        expect(b.value.dataSync()[0]).toBeGreaterThan(0);
        expect(a.value.dataSync()[0]).toBeCloseTo(b.value.dataSync()[0]!, 4);
        for (const [k, g] of Object.entries(b.grads)) {
          // ∂L/∂W = diag(m)·∂L/∂(diag(m)·W); every other parameter's gradient is the same.
          const want = k in folded ? tf.mul(g, masks[folded[k as keyof typeof folded]]!) : g;
          expectClose(a.grads[k]!, want, k);
          if (want !== g) want.dispose();
        }
      } finally {
        tf.dispose([a.value, b.value, ...Object.values(a.grads), ...Object.values(b.grads), ...masks, x]);
        net.dispose();
        plain.dispose();
      }
    });
  }

  it('a conv network with dropout gives the same values and gradients fused as step by step; evaluation has no dropout', () => {
    const x = spikes([4, 2, 72], 8);
    const fused = buildNetwork(convSpec('iaf-fused'), reg, { kernels: referenceFusedKernels(), seed: 4 });
    const steps = buildNetwork(convSpec('iaf-fused'), reg, { seed: 4 });
    const noDropout = buildNetwork({ ...convSpec('iaf-fused'), layers: convSpec('iaf-fused').layers.filter((l) => l.type !== 'dropout') }, reg, { seed: 4 });
    expect([fused.fused, steps.fused]).toEqual([true, false]);
    const a = lossAndGrads(fused, x, 9);
    const b = lossAndGrads(steps, x, 9);
    const c = lossAndGrads(steps, x, 10);
    const eval1 = forward(steps, x);
    const eval2 = forward(noDropout, x);
    try {
      expect(a.value.dataSync()[0]).toBeCloseTo(b.value.dataSync()[0]!, 4);
      expect(c.value.dataSync()[0]).not.toBeCloseTo(b.value.dataSync()[0]!, 4);
      for (const [k, g] of Object.entries(b.grads)) expectClose(a.grads[k]!, g, k);
      expect(Array.from(eval1.readout.dataSync())).toEqual(Array.from(eval2.readout.dataSync()));
    } finally {
      tf.dispose([x, a.value, b.value, c.value, ...Object.values(a.grads), ...Object.values(b.grads), ...Object.values(c.grads)]);
      disposeTree([eval1, eval2]);
      for (const n of [fused, steps, noDropout]) n.dispose();
    }
  });

  it('a window’s feeds — what each layer and the readout read, pooled and masked — are the same stepped as fused', () => {
    const x = spikes([4, 2, 72], 12);
    const feeds = (net: Network) =>
      net.training(2, 5, () => {
        const got: number[][] = [];
        const ctx = { network: net, loss: ceEveryStep, apply: () => {} };
        const batch = { inputs: x, targets: tf.tensor1d([0, 2], 'int32') };
        trainWindows(batch, ctx, {
          window: 4,
          update: 'sequence',
          objective: (out) => {
            for (const l of [0, 1, 'readout'] as const) got.push(Array.from(out.feed(l).dataSync()));
            return null;
          },
          backward: () => false,
        });
        batch.targets.dispose();
        return got;
      });
    const fused = buildNetwork(convSpec('iaf-fused'), reg, { kernels: referenceFusedKernels(), seed: 4 });
    const steps = buildNetwork(convSpec('iaf-fused'), reg, { seed: 4 });
    try {
      const [a, b] = [feeds(fused), feeds(steps)];
      expect(a.map((f) => f.length)).toEqual([4 * 2 * 72, 4 * 2 * 27, 4 * 2 * 5]);
      expect(a[1]!.some((v) => v === 0) && a[1]!.some((v) => v > 1)).toBe(true);
      a.forEach((f, i) => f.forEach((v, j) => expect(b[i]![j]!, `feed ${i} [${j}]`).toBeCloseTo(v, 5)));
    } finally {
      x.dispose();
      fused.dispose();
      steps.dispose();
    }
  });

  it('a rule that declares noDropout refuses a model with dropout, naming the entry', () => {
    const rule = (noDropout: boolean): LearningRule =>
      ({ name: 'own-traces', memory: 'O(1)', gradient: 'approximate', requires: { noDropout }, init: () => ({}), update: () => ({}) }) as never;
    const net = buildNetwork(denseSpec('iaf'), reg);
    try {
      const e = errorOf(() => checkRequirements(rule(true), net, ceMean));
      expect(e.code).toBe('INCOMPATIBLE');
      expect(e.message).toMatch(/rule 'own-traces' cannot train this run: model\.layers\[0\]: .*does not apply dropout masks; remove the dropout/);
      expect(() => checkRequirements(rule(false), net, ceMean)).not.toThrow();
    } finally {
      net.dispose();
    }
  });
});

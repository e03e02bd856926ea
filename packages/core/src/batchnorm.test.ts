import { describe, expect, it } from 'vitest';
import { tf, type Tensor } from './tf.js';
import { resolveModel } from './model.js';
import { buildNetwork, type Network } from './network.js';
import { forward } from './inference.js';
import { disposeTree } from './state.js';
import { errorOf, iafRegistry, referenceFusedKernels, useCpuBackend } from './test-support.js';

useCpuBackend();

const reg = iafRegistry();

/** One batch-normalised conv layer on 6×6×2 maps, flattened into the readout. */
const spec = (batchNorm: unknown = true, neuron = 'iaf-fused') => ({
  inputShape: [6, 6, 2],
  layers: [{ type: 'conv2d', neuron, channels: 3, kernel: 3, padding: 'same', ...(batchNorm ? { batchNorm } : {}) }, { type: 'flatten' }],
  readout: { size: 2 },
});

const spikes = (shape: number[], seed: number) => tf.tidy(() => tf.cast(tf.less(tf.randomUniform(shape, 0, 1, 'float32', seed), 0.4), 'float32'));

/** Per channel: the mean and the biased variance of conv(x, W) over every step, batch element and position of `x [T, B, 72]`. */
function convMoments(x: Tensor, w: Tensor): { mean: Float32Array; variance: Float32Array; n: number } {
  return tf.tidy(() => {
    const [T, B] = x.shape as [number, number];
    const y = tf.reshape(tf.conv2d(tf.reshape(x, [T * B, 6, 6, 2]) as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'), [-1, 3]);
    const m = tf.moments(y, 0);
    return { mean: m.mean.dataSync() as Float32Array, variance: m.variance.dataSync() as Float32Array, n: y.shape[0]! };
  });
}

/** A network without batch normalisation whose conv is the affine map the normalisation makes of `net`'s: W·γ/σ and β − μ·γ/σ. */
function folded(net: Network, mean: ArrayLike<number>, variance: ArrayLike<number>): Network {
  const twin = buildNetwork(spec(false), reg, { kernels: referenceFusedKernels() });
  const gamma = net.params['layers.0.bn_gamma']!.dataSync();
  const beta = net.params['layers.0.bn_beta']!.dataSync();
  const scale = Array.from(gamma, (g, c) => g / Math.sqrt(variance[c]! + 1e-5));
  tf.tidy(() =>
    twin.setParams({
      'layers.0.W': tf.mul(net.params['layers.0.W']!, tf.tensor1d(scale)),
      'layers.0.b': Array.from(beta, (b, c) => b - mean[c]! * scale[c]!),
      'readout.W': net.params['readout.W']!,
      'readout.b': net.params['readout.b']!,
    }),
  );
  return twin;
}

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number) => {
  const scale = Math.max(...Array.from(b, Math.abs));
  expect(scale).toBeGreaterThan(0);
  Array.from(a).forEach((v, i) => expect(Math.abs(v - b[i]!) / scale, `[${i}]`).toBeLessThan(tol));
};

describe('batch normalisation through time', () => {
  it('resolves onto conv layers: γ and β trained, the running estimates kept as buffers, no bias; bad options named', () => {
    const m = resolveModel(spec({ momentum: 0.2 }), reg);
    expect(m.layers[0]!.batchNorm).toEqual({ momentum: 0.2, epsilon: 1e-5 });
    expect(m.layers[0]!.bias).toBe(false);
    const net = buildNetwork(spec(), reg);
    const sew = buildNetwork(
      { inputShape: [4, 4, 2], layers: [{ type: 'sew_block', neuron: 'iaf', connect: 'ADD', batchNorm: true }, { type: 'flatten' }], readout: { size: 2 } },
      reg,
    );
    try {
      expect(Object.keys(net.params).sort()).toEqual(['layers.0.W', 'layers.0.bn_beta', 'layers.0.bn_gamma', 'readout.W', 'readout.b']);
      expect(Object.keys(net.buffers).sort()).toEqual(['layers.0.bn_mean', 'layers.0.bn_var']);
      expect(Object.keys(net.variables).length).toBe(7);
      expect(Array.from(net.params['layers.0.bn_gamma']!.dataSync())).toEqual([1, 1, 1]);
      expect(Array.from(net.buffers['layers.0.bn_var']!.dataSync())).toEqual([1, 1, 1]);
      expect(Object.keys(sew.buffers).sort()).toEqual(['layers.0.bn2_mean', 'layers.0.bn2_var', 'layers.0.bn_mean', 'layers.0.bn_var']);
      expect(Object.keys(sew.params).filter((k) => k.includes('bn')).length).toBe(4);
    } finally {
      net.dispose();
      sew.dispose();
    }
    const bad = (layer: object, match: RegExp) => {
      const e = errorOf(() =>
        resolveModel(
          { inputShape: [6, 6, 2], layers: [{ type: 'conv2d', neuron: 'iaf', channels: 3, kernel: 3, ...layer }, { type: 'flatten' }], readout: { size: 2 } },
          reg,
        ),
      );
      expect(e.code).toBe('CONFIG_INVALID');
      expect(e.message).toMatch(match);
    };
    bad({ batchNorm: true, bias: true }, /model\.layers\[0\]\.bias: a batch-normalised convolution has no bias of its own/);
    bad({ batchNorm: { momentum: 2 } }, /model\.layers\[0\]\.batchNorm\.momentum: must be <= 1/);
    bad({ batchNorm: { eps: 1e-3 } }, /model\.layers\[0\]\.batchNorm\.eps: unknown key.*epsilon/);
    bad({ batchNorm: 'yes' }, /model\.layers\[0\]\.batchNorm/);
  });

  it('a training pass normalises over every step, batch element and position of its window, and moves the running estimates by PyTorch’s rule', () => {
    const net = buildNetwork(spec({ momentum: 0.3 }), reg, { kernels: referenceFusedKernels(), seed: 2 });
    const x = spikes([5, 3, 72], 4);
    tf.tidy(() => net.setParams({ 'layers.0.bn_gamma': [1.5, 0.8, 2], 'layers.0.bn_beta': [0.5, 1, 0.2] }));
    const stats = convMoments(x, net.params['layers.0.W']!);
    const train = net.training(3, 0, () => tf.tidy(() => Array.from(net.runWindow(net.prepare(), net.init(3), x).readout.dataSync())));
    const twin = folded(net, stats.mean, stats.variance);
    const want = forward(twin, x);
    try {
      close(train, want.readout.dataSync(), 1e-4);
      const n = stats.n;
      close(
        net.buffers['layers.0.bn_mean']!.dataSync(),
        Array.from(stats.mean, (m) => 0.3 * m),
        1e-5,
      );
      close(
        net.buffers['layers.0.bn_var']!.dataSync(),
        Array.from(stats.variance, (v) => 0.7 + 0.3 * v * (n / (n - 1))),
        1e-5,
      );
    } finally {
      disposeTree(want);
      x.dispose();
      twin.dispose();
      net.dispose();
    }
  });

  it('the statistics are on the gradient tape: the loss does not change with the scale of W, so ⟨W, ∂L/∂W⟩ = 0 for each channel', () => {
    const net = buildNetwork(spec(), reg, { kernels: referenceFusedKernels(), seed: 5 });
    const x = spikes([4, 2, 72], 6);
    const names = new Map(Object.entries(net.params).map(([k, v]) => [v.name, k]));
    const { value, grads } = net.training(2, 0, () =>
      tf.variableGrads(() => {
        const o = net.runWindow(net.prepare(), net.init(2), x);
        return tf.sum(tf.square(o.readout)) as tf.Scalar;
      }, Object.values(net.params)),
    );
    try {
      const byName = Object.fromEntries(Object.entries(grads).map(([k, g]) => [names.get(k)!, g]));
      const w = net.params['layers.0.W']!.dataSync();
      const g = byName['layers.0.W']!.dataSync();
      for (let c = 0; c < 3; c++) {
        let dot = 0;
        let gg = 0;
        let ww = 0;
        for (let j = c; j < w.length; j += 3) {
          dot += w[j]! * g[j]!;
          gg += g[j]! * g[j]!;
          ww += w[j]! * w[j]!;
        }
        expect(Math.sqrt(gg), `channel ${c} has a gradient`).toBeGreaterThan(1e-4);
        expect(Math.abs(dot) / Math.sqrt(gg * ww), `channel ${c}`).toBeLessThan(1e-3);
      }
      expect(Math.max(...Array.from(byName['layers.0.bn_beta']!.dataSync(), Math.abs))).toBeGreaterThan(1e-4);
    } finally {
      tf.dispose([value, ...Object.values(grads), x]);
      net.dispose();
    }
  });

  it('outside training it normalises with the running estimates, fused and step by step; training step by step is refused, naming the layer', () => {
    const x = spikes([4, 2, 72], 7);
    const fused = buildNetwork(spec(), reg, { kernels: referenceFusedKernels(), seed: 3 });
    const steps = buildNetwork(spec(true, 'iaf'), reg, { seed: 3 });
    const running = {
      'layers.0.bn_mean': [0.2, -0.1, 0.4],
      'layers.0.bn_var': [0.5, 2, 1.2],
      'layers.0.bn_gamma': [1.2, 1, 2],
      'layers.0.bn_beta': [0.7, 0.3, 0.6],
    };
    fused.setParams(running);
    steps.setParams({ ...running, 'layers.0.W': fused.params['layers.0.W']! });
    const twin = folded(fused, running['layers.0.bn_mean'], running['layers.0.bn_var']);
    const [a, b, c] = [forward(fused, x), forward(steps, x), forward(twin, x)];
    try {
      expect(fused.fused).toBe(true);
      expect(steps.fused).toBe(false);
      close(a.readout.dataSync(), c.readout.dataSync(), 1e-4);
      close(b.readout.dataSync(), c.readout.dataSync(), 1e-4);
      const e = errorOf(() => steps.training(2, 0, () => tf.tidy(() => steps.step(steps.prepare(), steps.init(2), tf.zeros([2, 72])).readout)));
      expect(e.code).toBe('INCOMPATIBLE');
      expect(e.message).toMatch(/model\.layers\[0\] \(conv2d\): batch normalisation through time takes its statistics over all the steps .* train it fused/);
    } finally {
      disposeTree([a, b, c]);
      x.dispose();
      for (const n of [fused, steps, twin]) n.dispose();
    }
  });
});

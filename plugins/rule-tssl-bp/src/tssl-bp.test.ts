import { beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  applyPools,
  buildNetwork,
  builtinSurrogates,
  ceMean,
  checkRequirements,
  createRegistry,
  disposeTree,
  forward,
  isSpikeflowError,
  lossFromSpec,
  loadPlugins,
  ruleFromSpec,
  tf,
  type AnyNeuronModel,
  type Network,
  type TemporalLoss,
} from '@spikeflow/core';
import { captureUpdates, checkFixtureDir, trainStep, tsslFixtureNetwork, type TsslFixture } from '@spikeflow/testing';
import { wasm } from '@spikeflow/backend-wasm';
import { cpu } from '@spikeflow/backend-cpu';
import { tssl } from '@spikeflow/neuron-tssl';
import { lif } from '@spikeflow/neuron-lif';
import plugin, { desiredSpikes, pspFiltered, tsslBp, tsslCount, tsslKernel, tsslSoftmax } from './index.js';

beforeAll(() => wasm.activate());

/** The TSSL-BP fixtures (float64, the authors' code): packages/testing/fixtures/tssl. */
const dir = new URL('../../../packages/testing/fixtures/tssl/', import.meta.url).pathname;

const fixtures: TsslFixture[] = readdirSync(dir)
  .filter((f) => f.endsWith('.json') && f !== 'index.json')
  .sort()
  .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as TsslFixture);

const neurons = new Map<string, AnyNeuronModel>([
  ['tssl', tssl as AnyNeuronModel],
  ['lif', lif as AnyNeuronModel],
]);

/** The fixture's network: `tssl` layers (the first filtering its input), no bias, the identity readout, the fixture's weights. */
const networkOf = (f: TsslFixture): Network => tsslFixtureNetwork(f, { neurons, surrogates: builtinSurrogates });

function lossOf(f: TsslFixture): TemporalLoss {
  const c = f.config;
  if (c.loss === 'kernel') return tsslKernel({ tauS: c.tau_s, passes: c.kernel_target_filter_passes ?? 2, desired: (c.desired_spikes ?? []).join('') });
  if (c.loss === 'count') return tsslCount({ desired: c.desired_count!, undesired: c.undesired_count! });
  return tsslSoftmax;
}

const batchOf = (f: TsslFixture) => ({ inputs: tf.tensor3d(f.inputs), targets: tf.tensor1d([...f.labels], 'int32') });

function expectClose(got: ArrayLike<number>, want: number[], what: string, tol: number) {
  const scale = Math.max(1e-12, ...want.map(Math.abs));
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!) / scale, `${what}[${i}]`).toBeLessThan(tol);
}

describe.each(['wasm', 'cpu'] as const)('TSSL-BP against the authors’ fixtures, float32 (%s)', (backend) => {
  for (const f of fixtures) {
    it(`${f.name} (${f.config.loss} loss, layers ${f.config.sizes.join('-')}, T = ${f.config.T}): the loss, every weight gradient within 1e-5, the output PSP sums and the prediction`, async () => {
      await (backend === 'wasm' ? wasm : cpu).activate();
      const net = networkOf(f);
      const b = batchOf(f);
      try {
        const got = captureUpdates(tsslBp(), net, b, lossOf(f));
        expect(got.grads).toHaveLength(1);
        expect(Math.abs(got.loss - f.expected.loss) / Math.max(1e-12, Math.abs(f.expected.loss))).toBeLessThan(1e-5);
        for (let l = 0; l < f.config.sizes.length - 1; l++) {
          expectClose(got.grads[0]![`layers.${l}.W`]!, f.expected.grads[`W${l + 1}`]!.flat(), `∂L/∂W${l + 1}`, 1e-5);
        }
        // Inference through the network's own steps gives the same PSPs: the sums and the class.
        const out = forward(net, b.inputs);
        const sums = tf.sum(out.readout, 0);
        expectClose(sums.dataSync(), f.expected.output_psp_sum.flat(), 'Σ_t A_t', 1e-5);
        expect(Array.from(tf.argMax(sums, 1).dataSync())).toEqual(f.expected.predicted);
        tf.dispose(sums);
        disposeTree(out);
      } finally {
        disposeTree(b);
        net.dispose();
        await wasm.activate();
      }
    });
  }
});

/** A fresh network of `tssl` layers from a model spec (seeded weights). */
const build = (spec: Record<string, unknown>, seed = 5) => buildNetwork(spec as never, { neurons, surrogates: builtinSurrogates }, { seed });

/** The matrix M of a linear map f on flat rows: f(x) = x·M, M's rows f's images of the unit rows. */
function matrixOf(inputs: number, f: (rows: tf.Tensor) => tf.Tensor): tf.Tensor {
  return tf.tidy(() => f(tf.eye(inputs)));
}

describe('TSSL-BP on convolutions, pooling and dropout: the dense network with the same linear maps (whose rule the fixtures check)', () => {
  const T = 10;
  const B = 2;
  // conv 3×3 valid, 1 → 2 channels on 6×6 (→ 4×4×2), TSSL-BP's sum pooling ×1.1 (→ 2×2×2), dense 3.
  const convSpec = {
    inputShape: [6, 6, 1],
    layers: [
      { type: 'conv2d', neuron: 'tssl', channels: 2, kernel: 3, bias: false, gain: 6, params: { filterInput: true } },
      { type: 'sumpool', size: 2, scale: 1.1 },
      { type: 'flatten' },
      { neuron: 'tssl', size: 3, bias: false, gain: 4 },
    ],
    readout: { kind: 'identity', size: 3 },
  };
  const denseSpec = {
    inputs: 36,
    layers: [
      { neuron: 'tssl', size: 32, bias: false, params: { filterInput: true } },
      { neuron: 'tssl', size: 3, bias: false },
    ],
    readout: { kind: 'identity', size: 3 },
  };

  it.each(['wasm', 'cpu'] as const)(
    'conv2d and sumpool: the same loss, PSPs and gradients as dense layers of the unrolled convolution and pooling (%s)',
    async (backend) => {
      await (backend === 'wasm' ? wasm : cpu).activate();
      const conv = build(convSpec);
      const dense = build(denseSpec);
      const net0 = conv.model;
      const inputs = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([T, B, 36], 0, 1, 'float32', 11), 0.5), 'float32'));
      const batch = { inputs, targets: tf.tensor1d([0, 2], 'int32') };
      const K = conv.params['layers.0.W']!;
      const convOf = (k: tf.Tensor) => (rows: tf.Tensor) =>
        tf.reshape(tf.conv2d(tf.reshape(rows, [-1, 6, 6, 1]) as tf.Tensor4D, k as tf.Tensor4D, 1, 'valid'), [-1, 32]);
      const M = matrixOf(36, convOf(K));
      const P = matrixOf(32, (rows) => applyPools(rows, net0.layers[1]!.pools));
      try {
        dense.setParams({ 'layers.0.W': M, 'layers.1.W': tf.matMul(P, conv.params['layers.1.W']!) });
        const loss = tsslKernel();
        const c = captureUpdates(tsslBp(), conv, batch, loss);
        const d = captureUpdates(tsslBp(), dense, batch, loss);
        // Not vacuous: both layers spike (the output PSPs are not all zero) and the loss is positive.
        const out = forward(conv, inputs, { record: true });
        expect(tf.sum(out.spikes![0]!).dataSync()[0]).toBeGreaterThan(0);
        expect(tf.sum(out.readout).dataSync()[0]).toBeGreaterThan(0);
        const outDense = forward(dense, inputs);
        expectClose(out.readout.dataSync(), Array.from(outDense.readout.dataSync()), 'output PSPs', 1e-5);
        disposeTree([out, outDense]);
        expect(Math.abs(c.loss - d.loss) / d.loss).toBeLessThan(1e-5);
        // ∂L/∂K = the gradient of Σ M(K) ⊙ ∂L/∂M; ∂L/∂W₂ = Pᵀ·∂L/∂(P·W₂).
        const gM = tf.tensor2d(d.grads[0]!['layers.0.W']!, [36, 32]);
        const gK = tf.grad((k: tf.Tensor) => tf.sum(tf.mul(matrixOf(36, convOf(k)), gM)))(K);
        const gW2 = tf.matMul(P, tf.tensor2d(d.grads[0]!['layers.1.W']!, [32, 3]), true);
        expectClose(c.grads[0]!['layers.0.W']!, Array.from(gK.dataSync()), '∂L/∂K', 1e-5);
        expectClose(c.grads[0]!['layers.1.W']!, Array.from(gW2.dataSync()), '∂L/∂W₂', 1e-5);
        expect(Math.max(...c.grads[0]!['layers.0.W']!.map(Math.abs))).toBeGreaterThan(0);
        tf.dispose([gM, gK, gW2]);
      } finally {
        tf.dispose([M, P]);
        disposeTree(batch);
        conv.dispose();
        dense.dispose();
        await wasm.activate();
      }
    },
  );

  it('dropout: one mask per sequence and feature, the gradient that of the network with each mask folded into the rows of the weight it feeds', () => {
    const spec = (drop: boolean) => ({
      inputs: 8,
      layers: [
        ...(drop ? [{ type: 'dropout', rate: 0.3 }] : []),
        { neuron: 'tssl', size: 6, bias: false, gain: 5, params: { filterInput: true } },
        ...(drop ? [{ type: 'dropout', rate: 0.5 }] : []),
        { neuron: 'tssl', size: 3, bias: false, gain: 5 },
      ],
      readout: { kind: 'identity', size: 3 },
    });
    const net = build(spec(true));
    const plain = build(spec(false));
    const inputs = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([T, 1, 8], 0, 1, 'float32', 3), 0.6), 'float32'));
    const batch = { inputs, targets: tf.tensor1d([1], 'int32') };
    try {
      const { masks, got } = net.training(1, 9, () => {
        const d = net.prepare().dropout!;
        const masks = d.layers.map((m) => tf.keep(tf.reshape(m!, [-1, 1])));
        return { masks, got: captureUpdates(tsslBp(), net, batch, tsslKernel()) };
      });
      // Some features are dropped and the others scaled by 1/(1 − p).
      expect(Array.from(masks[1]!.dataSync()).some((v) => v === 0)).toBe(true);
      expect(Array.from(masks[1]!.dataSync()).some((v) => Math.abs(v - 2) < 1e-6)).toBe(true);
      tf.tidy(() =>
        plain.setParams({ 'layers.0.W': tf.mul(net.params['layers.0.W']!, masks[0]!), 'layers.1.W': tf.mul(net.params['layers.1.W']!, masks[1]!) }),
      );
      const want = captureUpdates(tsslBp(), plain, batch, tsslKernel());
      expect(want.loss).toBeGreaterThan(0);
      expect(Math.abs(got.loss - want.loss) / want.loss).toBeLessThan(1e-5);
      for (const [l, k] of [
        [0, 'layers.0.W'],
        [1, 'layers.1.W'],
      ] as const) {
        const folded = tf.tidy(() => tf.mul(tf.tensor(want.grads[0]![k]!, net.params[k]!.shape), masks[l]!).dataSync());
        expectClose(got.grads[0]![k]!, Array.from(folded), `∂L/∂${k}`, 1e-5);
      }
      expect(Math.max(...got.grads[0]!['layers.1.W']!.map(Math.abs))).toBeGreaterThan(0);
      tf.dispose(masks);
    } finally {
      disposeTree(batch);
      net.dispose();
      plain.dispose();
    }
  });

  it('a weighted (leaky) readout: the loss of the network’s own steps, and the readout’s gradient that of central differences', () => {
    const net = build({
      inputs: 8,
      layers: [
        { neuron: 'tssl', size: 6, bias: false, gain: 5, params: { filterInput: true } },
        { neuron: 'tssl', size: 5, bias: false, gain: 5 },
      ],
      readout: { size: 3, kappa: 0.8 },
    });
    const inputs = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([T, 2, 8], 0, 1, 'float32', 4), 0.6), 'float32'));
    const targets = tf.tensor1d([1, 2], 'int32');
    const loss = ceMean;
    try {
      const got = captureUpdates(tsslBp(), net, { inputs, targets }, loss);
      const lossAt = () => {
        const out = forward(net, inputs);
        const bound = loss.bind(targets, { steps: T, batch: 2, outputs: 3 });
        const v = bound.sequence(tf.unstack(out.readout)).dataSync()[0]!;
        bound.dispose();
        disposeTree(out);
        return v;
      };
      expect(Math.abs(got.loss - lossAt()) / lossAt()).toBeLessThan(1e-5);
      const w = net.params['readout.W']!;
      const w0 = Array.from(w.dataSync());
      const g = got.grads[0]!['readout.W']!;
      const eps = 1e-2;
      for (const i of [0, 4, 8, 13]) {
        const at = (d: number) => {
          w.assign(
            tf.tensor(
              w0.map((x, j) => (j === i ? x + d : x)),
              w.shape,
            ),
          );
          return lossAt();
        };
        const fd = (at(eps) - at(-eps)) / (2 * eps);
        expect(Math.abs(g[i]! - fd), `∂L/∂W_out[${i}]`).toBeLessThan(2e-3 + 1e-2 * Math.abs(fd));
      }
      expect(Math.max(...g.map(Math.abs))).toBeGreaterThan(1e-3);
    } finally {
      disposeTree([inputs, targets]);
      net.dispose();
    }
  });

  it('refuses SEW blocks and batch normalisation, naming the layer', () => {
    const refusal = (layer: object) => {
      const net = build({ inputShape: [4, 4, 2], layers: [layer, { type: 'flatten' }], readout: { kind: 'identity', size: 32 } });
      try {
        checkRequirements(tsslBp(), net, tsslKernel());
      } catch (e) {
        expect(isSpikeflowError(e, 'INCOMPATIBLE')).toBe(true);
        return String((e as Error).message);
      } finally {
        net.dispose();
      }
      return 'accepted';
    };
    expect(refusal({ type: 'sew_block', neuron: 'tssl', connect: 'ADD', kernel: 3 })).toMatch(
      /model\.layers\[0\]\.type: it runs one synapse and one neuron stage per layer/,
    );
    expect(refusal({ type: 'conv2d', neuron: 'tssl', channels: 2, kernel: 3, padding: 'same', batchNorm: true })).toMatch(
      /model\.layers\[0\]\.batchNorm: it runs each layer's synapse itself and has no batch normalisation/,
    );
  });
});

describe('the fixture checker (spikeflow-fixtures) reads the TSSL-BP fixtures', () => {
  it.each(['wasm', 'cpu'] as const)('all eight pass through it on %s: spikes the same, PSPs, loss and gradients within 1e-5', async (backend) => {
    const plugins = [
      (await import('@spikeflow/neuron-tssl')).default,
      plugin,
      (await import('@spikeflow/backend-wasm')).default,
      (await import('@spikeflow/backend-cpu')).default,
    ];
    const reports = await checkFixtureDir(dir, { backend, plugins, tolerance: 1e-5 });
    expect(reports.map((r) => r.name)).toEqual(fixtures.map((f) => f.name));
    for (const r of reports) {
      expect(r.failures, r.name).toEqual([]);
      expect(r.spikeMismatches, r.name).toBe(0);
      expect(r.worst, r.name).toBeLessThan(1e-5);
    }
    // Strict enough, it fails, naming what (the checker is not vacuous).
    const strict = await checkFixtureDir(dir, { backend, plugins, tolerance: 1e-12 });
    expect(strict.some((r) => !r.pass && r.failures.some((f) => /^(grad|loss|readout) .*relative error/.test(f)))).toBe(true);
    await wasm.activate();
  });

  it('without TSSL-BP’s plugins, says which to load', async () => {
    const plugins = [(await import('@spikeflow/backend-wasm')).default];
    await expect(checkFixtureDir(dir, { plugins })).rejects.toThrow(/a TSSL-BP fixture needs the neuron 'tssl'; load @spikeflow\/neuron-tssl \(--plugins\)/);
    await wasm.activate();
  });
});

describe('TSSL-BP: losses, configuration and refusals', () => {
  it('the kernel loss’s target: the authors’ desired spikes, filtered twice (or once)', () => {
    expect(desiredSpikes(5)).toEqual([0, 1, 1, 1, 1]);
    expect(desiredSpikes(20).join('')).toBe('01010101010101010101');
    expect(desiredSpikes(6, '01')).toEqual([0, 1, 0, 1, 0, 1]);
    expect(() => desiredSpikes(7)).toThrow(/does not divide the 7 steps.*T = 5 or a multiple of 10/);
    expect(() => desiredSpikes(4, '0a')).toThrow(/a string of 0s and 1s/);
    // The worked example of the spec (T = 5, τ_s = 3): ψ = (0, .11111, .25926, .40741, .53909).
    pspFiltered(desiredSpikes(5), 3, 2).forEach((v, i) => expect(v).toBeCloseTo([0, 0.11111, 0.25926, 0.40741, 0.53909][i]!, 5));
    expect(pspFiltered([0, 1, 1], 3, 1)[1]).toBeCloseTo(1 / 3, 10);
  });

  it('comes from configs through the plugin: the rule and its three losses, with their options', async () => {
    const [loaded] = await loadPlugins(['@spikeflow/rule-tssl-bp'], { from: import.meta.url });
    expect(loaded!.meta.name).toBe('@spikeflow/rule-tssl-bp');
    const reg = createRegistry([plugin]);
    expect(ruleFromSpec({ name: 'tssl-bp' }, reg.rules).name).toBe('tssl-bp');
    expect(() => ruleFromSpec({ name: 'tssl-bp', window: 4 }, reg.rules)).toThrow(/rule\.window: unknown key/);
    expect(lossFromSpec({ name: 'tssl_kernel', passes: 1, desired: '01' }, reg.losses).name).toBe('tssl_kernel');
    expect(() => lossFromSpec({ name: 'tssl_kernel', passes: 3 }, reg.losses)).toThrow(/loss\.passes: must be <= 2/);
    expect(lossFromSpec({ name: 'tssl_count', desired: 10, undesired: 2 }, reg.losses).name).toBe('tssl_count');
    expect(lossFromSpec('tssl_softmax', reg.losses).decomposesOverTime).toBe(false);
  });

  it('refuses neurons without spike timing and recurrent layers, naming the layer', () => {
    const build = (layer: object) =>
      buildNetwork({ inputs: 3, layers: [layer], readout: { kind: 'identity', size: 4 } }, { neurons, surrogates: builtinSurrogates });
    const refusal = (net: Network) => {
      let error: unknown;
      try {
        checkRequirements(tsslBp(), net, tsslKernel());
      } catch (e) {
        error = e;
      }
      net.dispose();
      expect(isSpikeflowError(error, 'INCOMPATIBLE')).toBe(true);
      return String((error as Error).message);
    };
    expect(refusal(build({ neuron: 'lif', size: 4 }))).toMatch(/model\.layers\[0\]\.neuron: it needs TSSL-BP's neuron equations .*neuron 'lif'/);
    expect(refusal(build({ neuron: 'tssl', size: 4, recurrent: true }))).toMatch(
      /model\.layers\[0\]\.recurrent: it runs each layer over the whole sequence at once/,
    );
  });

  it('trains: the kernel loss falls over a few updates on a fixture’s batch (Adam, as the authors)', async () => {
    const f = fixtures.find((x) => x.name === 'fc2_kernel_T10')!;
    const net = networkOf(f);
    const b = batchOf(f);
    const { adam, OptimizerRunner } = await import('@spikeflow/core');
    const runner = new OptimizerRunner(adam({ lr: 0.01 }), net.params);
    const losses: number[] = [];
    for (let i = 0; i < 15; i++) losses.push(trainStep(tsslBp(), net, b, lossOf(f), { optimizer: runner }).loss);
    expect(losses.at(-1)!).toBeLessThan(0.7 * losses[0]!);
    runner.dispose();
    disposeTree(b);
    net.dispose();
  });
});

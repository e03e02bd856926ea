import { beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildNetwork,
  builtinSurrogates,
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
import { captureUpdates, trainStep } from '@spikeflow/testing';
import { wasm } from '@spikeflow/backend-wasm';
import { cpu } from '@spikeflow/backend-cpu';
import { tssl } from '@spikeflow/neuron-tssl';
import { lif } from '@spikeflow/neuron-lif';
import plugin, { desiredSpikes, pspFiltered, tsslBp, tsslCount, tsslKernel, tsslSoftmax } from './index.js';

beforeAll(() => wasm.activate());

/** The TSSL-BP fixtures (float64, the authors' code): packages/testing/fixtures/tssl. */
const dir = new URL('../../../packages/testing/fixtures/tssl/', import.meta.url).pathname;

interface TsslFixture {
  readonly name: string;
  readonly config: {
    readonly T: number;
    readonly sizes: number[];
    readonly tau_m: number;
    readonly tau_s: number;
    readonly threshold: number[];
    readonly loss: 'kernel' | 'count' | 'softmax';
    readonly desired_spikes?: number[];
    readonly kernel_target_filter_passes?: number;
    readonly desired_count?: number;
    readonly undesired_count?: number;
  };
  readonly params: Record<string, number[][]>;
  readonly inputs: number[][][];
  readonly labels: number[];
  readonly expected: { readonly loss: number; readonly grads: Record<string, number[][]>; readonly output_psp_sum: number[][]; readonly predicted: number[] };
}

const fixtures: TsslFixture[] = readdirSync(dir)
  .filter((f) => f.endsWith('.json') && f !== 'index.json')
  .sort()
  .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as TsslFixture);

const neurons = new Map<string, AnyNeuronModel>([
  ['tssl', tssl as AnyNeuronModel],
  ['lif', lif as AnyNeuronModel],
]);

/** The fixture's network: `tssl` layers (the first filtering its input), no bias, the identity readout, the fixture's weights. */
function networkOf(f: TsslFixture, kernels?: never): Network {
  const c = f.config;
  const net = buildNetwork(
    {
      inputs: c.sizes[0]!,
      layers: c.sizes.slice(1).map((size, l) => ({
        neuron: 'tssl',
        size,
        bias: false,
        params: { tauM: c.tau_m, tauS: c.tau_s, threshold: c.threshold[l]!, filterInput: l === 0 },
      })),
      readout: { kind: 'identity', size: c.sizes.at(-1)! },
    },
    { neurons, surrogates: builtinSurrogates },
    kernels,
  );
  net.setParams(Object.fromEntries(c.sizes.slice(1).map((_, l) => [`layers.${l}.W`, f.params[`W${l + 1}`]!])));
  return net;
}

function lossOf(f: TsslFixture): TemporalLoss {
  const c = f.config;
  if (c.loss === 'kernel') return tsslKernel({ tauS: c.tau_s, passes: c.kernel_target_filter_passes ?? 2, desired: (c.desired_spikes ?? []).join('') });
  if (c.loss === 'count') return tsslCount({ desired: c.desired_count!, undesired: c.undesired_count! });
  return tsslSoftmax;
}

const batchOf = (f: TsslFixture) => ({ inputs: tf.tensor3d(f.inputs), targets: tf.tensor1d(f.labels, 'int32') });

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

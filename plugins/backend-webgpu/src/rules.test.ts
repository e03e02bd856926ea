import { OptimizerRunner, ceEveryStep, createRegistry, disposeTree, ruleFromSpec, sgd, tf, type NamedTensorMap, type Tensor } from '@spikeflow/core';
import alifPlugin from '@spikeflow/neuron-alif';
import lifPlugin from '@spikeflow/neuron-lif';
import bpttPlugin from '@spikeflow/rule-bptt';
import epropPlugin from '@spikeflow/rule-eprop';
import fpttPlugin from '@spikeflow/rule-fptt';
import localPlugin from '@spikeflow/rule-local-tbptt';
import otttPlugin from '@spikeflow/rule-ottt';
import slttPlugin from '@spikeflow/rule-sltt';
import { batchFor, smallNetwork } from '@spikeflow/testing';
import { afterAll, describe, expect, it } from 'vitest';
import webgpuPlugin, { webgpu, webgpuUnavailableReason } from './index.js';

// Every learning rule trains on webgpu in Node (asynchronous reads only), through the WGSL
// kernels: two updates each, their gradients and losses equal to the same rule's on tfjs' cpu
// backend, where the network runs core's composite ops.
const missing = await webgpuUnavailableReason();
const requires = 'a Vulkan driver for WebGPU in Node (SwiftShader: Debian chromium-common)';
const registry = createRegistry([webgpuPlugin, lifPlugin, alifPlugin, bpttPlugin, epropPlugin, fpttPlugin, localPlugin, otttPlugin, slttPlugin]);

interface Run {
  readonly fused: boolean;
  readonly losses: number[];
  /** Every update's gradients by parameter name, in order. */
  readonly grads: Map<string, Float32Array>[];
}

/** Two training steps of `spec` on the active backend (SGD), every read asynchronous. */
async function train(spec: Record<string, unknown>, neuron: string): Promise<Run> {
  const net = smallNetwork(registry.neurons.get(neuron)!, { inputs: 10, size: 24, outputs: 3, seed: 2, kernels: registry.kernels });
  const rule = ruleFromSpec(spec, registry.rules, 'rule');
  const runner = new OptimizerRunner(sgd({ lr: 0.1 }), net.params);
  const batch = batchFor(net, ceEveryStep, { steps: 16, batch: 4, seed: 3, density: 0.3 });
  const kept: NamedTensorMap[] = [];
  const losses: number[] = [];
  let state = rule.init(net);
  try {
    for (let i = 0; i < 2; i++) {
      const r = net.training(4, i, () =>
        rule.update(batch, state, {
          network: net,
          loss: ceEveryStep,
          apply: (g) => {
            // By parameter name (a rule applies gradients keyed as `network.params`).
            kept.push(Object.fromEntries(Object.entries(g).map(([k, t]) => [k, tf.keep(tf.clone(t))])));
            runner.apply(g);
          },
          optimizer: runner.optimizer,
          asyncReads: true,
        }),
      );
      losses.push(await r.report.loss);
      if (r.state !== state) disposeTree(state, r.state);
      state = r.state;
    }
    const grads: Map<string, Float32Array>[] = [];
    for (const g of kept) {
      const m = new Map<string, Float32Array>();
      for (const [k, t] of Object.entries(g)) m.set(k, (await t.data()) as Float32Array);
      grads.push(m);
    }
    return { fused: net.fused, losses, grads };
  } finally {
    for (const g of kept) tf.dispose(Object.values(g));
    tf.dispose([batch.inputs as Tensor, batch.targets as Tensor]);
    disposeTree(state);
    runner.dispose();
    net.dispose();
  }
}

const rules: [string, Record<string, unknown>, string][] = [
  ['BPTT', { name: 'bptt' }, 'lif'],
  ['truncated BPTT (k = 5)', { name: 'bptt', truncation: 5 }, 'lif'],
  ['BPTT on ALIF', { name: 'bptt' }, 'alif'],
  ['e-prop', { name: 'eprop' }, 'lif'],
  ['OTTT', { name: 'ottt' }, 'lif'],
  ['SLTT', { name: 'sltt' }, 'lif'],
  ['FPTT (windows of 4)', { name: 'fptt', window: 4 }, 'lif'],
  ['local truncated BPTT', { name: 'local-tbptt' }, 'lif'],
];

describe('learning rules on webgpu in Node', { skip: missing !== undefined, timeout: 600_000, meta: { requires, skipReason: missing } }, () => {
  afterAll(async () => {
    tf.env().set('WEBGPU_CPU_FORWARD', true);
    await tf.setBackend('webgpu');
  });

  for (const [label, spec, neuron] of rules) {
    it(`${label}: the same losses and gradients as on the cpu backend, the network fused on WGSL`, async () => {
      await tf.setBackend('cpu');
      const reference = await train(spec, neuron);
      await webgpu.activate();
      tf.env().set('WEBGPU_CPU_FORWARD', false);
      const gpu = await train(spec, neuron);
      expect(reference.fused).toBe(false);
      expect(gpu.fused).toBe(true);
      for (let i = 0; i < 2; i++) expect(Math.abs(gpu.losses[i]! - reference.losses[i]!)).toBeLessThan(1e-4 * Math.abs(reference.losses[i]!));
      expect(gpu.grads.length).toBe(reference.grads.length);
      expect(reference.grads.length).toBeGreaterThan(0);
      reference.grads.forEach((g, u) => {
        expect([...gpu.grads[u]!.keys()].sort()).toEqual([...g.keys()].sort());
        for (const [name, want] of g) {
          const scale = Math.max(1e-6, ...want.map(Math.abs));
          const got = gpu.grads[u]!.get(name)!;
          const diff = Math.max(...want.map((w, i) => Math.abs(w - got[i]!)));
          expect(diff, `update ${u}, ${name}`).toBeLessThan(1e-4 * scale);
        }
      });
    });
  }
});

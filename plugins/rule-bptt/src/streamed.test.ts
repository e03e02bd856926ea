import { beforeAll, describe, expect, it } from 'vitest';
import { ceEveryStep, ceMean, createRegistry, disposeTree, tf, type TemporalLoss } from '@spikeflow/core';
import { batchFor, captureUpdates, smallNetwork, streamed } from '@spikeflow/testing';
import { lif } from '@spikeflow/neuron-lif';
import wasmPlugin, { wasm } from '@spikeflow/backend-wasm';
import cpuPlugin from '@spikeflow/backend-cpu';
import { bptt, tbptt } from './index.js';

beforeAll(() => wasm.activate());

// Datasets yield their batches' inputs as step sources: windows made on demand. A rule must train
// from one exactly as from the dense tensor of the same values, through the fused kernels too.
describe('bptt and truncated bptt from a step source', () => {
  const kernels = createRegistry([wasmPlugin, cpuPlugin]).kernels;
  const cases: [string, () => ReturnType<typeof bptt>, TemporalLoss, number][] = [
    ['bptt, one fused window of the whole sequence', () => bptt(), ceMean, 1],
    ['tbptt k=5 of a whole-sequence loss (two passes)', () => tbptt({ k: 5 }), ceMean, 1],
    ['tbptt k=5, an update per window', () => tbptt({ k: 5, mode: 'per-window' }), ceEveryStep, 4],
  ];
  for (const [name, make, loss, updates] of cases) {
    it(`${name}: the same gradients, bit for bit`, () => {
      const net = smallNetwork(lif, { inputs: 7, size: 12, outputs: 3, seed: 3, kernels });
      expect(net.fused).toBe(true);
      const batch = batchFor(net, loss, { steps: 17, batch: 4, seed: 6 });
      const dense = captureUpdates(make(), net, batch, loss);
      const lazy = streamed(batch);
      const before = tf.memory().numTensors;
      const fromSource = captureUpdates(make(), net, lazy, loss);
      expect(tf.memory().numTensors).toBe(before);
      expect(dense.updates).toBe(updates);
      expect(fromSource.updates).toBe(updates);
      expect(fromSource.loss).toBe(dense.loss);
      expect(fromSource.grads).toEqual(dense.grads);
      // The source made every window asked for: nothing read all of it up front unless the rule runs one window.
      expect(lazy.inputs.calls.length).toBeGreaterThan(0);
      if (name.startsWith('tbptt')) expect(lazy.inputs.calls.every(([from, to]) => to - from <= 5)).toBe(true);
      disposeTree(batch);
      net.dispose();
    });
  }
});

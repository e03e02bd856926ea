import { beforeAll, describe, expect, it } from 'vitest';
import { buildNetwork, createRegistry, disposeTree, forward, tf } from '@spikeflow/core';
import { describeNeuron } from '@spikeflow/testing';
import { wasm } from '@spikeflow/backend-wasm';
import plugin, { cubaLif } from './index.js';

beforeAll(() => wasm.activate());

describeNeuron(cubaLif, {
  configs: [{}, { reset: 'zero', alpha: 0.5, beta: 0.7, threshold: 0.6 }, { resetDetach: true }, { reset: 'zero', resetDetach: true }],
  setup: () => wasm.activate(),
});

describe('cuba-lif', () => {
  for (const reset of ['subtract', 'zero'] as const) {
    it(`follows i_t = α·i_{t−1} + I_t and the ${reset} reset on v step by step`, () => {
      const net = buildNetwork(
        {
          inputs: 1,
          layers: [{ neuron: 'cuba-lif', size: 1, bias: false, params: { alpha: 0.5, beta: 0.75, threshold: 1, reset } }],
          readout: { size: 1, kappa: 0, bias: false },
        },
        createRegistry([plugin]),
      );
      net.setParams({ 'layers.0.W': [0.6], 'readout.W': [1] });
      const input = [1, 1, 0, 1, 1, 1, 0, 0, 1, 1];
      const x = tf.tensor3d(input.map((v) => [[v]]));
      const out = forward(net, x, { record: true });
      let i = 0;
      let v = 0;
      let s = 0;
      const expected: number[] = [];
      for (const xi of input) {
        i = 0.5 * i + 0.6 * xi;
        v = reset === 'zero' ? 0.75 * v * (1 - s) + i : 0.75 * v + i - s;
        s = v > 1 ? 1 : 0;
        expected.push(s);
      }
      expect(Array.from(out.spikes![0]!.dataSync())).toEqual(expected);
      expect(expected.filter((z) => z === 1).length).toBeGreaterThan(1);
      disposeTree([out, x] as never);
      net.dispose();
    });
  }
});

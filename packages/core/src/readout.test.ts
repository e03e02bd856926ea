import { describe, expect, it } from 'vitest';
import { tf } from './tf.js';
import { resolveModel } from './model.js';
import { buildNetwork } from './network.js';
import { forward } from './inference.js';
import { disposeTree } from './state.js';
import { errorOf, iafRegistry, referenceFusedKernels, useCpuBackend } from './test-support.js';

useCpuBackend();

const reg = iafRegistry();

describe("the 'identity' readout", () => {
  it('has no weights and reads the last layer’s output as it is, step by step; it never runs fused', () => {
    const spec = {
      inputs: 5,
      layers: [
        { neuron: 'iaf-fused', size: 6, gain: 3 },
        { neuron: 'iaf-fused', size: 4, gain: 3 },
      ],
      readout: { kind: 'identity', size: 4 },
    };
    const net = buildNetwork(spec, reg, { kernels: referenceFusedKernels(), seed: 2 });
    const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([6, 3, 5], 0, 1, 'float32', 4), 0.5), 'float32'));
    const out = forward(net, x, { record: true });
    try {
      expect(Object.keys(net.params).filter((k) => k.startsWith('readout.'))).toEqual([]);
      expect(net.model.readout.synapse).toBe(false);
      expect(net.fused).toBe(false);
      expect(Array.from(out.spikes![1]!.dataSync()).some((v) => v > 0)).toBe(true);
      expect(Array.from(out.readout.dataSync())).toEqual(Array.from(out.spikes![1]!.dataSync()));
    } finally {
      disposeTree(out);
      x.dispose();
      net.dispose();
    }
  });

  it('refuses a size other than what it reads, and a bias, naming the field', () => {
    const bad = (readout: object, match: RegExp) => {
      const e = errorOf(() => resolveModel({ inputs: 3, layers: [{ neuron: 'iaf', size: 4 }], readout }, reg));
      expect(e.code).toBe('CONFIG_INVALID');
      expect(e.message).toMatch(match);
    };
    bad({ kind: 'identity', size: 3 }, /model\.readout\.size: is 3, but readout 'identity' passes on what it reads unchanged, 4 features; make it 4/);
    bad({ kind: 'identity', size: 4, bias: true }, /model\.readout\.bias: readout 'identity' has no weights, and so no bias/);
    expect(resolveModel({ inputs: 3, layers: [{ neuron: 'iaf', size: 4 }], readout: { kind: 'identity', size: 4 } }, reg).readout.bias).toBe(false);
  });
});

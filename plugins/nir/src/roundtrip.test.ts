import { beforeAll, describe, expect, it } from 'vitest';
import { buildNetwork, createRegistry, createRng, disposeTree, forward, isSpikeflowError, tf, type ModelSpec, type Network } from '@spikeflow/core';
import { wasm } from '@spikeflow/backend-wasm';
import lifPlugin from '@spikeflow/neuron-lif';
import plugin, { exportNir, importNir, readNir, validateNir } from './index.js';

const registry = createRegistry([lifPlugin, plugin]);

beforeAll(() => wasm.activate());

/** A random dense network of reset-to-zero LIF layers (seeded; a CubaLIF first layer in every fifth): 1–2 layers, recurrent or not, an LI or a LIF readout. */
function randomSpec(seed: number): { spec: ModelSpec; lifReadout: boolean } {
  const r = createRng(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
  const inputs = 3 + Math.floor(r() * 6);
  const lifReadout = seed % 2 === 1;
  const depth = 1 + (seed % 4 < 2 ? 0 : 1);
  const layers = Array.from({ length: depth }, (_, i) => {
    const recurrent = r() < 0.5 || seed === 0;
    if (seed % 5 === 4 && i === 0)
      return {
        neuron: 'cuba-lif' as const,
        size: 4 + Math.floor(r() * 8),
        recurrent,
        bias: r() < 0.6,
        gain: 2,
        params: { alpha: pick([0, 0.5, 0.8]), beta: pick([0, 0.7, 0.9]), threshold: pick([0.5, 1]), reset: 'zero' as const },
      };
    return {
      neuron: 'lif' as const,
      size: i === depth - 1 && lifReadout ? 2 + Math.floor(r() * 3) : 4 + Math.floor(r() * 8),
      recurrent,
      bias: r() < 0.6,
      ...(recurrent ? { selfConnections: r() < 0.7 } : {}),
      gain: 2,
      params: { beta: pick([0, 0.5, 0.8, 0.9, 0.95, 0.99, 1, Math.fround(r())]), threshold: pick([0.5, 1, 1.3]), reset: 'zero' as const },
    };
  });
  const readout = lifReadout
    ? { kind: 'identity', size: layers.at(-1)!.size }
    : { kind: 'leaky', size: 2 + Math.floor(r() * 3), kappa: pick([0, 0.5, 0.9, 0.95, 1]), bias: r() < 0.5 };
  return { spec: { inputs, layers, readout } as ModelSpec, lifReadout };
}

function run(net: Network, x: tf.Tensor3D) {
  const out = forward(net, x, { record: true });
  const spikes = out.spikes!.map((s) => Array.from(s.dataSync()));
  const readout = Array.from(out.readout.dataSync());
  disposeTree(out as never);
  return { spikes, readout };
}

describe('NIR export then import', () => {
  it('gives bit-identical spikes and readouts for 20 random dense networks over T = 50', async () => {
    const kinds = new Set<string>();
    for (let seed = 0; seed < 20; seed++) {
      const { spec, lifReadout } = randomSpec(seed);
      const a = buildNetwork(spec, registry, { seed });
      const { bytes } = await exportNir(a, { dt: seed % 3 === 0 ? 1e-3 : 1e-4 });
      expect(await validateNir(bytes), `seed ${seed}`).toEqual([]);
      const file = await readNir(bytes);
      for (const n of Object.values(file.graph.nodes!)) for (const k of [n, ...Object.values(n.nodes ?? {})]) kinds.add(k.type);
      const imported = await importNir(bytes, { dt: seed % 3 === 0 ? 1e-3 : 1e-4 });
      expect(imported.model.layers.length).toBe(spec.layers.length);
      expect(imported.model.readout.kind).toBe(lifReadout ? 'identity' : 'leaky');
      const b = buildNetwork(imported.model, registry);
      b.setParams(imported.params);
      // Every parameter comes back bit for bit (the masked W_rec diagonal as zeros).
      for (const [k, v] of Object.entries(imported.params)) {
        const want = Array.from(a.params[k]!.dataSync());
        const l = /^layers\.(\d+)\.W_rec$/.exec(k);
        const layer = l ? (spec.layers[Number(l[1])] as { selfConnections?: boolean; size: number }) : undefined;
        if (layer && layer.selfConnections === false) for (let j = 0; j < layer.size; j++) want[j * layer.size + j] = 0;
        expect(Array.from(v), `${k}, seed ${seed}`).toEqual(want);
      }
      const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([50, 3, spec.inputs], 0, 1, 'float32', seed), 0.3), 'float32')) as tf.Tensor3D;
      const ra = run(a, x);
      const rb = run(b, x);
      expect(rb.spikes, `spikes, seed ${seed}`).toEqual(ra.spikes);
      expect(rb.readout, `readout, seed ${seed}`).toEqual(ra.readout);
      // Not vacuous: the networks spike.
      expect(
        ra.spikes.flat().some((s) => s === 1),
        `seed ${seed} spikes`,
      ).toBe(true);
      x.dispose();
      a.dispose();
      b.dispose();
    }
    // Plain and recurrent layers, LIF and IF neurons, LI and I readouts, Affine and Linear all occurred.
    expect([...kinds].sort()).toEqual(['Affine', 'CubaLIF', 'I', 'IF', 'Input', 'LI', 'LIF', 'Linear', 'NIRGraph', 'Output']);
  });

  it('refuses a subtractive-reset layer unless asked, and then says what changes', async () => {
    const spec = { inputs: 3, layers: [{ neuron: 'lif', size: 4, params: { beta: 0.9 } }], readout: { size: 2 } };
    const net = buildNetwork(spec, registry);
    const e = await exportNir(net).catch((x: unknown) => x);
    expect(isSpikeflowError(e, 'INCOMPATIBLE')).toBe(true);
    expect((e as Error).message).toMatch(/model\.layers\[0\]\.params\.reset: spikeflow's subtractive reset .* cannot be expressed in NIR.*reset": "zero"/);
    const { bytes, notes } = await exportNir(net, { allowSubtractReset: true });
    expect(notes.join('\n')).toMatch(/reset to zero/);
    expect(await validateNir(bytes)).toEqual([]);
    const file = await readNir(bytes);
    expect(file.graph.nodes!['lif0']!.metadata).toEqual({ reset: 'subtract (run as reset to zero by NIR importers)' });
    expect((await importNir(bytes)).model.layers[0]).toMatchObject({ params: { reset: 'zero' } });
    net.dispose();
  });

  it('refuses neurons without a NIR node, naming the layer', async () => {
    const alif = {
      name: 'alif',
      description: 'test double of a neuron NIR lacks',
      configSchema: {},
      stateKeys: ['v', 's'],
      tensorParams: () => ({}),
      init: (b: number, n: number) => ({ v: tf.zeros([b, n]), s: tf.zeros([b, n]) }),
      step: (_p: unknown, s: { v: tf.Tensor; s: tf.Tensor }) => ({ state: s, spikes: s.s }),
    };
    const reg = createRegistry([lifPlugin, plugin, { meta: { name: 'x', version: '0' }, neurons: [alif as never] }]);
    const net = buildNetwork(
      {
        inputs: 2,
        layers: [
          { neuron: 'lif', size: 3, params: { reset: 'zero' } },
          { neuron: 'alif', size: 3 },
        ],
        readout: { size: 1 },
      },
      reg,
    );
    await expect(exportNir(net)).rejects.toThrow(/model\.layers\[1\]: neuron 'alif' has no NIR node/);
    net.dispose();
  });

  it('gives bit-identical spikes and readouts for 12 random convolutional networks (pooling, padding, strides, a dense tail) over T = 20', async () => {
    const kinds = new Set<string>();
    for (let seed = 0; seed < 12; seed++) {
      const r = createRng(100 + seed);
      const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
      const lif = () => ({ beta: pick([0.5, 0.8, 0.9, 1]), threshold: pick([0.5, 1]), reset: 'zero' });
      const layers: Record<string, unknown>[] = [
        {
          type: 'conv2d',
          neuron: seed % 4 === 3 ? 'cuba-lif' : 'lif',
          channels: 2 + (seed % 3),
          kernel: pick([2, 3]),
          stride: pick([1, 1, 2]),
          padding: pick(['valid', 1, [0, 1]]),
          bias: r() < 0.7,
          gain: 2,
          params: seed % 4 === 3 ? { alpha: 0.5, beta: 0.8, reset: 'zero' } : lif(),
        },
        ...(seed % 2 === 0 ? [{ type: pick(['sumpool', 'avgpool']), size: 2, ...(seed % 3 === 0 ? { scale: 1.1 } : {}) }] : []),
        ...(seed % 3 === 1 ? [{ type: 'conv2d', neuron: 'lif', channels: 3, kernel: 3, padding: 'same', gain: 2, params: lif() }] : []),
        { type: 'flatten' },
        ...(seed % 2 === 1 ? [{ neuron: 'lif', size: 6, recurrent: r() < 0.5, bias: r() < 0.5, gain: 2, params: lif() }] : []),
      ];
      // sumpool's scale only on sum pooling.
      for (const l of layers) if (l['type'] === 'avgpool') delete l['scale'];
      const spec = { inputs: 0, inputShape: [8, 7, 2], layers, readout: { size: 3, kappa: pick([0, 0.8]), bias: r() < 0.5 } } as unknown as ModelSpec;
      spec.inputs = 8 * 7 * 2;
      const a = buildNetwork(spec, registry, { seed });
      const { bytes } = await exportNir(a);
      expect(await validateNir(bytes), `seed ${seed}`).toEqual([]);
      for (const n of Object.values((await readNir(bytes)).graph.nodes!)) kinds.add(n.type);
      const imported = await importNir(bytes);
      expect(imported.model.inputShape).toEqual([8, 7, 2]);
      const b = buildNetwork(imported.model, registry);
      b.setParams(imported.params);
      for (const [k, v] of Object.entries(imported.params)) expect(Array.from(v), `${k}, seed ${seed}`).toEqual(Array.from(a.params[k]!.dataSync()));
      const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([20, 2, spec.inputs], 0, 1, 'float32', seed), 0.4), 'float32')) as tf.Tensor3D;
      const ra = run(a, x);
      const rb = run(b, x);
      expect(rb.spikes, `spikes, seed ${seed}`).toEqual(ra.spikes);
      expect(rb.readout, `readout, seed ${seed}`).toEqual(ra.readout);
      expect(
        ra.spikes[0]!.some((s) => s === 1),
        `seed ${seed} spikes`,
      ).toBe(true);
      x.dispose();
      a.dispose();
      b.dispose();
    }
    expect([...kinds]).toEqual(expect.arrayContaining(['Conv2d', 'SumPool2d', 'AvgPool2d', 'Scale', 'Flatten', 'CubaLIF', 'IF', 'NIRGraph']));
  });
});

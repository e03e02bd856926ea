import { beforeAll, describe, expect, it } from 'vitest';
import { buildNetwork, createRegistry, isSpikeflowError } from '@spikeflow/core';
import { wasm } from '@spikeflow/backend-wasm';
import lifPlugin from '@spikeflow/neuron-lif';
import plugin, { exportNir, importNir, readNir, toHdf5, validateNir, writeNir, type NirArray, type NirFile, type NirNode } from './index.js';
import { writeHdf5, type H5Write, type H5WriteGroup } from './hdf5.js';

const registry = createRegistry([lifPlugin, plugin]);
beforeAll(() => wasm.activate());

const arr = (values: number[], shape: number[] = [values.length]): NirArray => ({ dtype: 'float32', shape, data: Float64Array.from(values) });
const shape = (n: number): NirArray => ({ dtype: 'int64', shape: [1], data: Float64Array.of(n) });
const lifNode = (n: number, extra: Record<string, NirArray> = {}): NirNode => ({
  type: 'LIF',
  params: {
    tau: arr(new Array(n).fill(1e-3)),
    r: arr(new Array(n).fill(1)),
    v_leak: arr(new Array(n).fill(0)),
    v_threshold: arr(new Array(n).fill(1)),
    ...extra,
  },
});
const dense = (out: number, inn: number): NirNode => ({
  type: 'Affine',
  params: { weight: arr(new Array(out * inn).fill(0.5), [out, inn]), bias: arr(new Array(out).fill(0)) },
});

/** Input[3] → fc → lif[4] → Output, with `change` applied to the nodes and edges. */
function file(change: (nodes: Record<string, NirNode>, edges: [string, string][]) => void = () => {}): NirFile {
  const nodes: Record<string, NirNode> = {
    input: { type: 'Input', params: { shape: shape(3) } },
    fc: dense(4, 3),
    lif: lifNode(4),
    output: { type: 'Output', params: { shape: shape(4) } },
  };
  const edges: [string, string][] = [
    ['input', 'fc'],
    ['fc', 'lif'],
    ['lif', 'output'],
  ];
  change(nodes, edges);
  return { version: '1.0.7', graph: { type: 'NIRGraph', params: {}, nodes, edges } };
}

async function refusal(f: NirFile | Uint8Array, dt?: number): Promise<Error> {
  const bytes = f instanceof Uint8Array ? f : await writeNir(f);
  const e = await importNir(bytes, dt !== undefined ? { dt } : {}).catch((x: unknown) => x);
  expect(isSpikeflowError(e), String(e)).toBe(true);
  return e as Error;
}

/** The HDF5 tree of `f` with `edit` applied to the group of node `path` (names under /node/nodes). */
async function edited(f: NirFile, path: string[], edit: (g: Record<string, H5Write | H5WriteGroup>) => void): Promise<Uint8Array> {
  const tree = toHdf5(f) as Record<string, H5WriteGroup>;
  let g = tree['node'] as Record<string, H5WriteGroup>;
  for (const p of path) g = (g['nodes'] as Record<string, H5WriteGroup>)[p] as Record<string, H5WriteGroup>;
  edit(g);
  return writeHdf5(tree);
}

describe('NIR import refusals name the node and the reason', () => {
  it('accepts the base file (so each refusal below is its change alone)', async () => {
    expect((await importNir(await writeNir(file()))).model.layers).toHaveLength(1);
    expect(await validateNir(await writeNir(file()))).toEqual([]);
  });

  it('an unknown type, and a NIR type spikeflow cannot run', async () => {
    const unknown = await refusal(
      file((n) => {
        n['lif'] = { type: 'Spiky', params: { a: arr([1, 1, 1, 1]) } };
      }),
    );
    expect(unknown.message).toMatch(/node \/node\/nodes\/lif: type Spiky cannot be imported into spikeflow \(it imports Input, Output, Flatten, Affine/);
    const delay = await refusal(
      file((n, e) => {
        n['d'] = { type: 'Delay', params: { delay: arr([1, 1, 1, 1]) } };
        e.splice(2, 1, ['lif', 'd'], ['d', 'output']);
      }),
    );
    expect(delay.message).toMatch(/node \/node\/nodes\/d: type Delay cannot be imported/);
  });

  it('shapes that do not fit along an edge', async () => {
    const e = await refusal(
      file((n) => {
        n['fc'] = dense(5, 3);
      }),
    );
    expect(e.message).toMatch(/shapes do not fit along the edge fc → lif: fc \(Affine\) writes \[5\], lif \(LIF\) reads \[4\]/);
    const bias = await refusal(
      file((n) => {
        n['fc'] = { type: 'Affine', params: { weight: arr(new Array(12).fill(0.5), [4, 3]), bias: arr([0, 0]) } };
      }),
    );
    expect(bias.message).toMatch(/node \/node\/nodes\/fc \(Affine\): bias has shape \[2\], its weight \(out, in\) = \[4,3\] needs \[4\]/);
    const mixed = await refusal(
      file((n) => {
        n['lif'] = lifNode(4, { r: arr([1, 1]) });
      }),
    );
    expect(mixed.message).toMatch(
      /node \/node\/nodes\/lif \(LIF\): '(tau|r)' has shape \[\d\] but '(tau|r)' has \[\d\]; all of a node's parameters share the layer's shape/,
    );
  });

  it('a dangling edge', async () => {
    const e = await refusal(
      file((_n, e) => {
        e.push(['lif', 'lif1']);
      }),
    );
    expect(e.message).toMatch(/the edge lif → lif1 names 'lif1', which is no node of this graph \(its nodes: fc, input, lif, output\)/);
  });

  it('an extra dataset, a missing parameter, a scalar parameter', async () => {
    const extra = await edited(file(), ['lif'], (g) => {
      g['dt'] = { dtype: 'float64', shape: [1], value: [1e-4] };
    });
    expect((await refusal(extra)).message).toMatch(
      /node \/node\/nodes\/lif \(LIF\) has a dataset 'dt' that NIR's LIF does not define .* put extra facts under metadata\//,
    );
    expect(await validateNir(extra)).toEqual([expect.stringMatching(/has a dataset 'dt' that NIR's LIF does not define/)]);
    const missing = await edited(file(), ['lif'], (g) => {
      delete g['v_threshold'];
    });
    expect((await refusal(missing)).message).toMatch(/node \/node\/nodes\/lif \(LIF\) lacks its parameter 'v_threshold'/);
    const scalar = await edited(file(), ['lif'], (g) => {
      g['tau'] = { dtype: 'float32', shape: [], value: [1e-3] };
    });
    expect((await refusal(scalar)).message).toMatch(/'tau' is a scalar; NIR's neuron parameters are arrays/);
    expect((await validateNir(scalar)).join('\n')).toMatch(/\/node\/nodes\/lif\/tau: a scalar/);
  });

  it('a cycle no Input reaches, and an Output that is missing', async () => {
    const cycle = await refusal(
      file((n, e) => {
        n['a'] = lifNode(4);
        n['w'] = dense(4, 4);
        e.push(['a', 'w'], ['w', 'a']);
      }),
    );
    expect(cycle.message).toMatch(/node a \(LIF\) is not reached from any Input node/);
    const noOut = await refusal(
      file((n, e) => {
        delete n['output'];
        e.pop();
      }),
    );
    expect(noOut.message).toMatch(/graph \/node has no Output node/);
  });

  it('what spikeflow cannot represent: v_reset ≠ 0, Δt > τ, branches', async () => {
    const reset = await refusal(
      file((n) => {
        n['lif'] = lifNode(4, { v_reset: arr([0, 0, 0.5, 0]) });
      }),
    );
    expect(reset.message).toMatch(/node \/node\/nodes\/lif: v_reset ≠ 0 \(0\.5\): spikeflow's neurons reset to 0/);
    const slow = await refusal(file(), 0.01);
    expect(slow.message).toMatch(/node \/node\/nodes\/lif: Δt = 0\.01 s is longer than tau = 0\.001\d* s: .* import with a smaller dt/);
    const branch = await refusal(
      file((n, e) => {
        n['fc2'] = dense(4, 3);
        n['lif2'] = lifNode(4);
        e.push(['input', 'fc2'], ['fc2', 'lif2'], ['lif2', 'output']);
      }),
    );
    expect(branch.message).toMatch(/input drives both lif and lif2: spikeflow imports a chain of layers/);
  });

  it('a file that is not NIR, or not HDF5', async () => {
    const e = await refusal(new TextEncoder().encode('not hdf5 at all'));
    expect(e.message).toMatch(/NIR file: not an HDF5 file/);
    const noNode = await writeHdf5({ version: { dtype: 'string', shape: [], value: ['1.0.7'] } });
    expect((await refusal(noNode)).message).toMatch(/no '\/node' group: not a NIR file/);
  });
});

describe('convolutional networks: what NIR cannot hold is refused, naming it', () => {
  it('max pooling, an asymmetric same padding and a spatial identity readout on export; a grouped convolution on import', async () => {
    const spec = (layers: unknown[], readout: Record<string, unknown> = { size: 2 }) => ({ inputs: 72, inputShape: [6, 6, 2], layers, readout });
    const conv = (extra: Record<string, unknown> = {}) => ({ type: 'conv2d', neuron: 'lif', channels: 2, kernel: 3, params: { reset: 'zero' }, ...extra });
    const refused = async (s: unknown) => {
      const net = buildNetwork(s, registry);
      try {
        return ((await exportNir(net).catch((e: unknown) => e)) as Error).message;
      } finally {
        net.dispose();
      }
    };
    expect(await refused(spec([conv({ padding: 1 }), { type: 'maxpool', size: 2 }, conv({ padding: 1 }), { type: 'flatten' }]))).toMatch(
      /model\.layers\[2\]: max pooling has no NIR node/,
    );
    expect(await refused(spec([conv({ kernel: 2, padding: 'same' }), { type: 'flatten' }]))).toMatch(
      /model\.layers\[0\]\.padding: "same" padding that is not symmetric/,
    );
    expect(await refused(spec([conv(), { type: 'flatten' }], { kind: 'identity', size: 32 }))).toMatch(
      /model\.readout: an identity readout of a spatial layer/,
    );
    const ok = buildNetwork(spec([conv({ padding: 1 }), { type: 'flatten' }]), registry);
    const { bytes } = await exportNir(ok);
    ok.dispose();
    const grouped = await edited(await readNir(bytes), ['conv0'], (g) => {
      g['groups'] = { dtype: 'int64', shape: [], value: [2] };
    });
    expect((await refusal(grouped)).message).toMatch(/node \/node\/nodes\/conv0: a dilated or grouped convolution/);
  });
});

describe('the NIR validator', () => {
  it('passes what spikeflow exports and flags what nir.read would refuse', async () => {
    const net = buildNetwork({ inputs: 3, layers: [{ neuron: 'lif', size: 4, recurrent: true, params: { reset: 'zero' } }], readout: { size: 2 } }, registry);
    const { bytes } = await exportNir(net);
    expect(await validateNir(bytes)).toEqual([]);
    net.dispose();
    // Integers where NIR has reals, a float Input shape, an empty metadata group, an extra root entry.
    const bad = toHdf5(file()) as Record<string, H5WriteGroup>;
    const nodes = (bad['node'] as Record<string, H5WriteGroup>)['nodes'] as Record<string, Record<string, H5Write | H5WriteGroup>>;
    nodes['lif']!['r'] = { dtype: 'int64', shape: [4], value: [1, 1, 1, 1] };
    nodes['input']!['shape'] = { dtype: 'float64', shape: [1], value: [3] };
    nodes['fc']!['metadata'] = {};
    (bad as Record<string, H5Write | H5WriteGroup>)['extra'] = { dtype: 'float32', shape: [1], value: [0] };
    const problems = await validateNir(await writeHdf5(bad));
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^\/extra: not part of a NIR file/),
        expect.stringMatching(/^\/node\/nodes\/lif\/r: integers where NIR has real numbers/),
        expect.stringMatching(/^\/node\/nodes\/input\/shape: NIR stores it as int64 integers/),
        expect.stringMatching(/^\/node\/nodes\/fc\/metadata: an empty metadata group/),
      ]),
    );
    // HDF5 attributes (nir.write never writes them).
    const h5 = await import('h5wasm');
    await h5.ready;
    h5.FS!.writeFile('/attrs.nir', await writeNir(file()));
    const f = new h5.File('/attrs.nir', 'a');
    (f.get('node/nodes/lif') as import('h5wasm').Group).create_attribute('note', 'hello');
    f.close();
    const withAttr = h5.FS!.readFile('/attrs.nir');
    h5.FS!.unlink('/attrs.nir');
    expect(await validateNir(withAttr)).toEqual([expect.stringMatching(/^\/node\/nodes\/lif: HDF5 attributes \(note\)/)]);
  });
});

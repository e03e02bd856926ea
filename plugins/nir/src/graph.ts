import { SpikeflowError } from '@spikeflow/core';
import type { H5Dataset, H5Entry, H5Group, H5Write, H5WriteGroup } from './hdf5.js';

/**
 * A NIR graph in memory (Pedersen et al., "Neuromorphic intermediate representation", Nature
 * Communications 15, 8122, 2024; the file layout of the NIR library's `nir.write`): nodes with
 * their parameters, nested graphs, edges. Parsing checks what the NIR library's `nir.read` would
 * refuse — unknown datasets in a node, a missing parameter, an edge to no node, shapes that do not
 * fit along an edge — and names the node.
 */

/** A numeric parameter: its values (float64 in memory, whatever the file stores), shape and stored type. */
export interface NirArray {
  readonly dtype: 'float32' | 'float64' | 'int64';
  /** `[]` for a scalar. */
  readonly shape: readonly number[];
  readonly data: Float64Array;
}

/** Metadata: strings, arrays, nested records (informative only: NIR says no reader relies on it). */
export type NirMeta = string | NirArray | { readonly [key: string]: NirMeta };

export interface NirNode {
  readonly type: string;
  /** Its parameters (one HDF5 dataset each), by name. */
  readonly params: Readonly<Record<string, NirArray>>;
  readonly metadata?: Readonly<Record<string, NirMeta>>;
  /** `NIRGraph` only: its nodes, by name. */
  readonly nodes?: Readonly<Record<string, NirNode>>;
  /** `NIRGraph` only: `[source, target]` pairs. */
  readonly edges?: readonly (readonly [string, string])[];
  /** Parameters stored as a string: a convolution's `padding` (`same` or `valid`). */
  readonly text?: Readonly<Record<string, string>>;
}

/** A NIR file: the top graph and the version string of its writer. */
export interface NirFile {
  readonly version?: string;
  readonly graph: NirNode;
}

/** The parameters of each node type of NIR 1.0 (`nir/ir`), with those that may be absent. */
export const NODE_PARAMS: Readonly<Record<string, { readonly required: readonly string[]; readonly optional?: readonly string[] }>> = {
  Input: { required: ['shape'] },
  Output: { required: ['shape'] },
  Affine: { required: ['weight', 'bias'] },
  Linear: { required: ['weight'] },
  Scale: { required: ['scale'] },
  LIF: { required: ['tau', 'r', 'v_leak', 'v_threshold'], optional: ['v_reset'] },
  LI: { required: ['tau', 'r', 'v_leak'] },
  IF: { required: ['r', 'v_threshold'], optional: ['v_reset'] },
  I: { required: ['r'] },
  CubaLIF: { required: ['tau_syn', 'tau_mem', 'r', 'v_leak', 'v_threshold'], optional: ['v_reset', 'w_in'] },
  CubaLI: { required: ['tau_syn', 'tau_mem', 'r', 'v_leak'], optional: ['w_in'] },
  Threshold: { required: ['threshold'] },
  Delay: { required: ['delay'] },
  Flatten: { required: ['start_dim', 'end_dim'], optional: ['input_type'] },
  Conv1d: { required: ['weight', 'stride', 'padding', 'dilation', 'groups', 'bias'], optional: ['input_shape'] },
  Conv2d: { required: ['weight', 'stride', 'padding', 'dilation', 'groups', 'bias'], optional: ['input_shape'] },
  SumPool2d: { required: ['kernel_size', 'stride', 'padding'] },
  AvgPool2d: { required: ['kernel_size', 'stride', 'padding'] },
};

/** Node types whose parameters are per-neuron arrays of one shape (the layer's). */
export const ELEMENTWISE = new Set(['LIF', 'LI', 'IF', 'I', 'CubaLIF', 'CubaLI', 'Threshold', 'Scale', 'Delay']);

const fail = (where: string, msg: string, node?: string): never => {
  throw new SpikeflowError('DATA_INVALID', `${where}: ${msg}`, { path: where, ...(node !== undefined ? { node } : {}) });
};

/** A dataset's values as a {@link NirArray} (numbers) or a string list. */
function arrayOf(d: H5Dataset, where: string, at: string): NirArray {
  if (d.type.kind === 'float') return { dtype: d.type.size === 4 ? 'float32' : 'float64', shape: d.shape, data: d.value as Float64Array };
  if (d.type.kind === 'int') return { dtype: 'int64', shape: d.shape, data: d.value as Float64Array };
  return fail(where, `${at} holds ${d.type.kind === 'string' ? 'strings' : 'a compound or other non-numeric type'} where NIR has numbers`, at);
}

function stringOf(e: H5Entry | undefined, where: string, at: string): string {
  if (e?.kind !== 'dataset' || e.type.kind !== 'string' || e.value.length !== 1)
    return fail(where, `${at} must be one string (a scalar string dataset, as nir.write makes it)`, at);
  return (e.value as readonly string[])[0]!;
}

function metaOf(g: H5Group): Record<string, NirMeta> {
  const out: Record<string, NirMeta> = {};
  for (const [k, e] of Object.entries(g.entries)) {
    if (e.kind === 'group') out[k] = metaOf(e);
    else if (e.kind === 'dataset')
      out[k] =
        e.type.kind === 'string'
          ? (e.value as readonly string[]).join('\n')
          : { dtype: e.type.kind === 'int' ? 'int64' : e.type.size === 4 ? 'float32' : 'float64', shape: e.shape, data: e.value as Float64Array };
  }
  return out;
}

/** Parses one node group at `at` (a path such as `/node/nodes/lif1`). */
function parseNode(g: H5Group, where: string, at: string): NirNode {
  const type = stringOf(g.entries['type'], where, `${at}/type`);
  const known = NODE_PARAMS[type];
  const params: Record<string, NirArray> = {};
  let metadata: Record<string, NirMeta> | undefined;
  let nodes: Record<string, NirNode> | undefined;
  let edges: (readonly [string, string])[] | undefined;
  let text: Record<string, string> | undefined;
  for (const [key, e] of Object.entries(g.entries)) {
    const p = `${at}/${key}`;
    if (key === 'type') continue;
    if (key === 'metadata' && e.kind === 'group') {
      metadata = metaOf(e);
      continue;
    }
    if (type === 'NIRGraph') {
      if (key === 'nodes' && e.kind === 'group') {
        nodes = {};
        for (const [name, n] of Object.entries(e.entries)) {
          if (n.kind !== 'group') fail(where, `${p}/${name} is not a node group (every node of a NIRGraph is an HDF5 group)`, `${p}/${name}`);
          nodes[name] = parseNode(n as H5Group, where, `${p}/${name}`);
        }
        continue;
      }
      if (key === 'edges' && e.kind === 'dataset') {
        edges = parseEdges(e, where, p);
        continue;
      }
      fail(where, `${p}: a NIRGraph node holds only 'type', 'nodes', 'edges' and 'metadata' (nir.read refuses anything else)`, at);
    }
    if (e.kind !== 'dataset') {
      // Flatten's input_type may be stored as a group {input: shape} by older writers.
      if (type === 'Flatten' && key === 'input_type' && e.kind === 'group' && e.entries['input']?.kind === 'dataset') {
        params[key] = arrayOf(e.entries['input'] as H5Dataset, where, `${p}/input`);
        continue;
      }
      fail(where, `${p} is ${e.kind === 'group' ? 'a group' : 'not a dataset'}; a ${type} node's parameters are datasets`, at);
    }
    if ((type === 'Conv2d' || type === 'Conv1d') && key === 'padding' && (e as H5Dataset).type.kind === 'string') {
      text = { ...text, padding: stringOf(e, where, p) };
      continue;
    }
    if (known && !known.required.includes(key) && !known.optional?.includes(key))
      fail(
        where,
        `node ${at} (${type}) has a dataset '${key}' that NIR's ${type} does not define (it has ${[...known.required, ...(known.optional ?? [])].join(', ')}); nir.read refuses it: put extra facts under metadata/`,
        at,
      );
    params[key] = arrayOf(e as H5Dataset, where, p);
  }
  if (type === 'NIRGraph') {
    if (!nodes) fail(where, `node ${at} (NIRGraph) has no 'nodes' group`, at);
    if (!edges) fail(where, `node ${at} (NIRGraph) has no 'edges' dataset`, at);
  } else if (known) {
    for (const r of known.required) if (!(r in params) && !(text && r in text)) fail(where, `node ${at} (${type}) lacks its parameter '${r}'`, at);
  }
  return { type, params, ...(metadata ? { metadata } : {}), ...(nodes ? { nodes } : {}), ...(edges ? { edges } : {}), ...(text ? { text } : {}) };
}

function parseEdges(e: H5Dataset, where: string, at: string): (readonly [string, string])[] {
  if (e.type.kind !== 'string') fail(where, `${at} must hold strings (rows [source, target])`, at);
  const v = e.value as readonly string[];
  if (v.length === 0) return [];
  if (e.shape.length !== 2 || e.shape[1] !== 2) fail(where, `${at} must have shape (E, 2): rows [source, target], got [${e.shape}]`, at);
  const out: (readonly [string, string])[] = [];
  for (let i = 0; i < v.length; i += 2) out.push([v[i]!, v[i + 1]!]);
  return out;
}

/** Parses a NIR file's HDF5 tree (as {@link readHdf5} gives it); `where` names the file in errors. */
export function parseNir(root: H5Group, where: string): NirFile {
  const node = root.entries['node'];
  if (node?.kind !== 'group') return fail(where, "no '/node' group: not a NIR file (nir.write puts the graph there)");
  const v = root.entries['version'];
  const version = v ? stringOf(v, where, '/version') : undefined;
  const graph = parseNode(node, where, '/node');
  if (graph.type !== 'NIRGraph') fail(where, `/node is a ${graph.type}, not a NIRGraph`, '/node');
  return { ...(version !== undefined ? { version } : {}), graph };
}

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const same = (a: readonly number[] | undefined, b: readonly number[] | undefined) => a !== undefined && b !== undefined && a.join() === b.join();

/** The shapes a node reads and writes (`undefined` where the node does not fix one). */
export function nodeShapes(node: NirNode): { readonly in?: readonly number[]; readonly out?: readonly number[] } {
  const p = node.params;
  switch (node.type) {
    case 'Input':
    case 'Output': {
      const s = Array.from(p['shape']!.data);
      return { in: s, out: s };
    }
    case 'Affine':
    case 'Linear': {
      const w = p['weight']!.shape;
      return w.length === 2 ? { in: [w[1]!], out: [w[0]!] } : {};
    }
    case 'NIRGraph': {
      const kids = Object.values(node.nodes ?? {});
      const i = kids.filter((k) => k.type === 'Input');
      const o = kids.filter((k) => k.type === 'Output');
      return { ...(i.length === 1 ? { in: nodeShapes(i[0]!).in } : {}), ...(o.length === 1 ? { out: nodeShapes(o[0]!).out } : {}) };
    }
    case 'Conv2d': {
      const w = p['weight']!.shape;
      const input = p['input_shape'];
      if (w.length !== 4 || !input) return {};
      const [H, W] = [input.data[0]!, input.data[input.data.length - 1]!];
      const g = convGeometry(node);
      const out = (n: number, k: number, s: number, pad: number, d: number) => Math.floor((n + 2 * pad - d * (k - 1) - 1) / s) + 1;
      const [ph, pw] = g.padding === 'same' ? [0, 0] : g.padding;
      const size = g.padding === 'same' ? [H, W] : [out(H, w[2]!, g.stride[0], ph, g.dilation[0]), out(W, w[3]!, g.stride[1], pw, g.dilation[1])];
      return { in: [w[1]!, H, W], out: [w[0]!, ...size] };
    }
    case 'Flatten': {
      const it = p['input_type'];
      if (!it) return {};
      const shape = Array.from(it.data);
      const n = shape.length;
      const norm = (d: number) => (d < 0 ? d + n : d);
      const s = norm(p['start_dim']!.data[0]!);
      const e = norm(p['end_dim']!.data[0]!);
      if (!(s >= 0 && e < n && s <= e)) return { in: shape };
      return { in: shape, out: [...shape.slice(0, s), size(shape.slice(s, e + 1)), ...shape.slice(e + 1)] };
    }
    default: {
      if (!ELEMENTWISE.has(node.type)) return {};
      const first = Object.values(p)[0];
      return first ? { in: first.shape, out: first.shape } : {};
    }
  }
}

/**
 * Checks a graph (and its subgraphs) as NIR's type inference does: every edge joins two nodes of
 * the graph, the shape a node writes is the shape the next reads, every per-neuron parameter of a
 * node has one shape, Affine's bias fits its weight, and (`requireInput`) every node is reached
 * from an Input node (NIR infers types from the inputs: a cycle with no Input before it cannot be
 * typed). `at` is the graph's path in the file.
 */
export function checkGraph(g: NirNode, where: string, at = '/node'): void {
  const nodes = g.nodes ?? {};
  for (const [name, n] of Object.entries(nodes)) {
    const p = `${at}/nodes/${name}`;
    if (n.type === 'NIRGraph') {
      checkGraph(n, where, p);
      continue;
    }
    if (ELEMENTWISE.has(n.type)) {
      const shapes = Object.entries(n.params);
      const first = shapes[0];
      for (const [k, v] of shapes)
        if (v.shape.length === 0)
          fail(
            where,
            `node ${p} (${n.type}): '${k}' is a scalar; NIR's neuron parameters are arrays of the layer's shape (nir.read cannot infer a type from a scalar)`,
            p,
          );
      if (first) {
        for (const [k, v] of shapes)
          if (!same(v.shape, first[1].shape))
            fail(
              where,
              `node ${p} (${n.type}): '${k}' has shape [${v.shape}] but '${first[0]}' has [${first[1].shape}]; all of a node's parameters share the layer's shape`,
              p,
            );
      }
    }
    if (n.type === 'Affine' || n.type === 'Linear') {
      const w = n.params['weight']!;
      if (w.shape.length !== 2) fail(where, `node ${p} (${n.type}): weight must be a matrix (out, in), got shape [${w.shape}]`, p);
      const b = n.params['bias'];
      if (b && !same(b.shape, [w.shape[0]!]))
        fail(where, `node ${p} (Affine): bias has shape [${b.shape}], its weight (out, in) = [${w.shape}] needs [${w.shape[0]}]`, p);
    }
    if ((n.type === 'Input' || n.type === 'Output') && n.params['shape']!.shape.length !== 1)
      fail(where, `node ${p} (${n.type}): shape must be a list of dimensions`, p);
  }
  const inputs = Object.keys(nodes).filter((k) => nodes[k]!.type === 'Input');
  const outputs = Object.keys(nodes).filter((k) => nodes[k]!.type === 'Output');
  if (inputs.length === 0) fail(where, `graph ${at} has no Input node (NIR infers every type from the Input nodes; nirtorch needs one)`, at);
  if (outputs.length === 0) fail(where, `graph ${at} has no Output node`, at);
  const next = new Map<string, string[]>();
  for (const [a, b] of g.edges ?? []) {
    for (const end of [a, b])
      if (!(end in nodes))
        fail(
          where,
          `graph ${at}: the edge ${a} → ${b} names '${end}', which is no node of this graph (its nodes: ${Object.keys(nodes).join(', ')})`,
          `${at}/edges`,
        );
    const src = nodes[a]!;
    const dst = nodes[b]!;
    if (src.type === 'Output') fail(where, `graph ${at}: the edge ${a} → ${b} leaves an Output node`, `${at}/edges`);
    if (dst.type === 'Input') fail(where, `graph ${at}: the edge ${a} → ${b} enters an Input node`, `${at}/edges`);
    const out = nodeShapes(src).out;
    const inn = nodeShapes(dst).in;
    if (out && inn && !same(out, inn))
      fail(
        where,
        `graph ${at}: shapes do not fit along the edge ${a} → ${b}: ${a} (${src.type}) writes [${out}], ${b} (${dst.type}) reads [${inn}]`,
        `${at}/nodes/${b}`,
      );
    next.set(a, [...(next.get(a) ?? []), b]);
  }
  const reached = new Set(inputs);
  const todo = [...inputs];
  while (todo.length) for (const b of next.get(todo.pop()!) ?? []) if (!reached.has(b) && reached.add(b)) todo.push(b);
  for (const k of Object.keys(nodes))
    if (!reached.has(k))
      fail(where, `graph ${at}: node ${k} (${nodes[k]!.type}) is not reached from any Input node (NIR cannot infer its type)`, `${at}/nodes/${k}`);
}

/** An integer or a pair of integers (NIR stores both) as a pair. */
export function pairOf(a: NirArray | undefined, fallback: number): [number, number] {
  if (!a || a.data.length === 0) return [fallback, fallback];
  return [a.data[0]!, a.data[a.data.length > 1 ? 1 : 0]!];
}

/** A Conv2d node's stride, padding (`same` or a pair), dilation and groups. */
export function convGeometry(n: NirNode): {
  readonly stride: [number, number];
  readonly padding: 'same' | [number, number];
  readonly dilation: [number, number];
  readonly groups: number;
} {
  const text = n.text?.['padding'];
  return {
    stride: pairOf(n.params['stride'], 1),
    padding: text === 'same' ? 'same' : text === 'valid' ? [0, 0] : pairOf(n.params['padding'], 0),
    dilation: pairOf(n.params['dilation'], 1),
    groups: n.params['groups']?.data[0] ?? 1,
  };
}

/** The HDF5 layout of a NIR file as `nir.write` makes it: `/version`, `/node` and below. */
export function toHdf5(file: NirFile): H5WriteGroup {
  const arr = (a: NirArray): H5Write => ({ dtype: a.dtype, shape: a.shape, value: a.data });
  const meta = (m: Readonly<Record<string, NirMeta>>): H5WriteGroup =>
    Object.fromEntries(
      Object.entries(m).map(([k, v]) => [
        k,
        typeof v === 'string'
          ? { dtype: 'string' as const, shape: [], value: [v] }
          : 'data' in v && 'dtype' in v
            ? arr(v as NirArray)
            : meta(v as Record<string, NirMeta>),
      ]),
    );
  const node = (n: NirNode): H5WriteGroup => ({
    type: { dtype: 'string', shape: [], value: [n.type] },
    ...Object.fromEntries(Object.entries(n.params).map(([k, v]) => [k, arr(v)])),
    ...Object.fromEntries(Object.entries(n.text ?? {}).map(([k, v]) => [k, { dtype: 'string' as const, shape: [], value: [v] }])),
    ...(n.metadata && Object.keys(n.metadata).length ? { metadata: meta(n.metadata) } : {}),
    ...(n.type === 'NIRGraph'
      ? {
          nodes: Object.fromEntries(Object.entries(n.nodes ?? {}).map(([k, v]) => [k, node(v)])),
          edges: { dtype: 'string', shape: [(n.edges ?? []).length, 2], value: (n.edges ?? []).flat() },
        }
      : {}),
  });
  return { version: { dtype: 'string', shape: [], value: [file.version ?? NIR_VERSION] }, node: node(file.graph) };
}

/** The NIR version whose layout spikeflow writes (the NIR library's, as of NIR 1.0.7). */
export const NIR_VERSION = '1.0.7';

import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { buildNetwork, createRegistry, createRng, disposeTree, forward, tf } from '@spikeflow/core';
import { wasm } from '@spikeflow/backend-wasm';
import lifPlugin from '@spikeflow/neuron-lif';
import plugin, { importNir, readNir, validateNir, writeNir, type NirArray, type NirFile, type NirNode } from './index.js';

/**
 * Files in the forms snnTorch and Norse write (the layouts of ../shared/nir/SPEC.md §4–§5, built
 * here), imported into spikeflow and checked against a simulation written straight from NIR's
 * equations under forward Euler, float64, as the PyTorch importers run a graph: every node once per
 * step, edges into a node summed, an edge that closes a cycle delivering the previous step's output.
 */

const registry = createRegistry([lifPlugin, plugin]);
beforeAll(() => wasm.activate());

/** The edges of a chain of nodes: a → b → c → ... */
const chain = (...names: string[]): [string, string][] => names.slice(1).map((b, i) => [names[i]!, b]);
const arr = (values: ArrayLike<number>, shape: number[] = [values.length]): NirArray => ({
  dtype: 'float32',
  shape,
  data: Float64Array.from(values, Math.fround),
});
const full = (n: number, v: number) => arr(new Array(n).fill(v));
const shape = (n: number): NirArray => ({ dtype: 'int64', shape: [1], data: Float64Array.of(n) });
const io = (type: 'Input' | 'Output', n: number): NirNode => ({ type, params: { shape: shape(n) } });

function randomMatrix(rng: () => number, out: number, inn: number, scale: number): NirArray {
  return arr(
    Array.from({ length: out * inn }, () => (rng() * 2 - 1) * scale),
    [out, inn],
  );
}
const affine = (rng: () => number, out: number, inn: number, scale: number, bias = true): NirNode => ({
  type: bias ? 'Affine' : 'Linear',
  params: { weight: randomMatrix(rng, out, inn, scale), ...(bias ? { bias: arr(Array.from({ length: out }, () => (rng() * 2 - 1) * scale * 0.3)) } : {}) },
});

/** snnTorch's Leaky (β, ϑ) as its NIR export writes it: τ = Δt/(1 − β), r = τ/Δt. */
const snntorchLif = (beta: number[], thr: number, dt: number, withReset = true): NirNode => {
  const tau = beta.map((b) => dt / (1 - b));
  return {
    type: 'LIF',
    params: {
      tau: arr(tau),
      r: arr(tau.map((t) => t / dt)),
      v_leak: full(beta.length, 0),
      v_threshold: full(beta.length, thr),
      ...(withReset ? { v_reset: full(beta.length, 0) } : {}),
    },
  };
};

// ---- The reference: NIR's equations, forward Euler, float64 ----

type State = Map<string, Float64Array>;

/** The [C, H, W] map each pooling node reads, by node path (the cases give it; NIR infers it from the graph). */
const shapeOfPool = new Map<string, [number, number, number]>();

function simulate(file: NirFile, xs: Float64Array[], dt: number): Float64Array[] {
  const states: State = new Map();
  const prevOut = new Map<string, Float64Array>();
  const out: Float64Array[] = [];
  for (const x of xs) out.push(stepGraph(file.graph, '', x, dt, states, prevOut));
  return out;
}

/** Which edges close a cycle: a depth-first walk from the Input nodes; an edge back to a node on the current path. */
function delayedEdges(g: NirNode): Set<number> {
  const edges = g.edges ?? [];
  const delayed = new Set<number>();
  const done = new Set<string>();
  const onPath = new Set<string>();
  const visit = (n: string) => {
    onPath.add(n);
    edges.forEach(([a, b], i) => {
      if (a !== n) return;
      if (onPath.has(b)) delayed.add(i);
      else if (!done.has(b)) visit(b);
    });
    onPath.delete(n);
    done.add(n);
  };
  for (const [name, n] of Object.entries(g.nodes!)) if (n.type === 'Input') visit(name);
  return delayed;
}

function stepGraph(g: NirNode, prefix: string, x: Float64Array, dt: number, states: State, prevOut: Map<string, Float64Array>): Float64Array {
  const nodes = g.nodes!;
  const edges = g.edges ?? [];
  const delayed = delayedEdges(g);
  const outputs = new Map<string, Float64Array>();
  const pending = new Set(Object.keys(nodes));
  let result: Float64Array | undefined;
  while (pending.size) {
    const ready = [...pending].find((n) => edges.every(([a, b], i) => b !== n || delayed.has(i) || outputs.has(a)));
    if (ready === undefined) throw new Error('no node is ready: the test graph has a cycle without a delay');
    pending.delete(ready);
    const node = nodes[ready]!;
    const id = prefix + ready;
    let input: Float64Array | undefined;
    edges.forEach(([a, b], i) => {
      if (b !== ready) return;
      const v = delayed.has(i) ? prevOut.get(prefix + a) : outputs.get(a);
      const w = v ?? new Float64Array(outputs.get(a)?.length ?? widthOf(nodes[a]!));
      if (!input) input = new Float64Array(w.length);
      for (let k = 0; k < w.length; k++) input[k]! += w[k]!;
    });
    const y = node.type === 'Input' ? x : evalNode(node, id, input!, dt, states, prevOut);
    outputs.set(ready, y);
    if (node.type === 'Output') result = y;
  }
  for (const [k, v] of outputs) prevOut.set(prefix + k, v);
  return result!;
}

function widthOf(n: NirNode): number {
  if (n.type === 'Affine' || n.type === 'Linear') return n.params['weight']!.shape[0]!;
  if (n.type === 'NIRGraph') return widthOf(Object.values(n.nodes!).find((k) => k.type === 'Output')!);
  if (n.type === 'Input' || n.type === 'Output') return n.params['shape']!.data[0]!;
  return Object.values(n.params)[0]!.shape[0]!;
}

function evalNode(n: NirNode, id: string, x: Float64Array, dt: number, states: State, prevOut: Map<string, Float64Array>): Float64Array {
  const p = (k: string, fallback = 0) => n.params[k]?.data ?? new Float64Array(x.length).fill(fallback);
  const state = (k: string, len: number) => {
    const key = `${id}#${k}`;
    if (!states.has(key)) states.set(key, new Float64Array(len));
    return states.get(key)!;
  };
  const spikeAndReset = (v: Float64Array) => {
    const thr = n.type === 'Threshold' ? p('threshold') : p('v_threshold');
    const reset = p('v_reset');
    const z = new Float64Array(v.length);
    for (let j = 0; j < v.length; j++)
      if (v[j]! > thr[j]!) {
        z[j] = 1;
        v[j] = reset[j]!;
      }
    return z;
  };
  switch (n.type) {
    case 'Output':
      return x;
    case 'Affine':
    case 'Linear': {
      const w = p('weight');
      const [rows, cols] = n.params['weight']!.shape as [number, number];
      const y = new Float64Array(rows);
      for (let i = 0; i < rows; i++) {
        let s = n.type === 'Affine' ? p('bias')[i]! : 0;
        for (let c = 0; c < cols; c++) s += w[i * cols + c]! * x[c]!;
        y[i] = s;
      }
      return y;
    }
    case 'Scale':
      return x.map((v, j) => v * p('scale')[j]!);
    case 'Flatten':
      return x;
    case 'Conv2d': {
      // PyTorch's convolution on a [C, H, W] map: weight (C_out, C_in, kh, kw), zeros padded on both sides ('same': stride 1, k − 1 in all, the odd one after).
      const [co, ci, kh, kw] = n.params['weight']!.shape as [number, number, number, number];
      const [H, W] = Array.from(n.params['input_shape']!.data) as [number, number];
      const pair = (k: string, d: number) => (n.params[k] ? [n.params[k]!.data[0]!, n.params[k]!.data.at(-1)!] : [d, d]);
      const [sh, sw] = pair('stride', 1) as [number, number];
      const same = n.text?.['padding'] === 'same';
      const [ph, pw] = (same ? [Math.floor((kh - 1) / 2), Math.floor((kw - 1) / 2)] : pair('padding', 0)) as [number, number];
      const Ho = same ? H : Math.floor((H + 2 * ph - kh) / sh) + 1;
      const Wo = same ? W : Math.floor((W + 2 * pw - kw) / sw) + 1;
      const w = p('weight');
      const y = new Float64Array(co * Ho * Wo);
      for (let o = 0; o < co; o++)
        for (let r = 0; r < Ho; r++)
          for (let c = 0; c < Wo; c++) {
            let acc = n.params['bias']?.data[o] ?? 0;
            for (let i = 0; i < ci; i++)
              for (let a = 0; a < kh; a++)
                for (let b = 0; b < kw; b++) {
                  const yy = r * sh + a - ph;
                  const xx = c * sw + b - pw;
                  if (yy >= 0 && yy < H && xx >= 0 && xx < W) acc += w[((o * ci + i) * kh + a) * kw + b]! * x[(i * H + yy) * W + xx]!;
                }
            y[(o * Ho + r) * Wo + c] = acc;
          }
      return y;
    }
    case 'SumPool2d':
    case 'AvgPool2d': {
      // Valid windows on the [C, H, W] map the case says the node reads (NIR infers it from the graph).
      const k = Array.from(n.params['kernel_size']!.data);
      const st = Array.from(n.params['stride']!.data);
      const [C, H, W] = shapeOfPool.get(id)!;
      const Ho = Math.floor((H - k[0]!) / st[0]!) + 1;
      const Wo = Math.floor((W - k[1]!) / st[1]!) + 1;
      const y = new Float64Array(C * Ho * Wo);
      for (let c = 0; c < C; c++)
        for (let r = 0; r < Ho; r++)
          for (let q = 0; q < Wo; q++) {
            let acc = 0;
            for (let a = 0; a < k[0]!; a++) for (let b = 0; b < k[1]!; b++) acc += x[(c * H + r * st[0]! + a) * W + q * st[1]! + b]!;
            y[(c * Ho + r) * Wo + q] = n.type === 'AvgPool2d' ? acc / (k[0]! * k[1]!) : acc;
          }
      return y;
    }
    case 'LIF':
    case 'LI': {
      // τ v̇ = (v_leak − v) + r·I  →  v ← v + Δt/τ·(v_leak − v + r·I)
      const v = state('v', x.length);
      const tau = p('tau');
      for (let j = 0; j < x.length; j++) v[j] = v[j]! + (dt / tau[j]!) * (p('v_leak')[j]! - v[j]! + p('r')[j]! * x[j]!);
      return n.type === 'LI' ? v.slice() : spikeAndReset(v);
    }
    case 'IF':
    case 'I': {
      // As snnTorch and Norse run them: v ← v + r·I (SPEC.md P11).
      const v = state('v', x.length);
      for (let j = 0; j < x.length; j++) v[j] = v[j]! + p('r')[j]! * x[j]!;
      return n.type === 'I' ? v.slice() : spikeAndReset(v);
    }
    case 'CubaLIF': {
      // τ_syn İ = −I + w_in·S;  τ_mem v̇ = (v_leak − v) + r·I, the new I driving v.
      const i = state('i', x.length);
      const v = state('v', x.length);
      for (let j = 0; j < x.length; j++) {
        i[j] = i[j]! + (dt / p('tau_syn')[j]!) * (-i[j]! + p('w_in', 1)[j]! * x[j]!);
        v[j] = v[j]! + (dt / p('tau_mem')[j]!) * (p('v_leak')[j]! - v[j]! + p('r')[j]! * i[j]!);
      }
      return spikeAndReset(v);
    }
    case 'Threshold':
      return x.map((v, j) => (v > p('threshold')[j]! ? 1 : 0));
    case 'NIRGraph':
      return stepGraph(n, `${id}/`, x, dt, states, prevOut);
    default:
      throw new Error(`the reference does not simulate ${n.type}`);
  }
}

// ---- The cases ----

interface Case {
  readonly name: string;
  readonly dt: number;
  readonly file: NirFile;
}

function cases(): Case[] {
  const rng = createRng(7);
  const out: Case[] = [];
  const graph = (nodes: Record<string, NirNode>, edges: [string, string][]): NirFile => ({ graph: { type: 'NIRGraph', params: {}, nodes, edges } });
  {
    // snnTorch: Leaky ×2 (β 0.9 and 0.8), Affine between, written by its export (r = τ/Δt), Δt = 1e-4.
    const dt = 1e-4;
    out.push({
      name: 'snnTorch Leaky ×2 (r = τ/Δt)',
      dt,
      file: graph(
        {
          input: io('Input', 6),
          '0': affine(rng, 8, 6, 0.9),
          '1': snntorchLif(new Array(8).fill(0.9), 1, dt),
          '2': affine(rng, 3, 8, 0.8),
          '3': snntorchLif(new Array(3).fill(0.8), 0.5, dt),
          output: io('Output', 3),
        },
        chain('input', '0', '1', '2', '3', 'output'),
      ),
    });
    // Per-neuron τ, r = τ/Δt each, nodes named x and y, edges in another order, no v_reset (files before NIR 1.0.6).
    out.push({
      name: 'snnTorch per-neuron τ, names x/y, no v_reset',
      dt,
      file: graph(
        {
          x: affine(rng, 5, 6, 0.9),
          y: snntorchLif([0.95, 0.9, 0.85, 0.8, 0.6], 1, dt, false),
          in: io('Input', 6),
          out: io('Output', 5),
        },
        [
          ['y', 'out'],
          ['in', 'x'],
          ['x', 'y'],
        ],
      ),
    });
    // RLeaky as a nested graph (snnTorch's _extract_snntorch_module), a Linear w_rec.
    const rec = (name: string, n: number): NirNode => ({
      type: 'NIRGraph',
      params: {},
      nodes: { input: io('Input', n), lif: snntorchLif(new Array(n).fill(0.85), 1, dt), w_rec: affine(rng, n, n, 0.6, false), output: io('Output', n) },
      edges: chain('input', 'lif', 'w_rec', 'lif', 'output'),
      ...(name ? {} : {}),
    });
    out.push({
      name: 'snnTorch RLeaky, nested graph',
      dt,
      file: graph(
        {
          input: io('Input', 6),
          '0': affine(rng, 7, 6, 0.9),
          '1': rec('1', 7),
          '2': affine(rng, 3, 7, 0.8),
          '3': snntorchLif([0.9, 0.9, 0.9], 1, dt),
          output: io('Output', 3),
        },
        chain('input', '0', '1', '2', '3', 'output'),
      ),
    });
    // The same recurrence flattened (snnTorch's export_to_nir): 1.lif ↔ 1.w_rec at the top.
    out.push({
      name: 'snnTorch RLeaky, flattened 1.lif ↔ 1.w_rec',
      dt,
      file: graph(
        {
          input: io('Input', 6),
          '0': affine(rng, 7, 6, 0.9),
          '1.lif': snntorchLif(new Array(7).fill(0.85), 1, dt),
          '1.w_rec': affine(rng, 7, 7, 0.6),
          '2': affine(rng, 3, 7, 0.8),
          '3': snntorchLif([0.9, 0.9, 0.9], 1, dt),
          output: io('Output', 3),
        },
        chain('input', '0', '1.lif', '1.w_rec', '1.lif', '2', '3', 'output'),
      ),
    });
    // Synaptic ×2 as snnTorch exports it: τ_syn = Δt/(1 − α), w_in = τ_syn/Δt, τ_mem = Δt/(1 − β), r = τ_mem/Δt.
    const synaptic = (n: number, alpha: number, beta: number): NirNode => {
      const ts = dt / (1 - alpha);
      const tm = dt / (1 - beta);
      return {
        type: 'CubaLIF',
        params: {
          tau_syn: full(n, ts),
          tau_mem: full(n, tm),
          r: full(n, tm / dt),
          v_leak: full(n, 0),
          v_threshold: full(n, 1),
          v_reset: full(n, 0),
          w_in: full(n, ts / dt),
        },
      };
    };
    out.push({
      name: 'snnTorch Synaptic ×2 (CubaLIF)',
      dt,
      file: graph(
        {
          input: io('Input', 6),
          '0': affine(rng, 8, 6, 0.7),
          '1': synaptic(8, 0.7, 0.85),
          '2': affine(rng, 3, 8, 0.6),
          '3': synaptic(3, 0.5, 0.9),
          output: io('Output', 3),
        },
        chain('input', '0', '1', '2', '3', 'output'),
      ),
    });
  }
  {
    // Norse: LIFBoxCell (τ = 1/tau_mem_inv = 0.01 s, r = 1) and an LI readout, Δt = 1e-3 (from_nir's default).
    const dt = 1e-3;
    const norseLif = (n: number, vLeak = 0): NirNode => ({
      type: 'LIF',
      params: { tau: full(n, 0.01), r: full(n, 1), v_leak: full(n, vLeak), v_threshold: full(n, 1), v_reset: full(n, 0) },
    });
    out.push({
      name: 'Norse Affine → LIF → Affine → LI (r = 1)',
      dt,
      file: graph(
        {
          '0': affine(rng, 8, 6, 6),
          '1': norseLif(8),
          '2': affine(rng, 3, 8, 4),
          '3': { type: 'LI', params: { tau: full(3, 0.02), r: full(3, 1), v_leak: full(3, 0) } },
          input: io('Input', 6),
          output: io('Output', 3),
        },
        [
          ['2', '3'],
          ['input', '0'],
          ['3', 'output'],
          ['1', '2'],
          ['0', '1'],
        ],
      ),
    });
    // Other nodes: Scale, Linear, a leak potential, per-neuron thresholds, r ≠ 1, an IF layer, a Threshold layer, an I readout.
    out.push({
      name: 'Scale, v_leak, per-neuron ϑ, r ≠ 1, IF, Threshold, I',
      dt,
      file: graph(
        {
          input: io('Input', 4),
          s: { type: 'Scale', params: { scale: arr([1.5, -0.5, 2, 1]) } },
          a: affine(rng, 6, 4, 5),
          l: {
            type: 'LIF',
            params: { tau: full(6, 0.005), r: arr([1, 2, 0.5, 1.5, 1, 3]), v_leak: full(6, 0.2), v_threshold: arr([1, 0.5, 1.5, 1, 2, 0.8]) },
          },
          b: affine(rng, 5, 6, 0.9, false),
          f: { type: 'IF', params: { r: full(5, 0.7), v_threshold: full(5, 1), v_reset: full(5, 0) } },
          c: affine(rng, 4, 5, 1.2),
          t: { type: 'Threshold', params: { threshold: full(4, 0.3) } },
          d: affine(rng, 2, 4, 1, false),
          i: { type: 'I', params: { r: arr([1, 0.5]) } },
          output: io('Output', 2),
        },
        chain('input', 's', 'a', 'l', 'b', 'f', 'c', 't', 'd', 'i', 'output'),
      ),
    });
  }
  {
    // A convolutional network as Norse writes one (r = 1): Conv2d with padding 'same' (a string), AvgPool2d, Flatten, Affine, LI; Δt = 1e-3.
    const dt = 1e-3;
    const int = (...v: number[]): NirArray => ({ dtype: 'int64', shape: [v.length], data: Float64Array.from(v) });
    const map = (shape: number[], v: number) => arr(new Array(shape.reduce((a, b) => a * b, 1)).fill(v), shape);
    shapeOfPool.set('pool', [4, 6, 6]);
    out.push({
      name: "Norse conv: Conv2d padding 'same', AvgPool2d, Flatten, Affine, LI",
      dt,
      file: graph(
        {
          input: { type: 'Input', params: { shape: int(2, 6, 6) } },
          conv: {
            type: 'Conv2d',
            params: {
              weight: arr(randomMatrix(rng, 4, 18, 4).data, [4, 2, 3, 3]),
              stride: int(1, 1),
              dilation: int(1, 1),
              groups: { dtype: 'int64', shape: [], data: Float64Array.of(1) },
              bias: arr([1, -0.5, 0.5, 0]),
              input_shape: int(6, 6),
            },
            text: { padding: 'same' },
          },
          lif: {
            type: 'LIF',
            params: { tau: map([4, 6, 6], 0.005), r: map([4, 6, 6], 1), v_leak: map([4, 6, 6], 0), v_threshold: map([4, 6, 6], 1), v_reset: map([4, 6, 6], 0) },
          },
          pool: { type: 'AvgPool2d', params: { kernel_size: int(2, 2), stride: int(2, 2), padding: int(0, 0) } },
          flat: {
            type: 'Flatten',
            params: {
              start_dim: { dtype: 'int64', shape: [], data: Float64Array.of(0) },
              end_dim: { dtype: 'int64', shape: [], data: Float64Array.of(-1) },
              input_type: int(4, 3, 3),
            },
          },
          fc: affine(rng, 3, 36, 6),
          li: { type: 'LI', params: { tau: full(3, 0.01), r: full(3, 1), v_leak: full(3, 0) } },
          output: io('Output', 3),
        },
        chain('input', 'conv', 'lif', 'pool', 'flat', 'fc', 'li', 'output'),
      ),
    });
  }
  return out;
}

/** Imports `bytes`, runs the network on 60 steps of random spikes, and compares with {@link simulate}. */
async function agrees(bytes: Uint8Array, dt: number, seed: number): Promise<void> {
  expect(await validateNir(bytes)).toEqual([]);
  const imported = await importNir(bytes, { dt });
  const net = buildNetwork(imported.model, registry);
  net.setParams(imported.params);
  const T = 60;
  const B = 1;
  const rng = createRng(seed);
  const n = imported.model.inputs;
  const xs = Array.from({ length: T }, () => Float64Array.from({ length: n }, () => (rng() < 0.4 ? 1 : 0)));
  const want = simulate(await readNir(bytes), xs, dt);
  // The reference reads NIR's [C, H, W]; spikeflow its inputShape [H, W, C].
  const [H, W, C] = imported.model.inputShape ?? [1, 1, n];
  const hwc = (v: Float64Array) => Array.from({ length: n }, (_, k) => v[(k % C) * H * W + Math.floor(k / C)]!);
  const x = tf.tensor3d(
    xs.map((v) => [hwc(v)]),
    [T, B, n],
  );
  const out = forward(net, x, { record: true });
  const got = out.readout.arraySync() as number[][][];
  const scale = Math.max(1e-6, ...want.flatMap((w) => Array.from(w, Math.abs)));
  const spiking = imported.model.readout.kind === 'identity';
  for (let t = 0; t < T; t++)
    for (let k = 0; k < want[t]!.length; k++) {
      if (spiking) expect(got[t]![0]![k], `step ${t}, output ${k}`).toBe(want[t]![k]);
      else expect(Math.abs(got[t]![0]![k]! - want[t]![k]!) / scale, `step ${t}, output ${k}`).toBeLessThan(1e-5);
    }
  // Not vacuous: the hidden layers spike, and the output moves.
  for (const s of out.spikes!) expect(s.sum().dataSync()[0], 'a layer that never spikes').toBeGreaterThan(0);
  expect(want.some((w) => w.some((v) => v !== 0))).toBe(true);
  disposeTree([out, x] as never);
  net.dispose();
}

describe('NIR files in the forms snnTorch and Norse write', () => {
  for (const c of cases()) {
    it(`${c.name}: imports and runs as NIR's equations under forward Euler at Δt = ${c.dt}`, async () => {
      await agrees(await writeNir(c.file), c.dt, c.name.length);
    });
  }

  // Written by the NIR library's own nir.write (tools/make-test-files.py): h5py's layout of the same forms.
  for (const [name, dt] of [
    ['snntorch-rleaky-flat', 1e-4],
    ['snntorch-synaptic', 1e-4],
    ['norse-li', 1e-3],
    ['snntorch-conv', 1e-4],
  ] as const) {
    shapeOfPool.set('2', [3, 8, 8]);
    it(`${name}.nir, written by nir.write: imports and runs as NIR's equations at Δt = ${dt}`, async () => {
      await agrees(new Uint8Array(readFileSync(new URL(`../test-data/${name}.nir`, import.meta.url))), dt, name.length);
    });
  }
});

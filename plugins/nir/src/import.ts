import { SpikeflowError, layerParam, readoutParam, type ImportedModel, type LayerSpec, type ModelSpec, type ReadoutSpec } from '@spikeflow/core';
import { checkGraph, convGeometry, nodeShapes, pairOf, type NirFile, type NirNode } from './graph.js';

export interface NirImportOptions {
  /**
   * The time step Δt in seconds to run the file's continuous-time nodes with (default 1e-4 s:
   * snnTorch's, and what spikeflow's export assumes). NIR does not store it.
   */
  readonly dt?: number;
  /** Names the file in errors (default `NIR file`). */
  readonly where?: string;
}

/** The neuron types imported as spiking layers, and the non-spiking ones imported as the readout. */
const SPIKING = new Set(['LIF', 'IF', 'Threshold', 'CubaLIF']);
const NON_SPIKING = new Set(['LI', 'I']);
const LINEAR = new Set(['Affine', 'Linear', 'Scale']);
const SPATIAL = new Set(['Conv2d', 'SumPool2d', 'AvgPool2d']);
const IMPORTED = ['Input', 'Output', 'NIRGraph', 'Flatten', ...LINEAR, ...SPIKING, ...NON_SPIKING, ...SPATIAL];

/** The package providing the neurons an imported model names. */
const NEURONS_PACKAGE = '@spikeflow/neuron-lif';

/** A node of the flattened graph: its NIR node and its path in the file. */
interface Flat {
  readonly node: NirNode;
  readonly at: string;
  /** A subgraph's Input or Output: passes its input on unchanged. */
  readonly sub: boolean;
}

/** What reaches a node: a matrix (out × in, NIR's orientation) per source unit, and one bias. */
interface Drive {
  readonly from: Map<string, Float64Array>;
  readonly bias: Float64Array;
  /** Whether an Affine (a bias term) lies on a path into the node. */
  readonly hasBias: boolean;
}

const width = (n: NirNode): number => {
  const s = nodeShapes(n).out ?? nodeShapes(n).in ?? [];
  return s.reduce((a, b) => a * b, 1);
};

/** A spiking node's per-neuron constants under forward Euler: membrane decay β, input gain g, constant drive c, threshold ϑ; α of a CubaLIF. */
interface Neuron {
  readonly beta: Float64Array;
  readonly gain: Float64Array;
  readonly constant: Float64Array;
  readonly thr: Float64Array;
  readonly alpha?: Float64Array;
}

const arrOf = (n: NirNode, k: string, size: number, fallback = 0) => n.params[k]?.data ?? new Float64Array(size).fill(fallback);
const uniform = (a: Float64Array) => a.every((x) => x === a[0]);

function neuronOf(f: { readonly node: NirNode; readonly at: string }, size: number, dt: number, refuse: (at: string, why: string) => never): Neuron {
  const n = f.node;
  const arr = (k: string, fallback = 0) => arrOf(n, k, size, fallback);
  const thr = n.type === 'Threshold' ? arr('threshold') : arr('v_threshold');
  const bad = (a: Float64Array, ok: (x: number) => boolean) => a.find((x) => !ok(x));
  const low = bad(thr, (t) => t > 0);
  if (low !== undefined) refuse(f.at, `a threshold ≤ 0 (${low}); spikeflow's thresholds are positive`);
  const reset = n.type === 'Threshold' ? undefined : bad(arr('v_reset'), (v) => v === 0);
  if (reset !== undefined) refuse(f.at, `v_reset ≠ 0 (${reset}): spikeflow's neurons reset to 0 and start at 0`);
  const decay = (tau: Float64Array, what: string) =>
    tau.map((t) => {
      if (!(t > 0)) refuse(f.at, `${what} = ${t}: time constants must be positive`);
      if (dt > t) refuse(f.at, `Δt = ${dt} s is longer than ${what} = ${t} s: forward Euler's decay 1 − Δt/τ would be negative; import with a smaller dt`);
      return 1 - dt / t;
    });
  if (n.type === 'LIF') {
    const tau = arr('tau');
    return {
      beta: decay(tau, 'tau'),
      gain: tau.map((t, j) => (dt / t) * arr('r')[j]!),
      constant: tau.map((t, j) => (dt / t) * arr('v_leak')[j]!),
      thr,
    };
  }
  if (n.type === 'IF') return { beta: new Float64Array(size).fill(1), gain: arr('r').slice(), constant: new Float64Array(size), thr };
  if (n.type === 'Threshold') return { beta: new Float64Array(size), gain: new Float64Array(size).fill(1), constant: new Float64Array(size), thr };
  // CubaLIF: the synaptic filter's input gain (Δt/τ_syn)·w_in and the membrane's (Δt/τ_mem)·r both scale the input (the dynamics are linear).
  const tauSyn = arr('tau_syn');
  const tauMem = arr('tau_mem');
  const alpha = decay(tauSyn, 'tau_syn');
  const beta = decay(tauMem, 'tau_mem');
  if (arr('v_leak').some((v) => v !== 0)) refuse(f.at, "v_leak ≠ 0 in a CubaLIF node: spikeflow's cuba-lif has no leak potential");
  if (!uniform(alpha) || !uniform(beta)) refuse(f.at, "per-neuron tau_syn or tau_mem in a CubaLIF node: spikeflow's cuba-lif has one α and one β per layer");
  const wIn = arr('w_in', 1);
  return { beta, alpha, gain: tauSyn.map((ts, j) => (dt / ts) * wIn[j]! * (dt / tauMem[j]!) * arr('r')[j]!), constant: new Float64Array(size), thr };
}

/**
 * A NIR graph as a spikeflow model: a chain of dense layers of `lif` neurons (reset to zero) or
 * `cuba-lif` neurons, each optionally recurrent, and a readout. NIR's continuous-time nodes run
 * under forward Euler with step Δt, as snnTorch and Norse run them:
 *
 * - LIF: `v_t = (1 − Δt/τ)·v_{t−1} + (Δt/τ)·(v_leak + r·I_t)`, spike where v_t > v_threshold, then
 *   v ← v_reset — a `lif` layer with β = 1 − Δt/τ, every incoming weight and bias scaled by r·Δt/τ,
 *   (Δt/τ)·v_leak added to the bias; IF (`v_t = v_{t−1} + r·I_t`, as the importers run it) β = 1;
 *   Threshold β = 0.
 * - CubaLIF: `I_t = (1 − Δt/τ_syn)·I_{t−1} + (Δt/τ_syn)·w_in·x_t`, then the LIF equation on I_t
 *   (the new current) — a `cuba-lif` layer.
 * - LI and I as the readout (`leaky`, κ = 1 − Δt/τ, and κ = 1 with gain r); a spiking last node
 *   straight into the Output: the `identity` readout.
 * - Affine, Linear and Scale compose along a path; edges into a node sum; an edge that closes a
 *   cycle delivers the previous step's output (so a layer's own spikes feed back through `W_rec`).
 *   Both recurrence forms are read: a nested NIRGraph and the flattened `lif ↔ w_rec` pair.
 *
 * Per-neuron thresholds become a threshold of 1 with each neuron's incoming weights divided by
 * its own (exact: the dynamics are linear between resets to zero); per-neuron τ of a LIF node a
 * per-neuron β (`learnBeta`). A graph with an image input or a convolution imports node by node
 * (see {@link spatialModel}). Refused with the node's name: node types spikeflow cannot run (Delay,
 * Conv1d, ...), v_reset ≠ 0, Δt > τ, branches and skip connections.
 */
export function modelOfNir(file: NirFile, { dt = 1e-4, where = 'NIR file' }: NirImportOptions = {}): ImportedModel {
  if (!(dt > 0) || !Number.isFinite(dt))
    throw new SpikeflowError('CONFIG_INVALID', `NIR import: dt must be a positive number of seconds, got ${dt}`, { path: 'dt' });
  checkGraph(file.graph, where);
  const refuse = (at: string, why: string): never => {
    throw new SpikeflowError('INCOMPATIBLE', `${where}: node ${at}: ${why}`, { path: where, node: at });
  };
  const notes: string[] = [`NIR's continuous-time nodes are run with forward Euler at Δt = ${dt} s (pass another dt if the file was made for one)`];

  // 1. One flat graph: a subgraph's nodes under its name, edges into it entering its Input, out of it leaving its Output.
  const flat = new Map<string, Flat>();
  const edges: [string, string][] = [];
  const expand = (g: NirNode, prefix: string, at: string): { input?: string; output?: string } => {
    const ends: { input?: string; output?: string } = {};
    const local = new Map<string, { in: string; out: string }>();
    for (const [name, n] of Object.entries(g.nodes ?? {})) {
      const id = prefix + name;
      const p = `${at}/nodes/${name}`;
      if (n.type === 'NIRGraph') {
        const inner = Object.values(n.nodes ?? {});
        if (inner.filter((k) => k.type === 'Input').length !== 1 || inner.filter((k) => k.type === 'Output').length !== 1)
          refuse(p, 'a subgraph with several Input or Output nodes; spikeflow imports subgraphs with one of each');
        const e = expand(n, `${id}/`, p);
        local.set(name, { in: e.input!, out: e.output! });
        continue;
      }
      if (!IMPORTED.includes(n.type))
        refuse(p, `type ${n.type} cannot be imported into spikeflow (it imports ${IMPORTED.filter((t) => t !== 'NIRGraph').join(', ')} and nested NIRGraphs)`);
      const sub = prefix !== '' && (n.type === 'Input' || n.type === 'Output');
      flat.set(id, { node: n, at: p, sub });
      local.set(name, { in: id, out: id });
      if (n.type === 'Input') ends.input = id;
      if (n.type === 'Output') ends.output = id;
    }
    for (const [a, b] of g.edges ?? []) edges.push([local.get(a)!.out, local.get(b)!.in]);
    return ends;
  };
  expand(file.graph, '', '/node');
  // A spatial network (an image input, convolutions, pooling) runs as a chain of its own.
  const spatial = [...flat.values()].some((f) => SPATIAL.has(f.node.type) || (f.node.type === 'Input' && !f.sub && f.node.params['shape']!.data.length > 1));
  if (!spatial && edges.some(([a, b]) => flat.get(a)?.node.type === 'Flatten' || flat.get(b)?.node.type === 'Flatten'))
    notes.push("Flatten nodes pass their input on: spikeflow's inputs are flat, in the order of NIR's Input shape (row-major)");

  // 2. Pass-through nodes removed: each of their inputs joined to each of their outputs.
  let list = [...new Set(edges.map(([a, b]) => `${a}\u0000${b}`))].map((k) => k.split('\u0000') as [string, string]);
  for (const [id, f] of flat) {
    if (!f.sub && (spatial || f.node.type !== 'Flatten')) continue;
    const ins = list.filter(([, b]) => b === id).map(([a]) => a);
    const outs = list.filter(([a]) => a === id).map(([, b]) => b);
    list = list.filter(([a, b]) => a !== id && b !== id);
    for (const a of ins) for (const b of outs) if (!list.some(([x, y]) => x === a && y === b)) list.push([a, b]);
    flat.delete(id);
  }
  const preds = (id: string) => list.filter(([, b]) => b === id).map(([a]) => a);
  const top = (type: string) => [...flat].filter(([, f]) => f.node.type === type).map(([id]) => id);
  const [input, ...moreInputs] = top('Input');
  const [output, ...moreOutputs] = top('Output');
  if (moreInputs.length || moreOutputs.length)
    refuse('/node', `${moreInputs.length + 1} Input and ${moreOutputs.length + 1} Output nodes; spikeflow imports one of each`);

  if (spatial) return spatialModel(flat, list, input!, output!, dt, refuse, notes);

  // 3. What drives each unit (a neuron or the Output): linear nodes composed back to units or the Input.
  const isUnit = (id: string) => !LINEAR.has(flat.get(id)!.node.type);
  const drives = new Map<string, Drive>();
  const driveOf = (id: string, stack: readonly string[]): Drive => {
    const f = flat.get(id)!;
    // The features entering the node: a linear node's input width, a unit's own.
    const n = isUnit(id) ? width(f.node) : nodeShapes(f.node).in!.reduce((a, b) => a * b, 1);
    const from = new Map<string, Float64Array>();
    const bias = new Float64Array(n);
    let hasBias = false;
    for (const p of preds(id)) {
      let d: Drive;
      if (isUnit(p)) {
        const m = width(flat.get(p)!.node);
        const eye = new Float64Array(m * m);
        for (let j = 0; j < m; j++) eye[j * m + j] = 1;
        d = { from: new Map([[p, eye]]), bias: new Float64Array(m), hasBias: false };
      } else {
        if (stack.includes(p)) refuse(flat.get(p)!.at, 'a cycle through linear nodes only (no neuron on it): it has no value at any step');
        d = through(p, [...stack, p]);
      }
      for (const [src, m] of d.from) {
        const had = from.get(src);
        if (had) for (let k = 0; k < m.length; k++) had[k]! += m[k]!;
        else from.set(src, m.slice());
      }
      for (let j = 0; j < n; j++) bias[j]! += d.bias[j]!;
      hasBias ||= d.hasBias;
    }
    return { from, bias, hasBias };
  };
  /** The drive out of linear node `id`: its input's drive through its matrix. */
  const through = (id: string, stack: readonly string[]): Drive => {
    const f = flat.get(id)!;
    const inner = driveOf(id, stack);
    const p = f.node.params;
    const rows = width(f.node);
    const cols = nodeShapes(f.node).in!.reduce((a, b) => a * b, 1);
    const w =
      f.node.type === 'Scale'
        ? (() => {
            const d = new Float64Array(rows * rows);
            for (let j = 0; j < rows; j++) d[j * rows + j] = p['scale']!.data[j]!;
            return d;
          })()
        : p['weight']!.data;
    const from = new Map<string, Float64Array>();
    for (const [src, m] of inner.from) {
      const k = m.length / cols;
      const out = new Float64Array(rows * k);
      for (let i = 0; i < rows; i++)
        for (let c = 0; c < cols; c++) {
          const a = w[i * cols + c]!;
          if (a !== 0) for (let j = 0; j < k; j++) out[i * k + j]! += a * m[c * k + j]!;
        }
      from.set(src, out);
    }
    const bias = new Float64Array(rows);
    for (let i = 0; i < rows; i++) {
      let s = f.node.type === 'Affine' ? p['bias']!.data[i]! : 0;
      for (let c = 0; c < cols; c++) s += w[i * cols + c]! * inner.bias[c]!;
      bias[i] = s;
    }
    return { from, bias, hasBias: inner.hasBias || f.node.type === 'Affine' };
  };
  for (const [id] of flat) if (isUnit(id) && id !== input) drives.set(id, driveOf(id, [id]));

  // 4. The chain: Input → spiking layers (each driven by the one before and, optionally, itself) → readout → Output.
  const spiking = [...flat.keys()].filter((id) => SPIKING.has(flat.get(id)!.node.type));
  const nonSpiking = [...flat.keys()].filter((id) => NON_SPIKING.has(flat.get(id)!.node.type));
  const chain: string[] = [];
  let prev = input!;
  for (;;) {
    const next = spiking.filter((id) => !chain.includes(id) && drives.get(id)!.from.has(prev));
    if (next.length === 0) break;
    if (next.length > 1) refuse(flat.get(next[1]!)!.at, `${prev} drives both ${next.join(' and ')}: spikeflow imports a chain of layers, not branches`);
    const id = next[0]!;
    for (const src of drives.get(id)!.from.keys())
      if (src !== prev && src !== id)
        refuse(flat.get(id)!.at, `it is driven by ${src} besides ${prev}: spikeflow's layers read the layer before and themselves only (no skip connections)`);
    chain.push(id);
    prev = id;
  }
  for (const id of spiking) if (!chain.includes(id)) refuse(flat.get(id)!.at, 'not on the chain of layers from the Input to the Output');
  if (chain.length === 0)
    refuse('/node', 'no spiking node (LIF, IF, CubaLIF, Threshold) between the Input and the Output: spikeflow models have at least one layer');
  if (nonSpiking.length > 1) refuse(flat.get(nonSpiking[1]!)!.at, 'a second non-spiking node: spikeflow imports one, as the readout after the last layer');
  const last = chain.at(-1)!;

  const params: Record<string, Float32Array> = {};
  const f32 = (a: ArrayLike<number>) => Float32Array.from(a);
  /** `m` (out × in, NIR's) as spikeflow's [in, out], column j times `scale[j]`. */
  const toW = (m: Float64Array, rows: number, cols: number, scale: Float64Array) => {
    const out = new Float64Array(rows * cols);
    for (let j = 0; j < rows; j++) for (let i = 0; i < cols; i++) out[i * rows + j] = m[j * cols + i]! * scale[j]!;
    return out;
  };
  const arr = (n: NirNode, k: string, fallback?: number) => {
    const p = n.params[k];
    return p ? p.data : new Float64Array(width(n)).fill(fallback ?? 0);
  };

  const layers: LayerSpec[] = [];
  chain.forEach((id, index) => {
    const f = flat.get(id)!;
    const n = f.node;
    const size = width(n);
    const drive = drives.get(id)!;
    const source = index === 0 ? input! : chain[index - 1]!;
    const fanIn = width(flat.get(source)!.node);
    const { beta, gain, constant, alpha, thr } = neuronOf(f, size, dt, refuse);
    const oneThreshold = uniform(thr);
    const scale = gain.map((g, j) => (oneThreshold ? g : g / thr[j]!));
    if (!oneThreshold) notes.push(`${f.at}: per-neuron thresholds become a threshold of 1 with each neuron's incoming weights divided by its own`);
    const ff = drive.from.get(source)!;
    params[layerParam(index, 'W')] = f32(toW(ff, size, fanIn, scale));
    const own = drive.from.get(id);
    if (own) params[layerParam(index, 'W_rec')] = f32(toW(own, size, size, scale));
    const recurrentBias = preds(id).some((p) => {
      if (isUnit(p)) return false;
      const d = through(p, [id, p]);
      return d.from.has(id) && d.bias.some((b) => b !== 0);
    });
    if (recurrentBias) notes.push(`${f.at}: a bias on its recurrent path is applied from the first step (NIR's delayed edge adds it from the second)`);
    const bias = drive.bias.map((b, j) => (b * gain[j]! + constant[j]!) / (oneThreshold ? 1 : thr[j]!));
    const hasBias = drive.hasBias || constant.some((c) => c !== 0);
    if (hasBias) params[layerParam(index, 'b')] = f32(bias);
    const neuronParams: Record<string, unknown> = { threshold: oneThreshold ? Math.fround(thr[0]!) : 1, reset: 'zero' };
    if (uniform(beta)) neuronParams['beta'] = Math.fround(beta[0]!);
    else {
      neuronParams['learnBeta'] = true;
      params[layerParam(index, 'beta')] = f32(beta);
      notes.push(`${f.at}: per-neuron time constants become a per-neuron β, which is trainable in spikeflow (learnBeta)`);
    }
    if (alpha) neuronParams['alpha'] = Math.fround(alpha[0]!);
    layers.push({ neuron: alpha ? 'cuba-lif' : 'lif', size, recurrent: own !== undefined, bias: hasBias, params: neuronParams } as LayerSpec);
  });

  // 5. The readout.
  const outDrive = drives.get(output!)!;
  const outSize = width(flat.get(output!)!.node);
  let readout: ReadoutSpec;
  const sources = [...outDrive.from.keys()];
  if (sources.length !== 1) refuse(flat.get(output!)!.at, `the Output is driven by ${sources.join(' and ')}; spikeflow's readout reads one node`);
  const ro = sources[0]!;
  if (nonSpiking.length === 1 && ro !== nonSpiking[0])
    refuse(flat.get(nonSpiking[0]!)!.at, 'a non-spiking node that does not feed the Output: spikeflow imports it only as the readout');
  if (ro === last) {
    const m = outDrive.from.get(last)!;
    const k = width(flat.get(last)!.node);
    const identity = k === outSize && !outDrive.hasBias && m.every((x, i) => x === (Math.floor(i / k) === i % k ? 1 : 0));
    if (identity) readout = { kind: 'identity', size: outSize };
    else {
      readout = { kind: 'leaky', kappa: 0, size: outSize, bias: outDrive.hasBias };
      params[readoutParam('W')] = f32(toW(m, outSize, k, new Float64Array(outSize).fill(1)));
      if (outDrive.hasBias) params[readoutParam('b')] = f32(outDrive.bias);
    }
  } else if (nonSpiking.includes(ro)) {
    const m = outDrive.from.get(ro)!;
    const k = width(flat.get(ro)!.node);
    if (outDrive.hasBias || !m.every((x, i) => x === (Math.floor(i / k) === i % k ? 1 : 0)))
      refuse(flat.get(ro)!.at, "weights between the readout node and the Output: spikeflow's readout is the last node");
    const f = flat.get(ro)!;
    const drive = drives.get(ro)!;
    const srcs = [...drive.from.keys()];
    if (srcs.length !== 1 || srcs[0] !== last) refuse(f.at, `the readout is driven by ${srcs.join(' and ')}; it reads the last layer (${last}) only`);
    let kappa: number;
    let gain: Float64Array;
    let constant = new Float64Array(outSize);
    if (f.node.type === 'LI') {
      const tau = arr(f.node, 'tau');
      if (!uniform(tau)) refuse(f.at, "per-neuron τ in the readout: spikeflow's leaky readout has one κ");
      if (!(tau[0]! > 0) || dt > tau[0]!) refuse(f.at, `τ = ${tau[0]} s with Δt = ${dt} s: forward Euler needs 0 < Δt ≤ τ`);
      kappa = 1 - dt / tau[0]!;
      gain = arr(f.node, 'r').map((r) => (dt / tau[0]!) * r);
      constant = arr(f.node, 'v_leak').map((v) => (dt / tau[0]!) * v);
    } else {
      kappa = 1;
      gain = arr(f.node, 'r').slice();
    }
    const hasBias = drive.hasBias || constant.some((c) => c !== 0);
    readout = { kind: 'leaky', kappa: Math.fround(kappa), size: outSize, bias: hasBias };
    params[readoutParam('W')] = f32(toW(drive.from.get(last)!, outSize, width(flat.get(last)!.node), gain));
    if (hasBias) params[readoutParam('b')] = f32(drive.bias.map((b, j) => b * gain[j]! + constant[j]!));
  } else return refuse(flat.get(output!)!.at, `the Output reads ${ro}, not the last layer (${last}) or a readout after it`);
  const model: ModelSpec = { inputs: width(flat.get(input!)!.node), layers, readout };
  return { model, params, notes, plugins: [NEURONS_PACKAGE] };
}

/** A synapse waiting for the neuron node it feeds: a convolution, or a dense matrix (out × in, NIR's orientation) with its bias. */
type Pending =
  | { readonly kind: 'conv'; readonly f: Flat; readonly inShape: readonly number[]; readonly outShape: readonly number[] }
  | { kind: 'dense'; m: Float64Array; bias: Float64Array; hasBias: boolean; readonly rows: number; readonly cols: number };

/**
 * A spatial NIR graph — an image Input `[C, H, W]`, Conv2d, SumPool2d, AvgPool2d, Flatten — as a
 * spikeflow model: a chain, node after node, of pooling entries, `conv2d` layers (the Conv2d
 * and the spiking node after it), `flatten` entries and dense layers, then the readout. NIR's
 * activations are channels-first; spikeflow's `[H, W, C]`: the input shape, the convolutions'
 * weights (`(C_out, C_in, kh, kw)` to `[kh, kw, C_in, C_out]`) and the columns of a dense node
 * after a Flatten are reordered, so that the network computes the same on an image given in
 * spikeflow's order.
 */
function spatialModel(
  flat: Map<string, Flat>,
  list: readonly (readonly [string, string])[],
  input: string,
  output: string,
  dt: number,
  refuse: (at: string, why: string) => never,
  notes: string[],
): ImportedModel {
  // A recurrence: a linear node whose one input is a spiking node and whose one output goes back to it.
  const loopsOf = (id: string) =>
    SPIKING.has(flat.get(id)!.node.type)
      ? list
          .filter(([a, b]) => a === id && LINEAR.has(flat.get(b)!.node.type) && list.filter(([, y]) => y === b).length === 1)
          .map(([, b]) => b)
          .filter((b) => list.filter(([x]) => x === b).length === 1 && list.some(([x, y]) => x === b && y === id))
      : [];
  const recurrent = new Map<string, string>();
  const order: string[] = [];
  for (let cur = input; cur !== output; ) {
    const loops = loopsOf(cur);
    if (loops.length > 1) refuse(flat.get(cur)!.at, `two recurrent paths (${loops.join(', ')}); spikeflow's layers have one W_rec`);
    if (loops.length === 1) recurrent.set(cur, loops[0]!);
    const outs = list.filter(([a, b]) => a === cur && !loops.includes(b)).map(([, b]) => b);
    if (outs.length !== 1) refuse(flat.get(cur)!.at, `it feeds ${outs.length} nodes; spikeflow imports a convolutional network as a chain of nodes`);
    const next = outs[0]!;
    const back = loopsOf(next);
    if (list.filter(([a, b]) => b === next && !back.includes(a)).length !== 1 || order.includes(next))
      refuse(flat.get(next)!.at, 'several edges enter it (a skip connection): spikeflow imports a convolutional network as a chain of nodes');
    order.push(next);
    cur = next;
  }
  const inShape = Array.from(flat.get(input)!.node.params['shape']!.data);
  if (inShape.length !== 3 && inShape.length !== 1) refuse(flat.get(input)!.at, `an input of shape [${inShape}]; spikeflow reads [n] or an image [C, H, W]`);
  const layers: LayerSpec[] = [];
  const params: Record<string, Float32Array> = {};
  let shape = inShape;
  let pending: Pending | undefined;
  let flattened: readonly number[] | undefined;
  let lastWasPool = false;
  let index = 0;
  let readout: ReadoutSpec | undefined;
  const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
  for (const id of order) {
    const f = flat.get(id)!;
    const n = f.node;
    const wasPool = lastWasPool;
    lastWasPool = false;
    if (readout && n.type !== 'Output') refuse(f.at, 'a node after the readout');
    if (n.type === 'SumPool2d' || n.type === 'AvgPool2d') {
      if (pending) refuse(f.at, 'pooling between a synapse and its neuron has no spikeflow form');
      if (shape.length !== 3) refuse(f.at, `pooling reads an image [C, H, W], here [${shape}]`);
      const k = pairOf(n.params['kernel_size'], 1);
      const st = pairOf(n.params['stride'], k[0]);
      if (pairOf(n.params['padding'], 0).some((p) => p !== 0)) refuse(f.at, "padded pooling: spikeflow's pooling uses valid windows");
      const out = [shape[0]!, Math.floor((shape[1]! - k[0]) / st[0]) + 1, Math.floor((shape[2]! - k[1]) / st[1]) + 1];
      if (out[1]! < 1 || out[2]! < 1) refuse(f.at, `a ${k} window does not fit the [${shape}] input`);
      layers.push({ type: n.type === 'SumPool2d' ? 'sumpool' : 'avgpool', size: k, stride: st } as LayerSpec);
      shape = out;
      lastWasPool = n.type === 'SumPool2d';
    } else if (n.type === 'Scale') {
      const s = n.params['scale']!.data;
      const last = layers.at(-1) as { type?: string; scale?: number } | undefined;
      if (wasPool && last?.type === 'sumpool' && uniform(s)) {
        last.scale = (last.scale ?? 1) * s[0]!;
        lastWasPool = true;
      } else if (pending?.kind === 'dense') {
        for (let i = 0; i < pending.rows; i++) {
          for (let c = 0; c < pending.cols; c++) pending.m[i * pending.cols + c]! *= s[i]!;
          pending.bias[i]! *= s[i]!;
        }
      } else refuse(f.at, "a Scale that is neither a sum pooling's factor nor after a dense node has no spikeflow form here");
    } else if (n.type === 'Flatten') {
      if (pending) refuse(f.at, 'a Flatten between a synapse and its neuron');
      if (shape.length === 3) {
        flattened = shape;
        layers.push({ type: 'flatten' } as LayerSpec);
        shape = [size(shape)];
      }
    } else if (n.type === 'Conv2d') {
      if (pending) refuse(f.at, 'two synapses in a row: spikeflow runs a neuron after each convolution');
      if (shape.length !== 3) refuse(f.at, `a convolution reads an image [C, H, W], here [${shape}]`);
      const g = convGeometry(n);
      const w = n.params['weight']!.shape;
      if (w[1] !== shape[0]) refuse(f.at, `its weight reads ${w[1]} channels, its input has ${shape[0]}`);
      if (g.dilation.some((d) => d !== 1) || g.groups !== 1) refuse(f.at, 'a dilated or grouped convolution (spikeflow has neither)');
      if (g.padding === 'same' && g.stride.some((s) => s !== 1)) refuse(f.at, "'same' padding with a stride other than 1 (PyTorch refuses it too)");
      const [ph, pw] = g.padding === 'same' ? [0, 0] : g.padding;
      const dim = (x: number, k: number, s: number, p: number) => Math.floor((x + 2 * p - k) / s) + 1;
      const out =
        g.padding === 'same' ? [w[0]!, shape[1]!, shape[2]!] : [w[0]!, dim(shape[1]!, w[2]!, g.stride[0], ph!), dim(shape[2]!, w[3]!, g.stride[1], pw!)];
      pending = { kind: 'conv', f, inShape: shape, outShape: out };
      shape = out;
    } else if (LINEAR.has(n.type)) {
      if (shape.length !== 1) refuse(f.at, `a dense node reads flat features, here an image [${shape}] (NIR puts a Flatten before it)`);
      if (n.type === 'Scale') continue;
      const w = n.params['weight']!;
      const [rows, cols] = [w.shape[0]!, w.shape[1]!];
      let m = w.data.slice();
      if (flattened) {
        // NIR's columns follow the flattened [C, H, W]; spikeflow's rows follow [H, W, C].
        const [C, H, W] = flattened as [number, number, number];
        const out = new Float64Array(m.length);
        for (let i = 0; i < rows; i++)
          for (let c = 0; c < C; c++)
            for (let h = 0; h < H; h++) for (let x = 0; x < W; x++) out[i * cols + (h * W + x) * C + c] = m[i * cols + (c * H + h) * W + x]!;
        m = out;
        flattened = undefined;
      }
      const bias = n.type === 'Affine' ? n.params['bias']!.data.slice() : new Float64Array(rows);
      if (pending?.kind === 'dense') {
        const composed = new Float64Array(rows * pending.cols);
        const b2 = bias.slice();
        for (let i = 0; i < rows; i++)
          for (let k = 0; k < cols; k++) {
            const a = m[i * cols + k]!;
            b2[i]! += a * pending.bias[k]!;
            for (let j = 0; j < pending.cols; j++) composed[i * pending.cols + j]! += a * pending.m[k * pending.cols + j]!;
          }
        pending = { kind: 'dense', m: composed, bias: b2, hasBias: pending.hasBias || n.type === 'Affine', rows, cols: pending.cols };
      } else pending = { kind: 'dense', m, bias, hasBias: n.type === 'Affine', rows, cols };
      shape = [rows];
    } else if (SPIKING.has(n.type)) {
      if (!pending) refuse(f.at, 'a neuron with no synapse before it (spikeflow layers start with a convolution or a dense matrix)');
      const count = size(shape);
      const nrn = neuronOf(f, count, dt, refuse);
      const neuronParams: Record<string, unknown> = { reset: 'zero' };
      if (nrn.alpha) neuronParams['alpha'] = Math.fround(nrn.alpha[0]!);
      const oneThreshold = uniform(nrn.thr);
      if (pending.kind === 'conv') {
        if (!uniform(nrn.beta) || !uniform(nrn.gain) || !uniform(nrn.constant) || !oneThreshold)
          refuse(f.at, "per-neuron parameters after a convolution: spikeflow's conv2d layer shares one neuron config across its map");
        const g = nrn.gain[0]!;
        const c = nrn.constant[0]!;
        const conv = pending.f.node;
        const geometry = convGeometry(conv);
        const [cout, cin, kh, kw] = conv.params['weight']!.shape as [number, number, number, number];
        const wn = conv.params['weight']!.data;
        const W = new Float64Array(wn.length);
        for (let o = 0; o < cout; o++)
          for (let i = 0; i < cin; i++)
            for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) W[((y * kw + x) * cin + i) * cout + o] = wn[((o * cin + i) * kh + y) * kw + x]! * g;
        params[layerParam(index, 'W')] = Float32Array.from(W);
        const b = conv.params['bias']?.data ?? new Float64Array(cout);
        // NIR's Conv2d always has a bias: zeros (and no leak potential) import as no bias.
        const hasBias = c !== 0 || b.some((v) => v !== 0);
        if (hasBias) params[layerParam(index, 'b')] = Float32Array.from(b, (v) => v * g + c);
        layers.push({
          type: 'conv2d',
          neuron: nrn.alpha ? 'cuba-lif' : 'lif',
          channels: cout,
          kernel: [kh, kw],
          stride: geometry.stride,
          padding: geometry.padding,
          bias: hasBias,
          params: { ...neuronParams, threshold: Math.fround(nrn.thr[0]!), beta: Math.fround(nrn.beta[0]!) },
        } as LayerSpec);
      } else {
        const scale = nrn.gain.map((g, j) => (oneThreshold ? g : g / nrn.thr[j]!));
        const W = new Float64Array(pending.rows * pending.cols);
        for (let j = 0; j < pending.rows; j++) for (let i = 0; i < pending.cols; i++) W[i * pending.rows + j] = pending.m[j * pending.cols + i]! * scale[j]!;
        params[layerParam(index, 'W')] = Float32Array.from(W);
        const loop = recurrent.get(id);
        if (loop) {
          const r = flat.get(loop)!.node;
          if (r.type === 'Affine' && r.params['bias']!.data.some((v) => v !== 0))
            refuse(
              flat.get(loop)!.at,
              "a bias on the recurrent path (NIR's delayed edge adds it from the second step only; spikeflow's bias is there from the first)",
            );
          const n = pending.rows;
          const m =
            r.type === 'Scale'
              ? Float64Array.from({ length: n * n }, (_, k) => (k % (n + 1) === 0 ? r.params['scale']!.data[k / (n + 1)]! : 0))
              : r.params['weight']!.data;
          const R = new Float64Array(n * n);
          for (let j = 0; j < n; j++) for (let i = 0; i < n; i++) R[i * n + j] = m[j * n + i]! * scale[j]!;
          params[layerParam(index, 'W_rec')] = Float32Array.from(R);
        }
        const hasBias = pending.hasBias || nrn.constant.some((c) => c !== 0);
        const bias = pending.bias;
        if (hasBias)
          params[layerParam(index, 'b')] = Float32Array.from(bias, (v, j) => (v * nrn.gain[j]! + nrn.constant[j]!) / (oneThreshold ? 1 : nrn.thr[j]!));
        neuronParams['threshold'] = oneThreshold ? Math.fround(nrn.thr[0]!) : 1;
        if (uniform(nrn.beta)) neuronParams['beta'] = Math.fround(nrn.beta[0]!);
        else {
          neuronParams['learnBeta'] = true;
          params[layerParam(index, 'beta')] = Float32Array.from(nrn.beta);
        }
        layers.push({
          neuron: nrn.alpha ? 'cuba-lif' : 'lif',
          size: pending.rows,
          recurrent: loop !== undefined,
          bias: hasBias,
          params: neuronParams,
        } as LayerSpec);
      }
      index++;
      pending = undefined;
    } else if (NON_SPIKING.has(n.type)) {
      if (pending?.kind !== 'dense') refuse(f.at, 'a readout node with no dense synapse before it');
      const k = pending.rows;
      let kappa = 1;
      let gain = arrOf(n, 'r', k, 1).slice();
      let constant = new Float64Array(k);
      if (n.type === 'LI') {
        const tau = arrOf(n, 'tau', k);
        if (!uniform(tau)) refuse(f.at, "per-neuron τ in the readout: spikeflow's leaky readout has one κ");
        if (!(tau[0]! > 0) || dt > tau[0]!) refuse(f.at, `τ = ${tau[0]} s with Δt = ${dt} s: forward Euler needs 0 < Δt ≤ τ`);
        kappa = 1 - dt / tau[0]!;
        gain = gain.map((r) => (dt / tau[0]!) * r);
        constant = arrOf(n, 'v_leak', k).map((v) => (dt / tau[0]!) * v);
      }
      const hasBias = pending.hasBias || constant.some((c) => c !== 0);
      readout = { kind: 'leaky', kappa: Math.fround(kappa), size: k, bias: hasBias };
      const W = new Float64Array(k * pending.cols);
      for (let j = 0; j < k; j++) for (let i = 0; i < pending.cols; i++) W[i * k + j] = pending.m[j * pending.cols + i]! * gain[j]!;
      params[readoutParam('W')] = Float32Array.from(W);
      if (hasBias) params[readoutParam('b')] = Float32Array.from(pending.bias, (v, j) => v * gain[j]! + constant[j]!);
      pending = undefined;
    } else if (n.type === 'Output') {
      if (pending?.kind === 'dense') {
        readout = { kind: 'leaky', kappa: 0, size: pending.rows, bias: pending.hasBias };
        const W = new Float64Array(pending.rows * pending.cols);
        for (let j = 0; j < pending.rows; j++) for (let i = 0; i < pending.cols; i++) W[i * pending.rows + j] = pending.m[j * pending.cols + i]!;
        params[readoutParam('W')] = Float32Array.from(W);
        if (pending.hasBias) params[readoutParam('b')] = Float32Array.from(pending.bias);
      } else if (!readout) {
        if (pending || shape.length !== 1 || layers.at(-1)?.type === 'flatten')
          refuse(
            f.at,
            "the Output reads an image or a synapse's output; spikeflow's readout reads the last layer's spikes as flat features (through a dense node)",
          );
        readout = { kind: 'identity', size: shape[0]! };
      }
    } else refuse(f.at, `type ${n.type} cannot be imported into spikeflow here`);
  }
  if (index === 0) refuse('/node', 'no spiking node between the Input and the Output: spikeflow models have at least one layer');
  if (inShape.length === 3) notes.push(`the image input [C, H, W] = [${inShape}] becomes spikeflow's inputShape [H, W, C]: give the data channels-last`);
  const model: ModelSpec = {
    inputs: size(inShape),
    ...(inShape.length === 3 ? { inputShape: [inShape[1]!, inShape[2]!, inShape[0]!] as [number, number, number] } : {}),
    layers,
    readout: readout!,
  };
  return { model, params, notes, plugins: [NEURONS_PACKAGE] };
}

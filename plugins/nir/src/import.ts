import { SpikeflowError, layerParam, readoutParam, type ImportedModel, type LayerSpec, type ModelSpec, type ReadoutSpec } from '@spikeflow/core';
import { checkGraph, nodeShapes, type NirFile, type NirNode } from './graph.js';

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
const IMPORTED = ['Input', 'Output', 'NIRGraph', 'Flatten', ...LINEAR, ...SPIKING, ...NON_SPIKING];

/** The package providing the neurons an imported model names. */
const NEURONS_PACKAGE = '@spikeflow/neuron-lif';

/** A node of the flattened graph: its NIR node and its path in the file. */
interface Flat {
  readonly node: NirNode;
  readonly at: string;
  /** A subgraph's Input or Output, or a Flatten: passes its input on unchanged. */
  readonly pass: boolean;
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
 * per-neuron β (`learnBeta`). Refused with the node's name: node types spikeflow cannot run
 * (Delay, convolutions, ...), v_reset ≠ 0, Δt > τ, branches and skip connections.
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
      flat.set(id, { node: n, at: p, pass: sub || n.type === 'Flatten' });
      local.set(name, { in: id, out: id });
      if (n.type === 'Input') ends.input = id;
      if (n.type === 'Output') ends.output = id;
    }
    for (const [a, b] of g.edges ?? []) edges.push([local.get(a)!.out, local.get(b)!.in]);
    return ends;
  };
  expand(file.graph, '', '/node');
  if (edges.some(([a, b]) => flat.get(a)?.node.type === 'Flatten' || flat.get(b)?.node.type === 'Flatten'))
    notes.push("Flatten nodes pass their input on: spikeflow's inputs are flat, in the order of NIR's Input shape (row-major)");

  // 2. Pass-through nodes removed: each of their inputs joined to each of their outputs.
  let list = [...new Set(edges.map(([a, b]) => `${a}\u0000${b}`))].map((k) => k.split('\u0000') as [string, string]);
  for (const [id, f] of flat) {
    if (!f.pass) continue;
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
  const uniform = (a: Float64Array) => a.every((x) => x === a[0]);

  const layers: LayerSpec[] = [];
  chain.forEach((id, index) => {
    const f = flat.get(id)!;
    const n = f.node;
    const size = width(n);
    const drive = drives.get(id)!;
    const source = index === 0 ? input! : chain[index - 1]!;
    const fanIn = width(flat.get(source)!.node);
    // Per neuron: membrane decay β, gain g on the input, constant drive c, threshold ϑ.
    let beta: Float64Array;
    let gain: Float64Array;
    let constant = new Float64Array(size);
    let alpha: Float64Array | undefined;
    const thr = n.type === 'Threshold' ? arr(n, 'threshold') : arr(n, 'v_threshold');
    if (thr.some((t) => !(t > 0))) refuse(f.at, `a threshold ≤ 0 (${Math.min(...thr)}); spikeflow's thresholds are positive`);
    if (n.type !== 'Threshold' && arr(n, 'v_reset').some((v) => v !== 0))
      refuse(f.at, `v_reset ≠ 0 (${Math.max(...arr(n, 'v_reset').map(Math.abs))}): spikeflow's neurons reset to 0 and start at 0`);
    const decay = (tau: Float64Array, what: string) =>
      tau.map((t) => {
        if (!(t > 0)) refuse(f.at, `${what} = ${t}: time constants must be positive`);
        if (dt > t) refuse(f.at, `Δt = ${dt} s is longer than ${what} = ${t} s: forward Euler's decay 1 − Δt/τ would be negative; import with a smaller dt`);
        return 1 - dt / t;
      });
    if (n.type === 'LIF') {
      const tau = arr(n, 'tau');
      beta = decay(tau, 'tau');
      gain = tau.map((t, j) => (dt / t) * arr(n, 'r')[j]!);
      constant = tau.map((t, j) => (dt / t) * arr(n, 'v_leak')[j]!);
    } else if (n.type === 'IF') {
      beta = new Float64Array(size).fill(1);
      gain = arr(n, 'r').slice();
    } else if (n.type === 'Threshold') {
      beta = new Float64Array(size);
      gain = new Float64Array(size).fill(1);
    } else {
      // CubaLIF: the synaptic filter's input gain (Δt/τ_syn)·w_in and the membrane's (Δt/τ_mem)·r both scale the input (the dynamics are linear).
      const tauSyn = arr(n, 'tau_syn');
      const tauMem = arr(n, 'tau_mem');
      alpha = decay(tauSyn, 'tau_syn');
      beta = decay(tauMem, 'tau_mem');
      if (arr(n, 'v_leak').some((v) => v !== 0)) refuse(f.at, "v_leak ≠ 0 in a CubaLIF node: spikeflow's cuba-lif has no leak potential");
      if (!uniform(alpha) || !uniform(beta))
        refuse(f.at, "per-neuron tau_syn or tau_mem in a CubaLIF node: spikeflow's cuba-lif has one α and one β per layer");
      const wIn = arr(n, 'w_in', 1);
      gain = tauSyn.map((ts, j) => (dt / ts) * wIn[j]! * (dt / tauMem[j]!) * arr(n, 'r')[j]!);
    }
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

import { SpikeflowError, layerParam, readoutParam, type Conv2dGeometry, type Network, type PoolGeometry, type SpatialShape } from '@spikeflow/core';
import type { NirArray, NirFile, NirNode } from './graph.js';
import { NIR_VERSION } from './graph.js';

export interface NirExportOptions {
  /**
   * The time step Δt in seconds that the file's time constants assume (default 1e-4 s, what
   * snnTorch's NIR export and import use; Norse imports with `from_nir(graph, dt=...)`). NIR does
   * not store it: load the file with the same Δt.
   */
  readonly dt?: number;
  /**
   * Export layers with spikeflow's subtractive reset although NIR cannot express it: the file
   * says LIF, which snnTorch, Norse and spikeflow's importer run with reset to zero, so the
   * imported network spikes differently wherever a neuron's membrane passes its threshold by
   * more than the reset removes. Default false: such a layer is refused.
   */
  readonly allowSubtractReset?: boolean;
}

/** A network as a NIR graph, with what the user should know about the conversion. */
export interface NirExport {
  readonly file: NirFile;
  readonly notes: readonly string[];
}

const f64 = (shape: readonly number[], data: ArrayLike<number>): NirArray => ({ dtype: 'float64', shape, data: Float64Array.from(data) });
const filledShape = (shape: readonly number[], v: number) => f64(shape, new Float64Array(shape.reduce((a, b) => a * b, 1)).fill(v));
const ints = (values: readonly number[]): NirArray => ({ dtype: 'int64', shape: [values.length], data: Float64Array.from(values) });
/** NIR's order of a spatial activation: `[C, H, W]` from spikeflow's `[H, W, C]`. */
const chw = (s: SpatialShape): number[] => [s[2], s[0], s[1]];

/** `[H, W, C]`-ordered values (spikeflow's flat activations) in NIR's `[C, H, W]` order. */
function toChw(values: ArrayLike<number>, [H, W, C]: SpatialShape): Float64Array {
  const out = new Float64Array(H * W * C);
  for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) for (let c = 0; c < C; c++) out[c * H * W + h * W + w] = values[(h * W + w) * C + c]!;
  return out;
}

/** The rows of `w [in, out]` whose inputs are a flattened `[H, W, C]` activation, reordered for a `[C, H, W]` one. */
function rowsToChw(w: Float32Array, shape: SpatialShape, cols: number): Float32Array {
  const [H, W, C] = shape;
  const out = new Float32Array(w.length);
  for (let h = 0; h < H; h++)
    for (let x = 0; x < W; x++)
      for (let c = 0; c < C; c++) out.set(w.subarray(((h * W + x) * C + c) * cols, ((h * W + x) * C + c + 1) * cols), (c * H * W + h * W + x) * cols);
  return out;
}

/**
 * TensorFlow's `same` padding as NIR's symmetric padding: the total along each axis
 * (`(⌈n/s⌉ − 1)·s + k − n`, at least 0) halved, where it is even.
 */
function symmetricSame(g: Conv2dGeometry): [number, number] | undefined {
  const pad = (n: number, k: number, s: number) => Math.max((Math.ceil(n / s) - 1) * s + k - n, 0);
  const rows = pad(g.inShape[0], g.kernel[0], g.stride[0]);
  const cols = pad(g.inShape[1], g.kernel[1], g.stride[1]);
  return rows % 2 === 0 && cols % 2 === 0 ? [rows / 2, cols / 2] : undefined;
}

/** `w [in, out]` (spikeflow's x·W) to NIR's (out, in), each output column j scaled by `scale[j]`. */
function transposed(w: Float32Array, rows: number, cols: number, scale: Float64Array): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = w[i * cols + j]! * scale[j]!;
  return out;
}

/** A synapse node: Affine with a bias, Linear without. */
function synapse(w: Float32Array, rows: number, cols: number, scale: Float64Array, bias: Float32Array | undefined): NirNode {
  const weight = f64([cols, rows], transposed(w, rows, cols, scale));
  if (!bias) return { type: 'Linear', params: { weight } };
  return {
    type: 'Affine',
    params: {
      weight,
      bias: f64(
        [cols],
        Array.from(bias, (b, j) => b * scale[j]!),
      ),
    },
  };
}

/**
 * A trained network as a NIR graph in the encoding that snnTorch and Norse both import and agree
 * on: Input → per layer an Affine (Linear without bias) or a Conv2d, and a LIF node — r = 1,
 * τ = Δt/(1 − β), v_leak = 0, v_reset = 0, v_threshold = ϑ — with every weight and bias that feeds
 * it scaled by 1/(1 − β) (β = 1: an IF node, weights as they are; `cuba-lif`: a CubaLIF node in
 * snnTorch's encoding); a recurrent layer as a nested NIRGraph (input → lif → w_rec → lif,
 * lif → output); average and sum pooling as AvgPool2d and SumPool2d (a Scale after it for a sum
 * pooling's factor); a Flatten before a dense layer that reads a spatial activation; the `leaky`
 * readout as an Affine and an LI node (τ = Δt/(1 − κ), r = 1, weights scaled by 1/(1 − κ); κ = 1:
 * an I node), the `identity` readout as the last layer's spikes; → Output.
 *
 * Spatial activations are NIR's `[C, H, W]` (PyTorch's channels-first order): the Input's shape,
 * the neurons' parameters and the columns of a dense layer after a Flatten follow it, where
 * spikeflow's flat activations are `[H, W, C]` row-major.
 *
 * Under forward Euler with step Δt — how both peers and spikeflow's importer run NIR's
 * continuous-time equations — these nodes compute exactly spikeflow's
 * `v_t = β·v_{t−1}·(1 − s_{t−1}) + I_t` (reset to zero). Numbers are written as float64, so
 * that importing gives back the float32 weights and decays bit for bit.
 *
 * Refused (`INCOMPATIBLE`, naming the layer): neurons other than `lif` and `cuba-lif` (ALIF, LTC
 * and the others have no NIR node), SEW blocks, batch normalisation, max pooling, a `same`
 * padding that is not symmetric, a readout of another kind or reading the membrane, and — unless
 * `allowSubtractReset` — the subtractive reset.
 */
export function nirGraphOf(network: Network, { dt = 1e-4, allowSubtractReset = false }: NirExportOptions = {}): NirExport {
  if (!(dt > 0) || !Number.isFinite(dt))
    throw new SpikeflowError('CONFIG_INVALID', `NIR export: dt must be a positive number of seconds, got ${dt}`, { path: 'dt' });
  const m = network.model;
  const notes: string[] = [];
  const refuse = (where: string, why: string): never => {
    throw new SpikeflowError('INCOMPATIBLE', `NIR export: ${where}: ${why}`, { path: where });
  };
  const values = (name: string) => network.params[name]!.dataSync() as Float32Array;
  const nodes: Record<string, NirNode> = { input: { type: 'Input', params: { shape: ints(m.inputShape ? chw(m.inputShape) : [m.inputs]) } } };
  const edges: [string, string][] = [];
  let prev = 'input';
  /** The shape of what `prev` passes on, where it is spatial. */
  let spatial: SpatialShape | undefined = m.inputShape;
  let subtract = false;
  const add = (name: string, node: NirNode) => {
    nodes[name] = node;
    edges.push([prev, name]);
    prev = name;
  };
  const pools = (list: readonly PoolGeometry[], at: string, tag: string) => {
    list.forEach((p, k) => {
      if (p.type === 'maxpool') refuse(at, 'max pooling has no NIR node (NIR has SumPool2d and AvgPool2d)');
      const params = { kernel_size: ints(p.size), stride: ints(p.stride), padding: ints([0, 0]) };
      add(`pool${tag}_${k}`, { type: p.type === 'avgpool' ? 'AvgPool2d' : 'SumPool2d', params });
      if (p.type === 'sumpool' && p.scale !== undefined && p.scale !== 1)
        add(`pool${tag}_${k}_scale`, { type: 'Scale', params: { scale: filledShape(chw(p.outShape), p.scale) } });
      spatial = p.outShape;
    });
  };
  /** A Flatten node where a dense synapse reads a spatial activation: its weights' rows then follow NIR's order. */
  const flatten = (w: Float32Array, cols: number, tag: string): Float32Array => {
    if (!spatial) return w;
    add(`flatten${tag}`, {
      type: 'Flatten',
      params: {
        start_dim: { dtype: 'int64', shape: [], data: Float64Array.of(0) },
        end_dim: { dtype: 'int64', shape: [], data: Float64Array.of(-1) },
        input_type: ints(chw(spatial)),
      },
    });
    const out = rowsToChw(w, spatial, cols);
    spatial = undefined;
    return out;
  };
  for (const l of m.layers) {
    const at = `model.layers[${l.specIndex}]`;
    if (l.type === 'sew_block') refuse(at, 'a SEW block (a residual connection) is not exported to NIR');
    if (l.batchNorm) refuse(at, 'batch normalisation is not exported to NIR (fold it into the convolution first)');
    if (l.neuron.name !== 'lif' && l.neuron.name !== 'cuba-lif')
      refuse(
        at,
        `neuron '${l.neuron.name}' has no NIR node (NIR has LIF, CubaLIF, IF, LI, I); only 'lif' and 'cuba-lif' layers are exported. Train the model with those neurons to move it to NIR`,
      );
    const c = l.config;
    if (c['reset'] !== 'zero') {
      if (!allowSubtractReset)
        refuse(
          `${at}.params.reset`,
          "spikeflow's subtractive reset (v − ϑ after a spike) cannot be expressed in NIR, whose LIF resets to v_reset; snnTorch and Norse import it as reset to zero. " +
            'Train with "reset": "zero" to export exactly, or export anyway with allowSubtractReset (--allow-subtract-reset), and the network spikes differently in the importer',
        );
      subtract = true;
    }
    if (l.dropout !== undefined) notes.push(`${at}: dropout is a training-time mask; the exported network runs without it, as evaluation does`);
    pools(l.pools, at, String(l.index));
    const n = l.size;
    const conv = l.type === 'conv2d' ? l.conv! : undefined;
    // The neurons' parameter shape: [n], or [C, H, W] after a convolution (NIR's order).
    const shape = conv ? chw(conv.outShape) : [n];
    const cuba = l.neuron.name === 'cuba-lif';
    let beta: Float64Array = c['learnBeta']
      ? Float64Array.from(values(layerParam(l.index, 'beta')), (b) => Math.min(1, Math.max(0, b)))
      : new Float64Array(n).fill(Number(c['beta']));
    if (conv) {
      if (!beta.every((b) => b === beta[0]))
        refuse(at, "per-neuron β in a convolutional layer: its weights are shared across positions, so NIR's encoding (weights × 1/(1 − β)) needs one β");
      beta = toChw(beta, conv.outShape);
    }
    if (beta.some((b) => b === 1) && !beta.every((b) => b === 1))
      refuse(at, 'some neurons have β = 1 (no leak) and others not: NIR has no single node for that (an IF node for β = 1, LIF otherwise)');
    const integrate = beta[0] === 1;
    const threshold = Number(c['threshold']);
    const alpha = Number(c['alpha']);
    if (cuba && (alpha === 1 || integrate)) refuse(at, "a cuba-lif layer with α = 1 or β = 1 (no leak) has no finite time constant for NIR's CubaLIF");
    // CubaLIF in snnTorch's encoding (which both peers import exactly): weights as they are, w_in = τ_syn/Δt, r = τ_mem/Δt.
    const scaleOf = (b: number) => (integrate || cuba ? 1 : 1 / (1 - b));
    const neuron: NirNode = cuba
      ? {
          type: 'CubaLIF',
          params: {
            tau_syn: filledShape(shape, dt / (1 - alpha)),
            tau_mem: filledShape(shape, dt / (1 - beta[0]!)),
            r: filledShape(shape, 1 / (1 - beta[0]!)),
            v_leak: filledShape(shape, 0),
            v_threshold: filledShape(shape, threshold),
            v_reset: filledShape(shape, 0),
            w_in: filledShape(shape, 1 / (1 - alpha)),
          },
        }
      : integrate
        ? { type: 'IF', params: { r: filledShape(shape, 1), v_threshold: filledShape(shape, threshold), v_reset: filledShape(shape, 0) } }
        : {
            type: 'LIF',
            params: {
              tau: f64(
                shape,
                Array.from(beta, (b) => dt / (1 - b)),
              ),
              r: filledShape(shape, 1),
              v_leak: filledShape(shape, 0),
              v_threshold: filledShape(shape, threshold),
              v_reset: filledShape(shape, 0),
            },
          };
    const withMeta = c['reset'] === 'zero' ? neuron : { ...neuron, metadata: { reset: 'subtract (run as reset to zero by NIR importers)' } };
    const W = values(layerParam(l.index, 'W'));
    const b = l.bias ? values(layerParam(l.index, 'b')) : undefined;
    if (conv) {
      const [kh, kw] = conv.kernel;
      const cin = conv.inShape[2];
      const cout = conv.outShape[2];
      const s = scaleOf(beta[0]!);
      // spikeflow's W is [kh, kw, C_in, C_out] (TensorFlow's HWIO); NIR's (C_out, C_in, kh, kw), PyTorch's.
      const weight = new Float64Array(W.length);
      for (let y = 0; y < kh; y++)
        for (let x = 0; x < kw; x++)
          for (let i = 0; i < cin; i++) for (let o = 0; o < cout; o++) weight[((o * cin + i) * kh + y) * kw + x] = W[((y * kw + x) * cin + i) * cout + o]! * s;
      const padding = conv.padding === 'valid' ? [0, 0] : conv.padding === 'same' ? symmetricSame(conv) : [...conv.padding];
      if (!padding)
        refuse(
          `${at}.padding`,
          '"same" padding that is not symmetric here (TensorFlow adds the odd row or column at the bottom or right); NIR pads both sides alike. Give the padding explicitly',
        );
      add(`conv${l.index}`, {
        type: 'Conv2d',
        params: {
          weight: f64([cout, cin, kh, kw], weight),
          stride: ints(conv.stride),
          padding: ints(padding!),
          dilation: ints([1, 1]),
          groups: { dtype: 'int64', shape: [], data: Float64Array.of(1) },
          bias: f64(
            [cout],
            Array.from({ length: cout }, (_, o) => (b ? b[o]! * s : 0)),
          ),
          input_shape: ints([conv.inShape[0], conv.inShape[1]]),
        },
      });
      add(`lif${l.index}`, withMeta);
      spatial = conv.outShape;
      continue;
    }
    const scale = Float64Array.from(beta, scaleOf);
    add(`fc${l.index}`, synapse(flatten(W, n, String(l.index)), l.fanIn, n, scale, b));
    if (l.recurrent) {
      const w = values(layerParam(l.index, 'W_rec')).slice();
      if (!l.selfConnections) for (let j = 0; j < n; j++) w[j * n + j] = 0;
      add(`rlif${l.index}`, {
        type: 'NIRGraph',
        params: {},
        nodes: {
          input: { type: 'Input', params: { shape: ints([n]) } },
          lif: withMeta,
          w_rec: synapse(w, n, n, scale, undefined),
          output: { type: 'Output', params: { shape: ints([n]) } },
        },
        edges: [
          ['input', 'lif'],
          ['lif', 'w_rec'],
          ['w_rec', 'lif'],
          ['lif', 'output'],
        ],
      });
    } else add(`lif${l.index}`, withMeta);
  }
  const r = m.readout;
  if (r.from !== 'spikes') refuse('model.readout.from', "a readout of the membrane has no NIR form (NIR's LIF passes on its spikes)");
  pools(m.readoutPools, 'model.readout', '_out');
  if (r.kind === 'identity') {
    if (spatial)
      refuse(
        'model.readout',
        "an identity readout of a spatial layer (its spikes in spikeflow's [H, W, C] order, NIR's are [C, H, W]); give the model a dense readout",
      );
    if (spatial)
      add('flatten_out', {
        type: 'Flatten',
        params: {
          start_dim: { dtype: 'int64', shape: [], data: Float64Array.of(0) },
          end_dim: { dtype: 'int64', shape: [], data: Float64Array.of(-1) },
          input_type: ints(chw(spatial)),
        },
      });
    if (spatial) notes.push("the identity readout after a spatial layer passes its spikes on in NIR's [C, H, W] order");
  } else if (r.kind === 'leaky' && r.leak !== undefined) {
    const kappa = r.leak;
    const k = r.size;
    const scale = new Float64Array(k).fill(kappa === 1 ? 1 : 1 / (1 - kappa));
    add('fc_out', synapse(flatten(values(readoutParam('W')), k, '_out'), m.readoutFanIn, k, scale, r.bias ? values(readoutParam('b')) : undefined));
    add(
      'readout',
      kappa === 1
        ? { type: 'I', params: { r: filledShape([k], 1) } }
        : { type: 'LI', params: { tau: filledShape([k], dt / (1 - kappa)), r: filledShape([k], 1), v_leak: filledShape([k], 0) } },
    );
    notes.push(
      'the readout is an LI node: Norse imports it; snnTorch has no LI import (give the model a last lif layer and the identity readout for snnTorch)',
    );
  } else refuse('model.readout.kind', `readout '${r.kind}' has no NIR form; export 'leaky' or 'identity' readouts`);
  if (m.readoutDropout !== undefined) notes.push('model.readout: dropout is a training-time mask; the exported network runs without it');
  add('output', { type: 'Output', params: { shape: ints([r.size]) } });
  if (m.inputShape)
    notes.push(`the NIR graph reads its input as [C, H, W] = [${chw(m.inputShape)}] (PyTorch's order); spikeflow's flat input is [H, W, C] row-major`);
  if (subtract)
    notes.push(
      "layers with spikeflow's subtractive reset were exported as NIR LIF nodes: every NIR importer (snnTorch, Norse, spikeflow) runs them with reset to zero, so their spikes differ wherever the membrane overshoots the threshold",
    );
  notes.push(`time constants assume Δt = ${dt} s (NIR does not store it): import with dt=${dt} (Norse: from_nir(graph, dt=${dt}); snnTorch uses 1e-4 s)`);
  return {
    file: {
      version: NIR_VERSION,
      graph: {
        type: 'NIRGraph',
        params: {},
        nodes,
        edges,
        metadata: { source: 'spikeflow', dt: f64([1], [dt]), time_unit: 's', model: JSON.stringify(m.spec) },
      },
    },
    notes,
  };
}

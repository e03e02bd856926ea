import { SpikeflowError, layerParam, readoutParam, type Network } from '@spikeflow/core';
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
const filled = (n: number, v: number) => f64([n], new Float64Array(n).fill(v));
const shapeOf = (n: number): NirArray => ({ dtype: 'int64', shape: [1], data: Float64Array.of(n) });

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
 * on: Input → per layer an Affine (Linear without bias) and a LIF node — r = 1, τ = Δt/(1 − β),
 * v_leak = 0, v_reset = 0, v_threshold = ϑ — with every weight and bias that feeds it scaled by
 * 1/(1 − β) (β = 1: an IF node, weights as they are); a recurrent layer as a nested NIRGraph
 * (input → lif → w_rec → lif, lif → output); the `leaky` readout as an Affine and an LI node
 * (τ = Δt/(1 − κ), r = 1, weights scaled by 1/(1 − κ); κ = 1: an I node), the `identity` readout
 * as the last layer's spikes; → Output.
 *
 * Under forward Euler with step Δt — how both peers and spikeflow's importer run NIR's
 * continuous-time equations — these nodes compute exactly spikeflow's
 * `v_t = β·v_{t−1}·(1 − s_{t−1}) + x_t·W + b` (reset to zero). Numbers are written as float64, so
 * that importing gives back the float32 weights and decays bit for bit.
 *
 * Refused (`INCOMPATIBLE`, naming the layer): neurons other than `lif` (ALIF, LTC and the others
 * have no NIR node), convolutional and pooling layers, a readout of another kind or reading the
 * membrane, and — unless `allowSubtractReset` — the subtractive reset.
 */
export function nirGraphOf(network: Network, { dt = 1e-4, allowSubtractReset = false }: NirExportOptions = {}): NirExport {
  if (!(dt > 0) || !Number.isFinite(dt))
    throw new SpikeflowError('CONFIG_INVALID', `NIR export: dt must be a positive number of seconds, got ${dt}`, { path: 'dt' });
  const m = network.model;
  const notes: string[] = [];
  const refuse = (where: string, why: string): never => {
    throw new SpikeflowError('INCOMPATIBLE', `NIR export: ${where}: ${why}`, { path: where });
  };
  if (m.inputShape) refuse('model.inputShape', 'spatial inputs and convolutional layers are not exported to NIR yet; export a dense network');
  const values = (name: string) => network.params[name]!.dataSync() as Float32Array;
  const nodes: Record<string, NirNode> = { input: { type: 'Input', params: { shape: shapeOf(m.inputs) } } };
  const edges: [string, string][] = [];
  let prev = 'input';
  let subtract = false;
  for (const l of m.layers) {
    const at = `model.layers[${l.specIndex}]`;
    if (l.type !== 'dense') refuse(at, `a ${l.type} layer; only dense layers are exported to NIR yet`);
    if (l.pools.length) refuse(at, 'pooling before a layer is not exported to NIR yet');
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
    const n = l.size;
    const cuba = l.neuron.name === 'cuba-lif';
    const beta = c['learnBeta']
      ? Float64Array.from(values(layerParam(l.index, 'beta')), (b) => Math.min(1, Math.max(0, b)))
      : new Float64Array(n).fill(Number(c['beta']));
    if (beta.some((b) => b === 1) && !beta.every((b) => b === 1))
      refuse(at, 'some neurons have β = 1 (no leak) and others not: NIR has no single node for that (an IF node for β = 1, LIF otherwise)');
    const integrate = beta[0] === 1;
    const threshold = Number(c['threshold']);
    const alpha = Number(c['alpha']);
    if (cuba && (alpha === 1 || integrate)) refuse(at, "a cuba-lif layer with α = 1 or β = 1 (no leak) has no finite time constant for NIR's CubaLIF");
    // CubaLIF in snnTorch's encoding (which both peers import exactly): weights as they are, w_in = τ_syn/Δt, r = τ_mem/Δt.
    const scale = integrate || cuba ? new Float64Array(n).fill(1) : beta.map((b) => 1 / (1 - b));
    const neuron: NirNode = cuba
      ? {
          type: 'CubaLIF',
          params: {
            tau_syn: filled(n, dt / (1 - alpha)),
            tau_mem: filled(n, dt / (1 - beta[0]!)),
            r: filled(n, 1 / (1 - beta[0]!)),
            v_leak: filled(n, 0),
            v_threshold: filled(n, threshold),
            v_reset: filled(n, 0),
            w_in: filled(n, 1 / (1 - alpha)),
          },
        }
      : integrate
        ? { type: 'IF', params: { r: filled(n, 1), v_threshold: filled(n, threshold), v_reset: filled(n, 0) } }
        : {
            type: 'LIF',
            params: {
              tau: f64(
                [n],
                Array.from(beta, (b) => dt / (1 - b)),
              ),
              r: filled(n, 1),
              v_leak: filled(n, 0),
              v_threshold: filled(n, threshold),
              v_reset: filled(n, 0),
            },
          };
    const withMeta = c['reset'] === 'zero' ? neuron : { ...neuron, metadata: { reset: 'subtract (run as reset to zero by NIR importers)' } };
    if (l.dropout !== undefined) notes.push(`${at}: dropout is a training-time mask; the exported network runs without it, as evaluation does`);
    const fc = `fc${l.index}`;
    nodes[fc] = synapse(values(layerParam(l.index, 'W')), l.fanIn, n, scale, l.bias ? values(layerParam(l.index, 'b')) : undefined);
    edges.push([prev, fc]);
    if (l.recurrent) {
      const w = values(layerParam(l.index, 'W_rec')).slice();
      if (!l.selfConnections) for (let j = 0; j < n; j++) w[j * n + j] = 0;
      const name = `rlif${l.index}`;
      nodes[name] = {
        type: 'NIRGraph',
        params: {},
        nodes: {
          input: { type: 'Input', params: { shape: shapeOf(n) } },
          lif: withMeta,
          w_rec: synapse(w, n, n, scale, undefined),
          output: { type: 'Output', params: { shape: shapeOf(n) } },
        },
        edges: [
          ['input', 'lif'],
          ['lif', 'w_rec'],
          ['w_rec', 'lif'],
          ['lif', 'output'],
        ],
      };
      edges.push([fc, name]);
      prev = name;
    } else {
      const name = `lif${l.index}`;
      nodes[name] = withMeta;
      edges.push([fc, name]);
      prev = name;
    }
  }
  const r = m.readout;
  if (m.readoutPools.length) refuse('model.readout', 'pooling before the readout is not exported to NIR yet');
  if (r.from !== 'spikes') refuse('model.readout.from', "a readout of the membrane has no NIR form (NIR's LIF passes on its spikes)");
  if (r.kind === 'identity') {
    edges.push([prev, 'output']);
  } else if (r.kind === 'leaky' && r.leak !== undefined) {
    const kappa = r.leak;
    const k = r.size;
    const scale = new Float64Array(k).fill(kappa === 1 ? 1 : 1 / (1 - kappa));
    nodes['fc_out'] = synapse(values(readoutParam('W')), m.readoutFanIn, k, scale, r.bias ? values(readoutParam('b')) : undefined);
    nodes['readout'] =
      kappa === 1
        ? { type: 'I', params: { r: filled(k, 1) } }
        : { type: 'LI', params: { tau: filled(k, dt / (1 - kappa)), r: filled(k, 1), v_leak: filled(k, 0) } };
    edges.push([prev, 'fc_out'], ['fc_out', 'readout'], ['readout', 'output']);
    notes.push(
      'the readout is an LI node: Norse imports it; snnTorch has no LI import (give the model a last lif layer and the identity readout for snnTorch)',
    );
  } else refuse('model.readout.kind', `readout '${r.kind}' has no NIR form; export 'leaky' or 'identity' readouts`);
  if (m.readoutDropout !== undefined) notes.push('model.readout: dropout is a training-time mask; the exported network runs without it');
  nodes['output'] = { type: 'Output', params: { shape: shapeOf(r.size) } };
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

import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  SpikeflowError,
  buildNetwork,
  createRegistry,
  disposeTree,
  forward,
  loadPlugins,
  tf,
  applyPools,
  type LayerSpec,
  type ModelSpec,
  type PoolGeometry,
  type NamedTensorMap,
  type Registry,
  type SpikeflowPlugin,
} from '@spikeflow/core';
import { checkTsslFixture, isTsslFixture, type TsslFixture } from './tssl-fixtures.js';

/**
 * Gradient fixtures: small spiking networks solved in float64 by PyTorch autograd (schema in
 * `fixtures/README.md`, with the additions of `fixtures-generated/README.md`: any installed neuron
 * and its tensor parameters, the `ltc` readout, readouts `from` the membrane). The checker runs
 * each through spikeflow's own network and the `bptt` rule and compares spikes (exactly), loss,
 * readout, final state, gradients and truncated-BPTT gradients (relative to each tensor's largest
 * entry). TSSL-BP's fixtures (`fixtures/tssl/`) are read too and run through TSSL-BP's neuron and
 * rule (see `tssl-fixtures.ts`).
 */
export type Nested = number | Nested[];

/**
 * A fixture layer: dense (no `type`, or `dense`: `neuron`, `size`, `recurrent`), or, in the conv
 * fixtures, `conv2d` (`neuron`, `channels`, `kernel`, `stride`, `padding`), `sew_block` (`neuron`,
 * `connect`, `channels`, `kernel`), `avgpool` / `maxpool` (`size`, `stride`, `padding`) or
 * `flatten`. The other keys are neuron parameters.
 */
export interface FixtureLayer {
  type?: 'dense' | 'conv2d' | 'sew_block' | 'avgpool' | 'maxpool' | 'flatten';
  neuron?: string;
  size?: number | [number, number];
  recurrent?: boolean;
  [param: string]: unknown;
}

export interface Fixture {
  name: string;
  description?: string;
  dtype?: string;
  /** `inputs` for flat inputs; `input_shape` `[H, W, C]` for the conv fixtures (inputs `[T][B][H][W][C]`). */
  sizes: { batch: number; inputs?: number; input_shape?: [number, number, number]; steps: number; outputs: number };
  layers: FixtureLayer[];
  /** `kappa` for the (default) `leaky` readout; none for `kind: "ltc"`, whose update fraction is a gate. */
  readout: { kappa?: number; kind?: 'leaky' | 'ltc'; from?: 'spikes' | 'membrane' };
  surrogate: { name: string; [param: string]: unknown };
  loss: { name: string };
  params: FixtureGrads;
  inputs: Nested;
  targets: Nested;
  expected: {
    loss: number;
    readout: Nested;
    spikes: Nested[];
    final_state: Record<string, Nested>[];
    grads: FixtureGrads;
    tbptt?: { k: number; grads: FixtureGrads };
  };
}

/**
 * Parameters (or gradients) by spikeflow name: per layer `W`, `b`, `W_rec?` and the neuron's
 * trainable tensor parameters (e.g. `alpha_W`, `rho_b` of `ltc`); readout `W`, `b` and, for the
 * `ltc` readout, `W_kappa`, `b_kappa`.
 */
export type FixtureGrads = {
  layers: ({ W: Nested; b: Nested; W_rec?: Nested } & { [param: string]: Nested | undefined })[];
  readout: { W: Nested; b: Nested; W_kappa?: Nested; b_kappa?: Nested };
};

const LAYER_STRUCTURE = new Set(['type', 'neuron', 'size', 'recurrent']);
const CONV_STRUCTURE = new Set(['type', 'neuron', 'channels', 'kernel', 'stride', 'padding']);
const SEW_STRUCTURE = new Set(['type', 'neuron', 'connect', 'channels', 'kernel']);
/** A SEW block's first convolution is the layer's own `W`, `b` in spikeflow; the fixtures call it `W1`, `b1`. */
const SEW_NAMES: Readonly<Record<string, string>> = { W1: 'W', b1: 'b' };
const camel = (s: string) => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/** Whether a fixture layer has neurons (and so parameters, a state and a number among spikeflow's layers). */
const hasNeurons = (l: FixtureLayer) => l.type === undefined || l.type === 'dense' || l.type === 'conv2d' || l.type === 'sew_block';

/** The keys of `l` outside `structure`, camelCased: its neuron's parameters. */
const neuronParams = (l: FixtureLayer, structure: ReadonlySet<string>) =>
  Object.fromEntries(
    Object.entries(l)
      .filter(([k]) => !structure.has(k))
      .map(([k, v]) => [camel(k), v]),
  );

function fixtureLayerSpec(l: FixtureLayer): LayerSpec {
  switch (l.type) {
    case 'flatten':
      return { type: 'flatten' };
    case 'avgpool':
    case 'maxpool':
      return { type: l.type, size: l.size as [number, number], ...(l['stride'] !== undefined ? { stride: l['stride'] as [number, number] } : {}) };
    case 'sew_block':
      return {
        type: 'sew_block',
        neuron: l.neuron!,
        connect: l['connect'] as 'ADD' | 'IAND' | 'AND',
        channels: l['channels'] as number,
        kernel: l['kernel'] as [number, number],
        params: neuronParams(l, SEW_STRUCTURE),
      };
    case 'conv2d':
      return {
        type: 'conv2d',
        neuron: l.neuron!,
        channels: l['channels'] as number,
        kernel: l['kernel'] as [number, number],
        stride: l['stride'] as [number, number],
        padding: l['padding'] as 'same' | 'valid',
        params: neuronParams(l, CONV_STRUCTURE),
      };
    default:
      return { neuron: l.neuron!, size: l.size as number, recurrent: l.recurrent ?? false, params: neuronParams(l, LAYER_STRUCTURE) } as LayerSpec;
  }
}

/**
 * The model spec of a fixture. Every layer key besides the layer's structure (`neuron`, `size`,
 * `recurrent`; a conv layer's `channels`, `kernel`, `stride`, `padding`; a SEW block's `connect`,
 * `channels`, `kernel`) is a neuron parameter,
 * renamed from snake_case to camelCase (`reset_detach` → `resetDetach`, `beta_a` → `betaA`), so
 * fixtures of any installed neuron map onto its config.
 */
export function fixtureModelSpec(f: Fixture): ModelSpec {
  const shape = f.sizes.input_shape;
  return {
    inputs: shape ? shape[0] * shape[1] * shape[2] : f.sizes.inputs!,
    ...(shape ? { inputShape: shape } : {}),
    layers: f.layers.map(fixtureLayerSpec),
    readout: {
      size: f.sizes.outputs,
      ...(f.readout.kind !== undefined ? { kind: f.readout.kind } : {}),
      ...(f.readout.from !== undefined ? { from: f.readout.from } : {}),
      ...(f.readout.kappa !== undefined ? { kappa: f.readout.kappa } : {}),
    },
    surrogate: f.surrogate as ModelSpec['surrogate'],
  };
}

/**
 * Fixture parameters by spikeflow parameter name. With `layers` (the fixture's), entries of
 * layers without neurons (pooling, flatten: `{}`) are skipped and the others numbered as spikeflow
 * numbers its layers.
 */
export function fixtureParams(p: FixtureGrads, layers?: readonly FixtureLayer[]): Record<string, Nested> {
  const out: Record<string, Nested> = {};
  let index = 0;
  p.layers.forEach((l, i) => {
    if (layers && !hasNeurons(layers[i]!)) return;
    const sew = layers?.[i]?.type === 'sew_block';
    for (const [k, v] of Object.entries(l)) if (v !== undefined) out[`layers.${index}.${sew ? (SEW_NAMES[k] ?? k) : k}`] = v;
    index++;
  });
  for (const [k, v] of Object.entries(p.readout)) if (v !== undefined) out[`readout.${k}`] = v;
  return out;
}

const flat = (x: Nested): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x]);

/** max |actual − expected| / max |expected| (absolute error where expected is all zeros). */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    if (!(d <= num)) num = Number.isNaN(d) ? Infinity : d;
    den = Math.max(den, Math.abs(expected[i]!));
  }
  return den > 0 ? num / den : num;
}

export interface FixtureReport {
  readonly name: string;
  readonly pass: boolean;
  /** Spike entries that differ from the reference (must be 0). */
  readonly spikeMismatches: number;
  /** Worst relative error per quantity. */
  readonly errors: { loss: number; readout: number; finalState: number; grads: number; tbptt?: number };
  /** The worst quantity's error. */
  readonly worst: number;
  /** Human-readable reasons for a failure. */
  readonly failures: readonly string[];
}

export interface CheckOptions {
  /** Relative tolerance (default 1e-4). */
  readonly tolerance?: number;
  /** Name of the rule that computes gradients (default `bptt`). */
  readonly rule?: string;
}

/** A fixture of either kind: BPTT's (this file's schema) or TSSL-BP's. */
export type AnyFixture = Fixture | TsslFixture;

/** The worst relative error of `[name, actual, expected]` triples; one failure line per triple over `tolerance`. */
function worstWithin(tolerance: number, failures: string[]) {
  return (label: string, pairs: [string, ArrayLike<number>, ArrayLike<number>][]) => {
    let worst = 0;
    for (const [name, a, e] of pairs) {
      const err = relativeError(a, e);
      if (!(err <= tolerance)) failures.push(`${label} ${name}: relative error ${err.toExponential(2)} > ${tolerance}`);
      worst = Math.max(worst, Number.isNaN(err) ? Infinity : err);
    }
    return worst;
  };
}

/**
 * Runs one fixture on the active tfjs backend with the registry's neurons, rule and kernels (a
 * TSSL-BP fixture: with `tssl` and `tssl-bp`, whatever `rule` says).
 */
export async function checkFixture(f: AnyFixture, registry: Registry, { tolerance = 1e-4, rule = 'bptt' }: CheckOptions = {}): Promise<FixtureReport> {
  if (isTsslFixture(f)) {
    const failures: string[] = [];
    const r = checkTsslFixture(f, registry, worstWithin(tolerance, failures));
    failures.push(...r.failures);
    const errors = { ...r.errors, finalState: 0 };
    return { name: f.name, pass: failures.length === 0, spikeMismatches: r.spikeMismatches, errors, worst: Math.max(...Object.values(errors)), failures };
  }
  const entry = registry.rules.get(rule);
  if (!entry) throw new SpikeflowError('UNKNOWN_NAME', `fixtures: rule '${rule}' is not loaded (load @spikeflow/rule-bptt)`);
  const loss = registry.losses.get(f.loss.name);
  if (!loss) throw new SpikeflowError('UNKNOWN_NAME', `fixture '${f.name}': loss '${f.loss.name}' is not known`);
  const net = buildNetwork(fixtureModelSpec(f), registry, { kernels: registry.kernels });
  // Each fixture layer's place: a layer with neurons (its number in spikeflow), or a pooling (its geometry) or flatten.
  const pools = [...net.model.layers.flatMap((l) => [...l.pools]), ...net.model.readoutPools];
  let nextLayer = 0;
  let nextPool = 0;
  type Place = { kind: 'layer'; layer: number } | { kind: 'pool'; pool: PoolGeometry } | { kind: 'flatten' };
  const places = f.layers.map(
    (l): Place =>
      hasNeurons(l) ? { kind: 'layer', layer: nextLayer++ } : l.type === 'flatten' ? { kind: 'flatten' } : { kind: 'pool', pool: pools[nextPool++]! },
  );
  const failures: string[] = [];
  const worstOf = worstWithin(tolerance, failures);
  const spec = fixtureModelSpec(f);
  const inputs = tf.tensor(flat(f.inputs), [f.sizes.steps, f.sizes.batch, spec.inputs]);
  const targets = f.loss.name.startsWith('ce')
    ? tf.tensor1d(flat(f.targets), 'int32')
    : tf.tensor(flat(f.targets), f.loss.name === 'mse_last' ? [f.sizes.batch, f.sizes.outputs] : [f.sizes.steps, f.sizes.batch, f.sizes.outputs]);
  try {
    net.setParams(Object.fromEntries(Object.entries(fixtureParams(f.params, f.layers)).map(([k, v]) => [k, flat(v)])));

    // Forward: spikes (of pooling: the pooled values, within 1e-6), readout, final state.
    const fwd = forward(net, inputs, { record: true });
    let spikeMismatches = 0;
    let output: tf.Tensor | undefined;
    const made: tf.Tensor[] = [];
    // Read asynchronously throughout: a backend may read only so (WebGPU in Node).
    for (const [l, place] of places.entries()) {
      if (place.kind === 'layer') output = fwd.spikes![place.layer]!;
      else if (place.kind === 'pool') {
        const [T, B] = output!.shape as [number, number];
        const input = output!;
        output = tf.tidy(() => tf.reshape(applyPools(tf.reshape(input, [T * B, -1]), [place.pool]), [T, B, -1]));
        made.push(output);
      }
      const a = await output!.data();
      const e = flat(f.expected.spikes[l]!);
      const exact = place.kind !== 'pool' || place.pool.type === 'maxpool';
      if (a.length !== e.length) spikeMismatches += Math.max(a.length, e.length);
      else for (let i = 0; i < e.length; i++) if (exact ? a[i] !== e[i] : !(Math.abs(a[i]! - e[i]!) <= 1e-6)) spikeMismatches++;
    }
    tf.dispose(made);
    if (spikeMismatches) failures.push(`spikes: ${spikeMismatches} entries differ`);
    const readout = worstOf('readout', [['y', await fwd.readout.data(), flat(f.expected.readout)]]);
    const states: [string, ArrayLike<number>, ArrayLike<number>][] = [];
    for (const [l, st] of f.expected.final_state.entries()) {
      for (const [k, v] of Object.entries(st)) {
        const place = places[l]!;
        const t = place.kind === 'layer' ? fwd.state.layers[place.layer]!.neuron[k] : undefined;
        states.push([`layers[${l}].${k}`, t ? await t.data() : [], flat(v)]);
      }
    }
    const finalState = worstOf('final state', states);
    disposeTree(fwd);

    // Gradients through the rule, captured instead of applied.
    const gradsOf = async (options: Record<string, unknown>) => {
      const r = entry.create(options);
      let kept: NamedTensorMap = {};
      const state = r.init(net);
      const { state: next, report } = r.update({ inputs, targets }, state, {
        network: net,
        loss,
        apply: (g: NamedTensorMap) => {
          disposeTree(kept);
          kept = Object.fromEntries(Object.entries(g).map(([k, t]) => [k, tf.keep(tf.clone(t))]));
        },
        asyncReads: true,
      });
      disposeTree(next);
      const captured: Record<string, Float32Array> = {};
      for (const [k, t] of Object.entries(kept)) captured[k] = (await t.data()) as Float32Array;
      disposeTree(kept);
      return { grads: captured, loss: await report.loss };
    };
    const compareGrads = (label: string, got: Record<string, Float32Array>, exp: FixtureGrads) =>
      worstOf(
        label,
        Object.entries(fixtureParams(exp, f.layers)).map(([k, v]) => {
          const e = flat(v);
          return [k, got[k] ?? new Float32Array(e.length), e];
        }),
      );
    const full = await gradsOf({});
    const lossErr = worstOf('loss', [['L', [full.loss], [f.expected.loss]]]);
    const grads = compareGrads('grad', full.grads, f.expected.grads);
    let tbptt: number | undefined;
    if (f.expected.tbptt) {
      const tr = await gradsOf({ truncation: f.expected.tbptt.k, mode: 'accumulate' });
      tbptt = compareGrads(`tbptt(k=${f.expected.tbptt.k}) grad`, tr.grads, f.expected.tbptt.grads);
    }
    const errors = { loss: lossErr, readout, finalState, grads, ...(tbptt !== undefined ? { tbptt } : {}) };
    const worst = Math.max(...Object.values(errors));
    return { name: f.name, pass: failures.length === 0, spikeMismatches, errors, worst, failures };
  } finally {
    inputs.dispose();
    targets.dispose();
    net.dispose();
  }
}

/**
 * Reads every `*.json` fixture of a directory, sorted by file name: BPTT's fixtures and TSSL-BP's
 * (the `index.json` beside TSSL-BP's fixtures lists them and is not one).
 */
export async function readFixtures(dir: string): Promise<{ file: string; fixture: AnyFixture }[]> {
  let files: string[];
  try {
    files = (await readdir(dir)).filter((f) => f.endsWith('.json') && f !== 'index.json').sort();
  } catch (cause) {
    throw new SpikeflowError('DATA_INVALID', `fixtures: cannot read directory '${dir}'`, { path: dir }, { cause });
  }
  if (files.length === 0) throw new SpikeflowError('DATA_INVALID', `fixtures: no *.json fixture in '${dir}'`, { path: dir });
  return Promise.all(
    files.map(async (file) => {
      const text = await readFile(join(dir, file), 'utf8');
      let fixture: Fixture;
      try {
        fixture = JSON.parse(text) as Fixture;
      } catch (cause) {
        throw new SpikeflowError('DATA_INVALID', `fixtures: ${file} is not valid JSON`, { path: join(dir, file) }, { cause });
      }
      if (isTsslFixture(fixture)) {
        const t = fixture as TsslFixture;
        for (const key of ['params', 'inputs', 'labels', 'expected'] as const) {
          if (t[key] === undefined)
            throw new SpikeflowError('DATA_INVALID', `fixtures: ${file} lacks '${key}' (a TSSL-BP fixture; see its schema in tssl-fixtures.ts)`, {
              path: join(dir, file),
            });
        }
        return { file, fixture: { ...t, name: t.name ?? file } };
      }
      for (const key of ['sizes', 'layers', 'readout', 'surrogate', 'loss', 'params', 'inputs', 'targets', 'expected'] as const) {
        if (fixture[key] === undefined)
          throw new SpikeflowError('DATA_INVALID', `fixtures: ${file} lacks '${key}' (see the schema in fixtures/README.md)`, { path: join(dir, file) });
      }
      return { file, fixture: { ...fixture, name: fixture.name ?? file } };
    }),
  );
}

/**
 * The plugins the checker loads by default: LIF, ALIF, BPTT and the two portable backends
 * (TSSL-BP's fixtures also need `@spikeflow/neuron-tssl` and `@spikeflow/rule-tssl-bp`: `--plugins`).
 */
export const DEFAULT_FIXTURE_PLUGINS = [
  '@spikeflow/neuron-lif',
  '@spikeflow/neuron-alif',
  '@spikeflow/rule-bptt',
  '@spikeflow/backend-wasm',
  '@spikeflow/backend-cpu',
] as const;

export interface CheckDirOptions extends CheckOptions {
  /** Backend name (default `wasm`). */
  readonly backend?: string;
  /** Plugin objects to use; otherwise `pluginNames` are loaded by package name. */
  readonly plugins?: readonly SpikeflowPlugin[];
  readonly pluginNames?: readonly string[];
  /** Where plugin packages are resolved from (default: the working directory). */
  readonly from?: string;
}

/** Checks every fixture of a directory on one backend. */
export async function checkFixtureDir(dir: string, options: CheckDirOptions = {}): Promise<FixtureReport[]> {
  const plugins = options.plugins ?? (await loadPlugins(options.pluginNames ?? DEFAULT_FIXTURE_PLUGINS, options.from ? { from: options.from } : {}));
  const registry = createRegistry(plugins);
  const backendName = options.backend ?? 'wasm';
  const backend = registry.backends.get(backendName);
  if (!backend) {
    throw new SpikeflowError(
      'UNKNOWN_NAME',
      `fixtures: backend '${backendName}' is not loaded (loaded: ${[...registry.backends.keys()].join(', ') || 'none'})`,
    );
  }
  await backend.activate();
  const reports: FixtureReport[] = [];
  for (const { fixture } of await readFixtures(dir)) reports.push(await checkFixture(fixture, registry, options));
  return reports;
}

/** A fixed-width table of reports, one line per fixture, then failures. */
export function formatReports(reports: readonly FixtureReport[], backend: string): string {
  const e = (x: number | undefined) => (x === undefined ? '       -' : x.toExponential(1).padStart(8));
  const lines = [
    `fixtures on ${backend}: ${reports.filter((r) => r.pass).length}/${reports.length} pass (tolerance: relative to each tensor's largest entry)`,
    `${'fixture'.padEnd(28)} result spikes     loss  readout    state    grads    tbptt`,
  ];
  for (const r of reports) {
    lines.push(
      `${r.name.padEnd(28)} ${r.pass ? 'PASS  ' : 'FAIL  '} ${String(r.spikeMismatches === 0 ? 'same' : `${r.spikeMismatches} diff`).padEnd(6)} ${e(r.errors.loss)} ${e(r.errors.readout)} ${e(r.errors.finalState)} ${e(r.errors.grads)} ${e(r.errors.tbptt)}`,
    );
  }
  for (const r of reports) for (const f of r.failures) lines.push(`  ${r.name}: ${f}`);
  return lines.join('\n');
}

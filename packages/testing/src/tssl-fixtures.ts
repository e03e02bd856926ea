import {
  lossNow,
  SpikeflowError,
  buildNetwork,
  disposeTree,
  forward,
  lossFromSpec,
  ruleFromSpec,
  tf,
  type BuildOptions,
  type ModelRegistries,
  type ModelSpec,
  type NamedTensorMap,
  type Network,
  type Registry,
} from '@spikeflow/core';

/**
 * TSSL-BP fixtures (`fixtures/tssl/`, schema in §12 of the TSSL-BP spec): a network of TSSL-BP's
 * neurons solved in float64 by the authors' code, its loss, every layer's spikes and PSPs, the
 * output PSP sums, the prediction and the weight gradients of their rule. The fixture checker
 * tells them from the BPTT fixtures by their `config` and runs them through `@spikeflow/neuron-tssl`
 * and `@spikeflow/rule-tssl-bp`.
 */
export interface TsslFixture {
  readonly name: string;
  readonly config: {
    readonly T: number;
    readonly batch: number;
    /** `[I, H₁, …, O]`. */
    readonly sizes: readonly number[];
    readonly tau_m: number;
    readonly tau_s: number;
    readonly threshold: readonly number[];
    readonly loss: 'kernel' | 'count' | 'softmax';
    readonly desired_spikes?: readonly number[];
    readonly kernel_target_filter_passes?: number;
    readonly desired_count?: number;
    readonly undesired_count?: number;
  };
  /** `W1`, `W2`, … as `[fan_in][fan_out]`. */
  readonly params: Readonly<Record<string, number[][]>>;
  readonly inputs: number[][][];
  readonly labels: readonly number[];
  readonly expected: {
    readonly loss: number;
    readonly layers: readonly { readonly spikes: number[][][]; readonly psp: number[][][] }[];
    readonly output_psp_sum: number[][];
    readonly predicted: readonly number[];
    readonly grads: Readonly<Record<string, number[][]>>;
  };
}

/** Whether a parsed fixture file is a TSSL-BP fixture (a `config` with τ_m and a TSSL-BP loss). */
export function isTsslFixture(f: unknown): f is TsslFixture {
  const c = (f as { config?: Record<string, unknown> } | null)?.config;
  return typeof c === 'object' && c !== null && typeof c['tau_m'] === 'number' && ['kernel', 'count', 'softmax'].includes(c['loss'] as string);
}

/** A TSSL-BP fixture's model: `tssl` layers of its sizes (the first filtering its input), no bias, the identity readout. */
export function tsslFixtureModelSpec(f: TsslFixture): ModelSpec {
  const c = f.config;
  return {
    inputs: c.sizes[0]!,
    layers: c.sizes.slice(1).map((size, l) => ({
      neuron: 'tssl',
      size,
      bias: false,
      params: { tauM: c.tau_m, tauS: c.tau_s, threshold: c.threshold[l]!, filterInput: l === 0 },
    })),
    readout: { kind: 'identity', size: c.sizes.at(-1)! },
  };
}

/** A TSSL-BP fixture's network with its weights (`W1`, … as `layers.0.W`, …). */
export function tsslFixtureNetwork(f: TsslFixture, registries: ModelRegistries, options?: BuildOptions): Network {
  const net = buildNetwork(tsslFixtureModelSpec(f), registries, options);
  net.setParams(Object.fromEntries(f.config.sizes.slice(1).map((_, l) => [`layers.${l}.W`, f.params[`W${l + 1}`]!])));
  return net;
}

/** What the checker compares of a TSSL-BP fixture: worst relative errors (to each tensor's largest entry) and spike mismatches. */
export interface TsslCheck {
  readonly spikeMismatches: number;
  readonly errors: { loss: number; readout: number; grads: number };
  readonly failures: string[];
}

/** The fixture's loss as TSSL-BP's plugin names it. */
function lossSpec(c: TsslFixture['config']): Record<string, unknown> {
  if (c.loss === 'kernel') {
    return {
      name: 'tssl_kernel',
      tauS: c.tau_s,
      passes: c.kernel_target_filter_passes ?? 2,
      ...(c.desired_spikes ? { desired: c.desired_spikes.join('') } : {}),
    };
  }
  if (c.loss === 'count') return { name: 'tssl_count', desired: c.desired_count, undesired: c.undesired_count };
  return { name: 'tssl_softmax' };
}

/**
 * Runs one TSSL-BP fixture on the active backend: the network of `tssl` neurons (the first layer
 * filtering its input, no bias, the identity readout) with the fixture's weights, `forward` for
 * every layer's spikes (exactly: recovered from its PSPs, o_t = τ_s·(a_t − r·a_{t−1})) and PSPs,
 * the output PSP sums and the prediction, then the `tssl-bp` rule's loss and weight gradients.
 */
export function checkTsslFixture(
  f: TsslFixture,
  registry: Registry,
  worstOf: (label: string, pairs: [string, ArrayLike<number>, ArrayLike<number>][]) => number,
): TsslCheck {
  const c = f.config;
  for (const [what, plugin] of [
    ['neuron', 'tssl'],
    ['rule', 'tssl-bp'],
  ] as const) {
    const known = what === 'neuron' ? registry.neurons.has(plugin) : registry.rules.has(plugin);
    if (!known) {
      throw new SpikeflowError(
        'PLUGIN_NOT_FOUND',
        `fixture '${f.name}': a TSSL-BP fixture needs the ${what} '${plugin}'; load @spikeflow/${what === 'neuron' ? 'neuron-tssl' : 'rule-tssl-bp'} (--plugins)`,
      );
    }
  }
  const net = tsslFixtureNetwork(f, registry, { kernels: registry.kernels });
  const inputs = tf.tensor3d(f.inputs);
  const targets = tf.tensor1d([...f.labels], 'int32');
  const failures: string[] = [];
  try {
    const fwd = forward(net, inputs, { record: true });
    const r = 1 - 1 / c.tau_s;
    let spikeMismatches = 0;
    const psps = fwd.spikes!.map((a, l): [string, ArrayLike<number>, ArrayLike<number>] => {
      const got = a.dataSync();
      const want = f.expected.layers[l]!.spikes.flat(2);
      const n = got.length / c.T;
      for (let i = 0; i < got.length; i++) {
        const o = Math.round(c.tau_s * (got[i]! - (i >= n ? r * got[i - n]! : 0)));
        if (o !== want[i]) spikeMismatches++;
      }
      return [`layers[${l}] PSP`, got, f.expected.layers[l]!.psp.flat(2)];
    });
    if (spikeMismatches) failures.push(`spikes: ${spikeMismatches} entries differ`);
    const sums = tf.sum(fwd.readout, 0);
    const argmax = tf.argMax(sums, 1);
    const predicted = Array.from(argmax.dataSync());
    if (predicted.join() !== f.expected.predicted.join()) failures.push(`prediction: [${predicted}], expected [${f.expected.predicted}]`);
    const readout = worstOf('readout', [...psps, ['Σ_t A_t', sums.dataSync(), f.expected.output_psp_sum.flat()]]);
    tf.dispose([sums, argmax]);
    disposeTree(fwd);
    let grads: Record<string, Float32Array> = {};
    const rule = ruleFromSpec({ name: 'tssl-bp' }, registry.rules);
    const state = rule.init(net);
    const { state: next, report } = rule.update({ inputs, targets }, state, {
      network: net,
      loss: lossFromSpec(lossSpec(c), registry.losses),
      apply: (g: NamedTensorMap) => {
        grads = Object.fromEntries(Object.entries(g).map(([k, t]) => [k, t.dataSync() as Float32Array]));
      },
    });
    disposeTree(next);
    const loss = worstOf('loss', [['L', [lossNow(report)], [f.expected.loss]]]);
    const gradErr = worstOf(
      'grad',
      c.sizes.slice(1).map((_, l): [string, ArrayLike<number>, ArrayLike<number>] => {
        const want = f.expected.grads[`W${l + 1}`]!.flat();
        return [`layers.${l}.W`, grads[`layers.${l}.W`] ?? new Float32Array(want.length), want];
      }),
    );
    return { spikeMismatches, errors: { loss, readout, grads: gradErr }, failures };
  } finally {
    disposeTree([inputs, targets]);
    net.dispose();
  }
}

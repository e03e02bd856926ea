import {
  OptimizerRunner,
  adam,
  buildNetwork,
  ceMean,
  createRegistry,
  createRng,
  disposeTree,
  lossNow,
  ruleFromSpec,
  tf,
  type BackendInfo,
} from '@spikeflow/core';
import alif from '@spikeflow/neuron-alif';
import lif from '@spikeflow/neuron-lif';
import bptt from '@spikeflow/rule-bptt';
import webgl from '@spikeflow/backend-webgl';
import webgpu from '@spikeflow/backend-webgpu';
import { checkFixture, type Fixture } from '@spikeflow/testing/fixtures';

/**
 * Relative tolerance of the fixture checks in the browser: the same as on the CPU backends. The
 * fixtures are solved in float64; WebGL (with float32 render targets, as SwiftShader and desktop
 * GPUs have) and WebGPU compute in float32, in another order. Measured worst on headless
 * Chromium's SwiftShader WebGL: 1.0e-5 (two_layer_lif). A device without float32 render targets
 * (WEBGL_RENDER_FLOAT32_ENABLED false: half floats) would not pass at this tolerance.
 */
export const GPU_TOLERANCE = 1e-4;

/** What the page leaves on `window.spikeflowResult` for its test (and shows). */
export interface PageResult {
  readonly backend: string;
  /** Why the backend cannot run in this browser (the page then does nothing else). */
  readonly skipped?: string;
  readonly info?: BackendInfo;
  /** Loss of every training iteration. */
  readonly losses?: readonly number[];
  readonly tolerance?: number;
  readonly fixtures?: readonly { name: string; pass: boolean; worst: number; failures: readonly string[] }[];
  readonly error?: string;
}

const fixtures = import.meta.glob<Fixture>('../../../packages/testing/fixtures/*.json', { eager: true, import: 'default' });

/** A two-class toy task: class c fires its half of the channels more often. */
function toyBatch(steps: number, batch: number, channels: number, seed: number) {
  const rand = createRng(seed);
  const x = new Float32Array(steps * batch * channels);
  const y = new Int32Array(batch);
  for (let b = 0; b < batch; b++) {
    y[b] = b % 2;
    for (let t = 0; t < steps; t++) {
      for (let c = 0; c < channels; c++) {
        const mine = (c < channels / 2 ? 0 : 1) === y[b];
        x[(t * batch + b) * channels + c] = rand() < (mine ? 0.5 : 0.05) ? 1 : 0;
      }
    }
  }
  return { inputs: tf.tensor3d(x, [steps, batch, channels]), targets: tf.tensor1d(y, 'int32') };
}

async function run(name: string): Promise<PageResult> {
  const registry = createRegistry([lif, alif, bptt, webgl, webgpu]);
  const backend = registry.backends.get(name);
  if (!backend) return { backend: name, error: `no backend '${name}' (this page has ${[...registry.backends.keys()].join(', ')})` };
  if (!(await backend.isAvailable())) {
    const why = await backend.activate().then(
      () => 'isAvailable() said no, but activate() succeeded',
      (e: unknown) => (e as Error).message,
    );
    return { backend: name, skipped: why };
  }
  await backend.activate();

  // Training: a recurrent LIF layer learns the toy task with BPTT and Adam.
  const net = buildNetwork(
    { inputs: 8, layers: [{ neuron: 'lif', size: 16, recurrent: true, params: { beta: 0.9, threshold: 1 } }], readout: { size: 2, kappa: 0.9 } },
    { neurons: registry.neurons, surrogates: [...registry.surrogates.values()] },
    { seed: 0 },
  );
  const rule = ruleFromSpec({ name: 'bptt' }, registry.rules, 'rule');
  const opt = adam({ lr: 0.05 });
  const optimizer = new OptimizerRunner(opt, net.params);
  const batch = toyBatch(20, 16, 8, 1);
  let state = rule.init(net);
  const losses: number[] = [];
  for (let i = 0; i < 30; i++) {
    const r = rule.update(batch, state, { network: net, loss: ceMean, apply: (g) => optimizer.apply(g), optimizer: opt });
    if (r.state !== state) disposeTree(state, r.state);
    state = r.state;
    losses.push(lossNow(r.report));
  }
  disposeTree([batch.inputs, batch.targets]);
  net.dispose();

  // The gradient fixtures (PyTorch, float64) on this backend.
  const reports = [];
  for (const f of Object.values(fixtures)) reports.push(await checkFixture(f, registry, { tolerance: GPU_TOLERANCE }));
  return {
    backend: name,
    info: backend.describe(),
    losses,
    tolerance: GPU_TOLERANCE,
    fixtures: reports.map((r) => ({ name: r.name, pass: r.pass, worst: r.worst, failures: r.failures })),
  };
}

const name = new URLSearchParams(location.search).get('backend') ?? 'webgl';
document.getElementById('backend')!.textContent = name;
const result = await run(name).catch((e: unknown): PageResult => ({ backend: name, error: `${(e as Error).message}\n${(e as Error).stack ?? ''}` }));
(window as unknown as { spikeflowResult: PageResult }).spikeflowResult = result;
document.getElementById('log')!.textContent = JSON.stringify(result, null, 2);

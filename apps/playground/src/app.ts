// The playground: pick a task, a neuron, a learning rule and a backend; train in this page and
// watch the loss, the score, a hidden layer's spike raster, membrane traces and firing rates update.
import {
  type Backend,
  type BackendInfo,
  type LearningRule,
  type Network,
  type NetState,
  OptimizerRunner,
  type TemporalLoss,
  adam,
  buildNetwork,
  checkRequirements,
  createRegistry,
  disposeTree,
  forward,
  lossFromSpec,
  ruleFromSpec,
  tf,
} from '@spikeflow/core';
import wasmPlugin, { setWasmPaths } from '@spikeflow/backend-wasm';
import { setKernelThreads } from '@spikeflow/kernels';
import webgl from '@spikeflow/backend-webgl';
import webgpu from '@spikeflow/backend-webgpu';
import alif from '@spikeflow/neuron-alif';
import lif from '@spikeflow/neuron-lif';
import bptt from '@spikeflow/rule-bptt';
import eprop from '@spikeflow/rule-eprop';
import fptt from '@spikeflow/rule-fptt';
import ottt from '@spikeflow/rule-ottt';
import sltt from '@spikeflow/rule-sltt';
import plainWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import simdWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import threadedWasm from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';
import { lineChart, raster, rates, type Series } from './charts.js';
import { type Task, tasks } from './tasks.js';

// tfjs' own WebAssembly files, as the bundle serves them (Node reads them from the package instead).
setWasmPaths({ 'tfjs-backend-wasm.wasm': plainWasm, 'tfjs-backend-wasm-simd.wasm': simdWasm, 'tfjs-backend-wasm-threaded-simd.wasm': threadedWasm });

const registry = createRegistry([lif, alif, bptt, eprop, fptt, ottt, sltt, wasmPlugin, webgl, webgpu]);

/** The rules on offer, as rule specs. */
const RULES: Record<string, { name: string } & Record<string, unknown>> = {
  bptt: { name: 'bptt' },
  tbptt: { name: 'bptt', truncation: 10 },
  fptt: { name: 'fptt', window: 10 },
  eprop: { name: 'eprop' },
  ottt: { name: 'ottt' },
  sltt: { name: 'sltt' },
};

interface Settings {
  readonly task: string;
  readonly neuron: string;
  readonly rule: string;
  readonly backend: string;
  readonly hidden: number;
  readonly batch: number;
  readonly lr: number;
}

interface Session {
  readonly settings: Settings;
  readonly key: string;
  readonly task: Task;
  readonly net: Network;
  readonly rule: LearningRule;
  readonly loss: TemporalLoss;
  readonly optimizer: OptimizerRunner;
  readonly backend: Backend;
  readonly info: BackendInfo;
  state: unknown;
  iteration: number;
  readonly losses: [number, number][];
  readonly scores: [number, number][];
  /** Training samples per second over the last run. */
  speed: number;
}

/** What the page shows, for its end-to-end test (`window.playground`). */
export interface PlaygroundState {
  status: 'idle' | 'starting' | 'training' | 'stopped' | 'error';
  error?: string;
  settings?: Settings;
  info?: BackendInfo;
  fused?: boolean;
  iteration: number;
  losses: number[];
  scores: number[];
  /** Spikes drawn in the raster at its last update. */
  rasterSpikes: number;
  samplesPerSecond: number;
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const view: PlaygroundState = { status: 'idle', iteration: 0, losses: [], scores: [], rasterSpikes: 0, samplesPerSecond: 0 };
(window as unknown as { playground: PlaygroundState }).playground = view;

const params = new URLSearchParams(location.search);
for (const id of ['task', 'neuron', 'rule', 'backend', 'hidden', 'batch', 'lr']) {
  const v = params.get(id);
  if (v !== null) ($(id) as HTMLInputElement).value = v;
}
// `?threads=n`: the fast kernels' threads (default: one per core up to 4 where the page is cross-origin isolated).
if (params.get('threads')) setKernelThreads(Number(params.get('threads')));
/** `?iterations=n` stops training after n iterations (the test's runs); else it runs until Stop. */
const limit = Number(params.get('iterations') ?? Number.POSITIVE_INFINITY);

function settings(): Settings {
  const v = (id: string) => ($(id) as HTMLInputElement).value;
  return {
    task: v('task'),
    neuron: v('neuron'),
    rule: v('rule'),
    backend: v('backend'),
    hidden: Number(v('hidden')),
    batch: Number(v('batch')),
    lr: Number(v('lr')),
  };
}

function say(text: string, error = false): void {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
}

function facts(s: Session): void {
  const rows: [string, string][] = [
    ['backend', `${s.info.tfBackend} on ${s.info.device}`],
    [
      'fast kernels',
      s.net.fused
        ? `yes (${String(s.info.details['kernels'] ?? s.info.tfBackend)}, ${s.info.threads} thread${s.info.threads > 1 ? 's' : ''})`
        : 'no (composite ops)',
    ],
    ['cross-origin isolated', String(globalThis.crossOriginIsolated ?? false)],
    ['model', `${s.task.inputs} → ${s.settings.hidden} recurrent ${s.settings.neuron.toUpperCase()} → ${s.task.outputs}, T = ${s.task.steps}`],
    ['rule', `${s.rule.name}, memory ${s.rule.memory}`],
    ['loss', s.loss.name],
    ['iteration', String(s.iteration)],
    ['speed', s.speed ? `${s.speed.toFixed(0)} samples/s` : '–'],
  ];
  $('facts').replaceChildren(
    ...rows.flatMap(([k, v]) => [
      Object.assign(document.createElement('dt'), { textContent: k }),
      Object.assign(document.createElement('dd'), { textContent: v }),
    ]),
  );
}

let session: Session | undefined;
let running = false;

function dispose(): void {
  if (!session) return;
  disposeTree(session.state as never);
  session.optimizer.dispose();
  session.net.dispose();
  session = undefined;
}

async function open(s: Settings): Promise<Session> {
  const backend = registry.backends.get(s.backend);
  if (!backend) throw new Error(`no backend '${s.backend}'`);
  if (!(await backend.isAvailable())) {
    const why = await backend.activate().then(
      () => '',
      (e: unknown) => (e as Error).message,
    );
    throw new Error(`the ${s.backend} backend is not available in this browser${why ? `: ${why}` : ''}`);
  }
  await backend.activate();
  const task = tasks[s.task]!();
  const net = buildNetwork(
    {
      inputs: task.inputs,
      layers: [{ neuron: s.neuron, size: s.hidden, recurrent: true, gain: task.kind === 'labels' ? 3 : 1, params: { beta: 0.9 } }],
      readout: { size: task.outputs, kappa: 0.9 },
      surrogate: { name: 'fast_sigmoid', slope: 25 },
    },
    { neurons: registry.neurons, surrogates: [...registry.surrogates.values()] },
    { seed: 1, kernels: registry.kernels },
  );
  try {
    const rule = ruleFromSpec(RULES[s.rule] ?? { name: s.rule }, registry.rules, 'rule');
    const lossName = task.kind === 'value' ? 'mse_last' : rule.requires.lossDecomposesOverTime ? 'ce_every_step' : 'ce_mean';
    const loss = lossFromSpec(lossName, registry.losses);
    checkRequirements(rule, net, loss);
    const optimizer = new OptimizerRunner(adam({ lr: s.lr, clipNorm: 1 }), net.params, { kernels: net.kernels });
    return {
      settings: s,
      key: JSON.stringify(s),
      task,
      net,
      rule,
      loss,
      optimizer,
      backend,
      info: backend.describe(),
      state: rule.init(net),
      iteration: 0,
      losses: [],
      scores: [],
      speed: 0,
    };
  } catch (e) {
    net.dispose();
    throw e;
  }
}

/** Held-out score (accuracy, or the mean absolute error of the last step), raster, rates, output and membrane traces. */
function inspect(s: Session): void {
  const { task, net } = s;
  const held = task.batch(64, 1_000_000 + s.iteration);
  const out = forward(net, held.inputs, { record: true });
  const [T, B, H] = out.spikes![0]!.shape as [number, number, number];
  const score = tf.tidy(() => {
    if (task.kind === 'labels') return tf.mean(tf.cast(tf.equal(tf.argMax(tf.mean(out.readout, 0), 1), held.targets), 'float32')).dataSync()[0]!;
    return tf.mean(tf.abs(tf.sub(tf.squeeze(tf.slice(out.readout, [T - 1, 0, 0], [1, B, task.outputs]), [0]), held.targets))).dataSync()[0]!;
  });
  s.scores.push([s.iteration, score]);
  const first = tf.tidy(() => tf.squeeze(tf.slice(out.spikes![0]!, [0, 0, 0], [T, 1, H]), [1]).dataSync() as Float32Array);
  const perNeuron = tf.tidy(() => tf.mean(out.spikes![0]!, [0, 1]).dataSync() as Float32Array);
  const ys = tf.tidy(() => tf.squeeze(tf.slice(out.readout, [0, 0, 0], [T, 1, task.outputs]), [1]).dataSync() as Float32Array);
  view.rasterSpikes = raster($('raster'), `hidden spikes, one held-out sample (${H} neurons × ${T} steps)`, first, T, H);
  rates($('rates'), 'firing rate per neuron (spikes/step, held-out batch)', perNeuron);
  const outputs: Series[] = Array.from({ length: Math.min(task.outputs, 6) }, (_, o) => ({
    label: `y${o}`,
    points: Array.from({ length: T }, (_, t) => [t, ys[t * task.outputs + o]!] as [number, number]),
  }));
  lineChart($('output'), 'readout of that sample over time', outputs);
  membrane(s, held.inputs);
  disposeTree([out, held.inputs, held.targets]);
  lineChart(
    $('score'),
    task.kind === 'labels' ? 'held-out accuracy' : 'held-out |error| at the last step',
    [{ label: task.kind === 'labels' ? 'accuracy' : 'error', points: s.scores }],
    task.kind === 'labels' ? { yMin: 0, yMax: 1 } : {},
  );
}

/** Membrane potentials of the first 4 hidden neurons for the batch's first sample, stepped one step at a time. */
function membrane(s: Session, inputs: tf.Tensor): void {
  const key = registry.neurons.get(s.settings.neuron)?.membrane;
  if (!key) return;
  const T = inputs.shape[0]!;
  const show = Math.min(4, s.settings.hidden);
  const v = tf.tidy(() => {
    const stepper = s.net.stepper();
    const x = tf.slice(inputs, [0, 0, 0], [T, 1, s.task.inputs]);
    let state: NetState = s.net.init(1);
    const trace: tf.Tensor[] = [];
    for (let t = 0; t < T; t++) {
      const o = stepper.step(state, tf.reshape(tf.slice(x, [t, 0, 0], [1, 1, s.task.inputs]), [1, s.task.inputs]));
      state = o.state;
      trace.push(tf.slice((state.layers[0]!.neuron as Record<string, tf.Tensor>)[key]!, [0, 0], [1, show]));
    }
    return tf.concat(trace, 0).dataSync() as Float32Array;
  });
  const series: Series[] = Array.from({ length: show }, (_, n) => ({
    label: `v${n}`,
    points: Array.from({ length: T }, (_, t) => [t, v[t * show + n]!] as [number, number]),
  }));
  lineChart($('membrane'), 'membrane potential of 4 hidden neurons (that sample)', series);
}

function buttons(): void {
  ($('start') as HTMLButtonElement).disabled = running;
  ($('stop') as HTMLButtonElement).disabled = !running;
  $('start').textContent = session && session.key === JSON.stringify(settings()) && session.iteration > 0 ? 'Resume' : 'Train';
}

async function train(): Promise<void> {
  if (running) return;
  running = true;
  buttons();
  try {
    const s0 = settings();
    if (!session || session.key !== JSON.stringify(s0)) {
      dispose();
      view.status = 'starting';
      say(`starting ${s0.backend}…`);
      session = await open(s0);
      Object.assign(view, { settings: s0, info: session.info, fused: session.net.fused, iteration: 0, losses: [], scores: [] });
    }
    const s = session;
    view.status = 'training';
    let t0 = performance.now();
    let samples = 0;
    while (running && s.iteration < limit) {
      const b = s.task.batch(s.settings.batch, s.iteration);
      const r = s.rule.update(b, s.state as never, {
        network: s.net,
        loss: s.loss,
        apply: (g) => s.optimizer.apply(g),
        applyAnchored: (g, a) => s.optimizer.applyAnchored(g, a),
        optimizer: s.optimizer.optimizer,
      });
      disposeTree([b.inputs, b.targets]);
      if (r.state !== s.state) disposeTree(s.state as never, r.state);
      s.state = r.state;
      s.iteration++;
      samples += s.settings.batch;
      const loss = await r.report.loss;
      s.losses.push([s.iteration, loss]);
      view.iteration = s.iteration;
      view.losses.push(loss);
      if (!Number.isFinite(loss)) throw new Error(`the loss became ${loss} at iteration ${s.iteration}`);
      const elapsed = performance.now() - t0;
      if (s.iteration % 10 === 0 || s.iteration === limit || elapsed > 1000) {
        s.speed = (samples * 1000) / elapsed;
        view.samplesPerSecond = s.speed;
        inspect(s);
        view.scores = s.scores.map(([, v]) => v);
        [t0, samples] = [performance.now(), 0];
      }
      lineChart($('loss'), `training loss (${s.loss.name})`, [{ label: 'loss', points: s.losses }]);
      facts(s);
      say(`training: iteration ${s.iteration}, loss ${loss.toFixed(4)}`);
      await tf.nextFrame();
    }
    // Reset while it trained: the session is gone and the page already says so.
    if (session !== s) return;
    view.status = 'stopped';
    say(`stopped at iteration ${s.iteration}${s.iteration >= limit ? ` (?iterations=${limit})` : ''}: Resume goes on, Reset starts over.`);
  } catch (e) {
    view.status = 'error';
    view.error = (e as Error).message;
    say((e as Error).message, true);
  } finally {
    running = false;
    buttons();
  }
}

function reset(): void {
  running = false;
  dispose();
  Object.assign(view, { status: 'idle', iteration: 0, losses: [], scores: [], rasterSpikes: 0, samplesPerSecond: 0 });
  delete view.error;
  for (const id of ['loss', 'score', 'raster', 'membrane', 'rates', 'output']) {
    const c = $<HTMLCanvasElement>(id);
    c.getContext('2d')?.clearRect(0, 0, c.width, c.height);
  }
  $('facts').replaceChildren();
  say('reset: the next Train starts from fresh weights.');
  buttons();
}

$('start').addEventListener('click', () => void train());
$('stop').addEventListener('click', () => {
  running = false;
});
$('reset').addEventListener('click', reset);
for (const id of ['task', 'neuron', 'rule', 'backend', 'hidden', 'batch', 'lr']) $(id).addEventListener('change', buttons);
buttons();
if (params.get('autostart') === '1') void train();
// Load the default backend now (tfjs' .wasm files and the kernels), so that a page loaded once
// trains on it offline.
else if (settings().backend === 'wasm')
  void registry.backends
    .get('wasm')
    ?.activate()
    .catch(() => undefined);

// A user's program, built against spikeflow as installed from npm: core, one neuron, one rule and
// the wasm backend (which brings the kernels). It classifies spike patterns — each class one fixed
// random raster, samples jittered and noisy copies — with a recurrent LIF network trained by BPTT,
// and prints one JSON line: the loss of the first and last iterations and the held-out accuracy.
import {
  lossNow,
  OptimizerRunner,
  type SequenceBatch,
  adam,
  buildNetwork,
  ceMean,
  createRegistry,
  createRng,
  disposeTree,
  forward,
  loadPlugins,
  tf,
} from '@spikeflow/core';

const classes = 4;
const channels = 20;
const steps = 40;
const iterations = 60;

const registry = createRegistry(await loadPlugins(['@spikeflow/neuron-lif', '@spikeflow/rule-bptt', '@spikeflow/backend-wasm'], { from: import.meta.url }));
const backend = registry.backends.get('wasm');
if (!backend) throw new Error('the wasm backend did not register');
await backend.activate();

const random = createRng(7);
const templates = Array.from({ length: classes }, () => Float32Array.from({ length: steps * channels }, () => (random() < 0.05 ? 1 : 0)));

/** `size` samples, time-major: spikes [T, B, channels] and labels [B]. */
function batch(size: number, seed: number): SequenceBatch & { inputs: tf.Tensor; targets: tf.Tensor } {
  const g = createRng(seed);
  const x = new Float32Array(steps * size * channels);
  const labels = new Int32Array(size);
  for (let b = 0; b < size; b++) {
    const c = Math.floor(g() * classes);
    labels[b] = c;
    for (let t = 0; t < steps; t++) {
      for (let i = 0; i < channels; i++) {
        const on = (templates[c]![t * channels + i]! > 0 && g() > 0.1) || g() < 0.01;
        if (on) x[(t * size + b) * channels + i] = 1;
      }
    }
  }
  return { inputs: tf.tensor3d(x, [steps, size, channels]), targets: tf.tensor1d(labels, 'int32') };
}

const net = buildNetwork(
  {
    inputs: channels,
    layers: [{ neuron: 'lif', size: 64, recurrent: true, gain: 3, params: { beta: 0.9 } }],
    readout: { size: classes, kappa: 0.9 },
    surrogate: { name: 'fast_sigmoid', slope: 25 },
  },
  { neurons: registry.neurons, surrogates: registry.surrogates.values() },
  { seed: 1, kernels: registry.kernels },
);
const rule = registry.rules.get('bptt')!.create({});
const optimizer = new OptimizerRunner(adam({ lr: 0.01 }), net.params, { kernels: net.kernels });

const losses: number[] = [];
let state = rule.init(net);
for (let it = 0; it < iterations; it++) {
  const b = batch(32, 1000 + it);
  const r = rule.update(b, state, { network: net, loss: ceMean, apply: (g) => optimizer.apply(g) });
  state = r.state;
  losses.push(lossNow(r.report));
  disposeTree([b.inputs, b.targets]);
}

const test = batch(256, 99);
const out = forward(net, test.inputs);
const accuracy = tf.tidy(() => tf.mean(tf.cast(tf.equal(tf.argMax(tf.mean(out.readout, 0), 1), test.targets), 'float32')).dataSync()[0]!);
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
console.log(
  JSON.stringify({
    backend: backend.describe().tfBackend,
    kernels: backend.describe().details['kernels'],
    fastKernel: registry.kernels.has('spikeflow.integrateFireSequence', 'wasm'),
    fused: net.fused,
    firstLoss: mean(losses.slice(0, 5)),
    lastLoss: mean(losses.slice(-5)),
    accuracy,
    chance: 1 / classes,
  }),
);

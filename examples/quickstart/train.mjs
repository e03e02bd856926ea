// spikeflow quick start: compose plugins by package name, build a recurrent LIF network from a
// plain JSON model spec, and train it with exact BPTT and Adam on the embedded wasm backend.
import { OptimizerRunner, adam, ceMean, createRegistry, disposeTree, forward, loadPlugins, tf, buildNetwork } from '@spikeflow/core';
import { makePatternTask } from './patterns.mjs';

const config = {
  plugins: ['@spikeflow/neuron-lif', '@spikeflow/rule-bptt', '@spikeflow/backend-wasm'],
  backend: 'wasm',
  model: {
    inputs: 50,
    layers: [{ neuron: 'lif', size: 128, recurrent: true, gain: 3, params: { beta: 0.9, threshold: 1 } }],
    readout: { size: 10, kappa: 0.9 },
    surrogate: { name: 'fast_sigmoid', slope: 25 },
  },
  rule: { truncation: undefined, mode: 'accumulate' },
  iterations: Number(process.env.ITERATIONS ?? 300),
  batchSize: 32,
  lr: 0.01,
};

const registry = createRegistry(await loadPlugins(config.plugins, { from: import.meta.url }));
const backend = registry.backends.get(config.backend);
await backend.activate();
const info = backend.describe();
console.log(`backend: ${info.tfBackend} (${info.device}, ${info.threads} thread${info.threads > 1 ? 's' : ''}, SIMD ${info.details.simd})`);

const task = makePatternTask();
const net = buildNetwork(config.model, registry, { seed: 1, kernels: registry.kernels });
const rule = registry.rules.get('bptt').create({ mode: 'accumulate' });
const optimizer = new OptimizerRunner(adam({ lr: config.lr }), net.params);
console.log(
  `model: ${task.channels} inputs → ${config.model.layers[0].size} recurrent LIF → ${task.classes} leaky readout; T = ${task.steps}; rule: ${rule.name}; Adam lr ${config.lr}`,
);

function accuracy(seed, n = 256) {
  const { inputs, targets } = task.batch(n, seed);
  const out = forward(net, inputs);
  const pred = tf.tidy(() => tf.argMax(tf.mean(out.readout, 0), 1));
  const acc = tf.tidy(() => tf.mean(tf.cast(tf.equal(pred, targets), 'float32')).dataSync()[0]);
  disposeTree([out, pred, inputs, targets]);
  return acc;
}

const started = performance.now();
let state = rule.init(net);
for (let it = 1; it <= config.iterations; it++) {
  const batch = task.batch(config.batchSize, 1000 + it);
  const { state: next, report } = rule.update(batch, state, { network: net, loss: ceMean, apply: (g) => optimizer.apply(g) });
  state = next;
  disposeTree(batch);
  if (!Number.isFinite(report.loss)) throw new Error(`loss became ${report.loss} at iteration ${it}`);
  if (it % 10 === 0 || it === 1) {
    const secs = (performance.now() - started) / 1000;
    console.log(`iter ${String(it).padStart(4)}  loss ${report.loss.toFixed(4)}  ${((it * config.batchSize) / secs).toFixed(0)} samples/s`);
  }
}
const acc = accuracy(99);
console.log(
  `held-out accuracy: ${(acc * 100).toFixed(1)}% over 256 samples (chance ${(100 / task.classes).toFixed(0)}%), ${((performance.now() - started) / 1000).toFixed(1)} s in all`,
);
optimizer.dispose();
net.dispose();
if (acc < 0.8) {
  console.error('accuracy below 80%: training did not converge');
  process.exit(1);
}

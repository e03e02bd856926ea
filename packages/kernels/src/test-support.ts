/**
 * Shared by this package's tests (never built into dist): workloads through the fast kernels
 * whose outputs are hashed, run in a test's own process and in fresh child processes
 * (`src/test-child.ts`, run from source by `src/test-loader.mjs`), so that a test can compare
 * its results with a fresh process's, bit for bit.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import {
  KernelTable,
  buildNetwork,
  builtinSurrogates,
  createRng,
  defineNeuron,
  disposeTree,
  fastSigmoid,
  forward,
  tf,
  type AnyNeuronModel,
  type LayerState,
  type Tensor,
} from '@spikeflow/core';
import '@tensorflow/tfjs-backend-wasm';
import { cpuMemoryKernels, decayedSum, leakyReadout, integrateFireLayer } from './index.js';
import { productBlockRows } from './kernels.js';

/** Makes the wasm backend the active one. */
export async function useWasm(): Promise<void> {
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not start');
  await tf.ready();
}

/** SHA-256 (hex) of the values of `tensors`, in order. */
function hashOf(tensors: readonly Tensor[]): string {
  const h = createHash('sha256');
  for (const t of tensors) {
    const v = t.dataSync() as Float32Array;
    h.update(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  }
  return h.digest('hex');
}

/** A seeded `[T, B, I]` input of 0/1 with the given density, plus fully dense rows `[from, to)` of its `[T·B, I]` view. */
function spikes(T: number, B: number, I: number, density: number, seed: number, dense?: readonly [number, number]): Tensor {
  const rand = createRng(seed);
  const v = new Float32Array(T * B * I);
  for (let i = 0; i < v.length; i++) v[i] = rand() < density ? 1 : 0;
  if (dense) v.fill(1, dense[0] * I, dense[1] * I);
  return tf.tensor3d(v, [T, B, I]);
}

/**
 * Every parallel kernel once or more on the wasm backend: `integrateFireLayer` and `leakyReadout` without a
 * tape (the input product by events on every thread, the LIF steps), then the same on a tape
 * with the gradients of W, W_rec and the readout's W (the LIF backward pass, the weight
 * gradients by events). Returns the hash of every output.
 */
export function kernelWorkload(): string {
  const [T, B, I, H, O] = [40, 32, 300, 64, 10];
  const x = spikes(T, B, I, 0.05, 1);
  const w = tf.randomNormal([I, H], 0, 0.3, 'float32', 2);
  const b = tf.randomNormal([H], 0.1, 0.2, 'float32', 3);
  const wRec = tf.randomNormal([H, H], 0, 0.3, 'float32', 4);
  const r = tf.randomNormal([H, O], 0, 0.5, 'float32', 5);
  const init = { v: tf.zeros([B, H]), s: tf.zeros([B, H]) };
  const y0 = tf.zeros([B, O]);
  const p = { beta: tf.scalar(0.9), threshold: 1, resetDetach: false, surrogate: fastSigmoid({ slope: 5 }) };
  try {
    const layer = integrateFireLayer(x, w, b, init, wRec, p);
    const y = leakyReadout(layer.spikes, r, undefined, y0, 0.8);
    const loss = (wi: Tensor, wr: Tensor, ri: Tensor) =>
      tf.sum(tf.square(leakyReadout(integrateFireLayer(x, wi, b, init, wr, p).spikes, ri, undefined, y0, 0.8)));
    const grads = tf.grads(loss)([w, wRec, r]);
    const hash = hashOf([layer.spikes, layer.final.v, y, ...grads]);
    disposeTree([layer, y, grads]);
    return hash;
  } finally {
    disposeTree([x, w, b, wRec, r, init, y0, p.beta]);
  }
}

/** Leaky integrate-and-fire, subtractive reset: core's LIF kernel equation (as `@spikeflow/neuron-lif`'s `lif`). */
const lif = defineNeuron({
  name: 'lif',
  description: 'leaky integrate-and-fire (test neuron)',
  configSchema: { beta: { type: 'number', default: 0.9, min: 0, max: 1 }, threshold: { type: 'number', default: 1, min: 0, exclusiveMin: true } },
  stateKeys: ['v', 's'],
  membrane: 'v',
  spikes: 's',
  tensorParams: (c) => ({ beta: { value: c.beta, trainable: false }, threshold: { value: c.threshold, trainable: false } }),
  integrateFire: ({ config, tensors }) => ({ beta: tensors['beta']!, threshold: config.threshold, resetDetach: false }),
  init: (batch, size) => {
    const z = tf.zeros([batch, size]);
    return { v: z, s: z };
  },
  step: ({ tensors }, st: { v: Tensor; s: Tensor }, current, { spike }) => {
    const thr = tensors['threshold']!;
    const v = tf.sub(tf.add(tf.mul(tensors['beta']!, st.v), current), tf.mul(thr, st.s));
    const s = spike(tf.sub(v, thr));
    return { state: { v, s }, spikes: s };
  },
});

/**
 * Leaky integrate-and-fire with an adaptive threshold and a per-neuron trainable ρ: core's kernel
 * equation with `adaptation` (as `@spikeflow/neuron-alif`'s `alif` with `learnRho`).
 */
const adaptive = defineNeuron({
  name: 'adaptive',
  description: 'integrate-and-fire with an adaptive threshold (test neuron)',
  configSchema: {},
  stateKeys: ['v', 'a', 's'],
  membrane: 'v',
  spikes: 's',
  adaptation: 'a',
  tensorParams: (_c, size) => ({ beta: { value: 0.9, trainable: false }, rho: { value: new Float32Array(size).fill(0.95), trainable: true, range: [0, 1] } }),
  integrateFire: ({ tensors }) => ({ beta: tensors['beta']!, threshold: 1, resetDetach: false, adaptation: { rho: tensors['rho']!, strength: 0.5 } }),
  init: (batch, size) => {
    const z = tf.zeros([batch, size]);
    return { v: z, a: z, s: z };
  },
  step: ({ tensors }, st: { v: Tensor; a: Tensor; s: Tensor }, current, { spike }) => {
    const a = tf.add(tf.mul(tensors['rho']!, st.a), st.s);
    const v = tf.sub(tf.add(tf.mul(tensors['beta']!, st.v), current), st.s);
    const s = spike(tf.sub(v, tf.add(1, tf.mul(0.5, a))));
    return { state: { v, a, s }, spikes: s };
  },
});

/** What {@link networkWorkload} reports. */
export interface NetworkResult {
  /** SHA-256 of the weights after training. */
  readonly weights: string;
  /** SHA-256 of the inference passes' readouts and final states. */
  readonly outputs: string;
  /** Per training iteration (sparse, dense, sparse input), the dense matrix products it ran (BatchMatMul). */
  readonly trainProducts: readonly number[];
  /** Per inference pass (sparse input, dense input), the dense matrix products it ran. */
  readonly denseProducts: readonly number[];
  /** The hidden layer's spike rate in the sparse pass. */
  readonly spikeRate: number;
  /** The adaptive layer's spike rate in the sparse pass. */
  readonly adaptiveRate: number;
}

/**
 * A recurrent LIF network with a recurrent adaptive layer (700 → 128 → 48 → 10, ρ trained) through
 * the fast kernels on the wasm backend: three BPTT iterations (SGD) on whole windows, on a sparse
 * input (5%, the event paths) and a dense one (40%: the dense input product of training), the
 * last without the temporal path, a fourth without it and with presynaptic traces in the weight
 * gradients (OTTT's: traces before the window, then the traces after it by `decayedSum`, hashed
 * with the outputs), then two tape-free inference passes, on the
 * sparse input and on a 70% one (the dense input product of inference). The sparse input has a
 * block of fully dense rows where two threads' ranges of the input product would have begun
 * (half the rows) before blocks were counted from the window's first row: each of the two blocks
 * it straddles then stays below the dense limit, while a block begun at the range would not.
 */
export async function networkWorkload(): Promise<NetworkResult> {
  const [T, B, I] = [54, 52, 700];
  const N = T * B;
  const block = productBlockRows(I, N);
  const half = Math.round(N / 2);
  // The dense rows must straddle two blocks counted from row 0, about half in each.
  if (Math.abs((half % block) - block / 2) > block / 8) throw new Error(`networkWorkload: ${N} rows do not split mid-block (block ${block}); change T or B`);
  const kernels = new KernelTable();
  for (const k of cpuMemoryKernels('wasm')) kernels.register(k);
  const net = buildNetwork(
    {
      inputs: I,
      layers: [
        { neuron: 'lif', size: 128, recurrent: true, gain: 3 },
        { neuron: 'adaptive', size: 48, recurrent: true, gain: 3 },
      ],
      readout: { size: 10 },
    },
    {
      neurons: new Map([
        ['lif', lif as unknown as AnyNeuronModel],
        ['adaptive', adaptive as unknown as AnyNeuronModel],
      ]),
      surrogates: builtinSurrogates,
    },
    { kernels, seed: 1 },
  );
  const sparse = spikes(T, B, I, 0.05, 11, [half, half + block]);
  const denseTrain = spikes(T, B, I, 0.4, 12);
  const denseInfer = spikes(T, B, I, 0.7, 13);
  const target = tf
    .oneHot(
      tf.tensor1d(
        Array.from({ length: B }, (_, i) => (i * 7) % 10),
        'int32',
      ),
      10,
    )
    .toFloat();
  try {
    if (!net.fused) throw new Error('networkWorkload: the network does not run fused');
    const params = Object.values(net.params);
    const trainProducts: number[] = [];
    // The traces before the fourth window: of every layer's input, its own spikes and the bias.
    const traced = [
      { decay: 0.9, input: tf.randomUniform([B, I], 0, 2, 'float32', 31), recurrent: tf.randomUniform([B, 128], 0, 1, 'float32', 32), bias: 3 },
      { decay: 0.8, input: tf.randomUniform([B, 128], 0, 1, 'float32', 33), recurrent: tf.randomUniform([B, 48], 0, 1, 'float32', 34), bias: 2 },
    ];
    const traces = { layers: traced, readout: { decay: 0.7, input: tf.randomUniform([B, 48], 0, 1, 'float32', 35), bias: 1.5 } };
    const outputs: Tensor[] = [];
    for (const [i, x] of [sparse, denseTrain, sparse, sparse].entries()) {
      const prof = await tf.profile(() => {
        const { value, grads } = tf.variableGrads(() => {
          const out = net.runWindow(net.prepare({ temporal: i < 2, ...(i === 3 ? { traces } : {}) }), net.init(B), x);
          if (i === 3)
            outputs.push(
              ...[x, ...out.spikes].map((s, l) => tf.keep(decayedSum(s, [0.9, 0.8, 0.7][l]!, [traced[0]!.input, traced[1]!.input, traces.readout.input][l]))),
            );
          return tf.mean(tf.square(tf.sub(tf.mean(out.readout, 0), target))) as tf.Scalar;
        }, params);
        for (const v of params) {
          const g = grads[v.name];
          if (g) v.assign(tf.tidy(() => tf.sub(v, tf.mul(2, g))));
        }
        disposeTree([value, grads]);
      });
      trainProducts.push(prof.kernels.filter((k) => k.name === 'BatchMatMul').length);
    }
    disposeTree(traces);
    const denseProducts: number[] = [];
    let spikeRate = 0;
    let adaptiveRate = 0;
    for (const x of [sparse, denseInfer]) {
      let result: ReturnType<typeof forward> | undefined;
      const prof = await tf.profile(() => {
        result = forward(net, x, { record: x === sparse });
      });
      denseProducts.push(prof.kernels.filter((k) => k.name === 'BatchMatMul').length);
      if (result!.spikes) [spikeRate, adaptiveRate] = result!.spikes.map((sp) => tf.tidy(() => tf.mean(sp).dataSync()[0]!)) as [number, number];
      const [first, second] = result!.state.layers as [LayerState, LayerState];
      outputs.push(result!.readout, first.neuron['v']!, second.neuron['v']!, second.neuron['a']!, result!.state.readout);
      disposeTree(result!.spikes);
    }
    const weights = hashOf(
      Object.keys(net.params)
        .sort()
        .map((k) => net.params[k]!),
    );
    const res = { weights, outputs: hashOf(outputs), trainProducts, denseProducts, spikeRate, adaptiveRate };
    disposeTree(outputs);
    return res;
  } finally {
    disposeTree([sparse, denseTrain, denseInfer, target]);
    net.dispose();
  }
}

/** What {@link convWorkload} gives: hashes of the weights after training and of the outputs, and how many convolutions ran by events. */
export interface ConvResult {
  readonly weights: string;
  readonly outputs: string;
  readonly eventConvs: number;
  readonly spikeRates: readonly number[];
}

/**
 * A conv network (20×20×2 → conv 5×5 stride 2 `same` → max-pool 2 → conv 3×3 `same` → max-pool 2
 * → readout) through the fused path: two BPTT iterations on a 10% spike input (13 images per step,
 * so two threads split the images unevenly) and one tape-free inference pass — the event
 * convolutions, their filter gradients and max pooling both ways. Hashes what a thread count must
 * not change.
 */
export async function convWorkload(): Promise<ConvResult> {
  const [T, B] = [5, 13];
  const kernels = new KernelTable();
  for (const k of cpuMemoryKernels('wasm')) kernels.register(k);
  const lifLayer = { neuron: 'lif', gain: 3 };
  const net = buildNetwork(
    {
      inputShape: [20, 20, 2],
      layers: [
        { type: 'conv2d', channels: 8, kernel: 5, stride: 2, padding: 'same', ...lifLayer },
        { type: 'maxpool', size: 2 },
        { type: 'conv2d', channels: 6, kernel: 3, padding: 'same', ...lifLayer, gain: 8 },
        { type: 'maxpool', size: 2 },
        { type: 'flatten' },
      ],
      readout: { size: 10 },
    },
    { neurons: new Map([['lif', lif as unknown as AnyNeuronModel]]), surrogates: builtinSurrogates },
    { kernels, seed: 2 },
  );
  const x = spikes(T, B, 800, 0.1, 21);
  const target = tf
    .oneHot(
      tf.tensor1d(
        Array.from({ length: B }, (_, i) => (i * 3) % 10),
        'int32',
      ),
      10,
    )
    .toFloat();
  try {
    if (!net.fused) throw new Error('convWorkload: the network does not run fused');
    const params = Object.values(net.params);
    let eventConvs = 0;
    for (let i = 0; i < 2; i++) {
      const { value, grads } = tf.variableGrads(() => {
        const out = net.runWindow(net.prepare(), net.init(B), x);
        return tf.mean(tf.square(tf.sub(tf.mean(out.readout, 0), target))) as tf.Scalar;
      }, params);
      for (const v of params) {
        const g = grads[v.name];
        if (g) v.assign(tf.tidy(() => tf.sub(v, tf.mul(0.2, g))));
      }
      disposeTree([value, grads]);
    }
    let result: ReturnType<typeof forward> | undefined;
    const prof = await tf.profile(() => {
      result = forward(net, x, { record: true });
    });
    // Each Conv2D is a convolution whose input was too dense for events (tfjs' dense one).
    eventConvs = 2 - prof.kernels.filter((k) => k.name === 'Conv2D').length;
    const spikeRates = result!.spikes!.map((sp) => tf.tidy(() => tf.mean(sp).dataSync()[0]!));
    const outputs = [result!.readout, ...result!.spikes!, ...result!.state.layers.map((l) => l.neuron['v']!)];
    const res = {
      weights: hashOf(
        Object.keys(net.params)
          .sort()
          .map((k) => net.params[k]!),
      ),
      outputs: hashOf(outputs),
      eventConvs,
      spikeRates,
    };
    disposeTree(result!);
    return res;
  } finally {
    disposeTree([x, target]);
    net.dispose();
  }
}

/** The workloads a child process runs. */
export type Workload = 'kernels' | 'network' | 'conv';

/**
 * Runs `workload` in a fresh Node process (this package's sources, no build) with `env` added to
 * the environment; returns its result and the kernel threads it ran on.
 */
export function inChild<R>(workload: Workload, env: Record<string, string> = {}): R & { readonly threads: number } {
  const out = execFileSync(
    process.execPath,
    ['--import', fileURLToPath(new URL('./test-loader.mjs', import.meta.url)), fileURLToPath(new URL('./test-child.ts', import.meta.url)), workload],
    {
      env: { ...process.env, ...env },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const last = out.trim().split('\n').at(-1)!;
  return JSON.parse(last) as R & { threads: number };
}

import {
  OptimizerRunner,
  SpikeflowError,
  adam,
  buildNetwork,
  ceEveryStep,
  checkRequirements,
  ceMean,
  disposeTree,
  forward,
  lossFromSpec,
  ruleFromSpec,
  tf,
  type LearningRule,
  type NetState,
  type Network,
  type Registry,
  type TemporalLoss,
  type Tensor,
} from '@spikeflow/core';
import { BernoulliSteps } from './input.js';
import { profileKernels, type KernelProfile } from './profile.js';

/** The standard workload: what is trained, and how it is measured. */
export interface Workload {
  /** Batch size B (default 64). */
  readonly batch: number;
  /** Input channels (default 700, as SHD). */
  readonly inputs: number;
  /** Probability of an input spike per channel and step (default 0.05). */
  readonly density: number;
  /** Recurrent hidden neurons (default 256). */
  readonly hidden: number;
  /**
   * Neuron model (default `lif`: β 0.9, threshold 1, subtractive reset, fast sigmoid slope 25;
   * `alif` alike; any other neuron runs with its own defaults, surrogate included).
   */
  readonly neuron: string;
  /** Readout classes (default 20). */
  readonly outputs: number;
  /** Timed iterations after the warm-up; the median is reported (default 3). */
  readonly repeats: number;
  readonly seed: number;
  /**
   * Whether the fast kernels the backend plugins register are used (default true); `false`
   * (`--no-kernels`) forces core's composite references, the baseline fast kernels are measured
   * against.
   */
  readonly kernels?: boolean;
  /**
   * The conv workload (`--conv`) instead of the recurrent dense one: `[H, W, C]` event frames
   * (`inputs` = H·W·C) through two conv + max-pool stages of `neuron` (see {@link workloadModelSpec});
   * `hidden` is not used.
   */
  readonly conv?: { readonly shape: readonly [number, number, number] };
  /**
   * The TSSL-BP workload (`--tssl`): the authors' dense MNIST network (`inputs` → `hidden` →
   * `hidden` → `outputs` of `@spikeflow/neuron-tssl`'s neurons, no bias, the first layer filtering
   * its input, the output PSPs the readout) on their kernel loss, for TSSL-BP and for BPTT through
   * the same neurons with a surrogate.
   */
  readonly tssl?: boolean;
  /** Also time one more training iteration kernel by kernel (`--profile`; see {@link profileKernels}). */
  readonly profile?: boolean;
  /**
   * With the fast kernels: also time inference on core's composite references, pass for pass
   * alternating with the fast one in the same process (`--compare-inference`), so that the
   * speed-up is not the machine's drift between two runs.
   */
  readonly compareInference?: boolean;
  /**
   * Timed inference passes (median), after one warm-up pass (default: `repeats`). The passes are
   * short, so more of them steady the median (and the median of the pairs' ratios) on a noisy
   * machine without training longer, which would change what is measured: the network fires
   * more the longer it trains.
   */
  readonly inferRepeats?: number;
  /**
   * The loss every rule trains on, a name in the registry's losses (`--loss`: `ce_every_step`,
   * `ce_mean`, ...). Default: CE on the mean readout (`ce_mean`), or at every step
   * (`ce_every_step`) for a rule that learns from per-step terms; the TSSL-BP workload's kernel
   * loss. A rule that cannot learn from the loss is refused (`INCOMPATIBLE`).
   */
  readonly loss?: string;
}

export const standardWorkload: Workload = { batch: 64, inputs: 700, density: 0.05, hidden: 256, neuron: 'lif', outputs: 20, repeats: 3, seed: 0 };
export const quickWorkload: Workload = { batch: 4, inputs: 20, density: 0.2, hidden: 16, neuron: 'lif', outputs: 4, repeats: 1, seed: 0 };

/** The conv workload: N-MNIST's 34×34 ON/OFF frames at 5% density, batch 32, 10 classes (as `apps/cli/configs/nmnist-conv.json`). */
export const convWorkload: Workload = { ...standardWorkload, batch: 32, inputs: 34 * 34 * 2, outputs: 10, conv: { shape: [34, 34, 2] } };
export const quickConvWorkload: Workload = { ...quickWorkload, inputs: 8 * 8 * 2, conv: { shape: [8, 8, 2] } };

/** The TSSL-BP workload: 784 inputs at 20% (about MNIST's share of inked pixels), 400-400-10, batch 100 (as `apps/cli/configs/mnist-tssl.json`). */
export const tsslWorkload: Workload = { ...standardWorkload, batch: 100, inputs: 784, density: 0.2, hidden: 400, neuron: 'tssl', outputs: 10, tssl: true };
export const quickTsslWorkload: Workload = { ...quickWorkload, neuron: 'tssl', tssl: true };

/**
 * The network the bench trains: the standard recurrent layer of `hidden` neurons, or with `conv`
 * the conv SNN of `apps/cli/configs/nmnist-conv.json` — conv 16 channels 5×5 stride 2 `same`,
 * max-pool 2, conv 32 channels 3×3 `same`, max-pool 2, flatten — and the readout; with `tssl`, the
 * TSSL-BP network (see {@link Workload.tssl}).
 */
export function workloadModelSpec(w: Workload): Record<string, unknown> {
  if (w.tssl) {
    return {
      inputs: w.inputs,
      layers: [
        { neuron: 'tssl', size: w.hidden, bias: false, gain: 2.449, params: { filterInput: true } },
        { neuron: 'tssl', size: w.hidden, bias: false, gain: 2.449 },
        { neuron: 'tssl', size: w.outputs, bias: false, gain: 2.449 },
      ],
      readout: { kind: 'identity', size: w.outputs },
    };
  }
  const lifLike = w.neuron === 'lif' || w.neuron === 'alif';
  const params = lifLike ? { params: { beta: 0.9, threshold: 1 } } : {};
  const layers = w.conv
    ? [
        { type: 'conv2d', neuron: w.neuron, channels: 16, kernel: 5, stride: 2, padding: 'same', ...params },
        { type: 'maxpool', size: 2 },
        { type: 'conv2d', neuron: w.neuron, channels: 32, kernel: 3, padding: 'same', ...params },
        { type: 'maxpool', size: 2 },
        { type: 'flatten' },
      ]
    : [{ neuron: w.neuron, size: w.hidden, recurrent: true, ...params }];
  return {
    inputs: w.inputs,
    ...(w.conv ? { inputShape: [...w.conv.shape] } : {}),
    layers,
    readout: { size: w.outputs, kappa: 0.9 },
    ...(lifLike ? { surrogate: { name: 'fast_sigmoid', slope: 25 } } : {}),
  };
}

/**
 * A rule as the bench names it: a registry rule and its options (`bptt`, `bptt:truncation=50`), or a
 * preset; with `neuron`, on that neuron model instead of the workload's (`bptt@alif`), so that one
 * run can time a rule on two neuron models.
 */
export interface RuleChoice {
  readonly label: string;
  readonly spec: { name: string; [option: string]: unknown };
  readonly neuron?: string;
}

/**
 * Parses `name`, `name:key=value,key=value`, either followed by `@neuron`; `tbptt` is `bptt` with
 * `truncation` = k.
 */
export function parseRuleChoice(text: string, k = 50): RuleChoice {
  const at = text.lastIndexOf('@');
  if (at >= 0) {
    const neuron = text.slice(at + 1);
    if (!/^[\w-]+$/.test(neuron) || at === 0) {
      throw new SpikeflowError('CONFIG_INVALID', `bench: '${text}' names no neuron after '@' (write rule@neuron, e.g. bptt@alif)`, { path: 'rules' });
    }
    const rule = parseRuleChoice(text.slice(0, at), k);
    return { label: `${rule.label}@${neuron}`, spec: rule.spec, neuron };
  }
  if (text === 'tbptt') return { label: `tbptt(k=${k})`, spec: { name: 'bptt', truncation: k } };
  const [name, opts] = text.split(':', 2) as [string, string | undefined];
  const spec: { name: string; [option: string]: unknown } = { name };
  for (const kv of (opts ?? '').split(',').filter(Boolean)) {
    const [key, raw] = kv.split('=', 2) as [string, string | undefined];
    const n = Number(raw);
    spec[key] = raw === undefined ? true : raw === 'true' ? true : raw === 'false' ? false : Number.isFinite(n) ? n : raw;
  }
  return { label: text, spec };
}

export interface Measurement {
  readonly rule: string;
  readonly steps: number;
  /** The loss the rule trained on (see {@link Workload.loss}). */
  readonly loss: string;
  /**
   * Median wall time of one training iteration (forward, backward, update), ms, less the time the
   * input took to draw its windows ({@link inputMsPerIter}): the rule's time, as when the input was
   * a tensor made beforehand. Every iteration starts from the network's initial weights, with a
   * fresh optimizer and rule state: the same computation each time, whatever the rule.
   */
  readonly msPerIter: number;
  readonly msPerStep: number;
  /** Median time one training iteration spent drawing the input's windows, ms (not in `msPerIter`). */
  readonly inputMsPerIter: number;
  /** High-water mark of tf.memory().numBytes during one iteration, sampled after every kernel. */
  readonly peakTensorBytes: number;
  /**
   * `peakTensorBytes` less what existed before the iteration (weights, optimizer state): the memory
   * the rule's own work needs, the windows of input it asks for included (all of it, for BPTT's one
   * window; the input is made window by window, never held whole by the bench).
   */
  readonly peakWorkingBytes: number;
  /**
   * Peak resident set size of the whole measuring process, bytes (`getrusage`'s `ru_maxrss`: every
   * thread, the kernels' workers and WebAssembly memories included), read after its last pass. The
   * process measures this one point only, so this is the point's own peak.
   */
  readonly peakRssBytes: number;
  /** With `profile`: where one more training iteration's time went, kernel by kernel. */
  readonly profile?: KernelProfile;
  /**
   * Steps per second of inference (forward only, no tape) on the same batch: median of
   * `inferRepeats` passes after one warm-up pass. A pass runs the sequence in windows of
   * {@link INFER_WINDOW} steps with the state carried, so its memory does not grow with T; the
   * input's drawing time is left out, as in `msPerIter`.
   */
  readonly inferStepsPerSec: number;
  /**
   * Per layer, the fraction of its neurons that spiked per step in that inference pass (after the
   * training iterations: the network fires more the longer it trains, and the event-driven
   * kernels' time grows with it).
   */
  readonly inferSpikeRates: readonly number[];
  /**
   * With `compareInference`: the same forward pass on core's composite references (a network with
   * the same weights), each pass right after one of the fast passes; steps per second (median) and
   * the median over those pairs of (composite time / fast time).
   */
  readonly inferComposite?: { readonly stepsPerSec: number; readonly speedup: number };
  readonly repeats: number;
  /** Timed inference passes behind `inferStepsPerSec`. */
  readonly inferRepeats: number;
  /**
   * With `rounds` > 1 (the bench's `--rounds`): `msPerIter` of this point in each round, in round
   * order. Round r of every point ran in the same pass over the list, so the r-th entries of two
   * points are comparable under the same machine load; `msPerIter` is their median. (A paired run's
   * reference is measured several times a round: here every measurement, in order.)
   */
  readonly roundsMsPerIter?: readonly number[];
  /**
   * With a reference rule (the bench's `--paired`): this point's time against the reference's at the
   * same T, measured right before and right after it — `ratios[r]` = `msPerIter` in round r over the
   * mean of those two — and `ratio`, their median. A slow spell of the machine that lasts a few
   * seconds then falls on both sides of a ratio alike.
   */
  readonly paired?: { readonly reference: string; readonly ratios: readonly number[]; readonly ratio: number };
}

/**
 * Peak `tf.memory().numBytes` while `f` runs, exact: the engine's byte count is read after every
 * tensor it registers (the count only rises there), so a transient allocation that `f` frees
 * before returning (the tape at the end of a forward pass) is seen. `tf.profile` would do the same
 * per kernel, but it collects every kernel of the call and then spreads them into one
 * `Math.max(...)`, which overflows the stack past a few hundred thousand kernels (FPTT at
 * T = 1000). Falls back to `tf.profile` if the engine has no `trackTensor` to observe. `f` may be
 * asynchronous: the engine stays observed until its promise settles (so whatever else allocates
 * tensors meanwhile counts too).
 */
export async function peakTensorBytes(f: () => void | Promise<void>): Promise<number> {
  const engine = tf.engine() as unknown as { state: { numBytes: number }; trackTensor?: (...args: unknown[]) => unknown };
  const track = engine.trackTensor;
  if (typeof track !== 'function') {
    const info = await tf.profile(async () => {
      await f();
    });
    return Math.max(info.peakBytes, tf.memory().numBytes);
  }
  let peak = engine.state.numBytes;
  engine.trackTensor = function (this: typeof engine, ...args: unknown[]) {
    const r = track.apply(this, args);
    if (this.state.numBytes > peak) peak = this.state.numBytes;
    return r;
  };
  try {
    await f();
  } finally {
    engine.trackTensor = track;
  }
  return Math.max(peak, tf.memory().numBytes);
}

/** The median of `xs` (the mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * The loss `rule` trains on in workload `w` (see {@link Workload.loss}); a loss asked for that the
 * rule cannot learn from is refused (`INCOMPATIBLE`), and `net` freed with any error.
 */
function resolveLoss(registry: Registry, rule: LearningRule, w: Workload, net: Network): TemporalLoss {
  try {
    if (!w.loss) return w.tssl ? lossFromSpec('tssl_kernel', registry.losses) : rule.requires.lossDecomposesOverTime ? ceEveryStep : ceMean;
    const loss = lossFromSpec(w.loss, registry.losses, 'bench --loss');
    checkRequirements(rule, net, loss);
    return loss;
  } catch (e) {
    net.dispose();
    throw e;
  }
}

/** Measures one (rule, T) on the active backend, in this process. */
export async function measure(registry: Registry, choice: RuleChoice | LearningRule, steps: number, workload: Workload): Promise<Measurement> {
  const w = 'neuron' in choice && choice.neuron ? { ...workload, neuron: choice.neuron } : workload;
  const build = (kernels: boolean) =>
    buildNetwork(
      workloadModelSpec(w),
      { neurons: registry.neurons, surrogates: [...registry.surrogates.values()] },
      { seed: w.seed, ...(kernels ? { kernels: registry.kernels } : {}) },
    );
  const net = build(w.kernels !== false);
  const rule = 'update' in choice ? choice : ruleFromSpec(choice.spec, registry.rules, `rules.${choice.label}`);
  // The loss asked for; else CE on the mean readout, or at every step for rules that learn from
  // per-step terms (e-prop, OTTT, ...); the TSSL-BP workload's kernel loss for every rule.
  const loss = resolveLoss(registry, rule, w, net);
  const opt = adam({ lr: 1e-3 });
  let optimizer = new OptimizerRunner(opt, net.params, { kernels: net.kernels });
  // Every iteration starts from these weights (see `fresh`).
  const initial = Object.fromEntries(Object.entries(net.params).map(([k, v]) => [k, tf.clone(v)]));
  // The input of tf.less(tf.randomUniform([T, B, I], 0, 1, 'float32', seed + 1), density), made window by window.
  const inputs = new BernoulliSteps(steps, w.batch, w.inputs, w.density, w.seed + 1);
  const targets = tf.tensor1d(
    Array.from({ length: w.batch }, (_, i) => i % w.outputs),
    'int32',
  );
  let state = rule.init(net);
  let iteration = 0;
  /**
   * Back to the initial weights, a fresh optimizer and rule state: every measured iteration (and
   * the warm-up) is the same computation, on the same network. Without it each repeat would
   * train on from the last, on random data, and a rule that updates many times per sequence
   * (FPTT: T/K updates) would drift to another spike rate than one that updates once — and the
   * kernels' time follows the spikes.
   */
  const fresh = (): void => {
    net.setParams(initial);
    optimizer.dispose();
    optimizer = new OptimizerRunner(opt, net.params, { kernels: net.kernels });
    disposeTree(state);
    state = rule.init(net);
    iteration = 0;
  };
  /**
   * One training iteration, as the trainer runs an update: the loss asked for as a promise
   * (`asyncReads`, no synchronous read of the device) and awaited before returning. That read is
   * the iteration's end: on a backend that computes asynchronously (WebGPU) it waits for the
   * device to finish the update, so the time taken is the work's, not its dispatch's.
   */
  const iterate = async (): Promise<void> => {
    // As the trainer runs an update (dropout masks and batch statistics, where a model has them).
    const r = net.training(w.batch, iteration++, () =>
      rule.update({ inputs, targets }, state, {
        network: net,
        loss,
        apply: (g) => optimizer.apply(g),
        applyAnchored: (g, a) => optimizer.applyAnchored(g, a),
        optimizer: opt,
        asyncReads: true,
      }),
    );
    if (r.state !== state) disposeTree(state, r.state);
    state = r.state;
    await r.report.loss;
  };
  /** Runs `f` to its end (its promise settled); its wall time less the input's drawing time, and that drawing time (ms). */
  const timed = async (f: () => Promise<unknown>): Promise<[number, number]> => {
    const [t0, f0] = [performance.now(), inputs.fillMs];
    await f();
    const input = inputs.fillMs - f0;
    return [performance.now() - t0 - input, input];
  };
  try {
    await iterate(); // warm-up: kernels compiled, optimizer state allocated
    const times: number[] = [];
    const inputTimes: number[] = [];
    for (let i = 0; i < w.repeats; i++) {
      fresh();
      const [ms, input] = await timed(iterate);
      times.push(ms);
      inputTimes.push(input);
    }
    fresh();
    const before = tf.memory().numBytes;
    const peak = await peakTensorBytes(iterate);
    const inferOnce = async (n: Network) => (await timed(() => infer(n, inputs)))[0];
    // The composite twin has the trained weights; each of its passes follows one of the fast ones.
    const twin = w.compareInference && w.kernels !== false ? build(false) : undefined;
    twin?.setParams(net.params);
    const inferTimes: number[] = [];
    const twinTimes: number[] = [];
    for (let i = 0; i <= (w.inferRepeats ?? w.repeats); i++) {
      const ms = await inferOnce(net);
      const twinMs = twin ? await inferOnce(twin) : 0;
      if (i === 0) continue; // the first pass warms up
      inferTimes.push(ms);
      twinTimes.push(twinMs);
    }
    twin?.dispose();
    const inferSpikeRates = await infer(net, inputs, true);
    if (w.profile) fresh();
    const profile = w.profile ? await profileKernels(tf.getBackend(), iterate) : undefined;
    const inferMs = median(inferTimes);
    const msPerIter = median(times);
    return {
      rule: 'update' in choice ? choice.name : choice.label,
      steps,
      loss: loss.name,
      msPerIter,
      msPerStep: msPerIter / steps,
      inputMsPerIter: median(inputTimes),
      peakTensorBytes: peak,
      peakWorkingBytes: peak - before,
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
      inferStepsPerSec: steps / (inferMs / 1000),
      inferSpikeRates,
      ...(twin ? { inferComposite: { stepsPerSec: steps / (median(twinTimes) / 1000), speedup: median(twinTimes.map((t, i) => t / inferTimes[i]!)) } } : {}),
      repeats: w.repeats,
      inferRepeats: w.inferRepeats ?? w.repeats,
      ...(profile ? { profile } : {}),
    };
  } finally {
    disposeTree([targets, state, initial]);
    optimizer.dispose();
    net.dispose();
  }
}

/** Steps per window of the bench's inference passes (those of `forward`'s fused path). */
export const INFER_WINDOW = 1024;

/**
 * One inference pass over `inputs`: `forward` on windows of {@link INFER_WINDOW} steps, the state
 * carried from one to the next and every output freed once read, so memory does not grow with T.
 * Reads asynchronously (`await data()`, no synchronous read of the device): the pass ends when its
 * last readout has been read, which on an asynchronous backend (WebGPU) waits for the device. With
 * `spikeRates`, resolves per hidden layer to the fraction of its neurons spiking per step.
 */
export function infer(net: Network, inputs: BernoulliSteps, spikeRates: true): Promise<number[]>;
export function infer(net: Network, inputs: BernoulliSteps, spikeRates?: false): Promise<void>;
export async function infer(net: Network, inputs: BernoulliSteps, spikeRates = false): Promise<number[] | void> {
  const T = inputs.steps;
  const sums = net.model.layers.map(() => 0);
  let state: NetState | undefined;
  for (let from = 0; from < T; from += INFER_WINDOW) {
    const to = Math.min(from + INFER_WINDOW, T);
    const x = inputs.window(from, to);
    const out = forward(net, x, { record: spikeRates, ...(state ? { state } : {}) });
    x.dispose();
    if (state) disposeTree(state, out.state);
    state = out.state;
    const spikeSums = spikeRates ? out.spikes!.map((sp) => tf.tidy(() => tf.sum(sp))) : [];
    try {
      await out.readout.data();
      for (const [l, s] of spikeSums.entries()) sums[l]! += (await s.data())[0]!;
    } finally {
      disposeTree([out.readout, out.spikes ?? [], spikeSums]);
    }
  }
  disposeTree(state);
  if (spikeRates) return sums.map((s, l) => s / (T * inputs.stepShape[0]! * net.model.layers[l]!.size));
}

export type { Tensor };

import { tf, type NamedTensorMap, type Scalar, type Tensor } from './tf.js';
import type { Network } from './network.js';
import type { SynapseFn } from './step.js';
import type { TemporalLoss } from './losses.js';
import type { AnchoredStep, Optimizer, OptimizerRunner } from './optim.js';
import type { TensorTree } from './state.js';
import type { Schema, SchemaValues } from './validate.js';
import type { StepInput } from './steps.js';
import { SpikeflowError } from './errors.js';
import { hasDropout, isDenseModel } from './model.js';
import { configError, didYouMean, expectObject, parseSchema } from './validate.js';
import { trainWindows, type WindowInfo, type WindowObjective } from './windows.js';

/** One batch of sequences, time-major. */
export interface SequenceBatch<X extends StepInput = StepInput> {
  /**
   * `[T, B, inputs]`, usually 0/1 spikes: a tensor, or a `StepSource` that makes windows of it
   * on demand (datasets yield those). Read it through `stepsOf` and `inputShape`, never `.shape`.
   */
  readonly inputs: X;
  /** Whatever the loss expects: labels `[B]`, values `[T, B, O]` or `[B, O]`. */
  readonly targets: Tensor;
}

/** What a rule receives besides the batch and its own state. */
export interface RuleContext {
  readonly network: Network;
  readonly loss: TemporalLoss;
  /**
   * Applies one optimizer update from gradients keyed by parameter name (missing = zero). The
   * caller keeps ownership of `grads`. Online rules call it in the middle of a sequence.
   */
  apply(grads: NamedTensorMap): void;
  /**
   * FPTT's update in the dual form fused with the optimizer's step ({@link OptimizerRunner.applyAnchored}):
   * the new anchor and multipliers, or `undefined` (nothing applied) where the optimizer is not
   * Adam with a learning rate alone — or where the context has no such method: the rule then
   * pulls its gradients, calls {@link apply} and moves its anchor itself. Optional.
   */
  applyAnchored?(grads: NamedTensorMap, anchor: AnchoredStep): { wbar: NamedTensorMap; lambda: NamedTensorMap } | undefined;
  /**
   * Called once per step, in order, with the readout y_t of the forward pass that produced the
   * loss (metrics such as accuracy accumulate from it). The tensor is the rule's: read or combine
   * it, do not dispose it, and keep (`tf.keep`) anything derived that must outlive the call.
   */
  observe?(t: number, readout: Tensor): void;
  /**
   * The run's optimizer, for parameters a rule owns itself (the auxiliary heads of local BPTT):
   * the rule keeps them, and the optimizer's state for them, in its own state and applies
   * `optimizer.update` to them. The network's parameters change only through `apply`.
   */
  readonly optimizer?: Optimizer;
  /**
   * Report the loss as a promise (`RuleReport.loss`), read without blocking: the trainer asks for
   * it, so that no update needs a synchronous read of the device (a GPU waits for its queue at
   * each one, and WebGPU in Node has none at all). Rules that read values in the middle of an
   * update still do so synchronously.
   */
  readonly asyncReads?: boolean;
}

export interface RuleReport {
  /**
   * The batch's loss (for per-window rules: the sum of the windows' losses, at the weights each
   * saw). A number; a promise of it only where the context asked for asynchronous reads
   * (`RuleContext.asyncReads`; the window engine does so). `await` it, or {@link lossNow}.
   */
  readonly loss: number | Promise<number>;
  /** Optimizer updates applied during this call. */
  readonly updates: number;
}

/**
 * A report's loss where it must be a number at once: a rule asked without `asyncReads` reports
 * one; a promise there is the rule's error.
 */
export function lossNow(report: RuleReport): number {
  if (typeof report.loss === 'number') return report.loss;
  throw new SpikeflowError(
    'PLUGIN_INVALID',
    'the rule reported its loss as a promise though the context did not ask for asynchronous reads (RuleContext.asyncReads): report a number then',
  );
}

/** How a rule's memory grows with the sequence length T. */
export type MemoryClass = 'O(T)' | 'O(k)' | 'O(1)';

/**
 * A learning rule: a pair of pure functions over an explicit state (after optax), built by a
 * factory that closes over its hyper-parameters. The state (traces, running averages, feedback
 * matrices) is plain data passed in and returned, so checkpoints and exact resume come free.
 * Weights change only through `ctx.apply`.
 */
export interface LearningRule<S extends TensorTree = TensorTree> {
  readonly name: string;
  readonly memory: MemoryClass;
  /**
   * `exact`: equals BPTT element-wise on the paths it claims. `approximate`: states the paths it
   * drops, and is tested against BPTT with exactly those paths detached.
   */
  readonly gradient: 'exact' | 'approximate';
  /** What it needs from the loss and the neurons; checked by {@link checkRequirements}. */
  readonly requires: RuleRequirements;
  init(network: Network): S;
  update(batch: SequenceBatch, state: S, ctx: RuleContext): { state: S; report: RuleReport };
  /**
   * Optimizer updates one sequence of `steps` steps makes (default 1); online rules update several
   * times per sequence. Runs use it to spread a decaying learning-rate schedule over the whole run.
   */
  updatesPerSequence?(steps: number): number;
  /**
   * Parameters to evaluate with instead of the network's own, keyed by parameter name (FPTT's
   * running average W̄, for instance); `undefined` (or absent) to evaluate the weights as they are.
   * The tensors stay the rule's.
   */
  evalParams?(state: S): NamedTensorMap | undefined;
}

/** A capability a rule needs every layer's neuron to have under its config. */
export type NeuronCapability = 'localJacobians' | 'membraneDecay' | 'spikes' | 'membrane' | 'spikeTiming';

/**
 * What a rule needs from the loss and the network, declared as data and checked once by core
 * ({@link checkRequirements}: the trainer at the start of a run, {@link defineRule}'s wrapper on a
 * rule's first update with a network and loss), with one error format naming the field and the rule.
 */
export interface RuleRequirements {
  /** The loss must decompose over time (a sum of per-step terms). */
  readonly lossDecomposesOverTime?: boolean;
  /** The loss must score any step's readout against the sequence's target (`BoundLoss.terminal`). */
  readonly lossHasTerminal?: boolean;
  /** The number of layers the rule trains (exactly). */
  readonly layers?: number;
  /** Capabilities every layer's neuron must declare (`membraneDecay`: a fixed decay under the layer's config). */
  readonly neuron?: readonly NeuronCapability[];
  /** No trainable neuron parameters (the rule trains synapses only). */
  readonly fixedNeuronParams?: boolean;
  /** The readout: a fixed leak (`Readout.leak`), and what it reads. */
  readonly readout?: { readonly leak?: boolean; readonly from?: 'spikes' | 'membrane' };
  /**
   * Dense layers only: no `conv2d` layer and no pooling (a rule whose products are `x·W` synapse
   * hooks, or whose traces or heads assume flat layers).
   */
  readonly denseLayers?: boolean;
  /** No recurrent layer (a rule that runs each layer over the whole sequence at once). */
  readonly feedForward?: boolean;
  /**
   * Layers of one synapse and one neuron stage each: dense and `conv2d` layers, pooling allowed,
   * but no `sew_block` (two stages and a connect function) and no batch normalisation (a rule that
   * runs each layer's synapse and neurons itself).
   */
  readonly plainLayers?: boolean;
  /**
   * No dropout in the model: the rule computes with the layers' inputs itself (its own traces or
   * kernels) instead of through the network's step and window, which apply the masks
   * (`Network.training`), so its gradient would not be the masked network's.
   */
  readonly noDropout?: boolean;
}

/** A named rule factory, as plugins provide it: configs name it and pass validated options. */
export interface RuleEntry<Sch extends Schema = Schema> {
  readonly name: string;
  readonly description: string;
  readonly optionsSchema: Sch;
  create(options: SchemaValues<Sch>): LearningRule;
}

/** The one format of a requirement error: the rule, the field, what it needs, and the way out. */
function unmet(rule: LearningRule, path: string, message: string): SpikeflowError {
  return new SpikeflowError('INCOMPATIBLE', `rule '${rule.name}' cannot train this run: ${path}: ${message}`, { rule: rule.name, path });
}

const capabilityText: Record<NeuronCapability, string> = {
  localJacobians: "the capability 'localJacobians' (the local Jacobians of its step)",
  membraneDecay: 'a fixed membrane decay under its config (`membraneDecay`)',
  spikes: 'the state field holding its spikes (`spikes`)',
  membrane: 'the state field holding its membrane (`membrane`)',
  spikeTiming: "TSSL-BP's neuron equations under its config (`spikeTiming`)",
};

function hasCapability(layer: Network['model']['layers'][number], c: NeuronCapability): boolean {
  const n = layer.neuron;
  switch (c) {
    case 'localJacobians':
      return n.localJacobians !== undefined && n.spikes !== undefined;
    case 'membraneDecay':
      return n.membraneDecay?.(layer.config) !== undefined;
    case 'spikes':
      return n.spikes !== undefined;
    case 'membrane':
      return n.membrane !== undefined;
    case 'spikeTiming':
      return n.spikeTiming?.(layer.config) !== undefined;
  }
}

/**
 * Checks a rule's declared {@link RuleRequirements} against a network and a loss; throws an
 * `INCOMPATIBLE` error naming the rule and the first field that does not meet them.
 */
export function checkRequirements(rule: LearningRule, network: Network, loss: TemporalLoss): void {
  const r = rule.requires;
  if (r.lossDecomposesOverTime && !loss.decomposesOverTime) {
    throw unmet(
      rule,
      'loss',
      `it updates from per-step losses, but loss '${loss.name}' does not decompose over time; ` +
        'use a per-step loss (ce_every_step, mse_every_step, mse_last) or a rule that sees the whole sequence',
    );
  }
  if (r.lossHasTerminal && !loss.hasTerminal) {
    throw unmet(
      rule,
      'loss',
      `it scores the readout at chunk ends against the sequence's target, but loss '${loss.name}' has one target per step (${loss.target}); ` +
        "use a loss with a per-sequence target (ce_mean, ce_every_step, mse_last) or the rule's per-step schedule",
    );
  }
  const m = network.model;
  if (r.denseLayers && !isDenseModel(m)) {
    const types = m.spec.layers.map((l) => (l as { type?: string }).type ?? 'dense');
    const at = types.findIndex((t) => t !== 'dense' && t !== 'flatten' && t !== 'dropout');
    const type = types[at];
    throw unmet(
      rule,
      `model.layers[${at}].type`,
      `it trains dense layers only, and this is a ${type} layer; use a dense network, or a rule that trains convolutional layers (bptt, with or without truncation; sltt)`,
    );
  }
  if (r.feedForward) {
    const rec = m.layers.find((l) => l.recurrent);
    if (rec) {
      throw unmet(
        rule,
        `model.layers[${rec.specIndex}].recurrent`,
        'it runs each layer over the whole sequence at once, which a recurrent layer does not allow; remove "recurrent" or use another rule',
      );
    }
  }
  if (r.plainLayers) {
    const l = m.layers.find((x) => x.type === 'sew_block' || x.batchNorm);
    if (l) {
      throw unmet(
        rule,
        `model.layers[${l.specIndex}]${l.type === 'sew_block' ? '.type' : '.batchNorm'}`,
        l.type === 'sew_block'
          ? 'it runs one synapse and one neuron stage per layer, and a SEW block has two stages and a connect function; use conv2d layers, or a rule that trains SEW blocks (bptt, sltt)'
          : 'it runs each layer\'s synapse itself and has no batch normalisation; remove "batchNorm", or use a rule that normalises (bptt, sltt)',
      );
    }
  }
  if (r.noDropout && hasDropout(m)) {
    const at = m.spec.layers.findIndex((l) => (l as { type?: string }).type === 'dropout');
    throw unmet(
      rule,
      `model.layers[${at < 0 ? m.spec.layers.length : at}]`,
      "it computes its gradient from the layers' inputs itself and does not apply dropout masks; remove the dropout, or use a rule that applies them (bptt, with or without truncation; sltt; fptt; local-tbptt)",
    );
  }
  if (r.layers !== undefined && m.layers.length !== r.layers) {
    throw unmet(
      rule,
      'model.layers',
      `it trains networks of ${r.layers} layer${r.layers === 1 ? '' : 's'}, this one has ${m.layers.length}; change the model or the rule`,
    );
  }
  for (const l of m.layers) {
    for (const c of r.neuron ?? []) {
      if (!hasCapability(l, c)) {
        throw unmet(
          rule,
          `model.layers[${l.index}].neuron`,
          `it needs ${capabilityText[c]}, and neuron '${l.neuron.name}' does not declare it under this config; use a neuron that does, or another rule`,
        );
      }
    }
  }
  if (r.fixedNeuronParams) {
    const trainable = m.layers.flatMap((l) =>
      Object.entries(l.neuron.tensorParams(l.config, l.size))
        .filter(([, p]) => p.trainable)
        .map(([k]) => `layers.${l.index}.${k}`),
    );
    if (trainable.length) {
      const first = trainable[0]!.split('.')[1];
      throw unmet(
        rule,
        `model.layers[${first}].params`,
        `it trains synaptic weights only, and the network has trainable neuron parameters (${trainable.join(', ')}); make them fixed (e.g. "learnBeta": false)`,
      );
    }
  }
  if (r.readout?.leak && m.readout.leak === undefined) {
    throw unmet(rule, 'model.readout.kind', `it follows the readout's fixed leak κ, and readout '${m.readout.kind}' has none; use "kind": "leaky"`);
  }
  if (r.readout?.from && m.readout.from !== r.readout.from) {
    throw unmet(rule, 'model.readout.from', `it needs a readout of the last layer's ${r.readout.from}; use "from": "${r.readout.from}"`);
  }
}

/** Which (network, loss) pairs each rule was checked against. */
const checked = new WeakMap<LearningRule, WeakMap<Network, WeakSet<TemporalLoss>>>();

/** Checks {@link checkRequirements} once per rule, network and loss (the trainer and the first update share it). */
export function ensureRequirements(rule: LearningRule, network: Network, loss: TemporalLoss): void {
  let byNet = checked.get(rule);
  if (!byNet) {
    byNet = new WeakMap();
    checked.set(rule, byNet);
  }
  let losses = byNet.get(network);
  if (!losses) {
    losses = new WeakSet();
    byNet.set(network, losses);
  }
  if (losses.has(loss)) return;
  checkRequirements(rule, network, loss);
  losses.add(loss);
}

/**
 * Makes a rule: its `update` checks the rule's declared requirements against the context's
 * network and loss on first use (once per pair, shared with the trainer's check). Every rule
 * factory returns its rule through it; a rule never checks its requirements itself.
 */
export function defineRule<S extends TensorTree>(rule: LearningRule<S>): LearningRule<S> {
  const update = rule.update;
  const out: LearningRule<S> = {
    ...rule,
    update(batch, state, ctx) {
      ensureRequirements(out as LearningRule, ctx.network, ctx.loss);
      return update.call(out, batch, state, ctx);
    },
  };
  return out;
}

/**
 * `tf.variableGrads` over the network's trainable parameters only, keyed by parameter name.
 * `f` runs on the gradient tape; tensors it must return besides the loss are `tf.keep`-ed by it.
 * Parameters that do not reach the loss are absent from `grads`.
 */
export function paramGrads(network: Network, f: () => Scalar): { value: Scalar; grads: NamedTensorMap } {
  const vars = Object.entries(network.params);
  const byVarName = new Map(vars.map(([k, v]) => [v.name, k]));
  const { value, grads } = tf.variableGrads(
    f,
    vars.map(([, v]) => v),
  );
  const out: NamedTensorMap = {};
  for (const [vn, g] of Object.entries(grads)) out[byVarName.get(vn)!] = g;
  return { value, grads: out };
}

/**
 * Builds a rule from its JSON spec, `{ "name": "bptt", "truncation": 50 }`: the name picks the
 * entry, the other keys are validated against its options schema (errors name the field).
 */
export function ruleFromSpec(spec: unknown, rules: ReadonlyMap<string, RuleEntry>, path = 'rule'): LearningRule {
  const obj = expectObject(spec, path);
  const name = obj['name'];
  if (typeof name !== 'string') throw configError(`${path}.name`, `expected a rule name (installed: ${[...rules.keys()].join(', ') || 'none'})`);
  const entry = rules.get(name);
  if (!entry) {
    throw new SpikeflowError(
      'UNKNOWN_NAME',
      `${path}.name: unknown rule '${name}'; ${didYouMean(name, rules.keys())}. A rule comes from a plugin: install it (e.g. pnpm add @spikeflow/rule-${name}) and list it in "plugins".`,
      { path: `${path}.name`, name },
    );
  }
  const { name: _n, ...options } = obj;
  return entry.create(parseSchema(entry.optionsSchema, options, path));
}

export interface StepwiseOptions {
  /** `false`: the steps' gradients are summed and applied once, after the sequence; `true`: an update after every step that runs backward. */
  readonly online: boolean;
  /**
   * Steps run together (default 1): a window of k steps without the temporal path (in one fused
   * pass where the network runs fused), the same gradient as k steps one at a time. Only with
   * `online: false` and without the per-step hooks (`synapse`, `grads`, `afterStep`).
   */
  readonly window?: number;
  /** Whether step t runs backward (default: every step with a loss term). Steps that do not run forward only, and are scored. */
  readonly backward?: (t: number) => boolean;
  /** The synapse hook of step t (see `PrepareOptions.synapse`). */
  readonly synapse?: (t: number) => SynapseFn | undefined;
  /** Transforms step t's gradient before it is applied or summed; returns a new map and frees what it replaces. */
  readonly grads?: (grads: NamedTensorMap, t: number) => NamedTensorMap;
  /** Called after step t, forward-only or not (rules advance their own traces here). */
  readonly afterStep?: (t: number) => void;
}

/**
 * A whole sequence as T windows of one step (core's window engine): every step on its own tape
 * from the detached state the previous one left — the gradient of its loss term through the step's
 * *spatial* paths only — either summed over the sequence (one update) or applied at once
 * (online). Memory does not grow with T. OTTT and SLTT are built on it. The reported loss is the
 * sum of every step's term (forward-only steps included), each at the weights its step saw.
 */
export function stepwise(batch: SequenceBatch, ctx: RuleContext, o: StepwiseOptions): RuleReport {
  const k = o.window ?? 1;
  if (k > 1) {
    if (o.online || o.synapse || o.grads || o.afterStep) {
      throw new SpikeflowError('PLUGIN_INVALID', 'stepwise: windows of several steps need online: false and no per-step hooks (synapse, grads, afterStep)');
    }
    const chosen = o.backward;
    return trainWindows(batch, ctx, {
      window: k,
      update: 'sequence',
      temporal: false,
      // Every step with a term runs backward, or only the chosen ones: the window's objective is
      // their terms, its report every step's.
      objective: chosen ? chosenSteps(chosen) : 'steps',
      ...(chosen ? { backward: (w: WindowInfo) => anyStep(w, chosen) } : {}),
    });
  }
  return trainWindows(batch, ctx, {
    window: 1,
    update: o.online ? 'window' : 'sequence',
    objective: 'steps',
    ...(o.backward ? { backward: (w: WindowInfo) => o.backward!(w.from) } : {}),
    ...(o.synapse ? { synapse: (w: WindowInfo) => o.synapse!(w.from) } : {}),
    ...(o.grads ? { grads: (g: NamedTensorMap, w: WindowInfo) => o.grads!(g, w.from) } : {}),
    ...(o.afterStep ? { afterWindow: (w: WindowInfo) => o.afterStep!(w.from) } : {}),
  });
}

function anyStep(w: WindowInfo, chosen: (t: number) => boolean): boolean {
  for (let t = w.from; t < w.to; t++) if (chosen(t)) return true;
  return false;
}

/** A window objective of the loss terms of the chosen steps only, reporting every step's. */
function chosenSteps(chosen: (t: number) => boolean): WindowObjective {
  return (out, w) => {
    const bound = out.loss;
    const ys = out.readouts();
    const all: Scalar[] = [];
    const picked: Scalar[] = [];
    for (let t = w.from; t < w.to; t++) {
      const term = bound.step!(ys[t - w.from]!, t);
      if (!term) continue;
      all.push(term);
      if (chosen(t)) picked.push(term);
    }
    if (all.length === 0) return null;
    const sum = (xs: Scalar[]) => (xs.length === 1 ? xs[0]! : (tf.addN(xs) as Scalar));
    return { objective: picked.length ? sum(picked) : (tf.mul(0, sum(all)) as Scalar), report: sum(all) };
  };
}

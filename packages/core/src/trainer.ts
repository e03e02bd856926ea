import { tf, type Tensor } from './tf.js';
import { SpikeflowError } from './errors.js';
import type { Dataset } from './dataset.js';
import type { LearningRule, RuleContext, RuleReport } from './rule.js';
import { ensureRequirements } from './rule.js';
import type { Network } from './network.js';
import { forward } from './inference.js';
import { unstackSteps } from './kernels.js';
import type { TemporalLoss } from './losses.js';
import { OptimizerRunner, type Optimizer } from './optim.js';
import { disposeTree, treeLeaves, type TensorTree } from './state.js';
import { disposeBatch, inputShape } from './steps.js';
import { deriveSeed } from './random.js';
import { loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import type { BackendInfo } from './backend.js';
import { isPlainObject } from './validate.js';

export type Prediction = 'sum' | 'last';

export interface TrainOptions {
  readonly epochs: number;
  readonly batchSize: number;
  /** Seeds every epoch's shuffle and encoding (the network's initialisation is seeded when it is built). */
  readonly seed: number;
  /** Evaluate on `evalSplit` every this many epochs (default 1; 0 = never). */
  readonly evalEvery?: number;
  readonly evalSplit?: string;
  /** Where the latest checkpoint is kept (none when omitted). */
  readonly checkpointPath?: string;
  /** Also checkpoint every this many steps (default: only at the end of each epoch). */
  readonly checkpointEvery?: number;
  /** Cap on batches per epoch (quick runs). */
  readonly maxBatchesPerEpoch?: number;
  /**
   * How accuracy reads a class from the readout: `sum` (default), the argmax of Σ_t y_t; `last`,
   * the argmax of the last step's y_t — for models trained on terminal targets (FPTT's schedule).
   */
  readonly prediction?: Prediction;
  /** Stored in every checkpoint (the run's config, package versions). */
  readonly meta?: Readonly<Record<string, unknown>>;
  /**
   * What the run's numbers depend on besides its config: backend, SIMD, kernel threads, kernels'
   * version (see {@link fingerprintOf}). Stored in every checkpoint; resuming under another one
   * emits a `warning` event, since the continued run is then no longer bitwise the same.
   */
  readonly fingerprint?: RunFingerprint;
}

/** What a run's exact numbers depend on besides its config (see {@link TrainOptions.fingerprint}). */
export type RunFingerprint = Readonly<Record<string, string | number | boolean>>;

/**
 * A run's fingerprint from its backend's description: the tfjs backend, whether the fast kernels
 * run (`kernels: false` for `--no-kernels`) and, where the backend reports them, SIMD, the kernel
 * threads and the kernels' version.
 */
export function fingerprintOf(info: BackendInfo, { kernels = true }: { kernels?: boolean } = {}): RunFingerprint {
  const d = info.details;
  const pick = (k: string) => (typeof d[k] === 'string' || typeof d[k] === 'number' || typeof d[k] === 'boolean' ? { [k]: d[k] } : {});
  return {
    backend: info.tfBackend,
    fastKernels: kernels,
    ...pick('simd'),
    ...(kernels ? { ...pick('kernelThreads'), ...pick('kernels') } : {}),
  };
}

/** The seed of a run's evaluation passes (the trainer's, and `spikeflow eval`'s to reproduce them). */
export function evaluationSeed(runSeed: number): number {
  return deriveSeed(runSeed, 'eval');
}

/** Where a run is: `epoch` (0-based), `batch` within it, and the global `step` (updates so far). */
export interface RunPosition {
  readonly epoch: number;
  readonly batch: number;
  readonly step: number;
}

export interface EvalResult {
  readonly split: string;
  readonly loss: number;
  /** Fraction of correct argmax predictions of the mean readout (label targets only). */
  readonly accuracy?: number;
  readonly samples: number;
}

export type TrainerEvent =
  | { readonly type: 'start'; readonly position: RunPosition; readonly epochs: number; readonly batchesPerEpoch: number; readonly resumed: boolean }
  | {
      readonly type: 'batch';
      readonly position: RunPosition;
      readonly loss: number;
      readonly accuracy?: number;
      readonly samples: number;
      readonly samplesPerSec: number;
      readonly elapsedMs: number;
    }
  | { readonly type: 'epoch'; readonly epoch: number; readonly loss: number; readonly accuracy?: number; readonly elapsedMs: number }
  | { readonly type: 'eval'; readonly position: RunPosition; readonly result: EvalResult }
  | { readonly type: 'checkpoint'; readonly position: RunPosition; readonly path: string }
  /** Something the user should know that does not stop the run (a resume under another fingerprint, an old checkpoint format). */
  | { readonly type: 'warning'; readonly message: string }
  | { readonly type: 'end'; readonly position: RunPosition; readonly elapsedMs: number; readonly lastEval?: EvalResult };

export type TrainerListener = (event: TrainerEvent) => void;

/** The checkpoint `meta` a trainer writes. */
export interface RunCheckpointMeta {
  readonly kind: 'spikeflow-run';
  readonly position: RunPosition;
  readonly seed: number;
  readonly rule: string;
  readonly params: readonly string[];
  readonly optimizerSteps?: number;
  readonly fingerprint?: RunFingerprint;
  readonly [key: string]: unknown;
}

/**
 * Checks a run checkpoint's `meta` field by field (a file is data: a wrong field is
 * `CHECKPOINT_INVALID` naming it, never a TypeError later).
 */
export function parseRunMeta(meta: unknown, path: string): RunCheckpointMeta {
  const fail = (field: string, why: string): never => {
    throw new SpikeflowError('CHECKPOINT_INVALID', `checkpoint ${path}: meta.${field} ${why}; refusing to load it`, { path, field: `meta.${field}` });
  };
  const count = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (!isPlainObject(meta) || meta['kind'] !== 'spikeflow-run') {
    throw new SpikeflowError('CHECKPOINT_INVALID', `checkpoint ${path}: not a training-run checkpoint (written by 'spikeflow train' or a Trainer)`, { path });
  }
  const pos = meta['position'];
  if (!isPlainObject(pos) || !count(pos['epoch']) || !count(pos['batch']) || !count(pos['step']))
    fail('position', 'must be { epoch, batch, step } of non-negative integers');
  if (!count(meta['seed'])) fail('seed', 'must be a non-negative integer');
  if (typeof meta['rule'] !== 'string' || meta['rule'].length === 0) fail('rule', 'must be a rule name');
  const params = meta['params'];
  if (!Array.isArray(params) || !params.every((p) => typeof p === 'string')) fail('params', 'must be a list of parameter names');
  if (meta['optimizerSteps'] !== undefined && !count(meta['optimizerSteps'])) fail('optimizerSteps', 'must be a non-negative integer');
  const fp = meta['fingerprint'];
  if (fp !== undefined && (!isPlainObject(fp) || !Object.values(fp).every((v) => ['string', 'number', 'boolean'].includes(typeof v)))) {
    fail('fingerprint', 'must be an object of strings, numbers and booleans');
  }
  return meta as unknown as RunCheckpointMeta;
}

/**
 * Checks that a stored state has the tensors of `like` (same paths, shapes and dtypes) and numbers
 * where `like` has numbers; other plain values are left to the state's owner.
 */
function checkStateLike(stored: unknown, like: TensorTree, where: string, fail: (where: string, why: string) => never): void {
  if (like instanceof tf.Tensor) {
    if (!(stored instanceof tf.Tensor)) fail(where, 'is not a tensor');
    if (stored.dtype !== like.dtype || stored.shape.join() !== like.shape.join())
      fail(where, `is ${stored.dtype} [${stored.shape}], expected ${like.dtype} [${like.shape}]`);
  } else if (typeof like === 'number') {
    if (typeof stored !== 'number' || !Number.isFinite(stored)) fail(where, 'is not a finite number');
  } else if (Array.isArray(like)) {
    if (!Array.isArray(stored) || stored.length !== like.length) fail(where, `is not a list of ${like.length}`);
    like.forEach((l, i) => checkStateLike(stored[i], l as TensorTree, `${where}[${i}]`, fail));
  } else if (like !== null && typeof like === 'object') {
    if (!isPlainObject(stored)) fail(where, 'is not an object');
    for (const [k, l] of Object.entries(like)) checkStateLike(stored[k], l, `${where}.${k}`, fail);
  }
}

const describeFingerprint = (f: RunFingerprint | undefined) =>
  f
    ? Object.entries(f)
        .map(([k, v]) => `${k} ${String(v)}`)
        .join(', ')
    : 'none recorded';

export interface TrainerParts {
  readonly network: Network;
  readonly dataset: Dataset;
  readonly rule: LearningRule;
  readonly optimizer: Optimizer;
  readonly loss: TemporalLoss;
  /** Milliseconds for the events' timings (default `performance.now`; a composed run's container provides it). */
  readonly clock?: () => number;
}

const isLabels = (d: Dataset) => d.describe().target === 'labels';

/** Counts correct argmax predictions of `summed [B, O]` against labels (read asynchronously). */
async function correct(summed: Tensor, labels: Tensor): Promise<number> {
  const n = tf.tidy(() => tf.sum(tf.cast(tf.equal(tf.argMax(summed, 1), tf.cast(labels, 'int32')), 'float32')));
  try {
    return (await n.data())[0]!;
  } finally {
    n.dispose();
  }
}

/**
 * Reads every tensor of `trees` once, asynchronously: a backend that reads only asynchronously
 * (WebGPU in Node) keeps the values on the CPU after it, so that the synchronous reads of a
 * checkpoint find them; elsewhere it costs a copy.
 */
async function prefetch(...trees: unknown[]): Promise<void> {
  await Promise.all(trees.flatMap((t) => treeLeaves(t as TensorTree)).map((t) => t.data()));
}

/**
 * Trains a network: epochs of batches through a learning rule and an optimizer, periodic
 * evaluation, typed events, atomic checkpoints, exact resume, and a stop on NaN/Inf that names
 * the step and the tensor and leaves the last good checkpoint in place.
 *
 * Deterministic: batches of epoch e come from `deriveSeed(seed, 'epoch', e)`, so the same
 * config and seed give the same loss curve on the same backend, and a resumed run continues with
 * exactly the batches the uninterrupted run would have seen.
 */
export class Trainer {
  readonly parts: TrainerParts;
  readonly options: TrainOptions;
  readonly #listeners = new Set<TrainerListener>();
  #optimizer: OptimizerRunner;
  #ruleState: TensorTree;
  #position: RunPosition = { epoch: 0, batch: 0, step: 0 };
  #lastGood?: RunPosition;
  #resumed = false;
  readonly #now: () => number;

  constructor(parts: TrainerParts, options: TrainOptions) {
    if (!(Number.isInteger(options.epochs) && options.epochs >= 1))
      throw new SpikeflowError('CONFIG_INVALID', `train.epochs: must be an integer >= 1, got ${options.epochs}`, { path: 'train.epochs' });
    if (!(Number.isInteger(options.batchSize) && options.batchSize >= 1)) {
      throw new SpikeflowError('CONFIG_INVALID', `train.batchSize: must be an integer >= 1, got ${options.batchSize}`, { path: 'train.batchSize' });
    }
    ensureRequirements(parts.rule, parts.network, parts.loss);
    const d = parts.dataset.describe();
    if (d.channels !== parts.network.inputs) {
      throw new SpikeflowError(
        'SHAPE_MISMATCH',
        `model.inputs is ${parts.network.inputs} but dataset '${parts.dataset.name}' has ${d.channels} input channels`,
        { path: 'model.inputs' },
      );
    }
    if (d.outputs !== parts.network.outputs) {
      throw new SpikeflowError(
        'SHAPE_MISMATCH',
        `model.readout.size is ${parts.network.outputs} but dataset '${parts.dataset.name}' has ${d.outputs} outputs`,
        { path: 'model.readout.size' },
      );
    }
    this.parts = parts;
    this.options = options;
    this.#now = parts.clock ?? (() => performance.now());
    this.#optimizer = new OptimizerRunner(parts.optimizer, parts.network.params, { kernels: parts.network.kernels });
    this.#ruleState = parts.rule.init(parts.network);
  }

  get position(): RunPosition {
    return this.#position;
  }

  on(listener: TrainerListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(e: TrainerEvent): void {
    for (const l of this.#listeners) l(e);
  }

  batchesPerEpoch(): number {
    const n = this.parts.dataset.batchCount('train', { batchSize: this.options.batchSize });
    return this.options.maxBatchesPerEpoch ? Math.min(n, this.options.maxBatchesPerEpoch) : n;
  }

  /** Runs from the current position (0, or where {@link resume} left it) to the last epoch. */
  async run(): Promise<{ position: RunPosition; lastEval?: EvalResult }> {
    const { network, dataset, rule, loss } = this.parts;
    const o = this.options;
    const perEpoch = this.batchesPerEpoch();
    const started = this.#now();
    this.#emit({ type: 'start', position: this.#position, epochs: o.epochs, batchesPerEpoch: perEpoch, resumed: this.#resumed });
    let lastEval: EvalResult | undefined;
    const labels = isLabels(dataset);
    const last = o.prediction === 'last';
    for (let epoch = this.#position.epoch; epoch < o.epochs; epoch++) {
      const epochStart = this.#now();
      let samples = 0;
      let lossSum = 0;
      let right = 0;
      const skip = epoch === this.#position.epoch ? this.#position.batch : 0;
      let batchIndex = skip;
      const seed = deriveSeed(o.seed, 'epoch', epoch);
      for await (const batch of dataset.batches('train', { batchSize: o.batchSize, seed, skip })) {
        if (batchIndex >= perEpoch) {
          disposeBatch(batch);
          break;
        }
        const B = inputShape(batch.inputs)[1]!;
        let summed: Tensor | undefined;
        const ctx: RuleContext = {
          network,
          loss,
          apply: (g) => this.#optimizer.apply(g),
          applyAnchored: (g, anchor) => this.#optimizer.applyAnchored(g, anchor),
          optimizer: this.parts.optimizer,
          asyncReads: true,
          observe: labels
            ? (_t, y) => {
                const next = tf.keep(summed && !last ? tf.add(summed, y) : tf.clone(y));
                summed?.dispose();
                summed = next;
              }
            : undefined,
        };
        let report: RuleReport;
        let lossValue: number;
        try {
          // As training (dropout, batch statistics); the masks drawn from the run's seed and the batch's position.
          const r = network.training(B, deriveSeed(o.seed, 'dropout', epoch, batchIndex), () => rule.update(batch, this.#ruleState, ctx));
          if (r.state !== this.#ruleState) disposeTree(this.#ruleState, r.state);
          this.#ruleState = r.state;
          report = r.report;
          lossValue = await report.loss;
          if (summed) right += await correct(summed, batch.targets);
        } finally {
          summed?.dispose();
          disposeBatch(batch);
        }
        const position = { epoch, batch: batchIndex + 1, step: this.#position.step + 1 };
        await this.#checkFinite(lossValue, position);
        this.#position = position;
        batchIndex++;
        samples += B;
        lossSum += lossValue * B;
        const elapsedMs = this.#now() - epochStart;
        this.#emit({
          type: 'batch',
          position,
          loss: lossValue,
          ...(labels ? { accuracy: right / samples } : {}),
          samples,
          samplesPerSec: (samples / elapsedMs) * 1000,
          elapsedMs,
        });
        if (o.checkpointPath && o.checkpointEvery && position.step % o.checkpointEvery === 0 && batchIndex < perEpoch) await this.#saveRun(o.checkpointPath);
      }
      this.#position = { epoch: epoch + 1, batch: 0, step: this.#position.step };
      this.#emit({
        type: 'epoch',
        epoch,
        loss: samples ? lossSum / samples : NaN,
        ...(labels && samples ? { accuracy: right / samples } : {}),
        elapsedMs: this.#now() - epochStart,
      });
      const evalEvery = o.evalEvery ?? 1;
      if (evalEvery > 0 && ((epoch + 1) % evalEvery === 0 || epoch + 1 === o.epochs) && dataset.splits.includes(o.evalSplit ?? 'test')) {
        lastEval = await this.evaluate(o.evalSplit ?? 'test');
        this.#emit({ type: 'eval', position: this.#position, result: lastEval });
      }
      if (o.checkpointPath) await this.#saveRun(o.checkpointPath);
    }
    this.#emit({ type: 'end', position: this.#position, elapsedMs: this.#now() - started, ...(lastEval ? { lastEval } : {}) });
    return { position: this.#position, ...(lastEval ? { lastEval } : {}) };
  }

  /** {@link save} from the run, its tensors read asynchronously first. */
  async #saveRun(path: string): Promise<void> {
    await prefetch(this.parts.network.variables, this.#optimizer.state, this.#ruleState);
    this.save(path);
  }

  /** Stops the run (throws) when the loss or any weight is NaN or ±Inf. */
  async #checkFinite(lossValue: number, position: RunPosition): Promise<void> {
    const where = `epoch ${position.epoch + 1}, batch ${position.batch} (step ${position.step})`;
    const kept =
      this.#lastGood && this.options.checkpointPath
        ? `; the last good checkpoint (step ${this.#lastGood.step}) is kept at ${this.options.checkpointPath}`
        : '; no checkpoint was written before it';
    if (!Number.isFinite(lossValue)) {
      throw new SpikeflowError(
        'NON_FINITE',
        `training stopped: the loss is ${lossValue} at ${where}${kept}. Lower the learning rate or clip gradients (optimizer.clipNorm).`,
        {
          position,
          tensor: 'loss',
        },
      );
    }
    const params = Object.entries(this.parts.network.params);
    const flags = tf.tidy(() => tf.stack(params.map(([, v]) => tf.any(tf.logicalNot(tf.isFinite(v))).cast('float32'))));
    const bad = await flags.data();
    flags.dispose();
    const i = bad.findIndex((b) => b > 0);
    if (i >= 0) {
      const name = params[i]![0];
      throw new SpikeflowError(
        'NON_FINITE',
        `training stopped: parameter '${name}' holds NaN or Inf after ${where}${kept}. Lower the learning rate or clip gradients (optimizer.clipNorm).`,
        {
          position,
          tensor: name,
        },
      );
    }
  }

  /** Mean loss (sample-weighted) and, for label targets, accuracy on a split, without gradients. */
  async evaluate(split = 'test', { batchSize = this.options.batchSize }: { batchSize?: number } = {}): Promise<EvalResult> {
    const { network, dataset, loss, rule } = this.parts;
    const run = () =>
      evaluate(network, dataset, loss, split, {
        batchSize,
        seed: evaluationSeed(this.options.seed),
        ...(this.options.prediction ? { prediction: this.options.prediction } : {}),
      });
    // A rule may ask to be evaluated with other weights (FPTT's running average): swap them in.
    const swap = rule.evalParams?.(this.#ruleState);
    if (!swap) return run();
    const saved: Record<string, Tensor> = {};
    for (const name of Object.keys(swap)) {
      const v = network.params[name];
      if (v) saved[name] = tf.clone(v);
    }
    network.setParams(swap);
    try {
      return await run();
    } finally {
      network.setParams(saved);
      disposeTree(saved);
    }
  }

  /** Writes the run's state (weights, optimizer, rule state, position, seed, meta) atomically. */
  save(path: string): void {
    const meta: RunCheckpointMeta = {
      ...this.options.meta,
      kind: 'spikeflow-run',
      position: this.#position,
      seed: this.options.seed,
      rule: this.parts.rule.name,
      params: Object.keys(this.parts.network.variables),
      optimizerSteps: this.#optimizer.steps,
      ...(this.options.fingerprint ? { fingerprint: this.options.fingerprint } : {}),
    };
    saveCheckpoint(path, {
      meta,
      trees: { params: { ...this.parts.network.variables }, optimizer: this.#optimizer.state, rule: this.#ruleState },
    });
    this.#lastGood = this.#position;
    this.#emit({ type: 'checkpoint', position: this.#position, path });
  }

  /**
   * Restores weights, optimizer state, rule state and position from a checkpoint of this run's
   * shape. Every field of the checkpoint is checked first (`CHECKPOINT_INVALID` naming it; nothing
   * is changed then). A checkpoint made under another fingerprint, or in an older format, is
   * loaded with a `warning` event.
   */
  resume(path: string): RunPosition {
    const warnings: string[] = [];
    const ck = loadCheckpoint<unknown>(path, { warn: (m) => warnings.push(m) });
    const loaded = ck.trees as { params?: unknown; optimizer?: TensorTree; rule?: TensorTree };
    let meta: RunCheckpointMeta;
    let params: Record<string, Tensor>;
    try {
      meta = parseRunMeta(ck.meta, path);
      if (!isPlainObject(loaded.params) || !Object.values(loaded.params).every((t) => t instanceof tf.Tensor)) {
        throw new SpikeflowError('CHECKPOINT_INVALID', `checkpoint ${path}: it holds no parameter tensors`, { path });
      }
      params = loaded.params as Record<string, Tensor>;
      const want = Object.keys(this.parts.network.variables).sort();
      const have = Object.keys(params).sort();
      if (want.join() !== have.join()) {
        throw new SpikeflowError(
          'CHECKPOINT_INVALID',
          `checkpoint ${path}: its parameters (${have.join(', ')}) do not match this model's (${want.join(', ')})`,
          { path },
        );
      }
      for (const k of want) {
        const a = this.parts.network.variables[k]!;
        const b = params[k]!;
        if (a.shape.join() !== b.shape.join() || a.dtype !== b.dtype) {
          throw new SpikeflowError(
            'CHECKPOINT_INVALID',
            `checkpoint ${path}: parameter '${k}' is ${b.dtype} [${b.shape}], this model's is ${a.dtype} [${a.shape}]`,
            { path },
          );
        }
      }
      if (meta.rule !== this.parts.rule.name) {
        throw new SpikeflowError('CHECKPOINT_INVALID', `checkpoint ${path}: written by rule '${meta.rule}', this run uses '${this.parts.rule.name}'`, { path });
      }
      checkStateLike(loaded.optimizer, this.#optimizer.state, 'optimizer', (where, why) => {
        throw new SpikeflowError('CHECKPOINT_INVALID', `checkpoint ${path}: the optimizer state at ${where} ${why} (is it from another optimizer?)`, {
          path,
          field: where,
        });
      });
    } catch (e) {
      disposeTree(loaded);
      throw e;
    }
    for (const m of warnings) this.#emit({ type: 'warning', message: m });
    const was = meta.fingerprint;
    const now = this.options.fingerprint;
    if (now && !(was && Object.keys({ ...was, ...now }).every((k) => was[k] === now[k]))) {
      this.#emit({
        type: 'warning',
        message: `resuming ${path} under another setup than it was written with (then: ${describeFingerprint(was)}; now: ${describeFingerprint(now)}): the run goes on correctly, but is no longer bitwise the same as one run without interruption on the first setup`,
      });
    }
    this.parts.network.setParams(params);
    disposeTree(params);
    this.#optimizer.dispose();
    this.#optimizer = new OptimizerRunner(this.parts.optimizer, this.parts.network.params, {
      state: loaded.optimizer ?? null,
      steps: meta.optimizerSteps ?? 0,
      kernels: this.parts.network.kernels,
    });
    disposeTree(this.#ruleState);
    this.#ruleState = loaded.rule ?? null;
    this.#position = meta.position;
    this.#lastGood = this.#position;
    this.#resumed = true;
    return this.#position;
  }

  dispose(): void {
    this.#optimizer.dispose();
    disposeTree(this.#ruleState);
  }
}

/** Mean loss and accuracy of a network on one split of a dataset, without gradients. */
export async function evaluate(
  network: Network,
  dataset: Dataset,
  loss: TemporalLoss,
  split: string,
  { batchSize, seed = 0, maxBatches, prediction = 'sum' }: { batchSize: number; seed?: number; maxBatches?: number; prediction?: Prediction },
): Promise<EvalResult> {
  const labels = isLabels(dataset);
  let samples = 0;
  let lossSum = 0;
  let right = 0;
  let n = 0;
  for await (const batch of dataset.batches(split, { batchSize, seed, shuffle: false })) {
    try {
      if (maxBatches !== undefined && n >= maxBatches) break;
      n++;
      const [T, B] = inputShape(batch.inputs) as [number, number];
      const bound = loss.bind(batch.targets, { steps: T, batch: B, outputs: network.outputs });
      // `forward` runs the network fused where it can (whole windows through the fast kernels).
      const out = forward(network, batch.inputs);
      const lossT = tf.tidy(() => (bound.stacked ? bound.stacked(out.readout) : bound.sequence(unstackSteps(out.readout))));
      const value = (await lossT.data())[0]!;
      lossT.dispose();
      if (labels) {
        const scores = tf.tidy(() => (prediction === 'last' ? tf.reshape(tf.slice(out.readout, [T - 1, 0, 0], [1, -1, -1]), [B, -1]) : tf.sum(out.readout, 0)));
        right += await correct(scores, batch.targets);
        scores.dispose();
      }
      disposeTree(out);
      bound.dispose();
      samples += B;
      lossSum += value * B;
    } finally {
      disposeBatch(batch);
    }
  }
  return { split, loss: samples ? lossSum / samples : NaN, ...(labels && samples ? { accuracy: right / samples } : {}), samples };
}

import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { isDeepStrictEqual } from 'node:util';
import {
  SpikeflowError,
  Trainer,
  composeRun,
  createRegistry,
  fingerprintOf,
  isSpikeflowError,
  readCheckpointMeta,
  parseRunConfig,
  parseRunMeta,
  tf,
  type EvalResult,
  type RunConfig,
  type SpikeflowPlugin,
  type TrainerEvent,
} from '@spikeflow/core';
import { readConfigFile } from './files.js';
import { installedPluginNames, loadFrom } from './plugins.js';
import { progressReporter } from './progress.js';
import { lineChart, svgToPng } from '@spikeflow/plot';

export interface TrainFlags {
  readonly seed?: number;
  readonly backend?: string;
  readonly out?: string;
  readonly resume?: boolean;
  readonly epochs?: number;
  readonly cacheDir?: string;
  readonly quiet?: boolean;
  /** Validate and compose the run (plugins, backend, dataset, model, rule, loss), print its plan, train nothing. */
  readonly dryRun?: boolean;
  /** `false` (`--no-kernels`): core's composite kernels instead of the backend's fast ones. */
  readonly kernels?: boolean;
}

/** What `--dry-run` prints: the run as composed, before any training. */
export interface RunPlan {
  readonly config: string;
  readonly backend: string;
  readonly dataset: unknown;
  readonly parameters: Record<string, number[]>;
  readonly parameterCount: number;
  readonly rule: { readonly name: string; readonly memory: string; readonly gradient: string };
  /** Whether the network runs whole windows through the backend's fused kernels (every layer LIF, a leaky readout over spikes, fast kernels on the backend), or step by step. */
  readonly fused: boolean;
  readonly loss: string;
  readonly batchesPerEpoch: number;
  readonly epochs: number;
}

export const CHECKPOINT = 'checkpoint.sfck';
export const METRICS = 'metrics.jsonl';

/** The dataset cache directory: `--cache-dir`, else `~/.cache/spikeflow`. */
export const cacheDirOf = (flag?: string) => resolve(flag ?? join(process.env['HOME'] ?? '.', '.cache', 'spikeflow'));

/** Writes a small text file atomically (a kill mid-write leaves the old one). */
export function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/**
 * Checks, before anything is imported, that the run a checkpoint holds is the run the user's
 * config describes: the checkpoint's stored config is data, and may not name a plugin the user's
 * config does not (`PLUGIN_REFUSED`); the rest must match but for `train.epochs`.
 */
function checkResumable(ckpt: string, config: RunConfig, runDir: string): string | undefined {
  const meta = parseRunMeta(readCheckpointMeta(ckpt, { warn: () => {} }).meta, ckpt);
  let stored: RunConfig;
  try {
    stored = parseRunConfig(meta['config']);
  } catch (e) {
    if (!isSpikeflowError(e)) throw e;
    throw new SpikeflowError('CHECKPOINT_INVALID', `--resume: ${ckpt}: its stored run config is invalid: ${e.message}`, { path: ckpt }, { cause: e });
  }
  const foreign = stored.plugins.filter((p) => !config.plugins.includes(p));
  if (foreign.length) {
    throw new SpikeflowError(
      'PLUGIN_REFUSED',
      `--resume: checkpoint ${ckpt} names plugins your config does not: ${foreign.map((p) => `'${p}'`).join(', ')}; nothing was imported (a checkpoint never chooses code to load). Resume with the config the run was started with.`,
      { path: ckpt, specifiers: foreign },
    );
  }
  const { train: t1, ...a } = stored;
  const { train: t2, ...b } = config;
  if (!isDeepStrictEqual(a, b) || !isDeepStrictEqual({ ...t1, epochs: 0 }, { ...t2, epochs: 0 })) {
    throw new SpikeflowError(
      'CONFIG_INVALID',
      `--resume: the config differs from the one run ${runDir} was started with (stored in ${ckpt}); resume with the same config (only train.epochs may grow), or start a new run with another --out`,
      { path: ckpt },
    );
  }
  // A decay that spans the run goes on from where it was over the new length; one that had
  // already ended stays at its final rate (continuity), which the user should know.
  const schedule = stored.optimizer['schedule'];
  if (
    (schedule === 'cosine' || schedule === 'exponential') &&
    stored.optimizer['decaySteps'] === undefined &&
    t2.epochs > t1.epochs &&
    meta.position.epoch >= t1.epochs
  ) {
    return (
      `the run's ${schedule} learning-rate schedule had run its course over ${t1.epochs} epoch${t1.epochs === 1 ? '' : 's'} when it was extended to ${t2.epochs}: ` +
      `the rate stays continuous, so the added epochs train at its final rate${schedule === 'cosine' ? ` (optimizer.minLr = ${String(stored.optimizer['minLr'] ?? 0)})` : ''}. ` +
      'A run extended before its last epoch spreads the rest of its decay over the new length instead.'
    );
  }
  return undefined;
}

/** Versions of the packages a run was made with, stored in its checkpoints. */
export function versions(registryPlugins: readonly { meta: { name: string; version: string } }[]): Record<string, string> {
  const own = createRequire(import.meta.url)('../package.json') as { name: string; version: string };
  return {
    [own.name]: own.version,
    '@tensorflow/tfjs': tf.version_core,
    node: process.versions.node,
    ...Object.fromEntries(registryPlugins.map((p) => [p.meta.name, p.meta.version])),
  };
}

/** Everything `spikeflow train` does, returning the last evaluation. */
export async function train(configPath: string, flags: TrainFlags): Promise<{ runDir: string; lastEval?: EvalResult; plan?: RunPlan }> {
  const file = resolve(configPath);
  let config: RunConfig = parseRunConfig(await readConfigFile(file));
  config = {
    ...config,
    ...(flags.seed !== undefined ? { seed: flags.seed } : {}),
    ...(flags.backend !== undefined ? { backend: flags.backend } : {}),
    ...(flags.epochs !== undefined ? { train: { ...config.train, epochs: flags.epochs } } : {}),
  };
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const runDir = resolve(flags.out ?? join('runs', `${basename(file, extname(file))}-${stamp}`));
  const ckpt = join(runDir, CHECKPOINT);
  const stored = join(runDir, 'config.json');
  if (flags.dryRun) return { runDir, plan: await plan(file, config, flags) };
  if (flags.resume) {
    if (!existsSync(ckpt)) {
      throw new SpikeflowError('CHECKPOINT_INVALID', `--resume: no checkpoint in ${runDir} (expected ${CHECKPOINT}); start the run without --resume`, {
        path: ckpt,
      });
    }
    const note = checkResumable(ckpt, config, runDir);
    if (note) process.stderr.write(`spikeflow: warning: ${note}\n`);
  } else if (existsSync(ckpt)) {
    throw new SpikeflowError('CONFIG_INVALID', `${runDir} already holds a run (${CHECKPOINT}); continue it with --resume or choose another --out`, {
      path: runDir,
    });
  }
  mkdirSync(runDir, { recursive: true });

  const { registry, backend } = await activated(config, await loadFrom(config.plugins, dirname(file)), [dirname(file)]);
  const kernels = flags.kernels !== false;
  const run = await composeRun(config, registry, { cacheDir: cacheDirOf(flags.cacheDir), log: (m) => process.stderr.write(`${m}\n`) }, { kernels });
  const log = join(runDir, METRICS);
  const progress = flags.quiet ? undefined : progressReporter();
  let trainer: Trainer | undefined;
  try {
    writeAtomic(stored, `${JSON.stringify(config, null, 2)}\n`);
    trainer = new Trainer(run, {
      ...run.trainOptions,
      checkpointPath: ckpt,
      meta: { config, versions: versions(registry.plugins) },
      fingerprint: fingerprintOf(backend.describe(), { kernels }),
    });
    trainer.on((e: TrainerEvent) => {
      if (e.type !== 'batch' || e.position.batch % 10 === 0) appendFileSync(log, `${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);
      if (e.type === 'warning') process.stderr.write(`spikeflow: warning: ${e.message}\n`);
    });
    if (progress) trainer.on(progress.listener);
    if (flags.resume) trainer.resume(ckpt);
    const result = await trainer.run();
    writeAtomic(
      join(runDir, 'summary.json'),
      `${JSON.stringify({ config: file, runDir, position: result.position, lastEval: result.lastEval, backend: backend.describe() }, null, 2)}\n`,
    );
    await writePlots(runDir);
    return { runDir, ...(result.lastEval ? { lastEval: result.lastEval } : {}) };
  } catch (e) {
    appendFileSync(
      log,
      `${JSON.stringify({ time: new Date().toISOString(), type: 'error', message: (e as Error).message, code: (e as SpikeflowError).code })}\n`,
    );
    throw e;
  } finally {
    progress?.stop();
    trainer?.dispose();
    run.network.dispose();
    await run.dataset.close();
  }
}

/**
 * Activates the run's backend, given the run's plugins. `config.backend` names one backend, or a
 * fallback list (`node-gpu,wasm`) tried in order, each unavailable one reported on stderr; a single
 * backend that cannot be activated is an error, never a silent fallback. A backend whose plugin the
 * config does not list is looked for among the plugins installed, by package name, with the CLI
 * and in the projects of `bases`.
 */
export async function activated(config: RunConfig, plugins: readonly SpikeflowPlugin[], bases: readonly string[]) {
  const names = config.backend
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  let registry = createRegistry(plugins);
  if (names.some((n) => !registry.backends.has(n))) {
    const have = new Set(registry.plugins.map((p) => p.meta.name));
    const installed = [...new Set(bases.flatMap((b) => installedPluginNames(b)))].filter((p) => !have.has(p));
    const others = await loadFrom(installed, bases[0] ?? process.cwd());
    const providers = others.filter((pl) => pl.backends?.some((b) => names.includes(b.name) && !registry.backends.has(b.name)));
    if (providers.length) registry = createRegistry([...registry.plugins, ...providers]);
  }
  for (const n of names) {
    if (!registry.backends.has(n)) {
      throw new SpikeflowError(
        'UNKNOWN_NAME',
        `backend: '${n}' is not provided by the loaded plugins (${[...registry.backends.keys()].join(', ') || 'none'}); add its plugin to "plugins"`,
        {
          path: 'backend',
        },
      );
    }
  }
  const failures: SpikeflowError[] = [];
  for (const [i, n] of names.entries()) {
    const backend = registry.backends.get(n)!;
    try {
      await backend.activate();
      return { registry, backend };
    } catch (e) {
      if (names.length === 1 || !isSpikeflowError(e, 'BACKEND_UNAVAILABLE')) throw e;
      failures.push(e);
      if (i + 1 < names.length) process.stderr.write(`${e.message}\ntrying backend '${names[i + 1]}' (the next in "${config.backend}")\n`);
    }
  }
  throw new SpikeflowError(
    'BACKEND_UNAVAILABLE',
    `none of the backends "${config.backend}" is available:\n${failures.map((f) => `  ${f.message}`).join('\n')}`,
    { path: 'backend' },
  );
}

/** Composes the run as `train` would (every check included) and describes it. */
async function plan(file: string, config: RunConfig, flags: TrainFlags): Promise<RunPlan> {
  const { registry, backend } = await activated(config, await loadFrom(config.plugins, dirname(file)), [dirname(file)]);
  const run = await composeRun(config, registry, { cacheDir: cacheDirOf(flags.cacheDir) }, { kernels: flags.kernels !== false });
  try {
    const trainer = new Trainer(run, run.trainOptions);
    const parameters = Object.fromEntries(Object.entries(run.network.params).map(([k, v]) => [k, v.shape]));
    const result: RunPlan = {
      config: file,
      backend: backend.describe().tfBackend,
      dataset: run.dataset.describe(),
      parameters,
      parameterCount: Object.values(run.network.params).reduce((n, v) => n + v.size, 0),
      rule: { name: run.rule.name, memory: run.rule.memory, gradient: run.rule.gradient },
      fused: run.network.fused,
      loss: run.loss.name,
      batchesPerEpoch: trainer.batchesPerEpoch(),
      epochs: run.trainOptions.epochs,
    };
    trainer.dispose();
    return result;
  } finally {
    run.network.dispose();
    await run.dataset.close();
  }
}

/**
 * The events of a run's metrics log, in order. A run killed while it wrote its log may have left a
 * partial last line: what does not parse is skipped.
 */
export function readMetricsLog(runDir: string): Record<string, unknown>[] {
  return readFileSync(join(runDir, METRICS), 'utf8')
    .split('\n')
    .flatMap((l) => {
      try {
        return l ? [JSON.parse(l) as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    });
}

/** Loss and accuracy curves from a run's metrics log, as SVG (and PNG when @resvg/resvg-js is installed). */
export async function writePlots(runDir: string): Promise<string[]> {
  const events = readMetricsLog(runDir);
  const epochs = events.filter((e) => e['type'] === 'epoch') as { epoch: number; loss: number; accuracy?: number }[];
  const evals = events.filter((e) => e['type'] === 'eval') as { position: { epoch: number }; result: EvalResult }[];
  const written: string[] = [];
  const charts: [string, string, { name: string; points: [number, number][] }[]][] = [
    [
      'loss',
      'loss',
      [
        { name: 'train', points: epochs.map((e) => [e.epoch + 1, e.loss]) },
        { name: 'eval', points: evals.map((e) => [e.position.epoch, e.result.loss]) },
      ],
    ],
  ];
  if (epochs.some((e) => e.accuracy !== undefined)) {
    charts.push([
      'accuracy',
      'accuracy',
      [
        { name: 'train', points: epochs.filter((e) => e.accuracy !== undefined).map((e) => [e.epoch + 1, e.accuracy!]) },
        { name: 'eval', points: evals.filter((e) => e.result.accuracy !== undefined).map((e) => [e.position.epoch, e.result.accuracy!]) },
      ],
    ]);
  }
  for (const [name, label, series] of charts) {
    const svg = lineChart(series, { title: `${basename(runDir)}: ${label}`, xLabel: 'epoch', yLabel: label });
    writeFileSync(join(runDir, `${name}.svg`), svg);
    written.push(`${name}.svg`);
    const png = await svgToPng(svg);
    if (png) {
      writeFileSync(join(runDir, `${name}.png`), png);
      written.push(`${name}.png`);
    }
  }
  return written;
}

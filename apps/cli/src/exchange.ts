import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, extname, join, resolve } from 'node:path';
import {
  SpikeflowError,
  Trainer,
  buildNetwork,
  composeRun,
  disposeTree,
  fingerprintOf,
  isPlainObject,
  isSpikeflowError,
  parseRunConfig,
  ruleFromSpec,
  type ExporterEntry,
  type RunConfig,
} from '@spikeflow/core';
import { readConfigFile } from './files.js';
import { installedPluginNames, loadFrom, registryOf } from './plugins.js';
import { activated, cacheDirOf, CHECKPOINT, versions, writeAtomic } from './train.js';
import { openRun } from './evaluate.js';

/** The installed exporters (plugins of kind `exporters`), by format name. */
async function exporters(): Promise<ReadonlyMap<string, ExporterEntry>> {
  return (await registryOf(installedPluginNames(), process.cwd())).exporters;
}

async function exporterFor(format: string, needs: 'export' | 'import'): Promise<ExporterEntry> {
  const all = await exporters();
  const e = all.get(format);
  if (!e)
    throw new SpikeflowError(
      'UNKNOWN_NAME',
      `--format ${format}: no installed plugin ${needs}s this format (installed formats: ${[...all.keys()].join(', ') || 'none'}); the NIR format comes with @spikeflow/nir`,
      { path: '--format' },
    );
  if (needs === 'import' && !e.import)
    throw new SpikeflowError('INCOMPATIBLE', `--format ${format}: the format's plugin writes files but cannot read them`, { path: '--format' });
  return e;
}

export interface ExportFlags {
  readonly format: string;
  readonly out: string;
  readonly dt?: number;
  readonly allowSubtractReset?: boolean;
  /** Plugins to load instead of those the checkpoint's stored config names. */
  readonly plugins?: readonly string[];
}

/**
 * `spikeflow export <runDir|checkpoint> --format nir -o model.nir`: the checkpoint's network — its
 * weights, or those its rule evaluates with (FPTT's running average) — written in another format.
 * Needs no dataset: the model's input width comes from the config or from the first layer's
 * weights. Returns the file written and the conversion's notes.
 */
export async function exportRun(target: string, flags: ExportFlags): Promise<{ file: string; notes: readonly string[] }> {
  const exporter = await exporterFor(flags.format, 'export');
  const { ckpt, config, registry, trees, params } = await openRun(target, flags.plugins, 'export');
  try {
    // What the trainer took from the dataset (the input width, the readout's size), read off the weights instead.
    const shape = (name: string) => params[name]?.shape;
    const layers = Object.keys(params)
      .map((k) => /^layers\.(\d+)\.W$/.exec(k)?.[1])
      .filter((k) => k !== undefined)
      .map(Number);
    const first = shape('layers.0.W');
    const inputs = config.model.inputs ?? (first?.length === 2 && !config.model.inputShape ? first[0] : undefined);
    const size = config.model.readout.size ?? shape('readout.W')?.[1] ?? shape(`layers.${Math.max(...layers)}.W`)?.[1];
    if (inputs === undefined || size === undefined)
      throw new SpikeflowError(
        'CONFIG_INVALID',
        `${ckpt}: its model gives no "inputs" or readout size, and its weights do not say them (a spatial first layer); export needs them`,
        {
          path: ckpt,
        },
      );
    const network = buildNetwork(
      { ...config.model, inputs, readout: { ...config.model.readout, size } },
      { neurons: registry.neurons, surrogates: registry.surrogates.values(), readouts: registry.readouts },
      { seed: config.seed },
    );
    try {
      network.setParams(params);
      const ruleState = trees['rule'];
      const swap = ruleState ? ruleFromSpec(config.rule, registry.rules, 'rule').evalParams?.(ruleState) : undefined;
      if (swap) network.setParams(swap);
      const { bytes, notes } = await exporter.export(network, {
        ...(flags.dt !== undefined ? { dt: flags.dt } : {}),
        ...(flags.allowSubtractReset ? { allowSubtractReset: true } : {}),
      });
      const file = resolve(flags.out);
      try {
        await writeFile(file, bytes);
      } catch (e) {
        throw new SpikeflowError('IO_FAILED', `cannot write ${file}: ${(e as Error).message}`, { path: file }, { cause: e });
      }
      return { file, notes };
    } finally {
      network.dispose();
    }
  } finally {
    disposeTree(trees);
  }
}

export interface ImportFlags {
  /** The run config that gives the data, rule, loss, optimizer and training (its model is replaced). */
  readonly config: string;
  readonly out: string;
  /** The file's format (default: its extension). */
  readonly format?: string;
  readonly dt?: number;
  readonly cacheDir?: string;
}

/**
 * `spikeflow import model.nir --config base.yaml -o <runDir>`: a file of another format as a run
 * directory — `config.json` (the base config with the imported model, and the plugin its neurons
 * come from) and a checkpoint at step 0 holding the imported weights, which `spikeflow eval`
 * evaluates and `spikeflow train <runDir>/config.json --out <runDir> --resume` trains on. The
 * base config's dataset is opened once (the checkpoint holds the optimizer's initial state).
 */
export async function importModel(file: string, flags: ImportFlags): Promise<{ runDir: string; notes: readonly string[]; config: RunConfig }> {
  const path = resolve(file);
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new SpikeflowError('IO_FAILED', `cannot read ${path}: ${(e as Error).message}`, { path }, { cause: e });
  }
  const format = flags.format ?? extname(path).slice(1).toLowerCase();
  const exporter = await exporterFor(format || '(none: give --format)', 'import');
  const imported = await exporter.import!(bytes, { ...(flags.dt !== undefined ? { dt: flags.dt } : {}), where: path });
  const baseFile = resolve(flags.config);
  const base = await readConfigFile(baseFile);
  if (!isPlainObject(base)) throw new SpikeflowError('CONFIG_INVALID', `${baseFile}: a run config is an object`, { path: baseFile });
  const plugins = Array.isArray(base['plugins']) ? (base['plugins'] as unknown[]) : [];
  const config = parseRunConfig({
    ...base,
    plugins: [...plugins, ...imported.plugins.filter((p) => !plugins.includes(p))],
    model: imported.model,
  });
  const runDir = resolve(flags.out);
  const ckpt = join(runDir, CHECKPOINT);
  if (existsSync(ckpt)) throw new SpikeflowError('CONFIG_INVALID', `${runDir} already holds a run (${CHECKPOINT}); choose another -o`, { path: runDir });
  const { registry, backend } = await activated(config, await loadFrom(config.plugins, dirname(baseFile)), [dirname(baseFile)]);
  const run = await composeRun(config, registry, { cacheDir: cacheDirOf(flags.cacheDir), log: (m) => process.stderr.write(`${m}\n`) });
  try {
    run.network.setParams(imported.params);
    mkdirSync(runDir, { recursive: true });
    writeAtomic(join(runDir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    const trainer = new Trainer(run, {
      ...run.trainOptions,
      checkpointPath: ckpt,
      meta: { config, versions: versions(registry.plugins), imported: { file: path, format, notes: imported.notes } },
      fingerprint: fingerprintOf(backend.describe()),
    });
    try {
      trainer.save(ckpt);
    } finally {
      trainer.dispose();
    }
  } catch (e) {
    if (isSpikeflowError(e, 'SHAPE_MISMATCH') || isSpikeflowError(e, 'CONFIG_INVALID'))
      throw new SpikeflowError(e.code, `the imported model does not fit the run of ${baseFile}: ${e.message}`, { ...e.details, path: baseFile }, { cause: e });
    throw e;
  } finally {
    run.network.dispose();
    await run.dataset.close();
  }
  return { runDir, notes: imported.notes, config };
}

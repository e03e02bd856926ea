import { Command, InvalidArgumentError } from 'commander';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join } from 'node:path';
import { SpikeflowError, isSpikeflowError, tf } from '@spikeflow/core';
import { train } from './train.js';
import { evalRun } from './evaluate.js';
import { exportRun, importModel } from './exchange.js';
import { exportBest, runSweep, sweepResults, table } from './sweep.js';
import { installedPluginNames, loadFrom, registryOf } from './plugins.js';
import { PLUGIN_KINDS, newPlugin, newSummary } from './new.js';
import { benchCommand } from '@spikeflow/bench';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };

const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`);
  return n;
};

const print = (x: unknown) => process.stdout.write(`${typeof x === 'string' ? x : JSON.stringify(x, null, 2)}\n`);

export function program(): Command {
  const p = new Command('spikeflow')
    .description('Train spiking neural networks through time: BPTT and its memory-efficient alternatives, on TensorFlow.js')
    .version(pkg.version)
    .showHelpAfterError('(run with --help for usage)');

  p.command('train')
    .description('train a model from a JSON or YAML run config (plugins, backend, data, model, rule, loss, optimizer, train)')
    .argument('<config>', 'run config file (.json, .yaml, .yml)')
    .option('--seed <n>', 'override the config seed', int('--seed'))
    .option('--backend <name>', 'override the config backend (wasm, cpu, node, node-gpu, ...; a list such as node-gpu,wasm tries each in order)')
    .option('--epochs <n>', 'override train.epochs', int('--epochs'))
    .option('--out <runDir>', 'run directory (default: runs/<config name>-<date>-<time>)')
    .option('--resume', 'continue the run in --out from its last checkpoint')
    .option('--cache-dir <dir>', 'where datasets keep downloaded files (default: ~/.cache/spikeflow)')
    .option('--quiet', 'no progress output')
    .option('--dry-run', 'check and compose the run (plugins, backend, data, model, rule, loss), print its plan as JSON, train nothing')
    .option('--no-kernels', "use core's composite kernels instead of the backend's fast ones (slower; same results within float32 rounding)")
    .action(
      async (
        config: string,
        o: {
          seed?: number;
          backend?: string;
          epochs?: number;
          out?: string;
          resume?: boolean;
          cacheDir?: string;
          quiet?: boolean;
          dryRun?: boolean;
          kernels?: boolean;
        },
      ) => {
        const r = await train(config, o);
        if (r.plan) {
          print(r.plan);
          return;
        }
        const e = r.lastEval;
        print(`run: ${r.runDir}`);
        if (e)
          print(`test ${e.accuracy !== undefined ? `accuracy: ${(e.accuracy * 100).toFixed(2)}%, ` : ''}loss: ${e.loss.toFixed(4)} (${e.samples} samples)`);
      },
    );

  p.command('eval')
    .description("evaluate a run's last checkpoint on a split of its dataset")
    .argument('<target>', 'run directory or checkpoint file')
    .option('--split <name>', 'dataset split', 'test')
    .option('--batch-size <n>', 'batch size (default: the run config)', int('--batch-size'))
    .option('--cache-dir <dir>', 'dataset cache directory')
    .option(
      '--plugins <names>',
      "plugins to load, comma-separated, instead of those the checkpoint's stored config names (which are loaded only by installed package name)",
      (v: string) =>
        v
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean),
    )
    .action(async (target: string, o: { split: string; batchSize?: number; cacheDir?: string; plugins?: string[] }) => {
      print(await evalRun(target, o));
    });

  const seconds = (v: string) => {
    const n = Number(v);
    if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError('--dt must be a positive number of seconds (1e-4, 0.001, ...)');
    return n;
  };

  p.command('export')
    .description(
      "write a run's trained network in another format (nir: the Neuromorphic Intermediate Representation, for snnTorch, Norse, Lava, neuromorphic hardware)",
    )
    .argument('<target>', 'run directory or checkpoint file')
    .requiredOption('-o, --out <file>', 'file to write (model.nir)')
    .option('--format <name>', 'file format', 'nir')
    .option('--dt <seconds>', 'NIR: the time step its time constants assume (default 1e-4 s, as snnTorch; NIR files do not store it)', seconds)
    .option('--allow-subtract-reset', "NIR: export layers with spikeflow's subtractive reset, which NIR importers run as reset to zero")
    .option('--plugins <names>', "plugins to load, comma-separated, instead of those the checkpoint's stored config names", (v: string) =>
      v
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean),
    )
    .action(async (target: string, o: { out: string; format: string; dt?: number; allowSubtractReset?: boolean; plugins?: string[] }) => {
      const r = await exportRun(target, o);
      for (const n of r.notes) process.stderr.write(`spikeflow: note: ${n}\n`);
      print(`wrote ${r.file}`);
    });

  p.command('import')
    .description('read a network from another format (nir) into a run directory that eval evaluates and train --resume trains on')
    .argument('<file>', 'file to read (model.nir)')
    .requiredOption('--config <file>', 'run config giving the data, rule, loss, optimizer and training (its model is replaced by the imported one)')
    .requiredOption('-o, --out <runDir>', 'run directory to create')
    .option('--format <name>', 'file format (default: the file extension)')
    .option('--dt <seconds>', "NIR: the time step to run the file's continuous-time equations with (default 1e-4 s)", seconds)
    .option('--cache-dir <dir>', 'dataset cache directory')
    .action(async (file: string, o: { config: string; out: string; format?: string; dt?: number; cacheDir?: string }) => {
      const r = await importModel(file, o);
      for (const n of r.notes) process.stderr.write(`spikeflow: note: ${n}\n`);
      print(`run: ${r.runDir}`);
      print(`evaluate: spikeflow eval ${r.runDir}`);
      print(`train on: spikeflow train ${join(r.runDir, 'config.json')} --out ${r.runDir} --resume`);
    });

  p.command('sweep')
    .description(
      'run a hyper-parameter sweep (a base run config, a search space, trials as train runs with early stopping), or report on one: spikeflow sweep <sweep.yaml> | status | results | best <sweep.yaml>',
    )
    .argument('<what>', 'the sweep file to run, or status, results or best')
    .argument('[file]', 'the sweep file (after status, results or best)')
    .option('--local <n>', 'trials at once, each in its own process (default 1)', int('--local'))
    .option('--redis <url>', 'queue the trials on BullMQ at this Redis (redis://host:port) for spikeflow workers, and wait for their results')
    .option('--queue <name>', 'the BullMQ queue (default spikeflow-trials)')
    .option('--export <file>', "best: write the best trial's run config here (.yaml or .json)")
    .option('--json', 'results: print JSON rows')
    .action(async (first: string, second: string | undefined, o: { local?: number; redis?: string; queue?: string; export?: string; json?: boolean }) => {
      const actions = ['status', 'results', 'best'];
      const action = actions.includes(first) && second !== undefined ? first : 'run';
      const file = action === 'run' ? first : second!;
      if (action === 'run') {
        if (second !== undefined)
          throw new SpikeflowError(
            'CONFIG_INVALID',
            `sweep: '${first}' is no action (status, results, best); to run a sweep: spikeflow sweep <sweep.yaml>`,
            {},
          );
        await runSweep(file, {
          ...(o.local !== undefined ? { local: o.local } : {}),
          ...(o.redis !== undefined ? { redis: o.redis } : {}),
          ...(o.queue !== undefined ? { queue: o.queue } : {}),
        });
      }
      const { spec, trials, rows, best } = await sweepResults(file);
      if (action === 'status') {
        const count = (s: string) => rows.filter((r) => r.status === s).length;
        print({
          sweep: spec.name,
          trials: trials.length,
          done: count('done'),
          pruned: count('pruned'),
          failed: count('failed'),
          pending: trials.length - rows.length,
          ...(best ? { best: best.id, value: best.value } : {}),
        });
        return;
      }
      if (action === 'best') {
        if (o.export) {
          const r = await exportBest(file, o.export);
          print(`best: ${r.best.id} (${spec.metric.name} ${r.best.value}) ${JSON.stringify(r.best.params)}; its run config: ${r.path}`);
        } else if (best) print(best);
        else throw new SpikeflowError('CONFIG_INVALID', `sweep ${spec.name}: no finished trial yet`, { path: file });
        return;
      }
      if (o.json) for (const r of rows) print(JSON.stringify(r));
      else print(table(spec, rows, best));
    });

  p.command('worker')
    .description(
      'run sweep trials queued on BullMQ (spikeflow sweep --redis), each in a sandboxed process, until stopped (SIGINT, SIGTERM); run directories must be on a filesystem the coordinator shares',
    )
    .requiredOption('--redis <url>', 'the Redis the sweeps queue their trials on (redis://host:port)')
    .option('--concurrency <n>', 'trials at once (default 1)', int('--concurrency'))
    .option('--queue <name>', 'the BullMQ queue (default spikeflow-trials)')
    .option(
      '--lock-ms <ms>',
      "how long a job's lock lasts without renewal (default 30000): a worker silent that long loses its trial to another",
      int('--lock-ms'),
    )
    .action(async (o: { redis: string; concurrency?: number; queue?: string; lockMs?: number }) => {
      const { runWorker } = await import('./distributed.js');
      await runWorker({
        url: o.redis,
        ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
        ...(o.queue !== undefined ? { queue: o.queue } : {}),
        ...(o.lockMs !== undefined ? { lockMs: o.lockMs } : {}),
        log: (l) => process.stderr.write(`${l}\n`),
      });
    });

  p.command('plugins')
    .description('list installed plugins and what each provides')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const plugins = await loadFrom(installedPluginNames(), process.cwd());
      const rows = plugins.map((pl) => ({
        package: pl.meta.name,
        version: pl.meta.version,
        provides: Object.fromEntries(
          (['neurons', 'rules', 'backends', 'datasets', 'surrogates', 'losses', 'kernels', 'exporters'] as const)
            .filter((k) => pl[k]?.length)
            .map((k) => [k, pl[k]!.map((x) => ('name' in x ? x.name : `${x.kernel}@${x.backend}`))]),
        ),
      }));
      if (o.json) {
        print(rows);
        return;
      }
      for (const r of rows) {
        print(`${r.package}@${r.version}`);
        for (const [k, v] of Object.entries(r.provides)) print(`  ${k}: ${(v as string[]).join(', ')}`);
      }
    });

  p.command('info')
    .description('backends, threads and versions of this installation')
    .option('--backend <name>', 'activate and describe this backend', 'wasm')
    .action(async (o: { backend: string }) => {
      const registry = await registryOf(installedPluginNames(), process.cwd());
      const b = registry.backends.get(o.backend);
      if (!b) throw new SpikeflowError('UNKNOWN_NAME', `backend '${o.backend}' is not installed (installed: ${[...registry.backends.keys()].join(', ')})`);
      await b.activate();
      print({
        spikeflow: pkg.version,
        node: process.versions.node,
        tfjs: tf.version_core,
        platform: `${os.platform()} ${os.arch()}`,
        cpu: os.cpus()[0]?.model,
        cores: os.cpus().length,
        backend: b.describe(),
        backends: [...registry.backends.keys()],
        available: Object.fromEntries(await Promise.all([...registry.backends.values()].map(async (x) => [x.name, await x.isAvailable()] as const))),
        plugins: Object.fromEntries(registry.plugins.map((pl) => [pl.meta.name, pl.meta.version])),
      });
    });

  p.command('new')
    .description('write a new plugin package from templates: its code, tests that run its conformance suite and pass as written, package.json, tsconfig')
    .argument('<kind>', `what the plugin provides: ${PLUGIN_KINDS.join(', ')}`)
    .argument('<name>', 'its name: lowercase letters, digits and hyphens (the package is spikeflow-<kind>-<name>)')
    .option('--dir <path>', 'where to write the package (default: ./spikeflow-<kind>-<name>); it must not exist, or be empty')
    .option('--scope <scope>', 'npm scope of the package name (--scope @acme gives @acme/spikeflow-<kind>-<name>)')
    .action((kind: string, name: string, o: { dir?: string; scope?: string }) => {
      print(newSummary(newPlugin(kind, name, o)));
    });

  p.addCommand(benchCommand('bench'));

  const data = p.command('data').description('dataset files');
  data
    .command('inspect')
    .description('print a JSON summary of a dataset file (samples, shape, classes, label histogram)')
    .argument('<path>', 'data file')
    .option('--format <name>', 'file format (default: recognised by the installed dataset plugins from the name or the first bytes)')
    .action(async (path: string, o: { format?: string }) => {
      const registry = await registryOf(installedPluginNames(), process.cwd());
      const readers = [...registry.datasets.values()].filter((d) => d.inspect && d.formats?.length);
      const known = [...new Set(readers.flatMap((d) => d.formats ?? []))];
      let format = o.format;
      for (const d of readers) format ??= await d.detect?.(path);
      if (!format)
        throw new SpikeflowError(
          'CONFIG_INVALID',
          `data inspect: cannot guess the format of ${path}; pass --format (${known.join(', ') || 'no dataset plugin reads files'})`,
          { path: '--format' },
        );
      const reader = readers.find((d) => d.formats!.includes(format));
      if (!reader)
        throw new SpikeflowError('UNKNOWN_NAME', `data inspect: no installed dataset plugin reads format '${format}' (known: ${known.join(', ') || 'none'})`, {
          path: '--format',
        });
      print(await reader.inspect!(path, format));
    });

  return p;
}

/** Runs the CLI; returns the exit code. SpikeflowErrors print their message (and code) only. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    await program().parseAsync(argv as string[], { from: 'user' });
    return 0;
  } catch (e) {
    if (isSpikeflowError(e)) {
      process.stderr.write(`spikeflow: ${e.message} [${e.code}]\n`);
      return 1;
    }
    if (e && typeof e === 'object' && 'exitCode' in e && typeof (e as { exitCode: unknown }).exitCode === 'number') return (e as { exitCode: number }).exitCode;
    process.stderr.write(`spikeflow: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
    return 2;
  }
}

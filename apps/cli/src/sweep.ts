import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { SpikeflowError, createRng, deriveSeed, isPlainObject, isSpikeflowError, parseRunConfig, type RunConfig } from '@spikeflow/core';
import { readConfigFile } from './files.js';
import { Pruner, parsePruner, type Mode, type PrunerSpec } from './prune.js';
import { evaluations, runTrial, type TrialRow } from './trial.js';

export type { TrialRow } from './trial.js';

/**
 * Hyper-parameter sweeps: a base run config, a search space over fields of it, and trials that are
 * ordinary `spikeflow train` runs, each in its own run directory under the sweep's root. A trial's
 * id is `<sweep>:<index>`; its config depends on the sweep file alone, so running the sweep again
 * adds nothing twice: finished and pruned trials are kept, unfinished ones resume from their
 * checkpoints, failed ones run again.
 */

/** One dimension of the search space. */
export type Dimension =
  | { readonly kind: 'choice'; readonly values: readonly unknown[] }
  | { readonly kind: 'range'; readonly low: number; readonly high: number; readonly int: boolean; readonly steps?: number }
  | { readonly kind: 'log'; readonly low: number; readonly high: number; readonly steps?: number };

export interface SweepSpec {
  readonly name: string;
  /** The sweep file (absolute). */
  readonly file: string;
  readonly base: Record<string, unknown>;
  /** Dotted paths into the run config (`optimizer.lr`, `model.layers.0.params.beta`), in file order. */
  readonly space: ReadonlyMap<string, Dimension>;
  readonly search: { readonly kind: 'grid' } | { readonly kind: 'random'; readonly trials: number; readonly seed: number };
  readonly metric: { readonly split: string; readonly name: 'loss' | 'accuracy'; readonly mode: Mode };
  readonly prune: PrunerSpec;
  /** Where the trials' run directories and `results.jsonl` go (absolute). */
  readonly root: string;
}

export interface Trial {
  readonly index: number;
  readonly id: string;
  readonly params: Readonly<Record<string, unknown>>;
  readonly config: RunConfig;
  readonly dir: string;
}

const fail = (path: string, why: string): never => {
  throw new SpikeflowError('CONFIG_INVALID', `${path}: ${why}`, { path });
};

const SWEEP_KEYS = ['name', 'base', 'space', 'search', 'metric', 'prune', 'root', 'description'];

function dimensionOf(value: unknown, path: string): Dimension {
  if (Array.isArray(value)) {
    if (value.length === 0) fail(path, 'an empty list of values');
    return { kind: 'choice', values: value };
  }
  if (!isPlainObject(value)) return fail(path, `a list of values, { range: [low, high] } or { log: [low, high] }, got ${JSON.stringify(value)}`);
  const pair = (key: string) => {
    const v = value[key];
    if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => typeof x === 'number' && Number.isFinite(x)) || !((v[0] as number) < (v[1] as number)))
      fail(`${path}.${key}`, `expected [low, high] with low < high, got ${JSON.stringify(v)}`);
    return v as [number, number];
  };
  const steps = value['steps'] as number | undefined;
  if (steps !== undefined && (typeof steps !== 'number' || !Number.isInteger(steps) || steps < 2))
    fail(`${path}.steps`, `must be an integer >= 2, got ${JSON.stringify(steps)}`);
  for (const k of Object.keys(value)) if (!['range', 'log', 'int', 'steps'].includes(k)) fail(`${path}.${k}`, 'unknown key (range, log, int, steps)');
  if ('range' in value) {
    const [low, high] = pair('range');
    return { kind: 'range', low, high, int: value['int'] === true, ...(steps !== undefined ? { steps } : {}) };
  }
  if ('log' in value) {
    const [low, high] = pair('log');
    if (!(low > 0)) fail(`${path}.log`, 'a log range needs low > 0');
    return { kind: 'log', low, high, ...(steps !== undefined ? { steps } : {}) };
  }
  return fail(path, 'expected { range: [low, high] } or { log: [low, high] }');
}

/** Reads and checks a sweep file (YAML or JSON); the base config's path is relative to it. */
export async function readSweep(file: string): Promise<SweepSpec> {
  const path = resolve(file);
  const raw = await readConfigFile(path);
  if (!isPlainObject(raw)) return fail(path, 'a sweep file holds an object (base, space, search, metric, prune, root)');
  for (const k of Object.keys(raw)) if (!SWEEP_KEYS.includes(k)) fail(`${path}: ${k}`, `unknown key (allowed: ${SWEEP_KEYS.join(', ')})`);
  const name = raw['name'] ?? basename(path, extname(path));
  if (typeof name !== 'string' || !/^[A-Za-z0-9][\w.-]*$/.test(name))
    fail('name', `a sweep's name is letters, digits, '.', '_' and '-', got ${JSON.stringify(name)}`);
  const b = raw['base'];
  const base = typeof b === 'string' ? await readConfigFile(resolve(dirname(path), b)) : b;
  if (!isPlainObject(base)) return fail('base', 'the base run config: a file path relative to the sweep file, or the config itself');
  parseRunConfig(base);
  const rawSpace = raw['space'];
  if (!isPlainObject(rawSpace) || Object.keys(rawSpace).length === 0) fail('space', 'the search space: { "<dotted path>": values | { range } | { log }, ... }');
  const space = new Map(Object.entries(rawSpace as Record<string, unknown>).map(([k, v]) => [k, dimensionOf(v, `space.${k}`)] as const));
  const s = raw['search'] ?? { kind: 'grid' };
  let search: SweepSpec['search'];
  if (s === 'grid' || (isPlainObject(s) && s['kind'] === 'grid')) search = { kind: 'grid' };
  else if (isPlainObject(s) && s['kind'] === 'random') {
    const trials = s['trials'];
    const seed = s['seed'] ?? 0;
    if (typeof trials !== 'number' || !Number.isInteger(trials) || trials < 1)
      fail('search.trials', `a random search needs a number of trials >= 1, got ${JSON.stringify(trials)}`);
    if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0) fail('search.seed', `must be a non-negative integer, got ${JSON.stringify(seed)}`);
    search = { kind: 'random', trials: trials as number, seed: seed as number };
  } else search = fail('search', `expected grid or { kind: random, trials, seed }, got ${JSON.stringify(s)}`);
  const m = raw['metric'] ?? { name: 'loss' };
  if (!isPlainObject(m)) return fail('metric', `expected { name: loss | accuracy, mode: min | max, split }, got ${JSON.stringify(m)}`);
  const metricName = m['name'] ?? 'loss';
  if (metricName !== 'loss' && metricName !== 'accuracy') fail('metric.name', `loss or accuracy, got ${JSON.stringify(metricName)}`);
  const mode = m['mode'] ?? (metricName === 'loss' ? 'min' : 'max');
  if (mode !== 'min' && mode !== 'max') fail('metric.mode', `min or max, got ${JSON.stringify(mode)}`);
  const split = m['split'] ?? 'test';
  if (typeof split !== 'string') fail('metric.split', 'a split name');
  const root = raw['root'] ?? join('runs', 'sweeps');
  if (typeof root !== 'string') fail('root', 'a directory');
  return {
    name: name as string,
    file: path,
    base,
    space,
    search,
    metric: { split: split as string, name: metricName as 'loss' | 'accuracy', mode: mode as Mode },
    prune: parsePruner(raw['prune'], 'prune'),
    root: resolve(dirname(path), root as string, name as string),
  };
}

/** The points of a dimension a grid visits. */
function gridOf(d: Dimension, path: string): readonly unknown[] {
  if (d.kind === 'choice') return d.values;
  if (d.steps === undefined) return fail(path, `a grid search needs a list of values, or "steps" on a ${d.kind} range`);
  const n = d.steps;
  return Array.from({ length: n }, (_, i) => {
    const u = i / (n - 1);
    if (d.kind === 'log') return Math.exp(Math.log(d.low) + u * (Math.log(d.high) - Math.log(d.low)));
    const v = d.low + u * (d.high - d.low);
    return d.int ? Math.round(v) : v;
  });
}

/** One random draw from a dimension. */
function drawOf(d: Dimension, rand: () => number): unknown {
  if (d.kind === 'choice') return d.values[Math.floor(rand() * d.values.length)];
  const u = rand();
  if (d.kind === 'log') return Math.exp(Math.log(d.low) + u * (Math.log(d.high) - Math.log(d.low)));
  return d.int ? Math.floor(d.low + u * (d.high - d.low + 1)) : d.low + u * (d.high - d.low);
}

/** `config` with the field at dotted `path` set to `value` (a copy; objects along the path are made where missing). */
export function withField(config: Record<string, unknown>, path: string, value: unknown): Record<string, unknown> {
  const keys = path.split('.');
  const copy = structuredClone(config);
  let at: Record<string, unknown> | unknown[] = copy;
  keys.forEach((k, i) => {
    const last = i === keys.length - 1;
    if (Array.isArray(at)) {
      const j = Number(k);
      if (!Number.isInteger(j) || j < 0 || j >= at.length)
        fail(`space.${path}`, `'${k}' is no index of the list at '${keys.slice(0, i).join('.')}' (${at.length} entries)`);
      if (last) at[j] = value;
      else at = at[j] as Record<string, unknown>;
    } else {
      if (last) at[k] = value;
      else {
        if (at[k] === undefined) at[k] = {};
        if (typeof at[k] !== 'object' || at[k] === null)
          fail(`space.${path}`, `'${keys.slice(0, i + 1).join('.')}' is ${JSON.stringify(at[k])}, not an object or list`);
        at = at[k] as Record<string, unknown>;
      }
    }
  });
  return copy;
}

/** Every trial of a sweep, with its config checked (`CONFIG_INVALID` naming the trial and the field). */
export function trialsOf(spec: SweepSpec): Trial[] {
  const paths = [...spec.space.keys()];
  let points: Record<string, unknown>[];
  if (spec.search.kind === 'grid') {
    points = [{}];
    for (const p of paths) points = points.flatMap((pt) => gridOf(spec.space.get(p)!, `space.${p}`).map((v) => ({ ...pt, [p]: v })));
  } else {
    const { trials, seed } = spec.search;
    // Each trial draws from its own seed: adding trials to a sweep leaves the earlier ones as they were.
    points = Array.from({ length: trials }, (_, i) => {
      const rand = createRng(deriveSeed(seed, spec.name, 'trial', i));
      return Object.fromEntries(paths.map((p) => [p, drawOf(spec.space.get(p)!, rand)]));
    });
  }
  const width = String(points.length - 1).length;
  return points.map((params, index) => {
    let config = spec.base;
    for (const [p, v] of Object.entries(params)) config = withField(config, p, v);
    let parsed: RunConfig;
    try {
      parsed = parseRunConfig(config);
    } catch (e) {
      if (!isSpikeflowError(e)) throw e;
      throw new SpikeflowError(
        'CONFIG_INVALID',
        `trial ${spec.name}:${index} (${JSON.stringify(params)}): ${e.message}`,
        { ...e.details, trial: index },
        { cause: e },
      );
    }
    return { index, id: `${spec.name}:${index}`, params, config: parsed, dir: join(spec.root, `trial-${String(index).padStart(width, '0')}`) };
  });
}

export const RESULTS = 'results.jsonl';

/** The sweep's rows, the last one per trial (a trial run again replaces its row). */
export function readRows(spec: SweepSpec): Map<string, TrialRow> {
  const path = join(spec.root, RESULTS);
  const rows = new Map<string, TrialRow>();
  if (!existsSync(path)) return rows;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as TrialRow;
      if (typeof r.id === 'string') rows.set(r.id, r);
    } catch {
      // a line cut short by a crash: that trial runs again
    }
  }
  return rows;
}

export interface SweepFlags {
  /** Trials run at once, each a child process (default 1). */
  readonly local?: number;
  /** Queue the trials on BullMQ at this Redis (`redis://host:port`) for `spikeflow worker`s instead. */
  readonly redis?: string;
  readonly queue?: string;
  /** Progress lines (default: stderr). */
  readonly log?: (line: string) => void;
}

/**
 * Runs a sweep's trials that have no final row yet — in `local` child processes (`spikeflow train`,
 * resuming a trial that has a checkpoint), or with `redis` as BullMQ jobs for `spikeflow worker`s —
 * pruning by the sweep's rule from the evaluations each trial logs; appends one row per trial to
 * `<root>/results.jsonl`. Returns every trial's row.
 */
export async function runSweep(file: string, { local = 1, redis, queue, log = (l) => process.stderr.write(`${l}\n`) }: SweepFlags = {}): Promise<TrialRow[]> {
  const spec = await readSweep(file);
  const trials = trialsOf(spec);
  mkdirSync(spec.root, { recursive: true });
  const rows = readRows(spec);
  const pruner = new Pruner(spec.prune, spec.metric.mode);
  // A restarted coordinator's pruner starts from what the trials logged.
  for (const t of trials) {
    const r = rows.get(t.id);
    if (!r || r.status === 'failed') continue;
    for (const [epoch, v] of evaluations(spec.metric, t.dir).values) pruner.report(t.id, epoch, v, t.config.train.epochs);
    if (r.status === 'done') pruner.finished(t.id);
  }
  const todo = trials.filter((t) => {
    const r = rows.get(t.id);
    return !r || r.status === 'failed';
  });
  if (todo.length < trials.length) log(`sweep ${spec.name}: ${trials.length - todo.length} of ${trials.length} trials already have their result`);
  const threads = process.env['SPIKEFLOW_THREADS'] ?? String(Math.max(1, Math.floor(os.cpus().length / local)));
  const waiting = [...todo];
  const record = (row: TrialRow) => {
    appendFileSync(join(spec.root, RESULTS), `${JSON.stringify(row)}\n`);
    rows.set(row.id, row);
    const value = row.value !== undefined ? ` (${spec.metric.name} ${row.value.toFixed(4)})` : '';
    log(`${row.id} ${row.status}${value}${row.worker ? ` on ${row.worker}` : ''}${row.note ? `: ${row.note}` : ''}`);
  };
  const runOne = async (t: Trial): Promise<void> => {
    const row = await runTrial(
      { id: t.id, index: t.index, params: t.params, config: t.config, dir: t.dir, metric: spec.metric, pruneKind: spec.prune.kind, threads },
      { onEval: (epoch, v) => pruner.report(t.id, epoch, v, t.config.train.epochs), log },
    );
    if (row.status === 'done') pruner.finished(t.id);
    record(row);
  };
  if (redis) {
    const { runOnRedis } = await import('./distributed.js');
    await runOnRedis(
      todo.map((t) => ({
        id: t.id,
        index: t.index,
        params: t.params,
        config: t.config,
        dir: t.dir,
        metric: spec.metric,
        pruneKind: spec.prune.kind,
        threads: '',
      })),
      {
        url: redis,
        ...(queue !== undefined ? { queue } : {}),
        log,
        pruner,
        epochs: (j) => j.config.train.epochs,
        onRow: (row) => {
          if (rows.get(row.id)?.time !== row.time) record(row);
        },
      },
    );
    return trials.map((t) => rows.get(t.id)!).filter(Boolean);
  }
  await Promise.all(
    Array.from({ length: Math.max(1, local) }, async () => {
      for (let t = waiting.shift(); t; t = waiting.shift()) await runOne(t);
    }),
  );
  return trials.map((t) => rows.get(t.id)!).filter(Boolean);
}

/** The trials' rows in trial order, and the best finished one by the sweep's metric. */
export async function sweepResults(file: string): Promise<{ spec: SweepSpec; trials: Trial[]; rows: TrialRow[]; best?: TrialRow }> {
  const spec = await readSweep(file);
  const trials = trialsOf(spec);
  const all = readRows(spec);
  const rows = trials.map((t) => all.get(t.id)).filter((r): r is TrialRow => r !== undefined);
  const done = rows.filter((r) => r.status === 'done' && r.value !== undefined && Number.isFinite(r.value));
  const best = done.reduce<TrialRow | undefined>((b, r) => (!b || (spec.metric.mode === 'min' ? r.value! < b.value! : r.value! > b.value!) ? r : b), undefined);
  return { spec, trials, rows, ...(best ? { best } : {}) };
}

/** A printed table of rows (trial, status, metric, epochs, seconds, parameters). */
export function table(spec: SweepSpec, rows: readonly TrialRow[], best?: TrialRow): string {
  const head = ['trial', 'status', spec.metric.name, 'epochs', 'seconds', ...spec.space.keys()];
  const fmt = (v: unknown) => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : JSON.stringify(v));
  const lines = rows.map((r) => [
    `${r.id}${best && r.id === best.id ? ' *' : ''}`,
    r.status,
    r.value !== undefined ? r.value.toFixed(4) : '-',
    String(r.epochs),
    r.seconds.toFixed(1),
    ...[...spec.space.keys()].map((k) => fmt(r.params[k])),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  return [head, ...lines]
    .map((l) =>
      l
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Writes the best trial's run config to `out` (YAML or JSON by its extension). */
export async function exportBest(file: string, out: string): Promise<{ best: TrialRow; path: string }> {
  const { spec, trials, best } = await sweepResults(file);
  if (!best) throw new SpikeflowError('CONFIG_INVALID', `sweep ${spec.name}: no finished trial yet (run: spikeflow sweep ${file})`, { path: file });
  const config = trials[best.trial]!.config;
  const path = resolve(out);
  const ext = extname(path).toLowerCase();
  await writeFile(path, ext === '.yaml' || ext === '.yml' ? toYaml(config) : `${JSON.stringify(config, null, 2)}\n`);
  return { best, path };
}

import 'reflect-metadata';
import { container as rootContainer, type DependencyContainer, type InjectionToken } from 'tsyringe';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire, isBuiltin } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SpikeflowError } from './errors.js';
import type { AnyNeuronModel } from './neuron.js';
import { builtinReadouts, type AnyReadout } from './readout.js';
import type { LearningRule, RuleEntry } from './rule.js';
import type { Backend } from './backend.js';
import type { Dataset, DatasetContext, DatasetEntry } from './dataset.js';
import type { SurrogateEntry } from './surrogates.js';
import { builtinSurrogates } from './surrogates.js';
import type { KernelRegistration } from './kernels.js';
import { KernelTable } from './kernels.js';
import type { TemporalLoss } from './losses.js';
import { builtinLosses } from './losses.js';
import { closest, isPlainObject, parseSchema } from './validate.js';

/** A file in an exporter's format, written: its bytes and what the user should know about the conversion. */
export interface ExportedModel {
  readonly bytes: Uint8Array;
  /** What did not survive, or survives changed (a reset NIR cannot express, a time step the file does not store). */
  readonly notes: readonly string[];
}

/** A model read from another format: a spec, its parameters, and the conversion's notes. */
export interface ImportedModel {
  readonly model: import('./model.js').ModelSpec;
  /** Parameter values by name (`layers.0.W`, `readout.W`, ...), row-major, for `Network.setParams`. */
  readonly params: Readonly<Record<string, Float32Array>>;
  readonly notes: readonly string[];
  /** Packages providing the neurons and readouts the spec names (for a run config's `plugins`). */
  readonly plugins: readonly string[];
}

/**
 * Moves trained networks to and from another format (NIR, ...): `export` writes a network (its
 * model and current parameters); `import`, where the format can be read back, gives a model spec
 * and parameters to build a network from. Options are the format's own (NIR's time step, ...).
 */
export interface ExporterEntry {
  readonly name: string;
  readonly description: string;
  /** The usual file name extension, without the dot (`nir`). */
  readonly extension?: string;
  export(network: import('./network.js').Network, options: Record<string, unknown>): Promise<ExportedModel>;
  import?(bytes: Uint8Array, options: Record<string, unknown>): Promise<ImportedModel>;
}

/**
 * A spikeflow plugin: a plain object, default-exported by its package. It names itself and lists
 * what it provides; it never touches the DI container (core's loader registers its contents).
 *
 * ```ts
 * export default definePlugin({
 *   meta: { name: pkg.name, version: pkg.version },
 *   neurons: [myNeuron],
 * });
 * ```
 */
export interface SpikeflowPlugin {
  readonly meta: { readonly name: string; readonly version: string };
  readonly neurons?: readonly AnyNeuronModel[];
  /** Readout kinds (`"readout": { "kind": name }`) besides core's `leaky`. */
  readonly readouts?: readonly AnyReadout[];
  // biome-ignore lint/suspicious/noExplicitAny: entries keep their own option types
  readonly rules?: readonly RuleEntry<any>[];
  readonly backends?: readonly Backend[];
  // biome-ignore lint/suspicious/noExplicitAny: entries keep their own option types
  readonly datasets?: readonly DatasetEntry<any>[];
  readonly surrogates?: readonly SurrogateEntry[];
  readonly losses?: readonly TemporalLoss[];
  readonly kernels?: readonly KernelRegistration[];
  readonly exporters?: readonly ExporterEntry[];
}

export function definePlugin<P extends SpikeflowPlugin>(plugin: P): P {
  return plugin;
}

/** A typed DI token: a symbol that remembers the type registered under it. */
export type Token<T> = symbol & { readonly __type?: T };
export function token<T>(description: string): Token<T> {
  return Symbol(description) as Token<T>;
}

/** Core's tokens. Each holds many registrations (one per provided item); resolve them with `resolveAll`. */
export const Tokens = {
  plugins: token<SpikeflowPlugin>('spikeflow.plugin'),
  neurons: token<AnyNeuronModel>('spikeflow.neuron'),
  readouts: token<AnyReadout>('spikeflow.readout'),
  rules: token<RuleEntry>('spikeflow.rule'),
  backends: token<Backend>('spikeflow.backend'),
  datasets: token<DatasetEntry>('spikeflow.dataset'),
  surrogates: token<SurrogateEntry>('spikeflow.surrogate'),
  losses: token<TemporalLoss>('spikeflow.loss'),
  kernels: token<KernelRegistration>('spikeflow.kernel'),
  exporters: token<ExporterEntry>('spikeflow.exporter'),
} as const;

type ProvidedKey = Exclude<keyof SpikeflowPlugin, 'meta'>;
const PROVIDED: readonly ProvidedKey[] = ['neurons', 'readouts', 'rules', 'backends', 'datasets', 'surrogates', 'losses', 'kernels', 'exporters'];

/**
 * Checks that `value` is a plugin object: `meta.name`/`meta.version` strings, only known keys
 * (like Babel, an unknown key is an error, not silently ignored), arrays of named items.
 */
export function validatePlugin(value: unknown, source: string): SpikeflowPlugin {
  const fail = (msg: string) =>
    new SpikeflowError('PLUGIN_INVALID', `plugin '${source}': ${msg}. A plugin default-exports { meta: { name, version }, neurons?, rules?, ... }`, {
      package: source,
    });
  if (!isPlainObject(value)) {
    const what = value === undefined ? 'missing' : value === null ? 'null' : Array.isArray(value) ? 'an array' : `a ${typeof value}`;
    throw fail(`the default export is ${what}, not a plugin object`);
  }
  for (const key of Object.keys(value)) {
    if (key !== 'meta' && !(PROVIDED as readonly string[]).includes(key)) {
      const guess = closest(key, ['meta', ...PROVIDED]);
      throw fail(`unknown key '${key}'${guess ? ` (did you mean '${guess}'?)` : ''}; allowed: meta, ${PROVIDED.join(', ')}`);
    }
  }
  const meta = value['meta'];
  if (!isPlainObject(meta) || typeof meta['name'] !== 'string' || typeof meta['version'] !== 'string') {
    throw fail('meta must be { name: string, version: string }');
  }
  for (const key of PROVIDED) {
    const list = value[key];
    if (list === undefined) continue;
    if (!Array.isArray(list)) throw fail(`'${key}' must be an array`);
    list.forEach((item: unknown, i) => {
      const named = isPlainObject(item) && typeof item['name'] === 'string';
      const kernel = key === 'kernels' && isPlainObject(item) && typeof item['kernel'] === 'string';
      if (!named && !kernel) throw fail(`${key}[${i}] must be an object with a string 'name'`);
    });
  }
  return value as unknown as SpikeflowPlugin;
}

/** A child container for one experiment (tests and apps override providers in it). */
export function createContainer(parent: DependencyContainer = rootContainer): DependencyContainer {
  return parent.createChildContainer();
}

/** Registers a plugin's contents under core's tokens. Core's own surrogates and losses are registered by {@link createRegistry}. */
export function registerPlugin(c: DependencyContainer, plugin: SpikeflowPlugin): void {
  c.register(Tokens.plugins, { useValue: plugin });
  for (const key of PROVIDED) {
    for (const item of plugin[key] ?? []) c.register(Tokens[key] as InjectionToken<unknown>, { useValue: item });
  }
}

function all<T>(c: DependencyContainer, t: Token<T>): T[] {
  return c.isRegistered(t, true) ? c.resolveAll(t) : [];
}

/** Everything the loaded plugins provide, by name: the values a composition root passes inward. */
export interface Registry {
  readonly plugins: readonly SpikeflowPlugin[];
  readonly neurons: ReadonlyMap<string, AnyNeuronModel>;
  /** Readout kinds, core's `leaky` included. */
  readonly readouts: ReadonlyMap<string, AnyReadout>;
  /** Rule entries that validate their options (see {@link validatingRuleEntry}). */
  readonly rules: ReadonlyMap<string, RegisteredRule>;
  readonly backends: ReadonlyMap<string, Backend>;
  /** Dataset entries that validate their options (see {@link validatingDatasetEntry}). */
  readonly datasets: ReadonlyMap<string, RegisteredDataset>;
  readonly surrogates: ReadonlyMap<string, SurrogateEntry>;
  readonly losses: ReadonlyMap<string, TemporalLoss>;
  readonly exporters: ReadonlyMap<string, ExporterEntry>;
  /** Fast kernels of every backend plugin (and of plugins that ship only kernels). */
  readonly kernels: KernelTable;
}

/**
 * A rule entry as a registry hands it out: `create` takes options as a caller has them (a config's
 * section, an object in code; absent for all defaults) and parses them with the entry's schema.
 */
export interface RegisteredRule extends Omit<RuleEntry, 'create'> {
  create(options?: Readonly<Record<string, unknown>>): LearningRule;
}

/** A dataset entry as a registry hands it out: `open` takes options as a caller has them and parses them with the entry's schema. */
export interface RegisteredDataset extends Omit<DatasetEntry, 'open'> {
  open(options: Readonly<Record<string, unknown>>, ctx: DatasetContext): Promise<Dataset>;
}

/** Entries made by {@link validatingRuleEntry} and {@link validatingDatasetEntry} (never wrapped twice). */
const validating = new WeakSet<object>();

/**
 * The rule entry a registry hands out: `create` parses its options with the entry's schema first
 * (defaults filled, unknown keys and bad values refused as `CONFIG_INVALID` naming `rule.<field>`),
 * so that every path to a rule validates, whoever calls it. Parsing is idempotent: options that
 * were parsed already (by `ruleFromSpec`) pass unchanged.
 */
export function validatingRuleEntry(entry: RuleEntry, path = 'rule'): RegisteredRule {
  if (validating.has(entry)) return entry;
  const wrapped: RegisteredRule = { ...entry, create: (options) => entry.create(parseSchema(entry.optionsSchema, options, path)) };
  validating.add(wrapped);
  return wrapped;
}

/**
 * The dataset entry a registry hands out: `open` parses its options with the entry's schema first
 * (`CONFIG_INVALID` naming `data.<field>`, as a rejected promise). Idempotent on parsed options.
 */
export function validatingDatasetEntry(entry: DatasetEntry, path = 'data'): RegisteredDataset {
  if (validating.has(entry)) return entry;
  const wrapped: RegisteredDataset = { ...entry, open: async (options, ctx) => entry.open(parseSchema(entry.optionsSchema, options, path), ctx) };
  validating.add(wrapped);
  return wrapped;
}

/**
 * Resolves a container's registrations into a {@link Registry}, with core's surrogates and
 * losses included. Two providers of one name are a `PLUGIN_CONFLICT` error naming both plugins.
 * Rule and dataset entries are handed out validating their options (see
 * {@link validatingRuleEntry}, {@link validatingDatasetEntry}).
 */
export function resolveRegistry(c: DependencyContainer): Registry {
  const plugins = all(c, Tokens.plugins);
  const owner = new Map<unknown, string>();
  for (const p of plugins) for (const key of PROVIDED) for (const item of p[key] ?? []) owner.set(item, p.meta.name);
  const byName = <T extends { name: string }>(kind: string, items: readonly T[]): Map<string, T> => {
    const m = new Map<string, T>();
    for (const item of items) {
      const prev = m.get(item.name);
      if (prev && prev !== item) {
        throw new SpikeflowError(
          'PLUGIN_CONFLICT',
          `${kind} '${item.name}' is provided by both '${owner.get(prev) ?? '@spikeflow/core'}' and '${owner.get(item) ?? '@spikeflow/core'}'; load only one of them`,
          { name: item.name },
        );
      }
      m.set(item.name, item);
    }
    return m;
  };
  const kernels = new KernelTable();
  for (const k of all(c, Tokens.kernels)) kernels.register(k);
  for (const b of all(c, Tokens.backends)) for (const k of b.kernels ?? []) kernels.register(k);
  return {
    plugins,
    neurons: byName('neuron', all(c, Tokens.neurons)),
    readouts: byName('readout', [...builtinReadouts, ...all(c, Tokens.readouts)]),
    rules: mapValues(byName('rule', all(c, Tokens.rules)), (e) => validatingRuleEntry(e)),
    backends: byName('backend', all(c, Tokens.backends)),
    datasets: mapValues(byName('dataset', all(c, Tokens.datasets)), (e) => validatingDatasetEntry(e)),
    surrogates: byName('surrogate', [...builtinSurrogates, ...all(c, Tokens.surrogates)]),
    losses: byName('loss', [...builtinLosses, ...all(c, Tokens.losses)]),
    exporters: byName('exporter', all(c, Tokens.exporters)),
    kernels,
  };
}

function mapValues<K, V, W>(m: ReadonlyMap<K, V>, fn: (v: V) => W): Map<K, W> {
  return new Map([...m].map(([k, v]) => [k, fn(v)]));
}

/** Builds a registry from plugin objects (already imported) in a fresh child container. */
export function createRegistry(plugins: readonly SpikeflowPlugin[], parent?: DependencyContainer): Registry {
  const c = createContainer(parent);
  for (const p of plugins) registerPlugin(c, validatePlugin(p, p?.meta?.name ?? 'unnamed plugin'));
  return resolveRegistry(c);
}

export interface LoadOptions {
  /**
   * Where package names are resolved from: a directory or file path/URL (default: the current
   * working directory). Apps pass their own location or the config file's directory.
   */
  readonly from?: string | URL;
}

/**
 * Imports plugin packages by name and validates their default exports. A package that is not
 * installed is a `PLUGIN_NOT_FOUND` error naming it and the command that installs it.
 */
export async function loadPlugins(names: readonly string[], { from = process.cwd() }: LoadOptions = {}): Promise<SpikeflowPlugin[]> {
  const base = typeof from === 'string' && !from.startsWith('file:') ? `${from.replace(/\/$/, '')}/` : from;
  const require = createRequire(base);
  const out: SpikeflowPlugin[] = [];
  for (const name of names) {
    if (typeof name !== 'string' || name.length === 0) {
      throw new SpikeflowError('CONFIG_INVALID', `plugins: expected package names, got ${JSON.stringify(name)}`, { path: 'plugins' });
    }
    let resolved: string;
    try {
      resolved = require.resolve(name);
    } catch (cause) {
      const pkgJson = (cause as { code?: string; path?: string }).path;
      if ((cause as { code?: string }).code === 'MODULE_NOT_FOUND' && pkgJson?.endsWith('package.json')) {
        throw new SpikeflowError(
          'PLUGIN_INVALID',
          `plugin package '${name}' is installed (${pkgJson}) but its entry point is missing: is it built? (pnpm build)`,
          { package: name },
          { cause },
        );
      }
      throw new SpikeflowError(
        'PLUGIN_NOT_FOUND',
        `plugin package '${name}' is not installed (looked from ${String(from)}). Install it with: pnpm add ${name}   (or: npm install ${name})`,
        { package: name, install: `pnpm add ${name}` },
        { cause },
      );
    }
    const mod = (await import(pathToFileURL(resolved).href)) as { default?: unknown };
    out.push(validatePlugin(mod.default, name));
  }
  return out;
}

/** An npm package name (optionally scoped), with no subpath. */
const PACKAGE_NAME = /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;

/** The directory `from` names: a directory, or the directory of a file path or file URL. */
function baseDir(from: string | URL): string {
  const p = from instanceof URL || from.startsWith('file:') ? fileURLToPath(from) : resolve(from);
  try {
    return statSync(p).isDirectory() ? p : dirname(p);
  } catch {
    return dirname(p);
  }
}

/** Where package `name` is installed as seen from `dir` (node_modules of it and of its parents), without running or resolving any of its code. */
function installedDir(name: string, dir: string): string | undefined {
  for (let d = dir; ; d = dirname(d)) {
    const candidate = join(d, 'node_modules', ...name.split('/'));
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(d) === d) return undefined;
  }
}

/** Why `spec`, read from a file, may not be loaded as a plugin (a string), or the directory it is installed from. */
function vet(spec: unknown, from: readonly (string | URL)[]): string | { readonly from: string } {
  if (typeof spec !== 'string' || spec.length === 0) return `${JSON.stringify(spec)} is not a package name`;
  if (/^[a-zA-Z]:[\\/]/.test(spec)) return `'${spec}' is a path, not an installed package`;
  if (/^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(spec)) return `'${spec}' is a URL, not an installed package`;
  if (/^[./\\~]/.test(spec) || spec.includes('\\')) return `'${spec}' is a path, not an installed package`;
  if (spec.length > 214 || !PACKAGE_NAME.test(spec)) return `'${spec}' is not a package name (a plugin is named by its package, with no subpath)`;
  if (isBuiltin(spec)) return `'${spec}' is a Node.js built-in module, not a plugin package`;
  const dirs = from.map(baseDir);
  const base = dirs.find((d) => installedDir(spec, d) !== undefined);
  const dir = base === undefined ? undefined : installedDir(spec, base);
  if (!dir || base === undefined)
    return `'${spec}' is not an installed package (looked from ${dirs.join(', ')}); install it (pnpm add ${spec}) if you trust it`;
  let meta: { name?: unknown; keywords?: unknown };
  try {
    meta = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as typeof meta;
  } catch {
    return `'${spec}' is installed at ${dir} but its package.json cannot be read`;
  }
  if (meta.name !== spec) return `'${spec}' is installed at ${dir} under another name (${JSON.stringify(meta.name)})`;
  if (!Array.isArray(meta.keywords) || !meta.keywords.includes('spikeflow-plugin')) {
    return `'${spec}' is installed but is not a spikeflow plugin package (its package.json lacks the keyword 'spikeflow-plugin')`;
  }
  return { from: base };
}

/** A plugin a file may name: its package name, and the directory it was found from (load it from there). */
export interface StoredPlugin {
  readonly name: string;
  readonly from: string;
}

export interface StoredPluginOptions {
  /** Where installed packages are looked for: directories, file paths or file URLs, in order. */
  readonly from: readonly (string | URL)[];
  /** What the names were read from (`checkpoint runs/a/checkpoint.sfck`), for messages. */
  readonly source: string;
  /** How the user can name plugins themselves instead, for messages (`pass --plugins <names>`). */
  readonly instead?: string;
}

/**
 * Checks plugin specifiers that come from a file's contents — a checkpoint's stored run config,
 * a file shared by someone else — before anything is imported. Such a file is data: it may name
 * plugins only **by package name**, among the packages installed where `from` looks, that declare
 * themselves spikeflow plugins (keyword `spikeflow-plugin`). A path, a URL, a subpath, a built-in
 * module or a package that is not installed is refused with `PLUGIN_REFUSED`, naming every
 * specifier refused and why; no module is imported or resolved. Each accepted name comes with the
 * directory it was found from: load it from there, so the package checked is the one imported. (A config the user passes on the
 * command line may still name a local plugin path: that is the user's choice, made there.)
 */
export function checkStoredPlugins(names: unknown, { from, source, instead }: StoredPluginOptions): StoredPlugin[] {
  if (!Array.isArray(names)) {
    throw new SpikeflowError('PLUGIN_REFUSED', `${source}: its plugin list is ${JSON.stringify(names)}, not a list of package names; nothing was imported`, {
      path: 'plugins',
    });
  }
  const vetted = names.map((n) => [n, vet(n, from)] as const);
  const refused = vetted.filter(([, v]) => typeof v === 'string');
  if (refused.length) {
    throw new SpikeflowError(
      'PLUGIN_REFUSED',
      `${source} names plugins that are loaded only by installed package name: ${refused.map(([, v]) => v).join('; ')}. Nothing was imported.${instead ? ` If you trust this file, ${instead}.` : ''}`,
      { path: 'plugins', specifiers: refused.map(([n]) => n) },
    );
  }
  return vetted.map(([n, v]) => ({ name: n as string, from: (v as { from: string }).from }));
}

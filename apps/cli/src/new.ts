import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SpikeflowError, didYouMean } from '@spikeflow/core';

/**
 * `spikeflow new <kind> <name>`: a plugin package written from the templates in `templates/`
 * (`common/` for every kind, then the kind's own directory). Template files end in `.tmpl`;
 * `__name__` in a path and `{{token}}` in a file are replaced, `gitignore` becomes `.gitignore`.
 * The package's `package.json` is built here, with the versions this CLI was released with.
 */

/** The kinds of plugin `spikeflow new` writes. */
export const PLUGIN_KINDS = ['neuron', 'rule', 'dataset', 'backend'] as const;
export type PluginKind = (typeof PLUGIN_KINDS)[number];

export interface NewOptions {
  /** Where to write the package (default: `./spikeflow-<kind>-<name>`); it must not exist, or be empty. */
  readonly dir?: string;
  /** An npm scope for the package name (`acme` or `@acme` gives `@acme/spikeflow-<kind>-<name>`). */
  readonly scope?: string;
  /** Resolves a relative `dir` (default: the working directory). */
  readonly cwd?: string;
}

export interface NewResult {
  readonly kind: PluginKind;
  /** The name of what the plugin provides (`"neuron": "<name>"` in a model spec). */
  readonly name: string;
  readonly packageName: string;
  /** The package's directory, absolute. */
  readonly dir: string;
  /** The files written, relative to `dir`, sorted. */
  readonly files: readonly string[];
}

const here = dirname(fileURLToPath(import.meta.url));
/** `templates/` beside `src/` and `dist/`. */
const templatesDir = resolve(here, '..', 'templates');

/** A name: lowercase letters and digits in words joined by single hyphens, starting with a letter. */
const NAME = /^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$/;
const SCOPE = /^@?[a-z0-9][a-z0-9._~-]*$/;

const DESCRIPTIONS: Record<PluginKind, (name: string) => string> = {
  neuron: (n) => `A spikeflow neuron plugin: the '${n}' neuron (leaky integrate-and-fire with subtractive reset)`,
  rule: (n) => `A spikeflow learning-rule plugin: '${n}', truncated BPTT on core's window engine`,
  dataset: (n) => `A spikeflow dataset plugin: '${n}', seeded synthetic spike patterns, one per class`,
  backend: (n) => `A spikeflow backend plugin: '${n}', TensorFlow.js' pure-JavaScript cpu backend`,
};

/** What each kind's tests need besides core, the testing kit, vitest, TypeScript and Node's types. */
const DEV_DEPENDENCIES: Record<PluginKind, readonly string[]> = {
  neuron: ['@spikeflow/backend-wasm'],
  rule: ['@spikeflow/backend-wasm', '@spikeflow/neuron-lif'],
  dataset: ['@spikeflow/backend-wasm'],
  backend: [],
};

/**
 * Writes a new plugin package of `kind` named `name`. Refuses an unknown kind, a name that is not
 * a package name segment, and a target that exists and is not an empty directory, before
 * writing anything; never overwrites a file.
 */
export function newPlugin(kind: string, name: string, options: NewOptions = {}): NewResult {
  if (!(PLUGIN_KINDS as readonly string[]).includes(kind)) {
    throw new SpikeflowError('UNKNOWN_NAME', `new: unknown plugin kind '${kind}'; ${didYouMean(kind, PLUGIN_KINDS)}`, { path: '<kind>', name: kind });
  }
  const k = kind as PluginKind;
  checkName(k, name);
  let scope: string | undefined;
  if (options.scope !== undefined) {
    if (!SCOPE.test(options.scope)) {
      throw new SpikeflowError(
        'CONFIG_INVALID',
        `new: --scope '${options.scope}' is not an npm scope (lowercase letters, digits, '-', '.', '_' or '~'; e.g. @acme)`,
        { path: '--scope' },
      );
    }
    scope = options.scope.replace(/^@/, '');
  }
  const unscoped = `spikeflow-${k}-${name}`;
  const packageName = scope ? `@${scope}/${unscoped}` : unscoped;
  const dir = resolve(options.cwd ?? process.cwd(), options.dir ?? unscoped);
  checkTarget(dir);

  const tokens: Record<string, string> = {
    name,
    camel: camelCase(name),
    Pascal: pascalCase(name),
    // The name as an object key: quoted where it is not an identifier.
    nameKey: /^[a-z][a-z0-9]*$/.test(name) ? name : `'${name}'`,
    package: packageName,
    kind: k,
  };
  const files = new Map<string, string>();
  for (const sub of ['common', k]) {
    for (const rel of listFiles(join(templatesDir, sub))) {
      const out = rel
        .replace(/\.tmpl$/, '')
        .replaceAll('__name__', name)
        .replace(/(^|\/)gitignore$/, '$1.gitignore');
      files.set(out, render(readFileSync(join(templatesDir, sub, rel), 'utf8'), tokens, `${sub}/${rel}`));
    }
  }
  files.set('package.json', `${JSON.stringify(packageJson(k, name, packageName), null, 2)}\n`);

  const written: string[] = [];
  for (const [rel, text] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
    const path = join(dir, rel);
    try {
      mkdirSync(dirname(path), { recursive: true });
      // `wx`: a file that appeared meanwhile is never overwritten.
      writeFileSync(path, text, { flag: 'wx' });
    } catch (cause) {
      throw new SpikeflowError(
        'IO_FAILED',
        `new: cannot write ${path}: ${(cause as Error).message}${written.length ? ` (written before it: ${written.join(', ')})` : ''}`,
        { path: '--dir' },
        { cause },
      );
    }
    written.push(rel);
  }
  return { kind: k, name, packageName, dir, files: written };
}

function checkName(kind: PluginKind, name: string): void {
  if (name.startsWith('spikeflow-')) {
    const short = name.replace(/^spikeflow-(?:(?:neuron|rule|dataset|backend)-)?/, '');
    throw new SpikeflowError(
      'CONFIG_INVALID',
      `new: give the plugin's short name${short ? ` ('${short}')` : ''}, not '${name}': the package is named spikeflow-${kind}-<name>`,
      { path: '<name>', name },
    );
  }
  if (NAME.test(name) && name.length <= 32) return;
  const hint = name.startsWith('@') || name.includes('/') ? ' Give a scope with --scope (e.g. --scope @acme) and the short name here.' : '';
  throw new SpikeflowError(
    'CONFIG_INVALID',
    `new: '${name}' is not a valid plugin name: use at most 32 lowercase letters, digits and single hyphens, starting with a letter (e.g. 'leaky' or 'my-${kind}').${hint}`,
    { path: '<name>', name },
  );
}

/** Refuses a target that is a file, or a directory with anything in it. */
function checkTarget(dir: string): void {
  if (!existsSync(dir)) return;
  if (!statSync(dir).isDirectory()) {
    throw new SpikeflowError('CONFIG_INVALID', `new: ${dir} exists and is not a directory; choose another --dir (nothing was written)`, { path: '--dir' });
  }
  const entries = readdirSync(dir);
  if (entries.length > 0) {
    throw new SpikeflowError(
      'CONFIG_INVALID',
      `new: ${dir} exists and is not empty (${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}, e.g. ${entries.sort()[0]}); choose another --dir (nothing was written)`,
      { path: '--dir' },
    );
  }
}

/** Every file under `dir`, relative to it with `/` separators, sorted. */
function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p).split(sep).join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

function render(text: string, tokens: Readonly<Record<string, string>>, source: string): string {
  return text.replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
    const v = tokens[key];
    if (v === undefined) throw new Error(`template ${source}: unknown token {{${key}}}`);
    return v;
  });
}

function camelCase(name: string): string {
  return name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function pascalCase(name: string): string {
  const c = camelCase(name);
  return c[0]!.toUpperCase() + c.slice(1);
}

interface PackageJson {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

const require = createRequire(import.meta.url);
const cliPackage = JSON.parse(readFileSync(resolve(here, '..', 'package.json'), 'utf8')) as PackageJson;
/** The tools' versions the workspace pins (vitest, typescript, @types/node), kept equal to its root package.json by a test. */
const toolVersions = JSON.parse(readFileSync(join(templatesDir, 'versions.json'), 'utf8')) as Record<string, string>;

/**
 * The version range of a spikeflow package for a new plugin: the version this CLI was released
 * with (its own dependency, which publishing pins), else the installed one (inside the workspace,
 * where the CLI's dependencies are `workspace:*`).
 */
export function spikeflowRange(name: string): string {
  const declared = cliPackage.dependencies?.[name] ?? cliPackage.devDependencies?.[name];
  if (declared !== undefined && !declared.startsWith('workspace:')) return /^\d/.test(declared) ? `^${declared}` : declared;
  try {
    return `^${(require(`${name}/package.json`) as PackageJson).version}`;
  } catch {
    return 'latest';
  }
}

function packageJson(kind: PluginKind, name: string, packageName: string): Record<string, unknown> {
  const tool = (n: string) => {
    const v = toolVersions[n];
    if (v === undefined) throw new Error(`templates/versions.json has no version of ${n}`);
    return v;
  };
  const dev: Record<string, string> = {
    '@spikeflow/core': spikeflowRange('@spikeflow/core'),
    '@spikeflow/testing': spikeflowRange('@spikeflow/testing'),
    '@types/node': tool('@types/node'),
    typescript: tool('typescript'),
    vitest: tool('vitest'),
  };
  for (const d of DEV_DEPENDENCIES[kind]) dev[d] = spikeflowRange(d);
  return {
    name: packageName,
    version: '0.1.0',
    description: DESCRIPTIONS[kind](name),
    license: 'MIT',
    type: 'module',
    exports: {
      '.': { types: './dist/index.d.ts', default: './dist/index.js' },
      './package.json': './package.json',
    },
    files: ['dist', 'src', '!src/**/*.test.ts'],
    keywords: ['spikeflow-plugin', 'spikeflow', `spikeflow-${kind}`],
    engines: { node: '>=20.10' },
    scripts: {
      build: 'tsc -p tsconfig.build.json',
      typecheck: 'tsc --noEmit',
      test: 'vitest run',
      prepack: 'tsc -p tsconfig.build.json',
    },
    peerDependencies: { '@spikeflow/core': spikeflowRange('@spikeflow/core') },
    devDependencies: Object.fromEntries(Object.entries(dev).sort(([a], [b]) => a.localeCompare(b))),
  };
}

/** The package manager that ran the CLI (`npx`, `pnpm dlx`, `yarn dlx` set `npm_config_user_agent`), else npm. */
function packageManager(): string {
  const agent = process.env['npm_config_user_agent'] ?? '';
  return ['pnpm', 'yarn', 'bun'].find((pm) => agent.startsWith(`${pm}/`)) ?? 'npm';
}

/** What `spikeflow new` prints: the files written and the next two commands. */
export function newSummary(r: NewResult, cwd = process.cwd()): string {
  const rel = relative(cwd, r.dir) || '.';
  const where = rel.startsWith('..') ? r.dir : rel;
  const pm = packageManager();
  return [
    `wrote ${r.kind} plugin ${r.packageName} in ${where}:`,
    ...r.files.map((f) => `  ${f}`),
    '',
    'next:',
    `  cd ${/[\s'"$]/.test(where) ? JSON.stringify(where) : where} && ${pm} install`,
    `  ${pm} test`,
  ].join('\n');
}

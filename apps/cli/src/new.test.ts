import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorOf } from '@spikeflow/testing';
import { PLUGIN_KINDS, newPlugin, spikeflowRange } from './new.js';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const workspace = fileURLToPath(new URL('../../../', import.meta.url));
const templates = fileURLToPath(new URL('../templates/', import.meta.url));
const cli = (args: string[], cwd: string) =>
  spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', env: { ...process.env, npm_config_user_agent: '' } });
/** Packages resolved as the CLI's own installation sees them (the workspace's, here). */
const resolveFromCli = createRequire(import.meta.url);
const json = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;

/** The environment of a child process, without this vitest run's own variables (a nested vitest reads them). */
const childEnv = () => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST') && k !== 'TEST' && k !== 'NODE_ENV'));

/** Runs `node <args>` in `cwd`; resolves with its exit code and output. */
function run(args: string[], cwd: string): Promise<{ code: number | null; out: string }> {
  return new Promise((done, fail) => {
    const p = spawn(process.execPath, args, { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', fail);
    p.on('close', (code) => done({ code, out }));
  });
}

/**
 * Makes `dir/node_modules` hold every package the packages in `pkgDirs` declare (dependencies,
 * devDependencies, peerDependencies): a link to the copy the CLI's own installation resolves
 * (the workspace's). Nothing is installed or downloaded, and nothing of the generated packages
 * changes: they resolve their dependencies by walking up to this directory, as from an install.
 * A package a template declares that the workspace does not have fails here.
 */
function linkDependencies(dir: string, pkgDirs: readonly string[]): string[] {
  const names = new Set<string>();
  for (const p of pkgDirs) {
    const pkg = json(join(p, 'package.json')) as Record<string, Record<string, string> | undefined>;
    for (const n of Object.keys({ ...pkg['dependencies'], ...pkg['devDependencies'], ...pkg['peerDependencies'] })) names.add(n);
  }
  for (const n of names) {
    const target = dirname(resolveFromCli.resolve(`${n}/package.json`));
    const link = join(dir, 'node_modules', ...n.split('/'));
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(target, link, 'dir');
  }
  return [...names].sort();
}

/** The Biome binary the workspace uses, and its configuration with the files selected from `dir` instead of the workspace's folders. */
function biomeIn(dir: string): string {
  const config = json(join(workspace, 'biome.json'));
  delete config['$schema'];
  config['vcs'] = { enabled: false };
  config['files'] = { ignoreUnknown: true, includes: ['**', '!!**/node_modules', '!!**/dist'] };
  writeFileSync(join(dir, 'biome.json'), JSON.stringify(config));
  return join(dirname(createRequire(join(workspace, 'package.json')).resolve('@biomejs/biome/package.json')), 'bin', 'biome');
}

/** Each kind, the name the test gives it, and the conformance suite its tests must run. */
const cases = [
  { kind: 'neuron', name: 'leaky', suite: 'neuron conformance: leaky' },
  { kind: 'rule', name: 'window-bptt', suite: 'rule conformance: window-bptt, k = 4, accumulated' },
  { kind: 'dataset', name: 'patterns', suite: 'dataset conformance: patterns' },
  { kind: 'backend', name: 'js', suite: 'backend conformance: js' },
] as const;

describe('spikeflow new: every kind of plugin, written from the templates, works as written', () => {
  let root = '';
  const dirOf = (kind: string) => join(root, kind);
  const printed: Record<string, string> = {};

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'spikeflow-new-'));
    for (const { kind, name } of cases) {
      const r = cli(['new', kind, name, '--dir', kind], root);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      printed[kind] = r.stdout;
    }
    linkDependencies(
      root,
      cases.map((c) => dirOf(c.kind)),
    );
  }, 60_000);
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('prints what it wrote and the next two commands', () => {
    for (const { kind, name } of cases) {
      const out = printed[kind]!;
      expect(out).toContain(`wrote ${kind} plugin spikeflow-${kind}-${name} in ${kind}:`);
      for (const f of [
        'package.json',
        'tsconfig.json',
        'tsconfig.build.json',
        'vitest.config.ts',
        '.gitignore',
        'README.md',
        'src/index.ts',
        `src/${name}.ts`,
        `src/${name}.test.ts`,
      ]) {
        expect(out, f).toContain(`\n  ${f}\n`);
        expect(existsSync(join(dirOf(kind), f)), f).toBe(true);
      }
      expect(out.trimEnd().split('\n').slice(-3)).toEqual(['next:', `  cd ${kind} && npm install`, '  npm test']);
    }
  });

  it('writes a package.json of a spikeflow plugin, with the versions the workspace uses and no workspace: ranges', () => {
    const versions = (name: string) => (json(resolveFromCli.resolve(`${name}/package.json`)) as { version: string }).version;
    const rootPkg = json(join(workspace, 'package.json')) as { devDependencies: Record<string, string> };
    for (const { kind, name } of cases) {
      const text = readFileSync(join(dirOf(kind), 'package.json'), 'utf8');
      expect(text).not.toContain('workspace:');
      const pkg = json(join(dirOf(kind), 'package.json')) as Record<string, Record<string, string>> & { keywords: string[] };
      expect(pkg['name']).toBe(`spikeflow-${kind}-${name}`);
      expect(pkg['type']).toBe('module');
      expect(pkg['exports']).toEqual({ '.': { types: './dist/index.d.ts', default: './dist/index.js' }, './package.json': './package.json' });
      expect(pkg.keywords).toContain('spikeflow-plugin');
      expect(pkg['peerDependencies']).toEqual({ '@spikeflow/core': `^${versions('@spikeflow/core')}` });
      const dev = pkg['devDependencies']!;
      expect(dev['@spikeflow/core']).toBe(`^${versions('@spikeflow/core')}`);
      expect(dev['@spikeflow/testing']).toBe(`^${versions('@spikeflow/testing')}`);
      for (const tool of ['vitest', 'typescript', '@types/node']) expect(dev[tool], tool).toBe(rootPkg.devDependencies[tool]);
    }
    expect(json(join(dirOf('rule'), 'package.json'))['devDependencies']).toHaveProperty('@spikeflow/neuron-lif', `^${versions('@spikeflow/neuron-lif')}`);
  });

  it("stands alone: its tsconfig has the workspace's compiler settings, and the tools' pins are the workspace's", () => {
    const base = (json(join(workspace, 'tsconfig.base.json')) as { compilerOptions: object }).compilerOptions;
    for (const { kind } of cases) {
      const ts = json(join(dirOf(kind), 'tsconfig.json')) as { compilerOptions: object; extends?: string };
      expect(ts.extends).toBeUndefined();
      expect(ts.compilerOptions).toEqual({ ...base, rootDir: 'src', outDir: 'dist' });
    }
    const rootPkg = json(join(workspace, 'package.json')) as { devDependencies: Record<string, string> };
    const pins = json(join(templates, 'versions.json'));
    expect(pins).toEqual(Object.fromEntries(Object.keys(pins).map((k) => [k, rootPkg.devDependencies[k]])));
  });

  it("passes the workspace's Biome configuration, for the shortest and the longest names", () => {
    const fmt = join(root, 'format');
    for (const kind of PLUGIN_KINDS) {
      for (const name of ['a', 'abcdefghij-abcdefghij-abcdefghij']) newPlugin(kind, name, { dir: join(fmt, `${kind}-${name.length}`) });
    }
    const biome = biomeIn(root);
    const r = spawnSync(process.execPath, [biome, 'check', '--error-on-warnings', '--colors=off', ...cases.map((c) => c.kind), 'format'], {
      cwd: root,
      encoding: 'utf8',
    });
    expect(`${r.stdout}${r.stderr}`).toMatch(/Checked \d+ files/);
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
  }, 60_000);

  for (const { kind, suite } of cases) {
    it.concurrent(`${kind}: type-checks under strict settings, and its tests, the conformance suite among them, pass as written`, async () => {
      const dir = dirOf(kind);
      const tsc = await run([join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '-p', 'tsconfig.json'], dir);
      expect(tsc.out).toBe('');
      expect(tsc.code).toBe(0);
      const report = join(root, `${kind}-vitest.json`);
      // `npx vitest run`, without the chance of a download: the vitest the package resolves.
      const tests = await run([join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--reporter=json', `--outputFile=${report}`], dir);
      expect(tests.code, tests.out).toBe(0);
      const r = json(report) as {
        numPassedTests: number;
        numFailedTests: number;
        numPendingTests: number;
        testResults: { assertionResults: { ancestorTitles: string[]; status: string }[] }[];
      };
      expect([r.numFailedTests, r.numPendingTests]).toEqual([0, 0]);
      expect(r.numPassedTests).toBeGreaterThanOrEqual(6);
      const ofSuite = r.testResults.flatMap((f) => f.assertionResults).filter((a) => a.ancestorTitles.includes(suite));
      expect(ofSuite.length, `tests of '${suite}'`).toBeGreaterThanOrEqual(4);
      expect(ofSuite.every((a) => a.status === 'passed')).toBe(true);
    }, 180_000);
  }
});

describe('spikeflow new: arguments', () => {
  let cwd = '';
  beforeAll(() => {
    cwd = mkdtempSync(join(tmpdir(), 'spikeflow-new-args-'));
  });
  afterAll(() => rmSync(cwd, { recursive: true, force: true }));

  it('an unknown kind: UNKNOWN_NAME with a did-you-mean, and nothing written', { timeout: 30_000 }, () => {
    const r = cli(['new', 'nueron', 'leaky'], cwd);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(
      "spikeflow: new: unknown plugin kind 'nueron'; did you mean 'neuron'? (known: 'neuron', 'rule', 'dataset', 'backend') [UNKNOWN_NAME]\n",
    );
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('a name that is not a package name segment: CONFIG_INVALID saying what a name is, with a hint for a full package name or a scope', () => {
    for (const bad of ['Leaky', 'my_neuron', '1st', 'a--b', 'leaky-', 'abcdefghij-abcdefghij-abcdefghij-x']) {
      const e = errorOf(() => newPlugin('neuron', bad, { cwd }));
      expect(e.code, bad).toBe('CONFIG_INVALID');
      expect(e.message, bad).toContain(
        `new: '${bad}' is not a valid plugin name: use at most 32 lowercase letters, digits and single hyphens, starting with a letter`,
      );
    }
    expect(errorOf(() => newPlugin('neuron', 'spikeflow-neuron-leaky', { cwd })).message).toBe(
      "new: give the plugin's short name ('leaky'), not 'spikeflow-neuron-leaky': the package is named spikeflow-neuron-<name>",
    );
    expect(errorOf(() => newPlugin('rule', '@acme/tbptt', { cwd })).message).toContain('Give a scope with --scope');
    expect(errorOf(() => newPlugin('rule', 'tbptt', { cwd, scope: 'Acme!' })).message).toContain("--scope 'Acme!' is not an npm scope");
    expect(readdirSync(cwd)).toEqual([]);
  });

  it('a target that exists and is not empty, or is a file: refused, and nothing there changes', () => {
    const full = join(cwd, 'full');
    mkdirSync(join(full, 'src'), { recursive: true });
    writeFileSync(join(full, 'package.json'), 'mine');
    writeFileSync(join(full, 'src', 'index.ts'), 'mine too');
    const e = errorOf(() => newPlugin('neuron', 'leaky', { cwd, dir: 'full' }));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toBe(`new: ${full} exists and is not empty (2 entries, e.g. package.json); choose another --dir (nothing was written)`);
    expect(readdirSync(full).sort()).toEqual(['package.json', 'src']);
    expect(readdirSync(join(full, 'src'))).toEqual(['index.ts']);
    expect(readFileSync(join(full, 'package.json'), 'utf8')).toBe('mine');
    expect(readFileSync(join(full, 'src', 'index.ts'), 'utf8')).toBe('mine too');
    writeFileSync(join(cwd, 'a-file'), 'x');
    expect(errorOf(() => newPlugin('neuron', 'leaky', { cwd, dir: 'a-file' })).message).toContain('exists and is not a directory');
    expect(readFileSync(join(cwd, 'a-file'), 'utf8')).toBe('x');
  });

  it('writes into an empty directory, by default ./spikeflow-<kind>-<name>, and under a scope', { timeout: 30_000 }, () => {
    mkdirSync(join(cwd, 'empty'));
    const r = newPlugin('dataset', 'spikes', { cwd, dir: 'empty' });
    expect(r).toMatchObject({ kind: 'dataset', name: 'spikes', packageName: 'spikeflow-dataset-spikes', dir: join(cwd, 'empty') });
    expect(json(join(cwd, 'empty', 'package.json'))['name']).toBe('spikeflow-dataset-spikes');
    const out = cli(['new', 'backend', 'js', '--scope', '@acme'], cwd);
    expect(out.status).toBe(0);
    expect(out.stdout).toContain('wrote backend plugin @acme/spikeflow-backend-js in spikeflow-backend-js:');
    expect(json(join(cwd, 'spikeflow-backend-js', 'package.json'))['name']).toBe('@acme/spikeflow-backend-js');
    expect(readFileSync(join(cwd, 'spikeflow-backend-js', 'src', 'index.ts'), 'utf8')).toContain('(`"plugins": ["@acme/spikeflow-backend-js"]`)');
    // Once written, the same command is refused rather than overwriting.
    expect(errorOf(() => newPlugin('backend', 'js', { cwd, scope: 'acme' })).message).toContain('exists and is not empty');
  });

  it('is in the help, with its arguments', { timeout: 30_000 }, () => {
    expect(cli(['--help'], cwd).stdout).toMatch(/\n {2}new \[options\] <kind> <name> +write a new plugin package from templates/);
    const help = cli(['new', '--help'], cwd).stdout;
    expect(help).toContain('what the plugin provides: neuron, rule, dataset, backend');
    expect(help).toContain('--dir <path>');
    expect(help).toContain('--scope <scope>');
  });

  it("takes the spikeflow packages' versions from the CLI's own installation", () => {
    expect(spikeflowRange('@spikeflow/core')).toBe(`^${(json(resolveFromCli.resolve('@spikeflow/core/package.json')) as { version: string }).version}`);
    expect(spikeflowRange('@spikeflow/not-a-package')).toBe('latest');
  });
});

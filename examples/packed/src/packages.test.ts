// Every published package, packed as `pnpm publish` packs it, passes publint and attw (as an ESM-only
// package); and a changesets version run over the pending changesets succeeds (a dry run, on a copy).
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { attwFindings, type Finding, pack, publintFindings, publishedPackages, root } from './pack.js';

const work = mkdtempSync(join(tmpdir(), 'spikeflow-packages-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the checks find what they are for', () => {
  /** Packs a package made of `manifest` and `files` (path → text). */
  const packed = (name: string, manifest: Record<string, unknown>, files: Record<string, string>) => {
    const dir = join(work, name);
    mkdirSync(join(dir, 'dist'), { recursive: true });
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', type: 'module', files: ['dist'], ...manifest }));
    for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
    return pack(dir, work);
  };
  test('publint reports exports that name a file the package does not ship', async () => {
    const tarball = packed(
      'missing-file',
      { exports: { '.': { types: './dist/index.d.ts', default: './dist/index.js' } } },
      { 'dist/other.js': 'export const x = 1;\n' },
    );
    const findings = await publintFindings(tarball);
    expect(findings.some((f) => f.level === 'error' && /index\.js/.test(f.message))).toBe(true);
  });
  test('attw reports types that say CommonJS for an ES module', () => {
    const tarball = packed(
      'false-cjs',
      { exports: { '.': { types: './dist/index.d.cts', default: './dist/index.js' } } },
      { 'dist/index.js': 'export const x = 1;\n', 'dist/index.d.cts': 'export declare const x: number;\n' },
    );
    expect(attwFindings(tarball).map((f) => f.message)).toEqual([expect.stringMatching(/^FalseCJS/)]);
  });
});

describe('every published package', () => {
  const packages = publishedPackages();
  test('there are packages to check, core among them', () => {
    expect(packages.map((p) => p.name)).toContain('@spikeflow/core');
    expect(packages.length).toBeGreaterThan(20);
  });
  test.each(packages.map((p) => [p.name, p] as const))('%s: publint and attw find nothing', async (_, p) => {
    const tarball = pack(p.dir, work);
    // What pnpm publish would publish: no workspace: ranges left.
    const manifest = execFileSync('tar', ['-xzOf', tarball, 'package/package.json'], { encoding: 'utf8' });
    expect(manifest).not.toMatch(/workspace:/);
    const findings: Finding[] = [...(await publintFindings(tarball)), ...attwFindings(tarball)];
    // Suggestions too: they are few, and each says how to do better.
    expect(findings, `${p.name} (${relative(root, p.dir)})`).toEqual([]);
    rmSync(tarball);
  });
});

test('changeset version takes the pending changesets (a dry run on a copy of the manifests)', () => {
  const copy = join(work, 'versions');
  const folders = ['packages', 'plugins', 'apps', 'examples'].flatMap((g) =>
    readdirSync(join(root, g))
      .map((n) => join(g, n))
      .filter((d) => existsSync(join(root, d, 'package.json'))),
  );
  for (const f of ['package.json', 'pnpm-workspace.yaml', ...folders.map((d) => join(d, 'package.json'))]) {
    mkdirSync(join(copy, f, '..'), { recursive: true });
    cpSync(join(root, f), join(copy, f));
  }
  cpSync(join(root, '.changeset'), join(copy, '.changeset'), { recursive: true });
  const pending = readdirSync(join(copy, '.changeset')).filter((n) => n.endsWith('.md') && n !== 'README.md');
  // The packages the pending changesets name, and the bump each asks for at most.
  const named = new Set<string>();
  for (const n of pending) {
    const front = /^---\n([\s\S]*?)\n---/.exec(readFileSync(join(copy, '.changeset', n), 'utf8'))?.[1] ?? '';
    for (const m of front.matchAll(/^["']?(@spikeflow\/[\w-]+)["']?\s*:/gm)) named.add(m[1]!);
  }
  const changeset = join(root, 'node_modules', '@changesets', 'cli', 'bin.js');
  execFileSync(process.execPath, [changeset, 'version'], { cwd: copy, stdio: 'pipe', env: { ...process.env, CI: 'true' } });
  const manifests = new Map(
    folders.map((d) => {
      const pkg = JSON.parse(readFileSync(join(copy, d, 'package.json'), 'utf8')) as { name: string; version: string; private?: boolean };
      return [pkg.name, { d, pkg }] as const;
    }),
  );
  const before = (d: string) => (JSON.parse(readFileSync(join(root, d, 'package.json'), 'utf8')) as { version: string }).version;
  if (pending.length > 0) expect(named.size).toBeGreaterThan(0);
  for (const name of named) {
    const m = manifests.get(name);
    expect(m, `a changeset names ${name}, which is no package here`).toBeDefined();
    if (m!.pkg.private) continue;
    expect(m!.pkg.version, name).not.toBe(before(m!.d));
    expect(existsSync(join(copy, m!.d, 'CHANGELOG.md')), `${name}: CHANGELOG.md`).toBe(true);
  }
  // The changesets are consumed.
  expect(readdirSync(join(copy, '.changeset')).filter((n) => n.endsWith('.md') && n !== 'README.md')).toEqual([]);
});

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { gitRevision } from './run.js';

/**
 * Figures in the docs come from committed revisions: every benchmark JSON kept under docs/ (the
 * bench's reports, tools/peers/compare.mjs's comparisons) names the revision it was measured at,
 * and none was measured in a working tree with uncommitted changes (`<sha>+dirty`).
 */
const docs = fileURLToPath(new URL('../../../docs/', import.meta.url));

function jsonFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) jsonFiles(path, out);
    else if (name.endsWith('.json')) out.push(path);
  }
  return out;
}

describe('docs provenance', () => {
  it('every benchmark JSON under docs/ names a committed revision', () => {
    const reports = jsonFiles(docs)
      .map((path) => ({ path: relative(docs, path), data: JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown> }))
      .filter(({ data }) => 'revision' in data);
    expect(reports.length).toBeGreaterThan(10);
    const bad = reports
      .filter(({ data }) => typeof data['revision'] !== 'string' || !/^[0-9a-f]{40}$/.test(data['revision']))
      .map(({ path, data }) => `${path}: ${String(data['revision'])}`);
    expect(bad, 'measured in an uncommitted tree (or without a revision): measure again at a commit').toEqual([]);
  });
});

describe('the revision a report names', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'spikeflow-provenance-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));
  const git = (dir: string, ...args: string[]) =>
    execFileSync('git', ['-C', dir, '-c', 'user.name=bench', '-c', 'user.email=bench@example.org', '-c', 'init.defaultBranch=main', ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  /** A checkout whose `pkg/` holds a package.json, committed; its HEAD. */
  const checkout = (name: string): { dir: string; pkg: string; head: string } => {
    const dir = join(scratch, name);
    const pkg = join(dir, 'pkg');
    mkdirSync(pkg, { recursive: true });
    writeFileSync(join(pkg, 'package.json'), `{"name":"${name}"}\n`);
    git(dir, 'init', '-q');
    git(dir, 'add', '.');
    git(dir, 'commit', '-q', '-m', name);
    return { dir, pkg, head: git(dir, 'rev-parse', 'HEAD') };
  };

  it("is the commit of the checkout that holds the bench's files, whatever the working directory", () => {
    const bench = checkout('bench');
    const other = checkout('other');
    const cwd = process.cwd();
    try {
      // Run from inside another checkout: its commit is not the bench's.
      process.chdir(other.dir);
      expect(gitRevision(bench.pkg)).toBe(bench.head);
      process.chdir(scratch);
      expect(gitRevision(bench.pkg)).toBe(bench.head);
    } finally {
      process.chdir(cwd);
    }
    expect(bench.head).toMatch(/^[0-9a-f]{40}$/);
    expect(bench.head).not.toBe(other.head);
  });

  it('is marked +dirty while tracked files have uncommitted changes; untracked files do not count', () => {
    const c = checkout('dirty');
    writeFileSync(join(c.dir, 'notes.txt'), 'untracked\n');
    expect(gitRevision(c.pkg)).toBe(c.head);
    writeFileSync(join(c.pkg, 'package.json'), '{"name":"changed"}\n');
    expect(gitRevision(c.pkg)).toBe(`${c.head}+dirty`);
  });

  it("is unknown where the bench's package is not tracked: outside any checkout, or installed (ignored) inside another", () => {
    const loose = join(scratch, 'loose');
    mkdirSync(loose);
    writeFileSync(join(loose, 'package.json'), '{}\n');
    expect(gitRevision(loose)).toBe('unknown');
    const app = checkout('app');
    const installed = join(app.dir, 'node_modules', '@spikeflow', 'bench');
    mkdirSync(installed, { recursive: true });
    writeFileSync(join(app.dir, '.gitignore'), 'node_modules/\n');
    writeFileSync(join(installed, 'package.json'), '{"name":"@spikeflow/bench"}\n');
    expect(gitRevision(installed)).toBe('unknown');
  });

  it("defaults to the bench's own package in this repository", () => {
    const root = fileURLToPath(new URL('../../../', import.meta.url));
    expect(gitRevision().slice(0, 40)).toBe(git(root, 'rev-parse', 'HEAD'));
  });
});

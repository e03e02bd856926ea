import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkSite, formatSiteProblems } from './check-site.js';

const app = resolve(fileURLToPath(import.meta.url), '../..');
const repoRoot = resolve(app, '../..');
const outDir = join(app, 'dist');

/** Every name a package's entry exports, values and types alike (the TypeScript compiler's view). */
function exportsOf(pkgDir: string): string[] {
  const config = ts.getParsedCommandLineOfConfigFile(
    join(pkgDir, 'tsconfig.build.json'),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      },
    },
  );
  if (!config) throw new Error(`cannot read ${pkgDir}/tsconfig.build.json`);
  const entry = join(pkgDir, 'src/index.ts');
  const program = ts.createProgram([entry], { ...config.options, noEmit: true });
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(entry);
  const module = source && checker.getSymbolAtLocation(source);
  if (!module) throw new Error(`no module symbol for ${entry}`);
  return checker
    .getExportsOfModule(module)
    .map((s) => s.name)
    .sort();
}

const textOf = (html: string) =>
  html
    .replace(/<[^>]+>/g, '')
    .replace(/&ZeroWidthSpace;|\u200b/g, '')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&')
    .trim();

/** The links of a package's API index page in the built site: name → the pages its links go to. */
function indexLinks(indexFile: string): Map<string, string[]> {
  const html = readFileSync(indexFile, 'utf8');
  const main = html.slice(html.indexOf('class="vp-doc'));
  const links = new Map<string, string[]>();
  for (const m of main.matchAll(/<a href="([^"#]+)"[^>]*>([^<]+)<\/a>/g)) {
    const href = decodeURIComponent(m[1]!);
    const page = resolve(dirname(indexFile), href.endsWith('/') ? `${href}index.html` : href);
    links.set(textOf(m[2]!), [...(links.get(textOf(m[2]!)) ?? []), page]);
  }
  return links;
}

describe('the documentation site', () => {
  let build: SpawnSyncReturns<string>;
  let seconds = 0;

  beforeAll(() => {
    // The command of `pnpm docs:build` (after the root script has built core, testing and events).
    const script = (JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts['docs:build']!;
    const start = performance.now();
    build = spawnSync('sh', ['-c', script], {
      cwd: app,
      encoding: 'utf8',
      maxBuffer: 256 * 1024 * 1024,
      env: { ...process.env, PATH: `${join(app, 'node_modules/.bin')}${delimiter}${process.env.PATH ?? ''}`, NO_COLOR: '1', FORCE_COLOR: '0' },
    });
    seconds = (performance.now() - start) / 1000;
  }, 600_000);

  it('builds with `docs:build` (TypeDoc, then VitePress), with no dead link', () => {
    const log = `${build.stdout}\n${build.stderr}`;
    expect(build.status, log).toBe(0);
    expect(log).toMatch(/Found 0 errors/);
    expect(log).not.toMatch(/dead link/i);
    console.log(`docs:build: ${seconds.toFixed(0)} s`);
  });

  it.each(['core', 'testing', 'events'])('has an API page for every export of @spikeflow/%s, type-only exports too', (name) => {
    expect(build.status).toBe(0);
    const names = exportsOf(join(repoRoot, 'packages', name));
    if (name === 'core') expect(names).toEqual(expect.arrayContaining(['buildNetwork', 'Trainer', 'tf', 'Tensor', 'NeuronModel', 'ModelSpec']));
    const links = indexLinks(join(outDir, `api/@spikeflow/${name}/index.html`));
    const missing: string[] = [];
    for (const exported of names) {
      const pages = (links.get(exported) ?? []).filter((p) => existsSync(p));
      const titled = pages.some((p) => {
        const h1 = /<h1[^>]*>([\s\S]*?)<\/h1>/.exec(readFileSync(p, 'utf8'));
        return h1 !== null && new RegExp(`(^|[\\s:])${exported.replace(/\$/g, '\\$')}(<.*>)?(\\(\\))?$`).test(textOf(h1[1]!));
      });
      if (!titled) missing.push(exported);
    }
    expect(missing).toEqual([]);
    expect(names.length).toBeGreaterThan(name === 'core' ? 200 : 30);
  });

  it('has no broken internal link or anchor in its HTML, and loads nothing from another host', () => {
    expect(build.status).toBe(0);
    const { problems, pages, links } = checkSite(outDir);
    expect(formatSiteProblems(problems)).toBe('');
    expect(pages).toBeGreaterThan(400);
    expect(links).toBeGreaterThan(10_000);
    // The pages' links to the bench's data and to folders of results resolve to copies and listings.
    for (const f of ['bench/online-rules/lif.json', 'bench/online-rules/3e4aed7/index.html', 'results/mnist-row/index.html', '_repo/tools/peers/README.md']) {
      expect(existsSync(join(outDir, f)), f).toBe(true);
    }
  });
});

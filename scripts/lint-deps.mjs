// Keeps dependencies pointing one way (docs/architecture.md):
// - @spikeflow/core depends on no other @spikeflow package and imports none;
// - a plugin's runtime dependencies and non-test sources reach other @spikeflow packages only
//   through @spikeflow/core (its tests may use @spikeflow/testing and other plugins), apart from
//   the libraries below, which are no plugins and import only core themselves;
// - @spikeflow/core is a peer dependency of every plugin and of @spikeflow/testing;
// - no deep imports into another package (`@spikeflow/x/src/...`), no tsyringe outside core.
import { readFileSync, readdirSync, existsSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
/**
 * Libraries plugins may use at run time: core, and implementations shared by several plugins (the
 * fast kernels of the CPU-memory backends; the event streams, transforms and binning of the
 * neuromorphic dataset plugins).
 */
const pluginLibraries = new Set(['@spikeflow/core', '@spikeflow/kernels', '@spikeflow/events']);
const problems = [];
const pkgDirs = ['packages', 'plugins', 'apps', 'examples'].flatMap((g) =>
  existsSync(join(root, g))
    ? readdirSync(join(root, g))
        .map((n) => join(root, g, n))
        .filter((d) => existsSync(join(d, 'package.json')))
    : [],
);

function sources(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : /\.(ts|mts|js|mjs)$/.test(n) ? [p] : [];
  });
}

for (const dir of pkgDirs) {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const where = relative(root, dir);
  const runtime = { ...pkg.dependencies, ...pkg.peerDependencies };
  const kind = where.split('/')[0];
  const isCore = pkg.name === '@spikeflow/core';
  const isPlugin = kind === 'plugins' || (kind === 'examples' && (pkg.keywords ?? []).includes('spikeflow-plugin'));
  // A library imports only core, as a peer: checked like a plugin.
  const isLibrary = !isCore && pluginLibraries.has(pkg.name);
  const onlyCore = isLibrary ? new Set(['@spikeflow/core']) : pluginLibraries;
  if (isCore && Object.keys({ ...runtime, ...pkg.devDependencies }).some((d) => d.startsWith('@spikeflow/'))) {
    problems.push(`${where}: core must not depend on another @spikeflow package`);
  }
  if ((isPlugin || isLibrary || pkg.name === '@spikeflow/testing') && !pkg.peerDependencies?.['@spikeflow/core']) {
    problems.push(`${where}: @spikeflow/core must be a peer dependency`);
  }
  if (isPlugin || isLibrary) {
    for (const d of Object.keys(runtime)) {
      if (d.startsWith('@spikeflow/') && !onlyCore.has(d)) problems.push(`${where}: runtime dependency on ${d}; plugins reach other plugins only through core`);
    }
  }
  for (const file of sources(join(dir, 'src')).concat(
    kind === 'examples' ? sources(dir).filter((f) => !f.includes('node_modules') && !f.includes('/dist/')) : [],
  )) {
    const text = readFileSync(file, 'utf8');
    const isTest = /\.test\.[mc]?[jt]s$/.test(file);
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*)['"]([^'"]+)['"]/g)) {
      const spec = m[1];
      const at = relative(root, file);
      if (/^@spikeflow\/[^/]+\/(src|dist|internal)\//.test(spec)) problems.push(`${at}: deep import '${spec}'`);
      if (spec === 'tsyringe' && !isCore) problems.push(`${at}: imports tsyringe; plugins export data and core's loader registers it`);
      if (!spec.startsWith('@spikeflow/')) continue;
      const target = spec.split('/').slice(0, 2).join('/');
      if (isCore) problems.push(`${at}: core imports ${target}`);
      else if ((isPlugin || isLibrary) && !isTest && !onlyCore.has(target))
        problems.push(`${at}: imports ${target}; a plugin reaches other plugins only through core's contracts`);
    }
  }
}
if (problems.length) {
  console.error(`dependency direction: ${problems.length} problem(s)\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  process.exit(1);
}
console.log(`dependency direction: ok (${pkgDirs.length} packages)`);

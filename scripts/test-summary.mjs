// Sums the vitest JSON reports every package's `test` task wrote (`.test-results/vitest.json`;
// turbo restores them on cache hits), lists every skipped test with its reason, and prints one
// plain closing line: "N passed, N failed[, N skipped]".
//
// The skip convention (README, "Testing"): a test that can be skipped carries its reason in its
// meta, `{ skip: cond, meta: { skipReason: '…' } }` on the test or its describe (or, for a skip
// decided while it runs, `ctx.task.meta.skipReason = why; ctx.skip(why)`). A test that needs
// something of the machine (Chromium, a Vulkan driver, redis-server) names it as well,
// `meta: { requires: 'Chromium', skipReason }`. vitest's JSON report keeps each test's meta, and
// nothing else of a skip: `ctx.skip(note)`'s note does not reach it.
//
// Fails (exit 1) when a test failed, a test file failed outside its tests (import, hooks), a
// package left no report, nothing passed, a skip gives no reason, or — under CI — a test that
// `requires` something was skipped.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const ci = !!process.env.CI && !['0', 'false'].includes(process.env.CI.toLowerCase());
let passed = 0;
let failed = 0;
const missing = [];
/** @type {{ pkg: string, file: string, name: string, reason?: string, requires?: string, todo: boolean }[]} */
const skips = [];
const broken = [];
for (const group of ['packages', 'plugins', 'apps', 'examples']) {
  const dir = join(root, group);
  if (!existsSync(dir)) continue;
  for (const name of readdirSync(dir).sort()) {
    const pkgDir = join(dir, name);
    const pkg = join(pkgDir, 'package.json');
    if (!existsSync(pkg)) continue;
    const scripts = JSON.parse(readFileSync(pkg, 'utf8')).scripts ?? {};
    if (!scripts.test) continue;
    const id = `${group}/${name}`;
    const report = join(pkgDir, '.test-results', 'vitest.json');
    if (!existsSync(report)) {
      missing.push(id);
      continue;
    }
    const r = JSON.parse(readFileSync(report, 'utf8'));
    passed += r.numPassedTests;
    failed += r.numFailedTests;
    for (const f of r.testResults ?? []) {
      const file = relative(pkgDir, f.name);
      const tests = f.assertionResults ?? [];
      // A file that failed with no failed test: it did not load, or a hook threw. Its tests are
      // reported skipped; they did not run, which is this failure, not a skip.
      const fileFailed = f.status === 'failed' && !tests.some((t) => t.status === 'failed');
      if (fileFailed) {
        failed += 1;
        broken.push(`${id}/${file}: ${f.message || 'a hook (beforeAll/afterAll) or the file itself failed; see its log above'}`);
        continue;
      }
      for (const t of tests) {
        if (t.status === 'passed' || t.status === 'failed') continue;
        const meta = t.meta ?? {};
        skips.push({
          pkg: id,
          file,
          name: [...(t.ancestorTitles ?? []), t.title].filter(Boolean).join(' › '),
          reason: meta.skipReason,
          requires: meta.requires,
          todo: t.status === 'todo',
        });
      }
    }
  }
}

const problems = [];
if (skips.length) {
  // One line per reason and file, then every skipped test under it.
  const groups = new Map();
  for (const s of skips) {
    const why = s.todo ? 'todo' : s.reason ? `${s.requires ? `needs ${s.requires}: ` : ''}${s.reason}` : 'NO REASON GIVEN';
    const key = `${s.pkg}/${s.file}\n${why}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(s.name);
  }
  console.log(`skipped (${skips.length}):`);
  for (const [key, names] of groups) {
    const [where, why] = key.split('\n');
    console.log(`  ${where} — ${why}`);
    for (const n of names) console.log(`      ${n}`);
  }
  const unexplained = skips.filter((s) => !s.todo && !s.reason);
  if (unexplained.length) {
    problems.push(
      `${unexplained.length} skipped test(s) give no reason: put it in the test's or its describe's meta, { skip: cond, meta: { skipReason: '…' } } (see scripts/test-summary.mjs)`,
    );
  }
  const required = skips.filter((s) => s.requires && !s.todo);
  if (ci && required.length) {
    const needs = [...new Set(required.map((s) => s.requires))].join(', ');
    problems.push(`CI: ${required.length} test(s) that need ${needs} were skipped; under CI that is a failure (.ci/run installs what they need first)`);
  }
}
for (const b of broken) console.log(`failed outside its tests: ${b}`);
if (missing.length) console.log(`no test report from: ${missing.join(', ')}`);
for (const p of problems) console.log(p);
console.log(`${passed} passed, ${failed} failed${skips.length ? `, ${skips.length} skipped` : ''}`);
process.exit(failed > 0 || missing.length > 0 || passed === 0 || problems.length > 0 ? 1 : 0);

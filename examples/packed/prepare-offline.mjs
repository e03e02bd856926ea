#!/usr/bin/env node
// Fills the npm cache that the pack-and-install test reads offline (examples/packed/src/install.test.ts):
// an `npm install` of the third-party dependencies of the packed packages, from the npm registry,
// into a throw-away folder with the cache at SPIKEFLOW_NPM_CACHE (default ~/.cache/spikeflow/npm-offline).
// A setup step, as .ci/run runs it: the tests themselves download nothing. Nothing to do when the cache
// already holds the current dependencies.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheDir, markerOf, thirdParty } from './packed.mjs';

const cache = cacheDir();
const dependencies = thirdParty();
const marker = markerOf(cache);
if (existsSync(marker) && JSON.stringify(JSON.parse(readFileSync(marker, 'utf8')).dependencies) === JSON.stringify(dependencies)) {
  console.log(`setup: the npm cache for the offline install is ready (${cache})`);
  process.exit(0);
}
mkdirSync(cache, { recursive: true });
const dir = mkdtempSync(join(tmpdir(), 'spikeflow-npm-cache-'));
try {
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'spikeflow-offline-cache', private: true, dependencies }, null, 2));
  const started = Date.now();
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['install', '--cache', cache, '--ignore-scripts', '--no-audit', '--no-fund', '--no-update-notifier'], {
    cwd: dir,
    stdio: ['ignore', 'inherit', 'inherit'],
    timeout: 600_000,
  });
  if (r.status !== 0) {
    console.error(`setup: npm install into the cache ${cache} failed (${r.error?.message ?? `exit ${r.status}`}); it needs the npm registry`);
    process.exit(1);
  }
  writeFileSync(marker, `${JSON.stringify({ dependencies, prepared: new Date().toISOString() }, null, 2)}\n`);
  console.log(`setup: npm cache for the offline install filled in ${Math.round((Date.now() - started) / 1000)} s (${cache})`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

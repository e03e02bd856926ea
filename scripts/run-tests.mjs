// The one test command (README, .ci/run): build every package, type-check and test each through
// turbo, check the dependency direction, and close with the skipped tests and their reasons and
// "N passed, N failed".
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
// Reports of an earlier run must not stand in for a test task that does not run this time (its
// build failed): turbo writes them afresh, or restores them on a cache hit.
for (const group of ['packages', 'plugins', 'apps', 'examples']) {
  const dir = join(root, group);
  if (!existsSync(dir)) continue;
  for (const name of readdirSync(dir)) rmSync(join(dir, name, '.test-results'), { recursive: true, force: true });
}

const env = { ...process.env, TURBO_TELEMETRY_DISABLED: '1', FORCE_COLOR: process.env.CI ? '0' : process.env.FORCE_COLOR };
const run = (cmd, args) => spawnSync(cmd, args, { stdio: 'inherit', env, cwd: root }).status ?? 1;
const turbo = ['run', 'build', 'typecheck', 'test', '--output-logs=new-only', '--concurrency=2', '--continue'];
const codes = [
  run('turbo', turbo),
  run(process.execPath, ['scripts/lint-deps.mjs']),
  run(process.execPath, ['scripts/test-summary.mjs']),
];
process.exit(codes.find((c) => c !== 0) ?? 0);

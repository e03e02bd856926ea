// The one test command (README, .ci/run): check formatting and lint (Biome, biome.json), build
// every package, type-check and test each through turbo, check the dependency direction, and close
// with the skipped tests and their reasons and "N passed, N failed".
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
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { stdio: 'inherit', env, cwd: root });
  if (r.error) console.error(`${cmd}: ${r.error.message}`);
  return r.status ?? 1;
};
// Formatting and lint first (a second or two): the findings print here, at the top, and fail the
// run at its end, after the tests have run anyway. Warnings fail too, as in `pnpm lint`. (`biome ci`
// colours its output even into a file or pipe: plain text unless this is a terminal that wants colour.)
const plain = !process.stdout.isTTY || env.FORCE_COLOR === '0';
const biome = run('biome', ['ci', '--error-on-warnings', ...(plain ? ['--colors=off'] : []), '.']);
const turbo = ['run', 'build', 'typecheck', 'test', '--output-logs=new-only', '--concurrency=2', '--continue'];
const codes = [biome, run('turbo', turbo), run(process.execPath, ['scripts/lint-deps.mjs'])];
if (biome !== 0) console.log('biome ci failed: its findings are at the top of this output (`pnpm format` fixes formatting; `pnpm lint` lists the rest)');
// Last, so that its "N passed, N failed" stays the closing line.
codes.push(run(process.execPath, ['scripts/test-summary.mjs']));
process.exit(codes.find((c) => c !== 0) ?? 0);

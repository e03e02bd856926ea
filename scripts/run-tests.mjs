// The one test command (README, .ci/run): build every package, type-check and test each through
// turbo, check the dependency direction, and close with "N passed, N failed".
import { spawnSync } from 'node:child_process';

const env = { ...process.env, TURBO_TELEMETRY_DISABLED: '1', FORCE_COLOR: process.env.CI ? '0' : process.env.FORCE_COLOR };
const run = (cmd, args) => spawnSync(cmd, args, { stdio: 'inherit', env }).status ?? 1;
const turbo = ['run', 'build', 'typecheck', 'test', '--output-logs=new-only', '--concurrency=2', '--continue'];
const codes = [
  run('turbo', turbo),
  run(process.execPath, ['scripts/lint-deps.mjs']),
  run(process.execPath, ['scripts/test-summary.mjs']),
];
process.exit(codes.find((c) => c !== 0) ?? 0);

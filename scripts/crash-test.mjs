// The long crash-safety run: a training run checkpointing every step is killed with SIGKILL 50
// times at random moments (half of them inside a checkpoint write) and resumed each time; it must
// end bitwise equal to an uninterrupted run. `pnpm test` runs the same test with 6 kills.
//
//   node scripts/crash-test.mjs [--kills 50] [--seed N]
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const kills = arg('--kills', '50');
const seed = arg('--seed', String(Math.floor(Math.random() * 2 ** 31)));
const cli = fileURLToPath(new URL('../apps/cli/', import.meta.url));
const vitest = fileURLToPath(new URL('../node_modules/vitest/vitest.mjs', import.meta.url));
console.log(`crash test: ${kills} kills, seed ${seed} (replay with --seed ${seed})`);
const r = spawnSync(process.execPath, [vitest, 'run', '--testTimeout=7200000', 'src/crash.test.ts'], {
  cwd: cli,
  stdio: 'inherit',
  env: { ...process.env, SPIKEFLOW_CRASH_KILLS: kills, SPIKEFLOW_CRASH_SEED: seed },
});
process.exit(r.status ?? 1);

// The packages install on their own: core, neuron-lif, rule-bptt, backend-wasm and kernels are packed
// as `pnpm publish` packs them and installed from the tarballs with npm into an empty project outside
// the workspace; a short TypeScript app (app/train.ts) type-checks against them with `tsc --strict`
// and trains a model. npm runs offline, on the cache that examples/packed/prepare-offline.mjs fills
// (.ci/run's setup step): the test downloads nothing.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KERNELS_VERSION } from '@spikeflow/kernels';
import { describe, expect, test } from 'vitest';
import { cacheDir, installed, markerOf, thirdParty } from '../packed.mjs';
import { pack, root } from './pack.js';

declare module 'vitest' {
  interface TaskMeta {
    skipReason?: string;
    requires?: string;
  }
}

const require = createRequire(import.meta.url);
const cache = cacheDir();
const marker = markerOf(cache);
const prepared = existsSync(marker) ? (JSON.parse(readFileSync(marker, 'utf8')) as { dependencies: unknown }).dependencies : undefined;
const missing =
  prepared === undefined
    ? `no npm cache for the offline install at ${cache}: run \`node examples/packed/prepare-offline.mjs\` once with the npm registry (.ci/run's setup step does)`
    : JSON.stringify(prepared) !== JSON.stringify(thirdParty())
      ? `the npm cache at ${cache} was filled for other dependencies than the packages' now: run \`node examples/packed/prepare-offline.mjs\` again`
      : undefined;

/** `tsc`'s diagnostics as `file(line,col): error TSxxxx: ...` lines (continuation lines folded in). */
function diagnostics(output: string): string[] {
  const out: string[] = [];
  for (const line of output.split('\n')) {
    if (/^\S.*\(\d+,\d+\): error TS\d+/.test(line)) out.push(line);
    else if (line.trim() && out.length) out[out.length - 1] += `\n${line}`;
  }
  return out;
}

describe('the packages install on their own', {
  skip: missing !== undefined,
  meta: { requires: 'an npm cache for offline installs', skipReason: missing },
}, () => {
  test('an app installed from the tarballs type-checks with tsc --strict and trains', () => {
    const work = mkdtempSync(join(tmpdir(), 'spikeflow-install-'));
    try {
      const tarballs = join(work, 'tarballs');
      mkdirSync(tarballs);
      const app = join(work, 'app');
      mkdirSync(app);
      const dependencies: Record<string, string> = {};
      for (const dir of installed) {
        const { name } = JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')) as { name: string };
        dependencies[name] = `file:${pack(join(root, dir), tarballs)}`;
      }
      writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'spikeflow-user-app', private: true, type: 'module', dependencies }, null, 2));
      for (const f of ['train.ts', 'tsconfig.json']) cpSync(join(root, 'examples', 'packed', 'app', f), join(app, f));

      const npm = spawnSync(
        process.platform === 'win32' ? 'npm.cmd' : 'npm',
        ['install', '--offline', '--cache', cache, '--ignore-scripts', '--no-audit', '--no-fund', '--no-update-notifier'],
        { cwd: app, encoding: 'utf8', timeout: 300_000 },
      );
      expect(npm.status, `npm install --offline failed:\n${npm.stdout}\n${npm.stderr}`).toBe(0);
      // Real copies from the tarballs, not links into the workspace.
      for (const name of Object.keys(dependencies)) {
        const at = join(app, 'node_modules', name);
        expect(lstatSync(at).isSymbolicLink(), name).toBe(false);
        expect(realpathSync(at).startsWith(root)).toBe(false);
      }

      // tsc --strict with the libraries' declarations checked too (no skipLibCheck): nothing may be
      // wrong in the app or in spikeflow's declarations. TensorFlow.js's own declarations
      // (tfjs-layers) do not pass a strict check of their own; those are counted and left.
      const tsc = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json', '--strict', '--skipLibCheck', 'false'], {
        cwd: app,
        encoding: 'utf8',
      });
      const found = diagnostics(tsc.stdout);
      const ours = found.filter((d) => !d.startsWith('node_modules/@tensorflow/'));
      expect(ours, 'tsc --strict found these in the app or in spikeflow’s declarations').toEqual([]);
      expect(existsSync(join(app, 'dist', 'train.js'))).toBe(true);

      const run = execFileSync(process.execPath, ['dist/train.js'], { cwd: app, encoding: 'utf8', timeout: 300_000 });
      const result = JSON.parse(run.trim().split('\n').at(-1)!) as {
        backend: string;
        kernels: string;
        fastKernel: boolean;
        fused: boolean;
        firstLoss: number;
        lastLoss: number;
        accuracy: number;
        chance: number;
      };
      expect(result.backend).toBe('wasm');
      // The installed kernels are the workspace's own, and the network runs on them.
      expect(result.kernels).toBe(KERNELS_VERSION);
      expect(result.fastKernel).toBe(true);
      expect(result.fused).toBe(true);
      expect(result.lastLoss).toBeLessThan(0.5 * result.firstLoss);
      expect(result.accuracy).toBeGreaterThan(result.chance + 0.4);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});

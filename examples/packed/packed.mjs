// What the packaging checks install: the packages of the README's TypeScript example (and the kernels
// the wasm backend brings), and where the npm cache for their offline install lives.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const root = new URL('../..', import.meta.url).pathname;

/** Workspace folders of the packages the app installs from their tarballs. */
export const installed = ['packages/core', 'packages/kernels', 'plugins/neuron-lif', 'plugins/rule-bptt', 'plugins/backend-wasm'];

/** The npm cache the offline install reads (`SPIKEFLOW_NPM_CACHE`, else `~/.cache/spikeflow/npm-offline`). */
export const cacheDir = () => process.env.SPIKEFLOW_NPM_CACHE || join(homedir(), '.cache', 'spikeflow', 'npm-offline');

/** The marker the preparation writes into the cache once it holds everything. */
export const markerOf = (/** @type {string} */ cache) => join(cache, 'spikeflow-packed.json');

/** The third-party dependencies (name → range) of the installed packages: what the cache must hold. */
export function thirdParty() {
  /** @type {Record<string, string>} */
  const out = {};
  for (const dir of installed) {
    const pkg = JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8'));
    for (const [name, range] of Object.entries(pkg.dependencies ?? {})) {
      if (!name.startsWith('@spikeflow/')) out[name] = range;
    }
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

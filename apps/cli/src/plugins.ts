import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { SpikeflowError, createRegistry, isSpikeflowError, loadPlugins, type Registry, type SpikeflowPlugin } from '@spikeflow/core';

const here = import.meta.url;

/**
 * Loads plugins by package name, looking first from `from` (the config file's directory, where a
 * project installs its own plugins) and then from the CLI's own installation (the official plugins
 * it ships with).
 */
export async function loadFrom(names: readonly string[], from: string): Promise<SpikeflowPlugin[]> {
  const out: SpikeflowPlugin[] = [];
  for (const name of names) {
    try {
      out.push(...(await loadPlugins([name], { from })));
    } catch (e) {
      if (!isSpikeflowError(e, 'PLUGIN_NOT_FOUND')) throw e;
      try {
        out.push(...(await loadPlugins([name], { from: here })));
      } catch (e2) {
        if (!isSpikeflowError(e2, 'PLUGIN_NOT_FOUND')) throw e2;
        throw new SpikeflowError(
          'PLUGIN_NOT_FOUND',
          `plugin package '${name}' is not installed (looked from ${from} and from the spikeflow CLI). Install it with: pnpm add ${name}   (or: npm install ${name})`,
          { package: name, install: `pnpm add ${name}` },
        );
      }
    }
  }
  return out;
}

/** Plugin packages the CLI ships with, and those a project in `cwd` depends on (keyword `spikeflow-plugin`). */
export function installedPluginNames(cwd = process.cwd()): string[] {
  const names = new Set<string>();
  const own = createRequire(here)('../package.json') as { dependencies?: Record<string, string> };
  for (const d of Object.keys(own.dependencies ?? {})) if (d.startsWith('@spikeflow/') && d !== '@spikeflow/core') names.add(d);
  const projectPkg = join(cwd, 'package.json');
  if (existsSync(projectPkg)) {
    const p = JSON.parse(readFileSync(projectPkg, 'utf8')) as Record<string, Record<string, string> | undefined>;
    const req = createRequire(projectPkg);
    for (const d of Object.keys({ ...p['dependencies'], ...p['devDependencies'] })) {
      try {
        const meta = JSON.parse(readFileSync(join(dirname(req.resolve(`${d}/package.json`)), 'package.json'), 'utf8')) as { keywords?: string[] };
        if (meta.keywords?.includes('spikeflow-plugin')) names.add(d);
      } catch {
        /* not resolvable with a package.json export: not a plugin we can list */
      }
    }
  }
  return [...names].sort();
}

export async function registryOf(names: readonly string[], from: string): Promise<Registry> {
  return createRegistry(await loadFrom(names, from));
}

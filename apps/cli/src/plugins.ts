import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SpikeflowError, checkStoredPlugins, createRegistry, isSpikeflowError, loadPlugins, type Registry, type SpikeflowPlugin } from '@spikeflow/core';

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

/** Whether `name`, resolved from `from`, is a package with the `spikeflow-plugin` keyword. */
function isPlugin(name: string, from: string): boolean {
  try {
    const meta = JSON.parse(readFileSync(createRequire(from).resolve(`${name}/package.json`), 'utf8')) as { keywords?: string[] };
    return meta.keywords?.includes('spikeflow-plugin') ?? false;
  } catch {
    return false; // not resolvable with a package.json export: not a plugin we can list
  }
}

/** Plugin packages (keyword `spikeflow-plugin`) the CLI ships with and those a project in `cwd` depends on. */
export function installedPluginNames(cwd = process.cwd()): string[] {
  const names = new Set<string>();
  const own = createRequire(here)('../package.json') as { dependencies?: Record<string, string> };
  for (const d of Object.keys(own.dependencies ?? {})) if (isPlugin(d, here)) names.add(d);
  const projectPkg = join(cwd, 'package.json');
  if (existsSync(projectPkg)) {
    const p = JSON.parse(readFileSync(projectPkg, 'utf8')) as Record<string, Record<string, string> | undefined>;
    for (const d of Object.keys({ ...p['dependencies'], ...p['devDependencies'] })) if (isPlugin(d, projectPkg)) names.add(d);
  }
  return [...names].sort();
}

export async function registryOf(names: readonly string[], from: string): Promise<Registry> {
  return createRegistry(await loadFrom(names, from));
}

/**
 * Loads plugins named by a file's contents (a checkpoint's stored run config): only installed
 * packages by name, looked for from each of `bases` and then from the CLI's own installation, each
 * imported from where the check found it. Anything else is refused before any import
 * ({@link checkStoredPlugins}, `PLUGIN_REFUSED`).
 */
export async function loadStored(
  names: unknown,
  { bases, source, instead }: { bases: readonly string[]; source: string; instead: string },
): Promise<SpikeflowPlugin[]> {
  const found = checkStoredPlugins(names, { from: [...bases, fileURLToPath(here)], source, instead });
  const out: SpikeflowPlugin[] = [];
  for (const { name, from } of found) out.push(...(await loadPlugins([name], { from })));
  return out;
}

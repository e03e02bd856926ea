// Packing workspace packages as `pnpm publish` would (workspace: ranges replaced by versions), and
// running the tools of a published package's checks on the tarballs.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

export const root = new URL('../../..', import.meta.url).pathname;
const require = createRequire(import.meta.url);

/** pnpm as the test command was started with it (`npx pnpm@10 test` sets npm_execpath), else `pnpm` on PATH. */
function pnpm(): [string, string[]] {
  const exec = process.env['npm_execpath'];
  return exec && /pnpm\.c?js$/.test(exec) ? [process.execPath, [exec]] : ['pnpm', []];
}

export interface WorkspacePackage {
  readonly name: string;
  readonly dir: string;
  readonly version: string;
}

/** Every package of the workspace that is published (not `private`), by folder. */
export function publishedPackages(): WorkspacePackage[] {
  return ['packages', 'plugins', 'apps'].flatMap((group) =>
    readdirSync(join(root, group))
      .map((n) => join(root, group, n))
      .filter((dir) => existsSync(join(dir, 'package.json')))
      .map((dir) => ({ dir, pkg: JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name: string; version: string; private?: boolean } }))
      .filter(({ pkg }) => !pkg.private)
      .map(({ dir, pkg }) => ({ name: pkg.name, dir, version: pkg.version })),
  );
}

/** Packs the package in `dir` into `dest` with `pnpm pack`; the tarball's path. */
export function pack(dir: string, dest: string): string {
  const [cmd, pre] = pnpm();
  const out = execFileSync(cmd, [...pre, 'pack', '--pack-destination', dest], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const tarball = out.trim().split('\n').at(-1)!.trim();
  if (!tarball.endsWith('.tgz') || !existsSync(tarball)) throw new Error(`pnpm pack in ${dir} printed no tarball:\n${out}`);
  return tarball;
}

export interface Finding {
  readonly tool: 'publint' | 'attw';
  readonly level: string;
  readonly message: string;
}

/** publint's findings on a tarball (errors, warnings and suggestions), with its messages formatted. */
export async function publintFindings(tarball: string): Promise<Finding[]> {
  const { publint } = await import('publint');
  const { formatMessage } = await import('publint/utils');
  const bytes = readFileSync(tarball);
  const tar = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const { messages, pkg } = await publint({ pack: { tarball: tar }, level: 'suggestion', strict: false });
  return messages.map((m) => ({ tool: 'publint', level: m.type, message: formatMessage(m, pkg) ?? m.code }));
}

/**
 * attw's problems on a tarball, for an ESM-only package (`--profile esm-only`: resolution from CommonJS
 * and through node10 are not expected to work). Every problem it reports is an error.
 */
export function attwFindings(tarball: string): Finding[] {
  const bin = join(require.resolve('@arethetypeswrong/cli/package.json'), '..', 'dist', 'index.js');
  const r = spawnSync(process.execPath, [bin, tarball, '--profile', 'esm-only', '--format', 'json', '--no-color'], { encoding: 'utf8' });
  let report: { analysis?: { problems?: { kind: string; entrypoint?: string; resolutionKind?: string }[] } };
  try {
    report = JSON.parse(r.stdout) as typeof report;
  } catch {
    throw new Error(`attw printed no JSON for ${tarball} (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
  const ignored = new Set(['node10', 'node16-cjs']);
  return (report.analysis?.problems ?? [])
    .filter((p) => !p.resolutionKind || !ignored.has(p.resolutionKind))
    .map((p) => ({ tool: 'attw', level: 'error', message: `${p.kind} at ${p.entrypoint ?? '.'}${p.resolutionKind ? ` (${p.resolutionKind})` : ''}` }));
}

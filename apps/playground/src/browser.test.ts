import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PageResult } from './main.js';

/**
 * Debian's Chromium, driven by playwright-core (no browser download). Where it is missing, it is
 * installed with apt if this process may (root, or password-less sudo). Where it cannot be had,
 * the browser tests are skipped with the reason, so that `pnpm test` still runs on a machine
 * without apt; set SPIKEFLOW_REQUIRE_BROWSER=1 to make that a failure instead.
 */
const CHROMIUM = process.env['SPIKEFLOW_CHROMIUM'] ?? '/usr/bin/chromium';

function chromiumOrReason(): string | undefined {
  if (existsSync(CHROMIUM)) return undefined;
  const install = 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium';
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  spawnSync('sh', ['-c', root ? install : `sudo -n sh -c '${install}'`], { stdio: 'inherit' });
  if (existsSync(CHROMIUM)) return undefined;
  return `no Chromium at ${CHROMIUM}, and apt could not install it here: install it with 'sudo apt-get install chromium' (Debian/Ubuntu), or set SPIKEFLOW_CHROMIUM to a Chromium binary`;
}

const missing = chromiumOrReason();
if (missing && process.env['SPIKEFLOW_REQUIRE_BROWSER'] === '1') throw new Error(missing);
if (missing) console.warn(`browser tests skipped: ${missing}`);

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');
const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };
let server: Server;
let browser: Browser;
let base: string;

beforeAll(async () => {
  if (missing) return;
  await build({ root, logLevel: 'error', configFile: join(root, 'vite.config.ts') });
  server = createServer((req, res) => {
    const path = normalize(join(dist, (req.url ?? '/').split('?')[0]!.replace(/^\/$/, '/index.html')));
    if (!path.startsWith(dist) || !existsSync(path)) {
      res.statusCode = 404;
      res.end();
      return;
    }
    res.setHeader('content-type', types[extname(path)] ?? 'application/octet-stream');
    res.end(readFileSync(path));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  // SwiftShader gives headless Chromium a software WebGL 2 with float32 render targets. WebGPU is
  // left as the browser has it: its software adapter behind --enable-unsafe-webgpu lost its device
  // and read back zeros here, so a headless run reports WebGPU skipped (no adapter).
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}, 600_000);

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
});

async function pageResult(backend: string): Promise<PageResult> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${base}?backend=${backend}`, { waitUntil: 'commit' });
  await page.waitForFunction(() => (window as unknown as { spikeflowResult?: unknown }).spikeflowResult !== undefined, null, { timeout: 300_000 }).catch(() => undefined);
  const result = (await page.evaluate(() => (window as unknown as { spikeflowResult?: PageResult }).spikeflowResult)) ?? { backend, error: `the page never finished: ${errors.join('; ') || 'no error reported'}` };
  await page.close();
  return result;
}

describe.skipIf(missing !== undefined)(`spikeflow in headless Chromium${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('WebGL: trains a recurrent LIF network with BPTT, and every gradient fixture passes', async () => {
    const r = await pageResult('webgl');
    expect(r.error, r.error).toBeUndefined();
    expect(r.skipped, r.skipped).toBeUndefined();
    expect(r.info!.tfBackend).toBe('webgl');
    const losses = r.losses!;
    expect(losses.length).toBe(30);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses.slice(-5).reduce((a, b) => a + b, 0) / 5).toBeLessThan(0.6 * losses[0]!);
    expect(r.fixtures!.length).toBeGreaterThanOrEqual(8);
    for (const f of r.fixtures!) expect(f.failures, `${f.name} (worst ${f.worst.toExponential(2)} at tolerance ${r.tolerance})`).toEqual([]);
  });

  it('WebGPU: the same where Chromium exposes an adapter, else skipped with the reason', async (ctx) => {
    const r = await pageResult('webgpu');
    if (r.skipped) {
      console.warn(`WebGPU skipped: ${r.skipped}`);
      ctx.skip();
    }
    expect(r.error, r.error).toBeUndefined();
    expect(r.losses!.slice(-5).reduce((a, b) => a + b, 0) / 5).toBeLessThan(0.6 * r.losses![0]!);
    for (const f of r.fixtures!) expect(f.failures, f.name).toEqual([]);
  });
});

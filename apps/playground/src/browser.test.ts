import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PlaygroundState } from './app.js';
import type { PageResult } from './check.js';

// The repo's skip convention (scripts/test-summary.mjs): a test that can be skipped says why in
// its meta, `skipReason`; one that needs something of the machine names it in `requires`, and
// under CI=true the summary fails on its skip.
declare module 'vitest' {
  interface TaskMeta {
    skipReason?: string;
    requires?: string;
  }
}

/**
 * Debian's Chromium, driven by playwright-core (no browser download). This test installs nothing:
 * `.ci/run` installs Chromium before the tests (see README, "Testing"). Where it is missing, the
 * browser tests are skipped with the reason, so that `pnpm test` still runs on such a machine;
 * with SPIKEFLOW_REQUIRE_BROWSER=1 (as in `.ci/run`) a missing Chromium fails instead.
 */
const CHROMIUM = process.env['SPIKEFLOW_CHROMIUM'] ?? '/usr/bin/chromium';
const REQUIRED = process.env['SPIKEFLOW_REQUIRE_BROWSER'] === '1';
const missing = existsSync(CHROMIUM)
  ? undefined
  : `no Chromium at ${CHROMIUM}: install Debian's 'chromium' package (the setup step of .ci/run does so before the tests), or set SPIKEFLOW_CHROMIUM to a Chromium binary`;
if (missing && !REQUIRED) console.warn(`browser tests skipped: ${missing}`);

if (REQUIRED) {
  it('Chromium is here (SPIKEFLOW_REQUIRE_BROWSER=1)', () => {
    expect(missing, missing).toBeUndefined();
  });
}

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');
const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };
/** Where the screenshots go: beside the test report (kept with the test results). */
const shots = join(root, '.test-results', 'screenshots');
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
    // As the dev and preview servers (vite.config.ts): cross-origin isolated.
    res.setHeader('cross-origin-opener-policy', 'same-origin');
    res.setHeader('cross-origin-embedder-policy', 'require-corp');
    res.end(readFileSync(path));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  // SwiftShader gives headless Chromium a software WebGL 2 with float32 render targets. WebGPU is
  // left as the browser has it: its software adapter behind --enable-unsafe-webgpu lost its device
  // and read back zeros here, so a headless run reports WebGPU skipped (no adapter).
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--use-angle=swiftshader',
      '--enable-unsafe-swiftshader',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
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
  await page.goto(`${base}check.html?backend=${backend}`, { waitUntil: 'commit' });
  await page
    .waitForFunction(() => (window as unknown as { spikeflowResult?: unknown }).spikeflowResult !== undefined, null, { timeout: 300_000 })
    .catch(() => undefined);
  const result = (await page.evaluate(() => (window as unknown as { spikeflowResult?: PageResult }).spikeflowResult)) ?? {
    backend,
    error: `the page never finished: ${errors.join('; ') || 'no error reported'}`,
  };
  await page.close();
  return result;
}

// The page takes 40–60 s on SwiftShader, more on a loaded machine. The time-out is the file's own,
// so that a plain `npx vitest run` here has it too.
describe('spikeflow in headless Chromium', { skip: missing !== undefined, timeout: 600_000, meta: { requires: 'Chromium', skipReason: missing } }, () => {
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
      // No adapter is how headless Chromium on SwiftShader is (docs/backends.md), not a setup step
      // missing: this skip stays a skip under CI.
      const reason = `this Chromium exposes no usable WebGPU adapter: ${r.skipped}`;
      console.warn(`WebGPU skipped: ${reason}`);
      ctx.task.meta.skipReason = reason;
      delete ctx.task.meta.requires;
      ctx.skip(reason);
    }
    expect(r.error, r.error).toBeUndefined();
    expect(r.losses!.slice(-5).reduce((a, b) => a + b, 0) / 5).toBeLessThan(0.6 * r.losses![0]!);
    for (const f of r.fixtures!) expect(f.failures, f.name).toEqual([]);
  });
});

/** Trains `iterations` in the playground page with the given settings; its final state and a screenshot's path. */
async function playground(query: string, iterations: number): Promise<{ state: PlaygroundState; shot: string; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  // Everything the page needs comes from its own origin (it trains offline once loaded).
  page.on('request', (r) => {
    if (!/^(data|blob):/.test(r.url()) && !r.url().startsWith(base)) errors.push(`requested ${r.url()}`);
  });
  await page.goto(`${base}index.html?${query}&iterations=${iterations}&autostart=1`, { waitUntil: 'load' });
  await page
    .waitForFunction(
      () => {
        const s = (window as unknown as { playground?: PlaygroundState }).playground;
        return s !== undefined && (s.status === 'stopped' || s.status === 'error');
      },
      null,
      { timeout: 300_000 },
    )
    .catch(() => undefined);
  const state = (await page.evaluate(() => (window as unknown as { playground: PlaygroundState }).playground)) as PlaygroundState;
  mkdirSync(shots, { recursive: true });
  const shot = join(shots, `playground-${query.replace(/[^a-z0-9=]+/gi, '-')}.png`);
  await page.screenshot({ path: shot, fullPage: true });
  await page.close();
  return { state, shot, errors };
}

/** `navigator.hardwareConcurrency` of a page of this browser. */
async function coresOfPage(): Promise<number> {
  const page = await browser.newPage();
  await page.goto(`${base}check.html?backend=none`, { waitUntil: 'commit' });
  const cores = await page.evaluate(() => navigator.hardwareConcurrency);
  await page.close();
  return cores;
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('the playground in headless Chromium', { skip: missing !== undefined, timeout: 600_000, meta: { requires: 'Chromium', skipReason: missing } }, () => {
  for (const backend of ['wasm', 'webgl']) {
    it(`${backend}: trains 30 iterations of spike patterns with BPTT in the page; the loss falls and the raster is drawn`, async () => {
      const { state, shot, errors } = await playground(`backend=${backend}&task=patterns&rule=bptt&neuron=lif`, 30);
      expect(state.error, state.error).toBeUndefined();
      expect(errors).toEqual([]);
      expect(state.status).toBe('stopped');
      expect(state.info!.tfBackend).toBe(backend);
      // On wasm the network runs whole windows through spikeflow's fast kernels, compiled in the page.
      expect(state.fused).toBe(backend === 'wasm');
      expect(state.iteration).toBe(30);
      expect(state.losses.every(Number.isFinite)).toBe(true);
      expect(mean(state.losses.slice(-5))).toBeLessThan(0.7 * mean(state.losses.slice(0, 5)));
      expect(state.rasterSpikes).toBeGreaterThan(0);
      expect(existsSync(shot)).toBe(true);
      if (backend === 'wasm') {
        // The page is cross-origin isolated: the kernels run on Web Workers too (one per core, up to 4).
        expect(state.info!.threads).toBe(Math.min(4, await coresOfPage()));
      }
      console.log(
        `playground on ${backend}: loss ${mean(state.losses.slice(0, 5)).toFixed(3)} → ${mean(state.losses.slice(-5)).toFixed(3)}, ${state.samplesPerSecond.toFixed(0)} samples/s; screenshot ${shot}`,
      );
    });
  }

  it('wasm: the kernels on Web Workers (2 threads) train to bit-identical losses as on one thread', async () => {
    const two = await playground('backend=wasm&task=digits&rule=bptt&hidden=96&threads=2', 12);
    const one = await playground('backend=wasm&task=digits&rule=bptt&hidden=96&threads=1', 12);
    for (const r of [two, one]) {
      expect(r.state.error, r.state.error).toBeUndefined();
      expect(r.errors).toEqual([]);
    }
    expect([two.state.info!.threads, one.state.info!.threads]).toEqual([2, 1]);
    expect(two.state.losses.length).toBe(12);
    expect(two.state.losses).toEqual(one.state.losses);
  });
});

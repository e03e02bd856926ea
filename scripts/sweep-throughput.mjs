#!/usr/bin/env node
// Measures sweeps on BullMQ against running the same trials one after another: trials per hour
// run one after another (`spikeflow train`, all kernel threads), on 1 worker, on 2 workers (the
// cores split between them), and the time from a worker's SIGKILL to its trial running again
// on another worker (for a given --lock-ms). Needs redis-server; starts its own on a free port.
// Prints JSON.
//
//   node scripts/sweep-throughput.mjs [--trials 6] [--lock-ms 30000]
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os, { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const trials = arg('--trials', 6);
const lockMs = arg('--lock-ms', 30_000);
const bin = fileURLToPath(new URL('../apps/cli/dist/bin.js', import.meta.url));
const cores = os.cpus().length;

const port = await new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const dir = mkdtempSync(join(tmpdir(), 'spikeflow-throughput-'));
const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
const url = `redis://127.0.0.1:${port}`;
for (let i = 0; i < 100 && spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout?.trim() !== 'PONG'; i++)
  await new Promise((r) => setTimeout(r, 100));

const base = {
  plugins: ['@spikeflow/neuron-lif', '@spikeflow/rule-bptt', '@spikeflow/backend-wasm', '@spikeflow/dataset-add-task'],
  backend: 'wasm',
  seed: 1,
  data: { name: 'add-task', steps: 50, trainSamples: 8192, testSamples: 256 },
  model: { layers: [{ neuron: 'lif', size: 128, recurrent: true }], readout: { kappa: 0 } },
  rule: { name: 'bptt' },
  optimizer: { name: 'adam', lr: 0.003 },
  train: { epochs: 2, batchSize: 64, checkpointEvery: 4 },
};
writeFileSync(join(dir, 'base.json'), JSON.stringify(base));
const lrs = Array.from({ length: trials }, (_, i) => 0.001 * (i + 1));
const sweep = (name) => {
  writeFileSync(join(dir, `${name}.json`), JSON.stringify({ name, base: 'base.json', root: 'sweeps', space: { 'optimizer.lr': lrs } }));
  return `${name}.json`;
};
const env = (threads) => ({ ...process.env, SPIKEFLOW_THREADS: String(threads) });
const run = (args, threads) =>
  new Promise((resolve) => {
    const c = spawn(process.execPath, [bin, ...args], { cwd: dir, env: env(threads), stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d) => {
      err += d;
    });
    c.on('close', (code) => resolve({ code, err }));
  });
const workers = [];
const worker = (threads, queue) => {
  const w = spawn(process.execPath, [bin, 'worker', '--redis', url, '--queue', queue, '--lock-ms', String(lockMs)], {
    cwd: dir,
    env: env(threads),
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  w.lines = [];
  w.stderr.on('data', (d) => {
    for (const l of d.toString().split('\n').filter(Boolean)) w.lines.push({ t: Date.now(), l });
  });
  workers.push(w);
  return w;
};
const kill = (w) => {
  try {
    process.kill(-w.pid, 'SIGKILL');
  } catch {
    // gone
  }
};
const perHour = (ms) => Math.round((trials * 3_600_000) / ms);
const out = { trials, cores, lockMs, trialConfig: base };

// One after another: each trial a `spikeflow train` with every kernel thread.
let t0 = Date.now();
for (const [i, lr] of lrs.entries()) {
  writeFileSync(join(dir, `seq-${i}.json`), JSON.stringify({ ...base, optimizer: { ...base.optimizer, lr } }));
  const r = await run(['train', `seq-${i}.json`, '--out', `seq-${i}`, '--quiet'], cores);
  if (r.code !== 0) throw new Error(r.err);
}
out.sequential = { seconds: (Date.now() - t0) / 1000, trialsPerHour: perHour(Date.now() - t0) };

for (const n of [1, 2]) {
  const ws = Array.from({ length: n }, () => worker(Math.max(1, Math.floor(cores / n)), `q${n}`));
  t0 = Date.now();
  const r = await run(['sweep', sweep(`w${n}`), '--redis', url, '--queue', `q${n}`], 1);
  if (r.code !== 0) throw new Error(r.err);
  out[`workers${n}`] = { seconds: (Date.now() - t0) / 1000, trialsPerHour: perHour(Date.now() - t0) };
  ws.forEach(kill);
}

// A worker killed mid-trial: the time until another worker runs the trial again.
const a = worker(1, 'qk');
const b = worker(1, 'qk');
const coord = run(['sweep', sweep('kill'), '--redis', url, '--queue', 'qk'], 1);
let victim;
while (!victim) {
  victim = a.lines.map((x) => / (kill\.\d+) started/.exec(x.l)?.[1]).find(Boolean);
  await new Promise((r) => setTimeout(r, 50));
}
const ckpt = join(dir, 'sweeps', 'kill', `trial-${victim.split('.')[1]}`, 'checkpoint.sfck');
while (!existsSync(ckpt)) await new Promise((r) => setTimeout(r, 50));
const killedAt = Date.now();
kill(a);
const c = worker(1, 'qk');
for (;;) {
  const hit = [...b.lines, ...c.lines].find((x) => x.t >= killedAt && x.l.includes(`${victim} started`));
  if (hit) {
    out.killToRunning = { trial: victim, seconds: (hit.t - killedAt) / 1000 };
    break;
  }
  await new Promise((r) => setTimeout(r, 50));
}
const r = await coord;
if (r.code !== 0) throw new Error(r.err);
workers.forEach(kill);
redis.kill('SIGKILL');
console.log(JSON.stringify(out, null, 2));

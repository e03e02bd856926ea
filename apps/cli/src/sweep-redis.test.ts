import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { disposeTree, loadCheckpoint, type Tensor } from '@spikeflow/core';

/**
 * Sweeps on BullMQ with a real Redis: `redis-server` on 127.0.0.1 at a free port, started and
 * stopped here; the test only looks for the server on PATH and installs nothing (`.ci/run`'s setup
 * step provides it on CI; the README says how to get it elsewhere). Workers are `spikeflow worker` processes, each
 * the leader of its own process group, so that a test can kill or stop a worker with everything
 * it runs.
 */

// The repo's skip convention (scripts/test-summary.mjs): under CI a skip of a test that `requires` something fails the run.
declare module 'vitest' {
  interface TaskMeta {
    skipReason?: string;
    requires?: string;
  }
}

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const hasRedis = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).status === 0;
const missing = hasRedis ? undefined : "no redis-server on PATH (the setup step of .ci/run provides it; see the README's test requirements)";
const env = { ...process.env, CI: '1', SPIKEFLOW_THREADS: '1' };

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

let redis: ChildProcess | undefined;
let url = '';
const children: ChildProcess[] = [];

beforeAll(async () => {
  if (missing) return;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'spikeflow-redis-'));
  redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    if (spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout?.trim() === 'PONG') return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`redis-server did not answer on port ${port}`);
});

afterAll(() => {
  for (const c of children) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }
  redis?.kill('SIGKILL');
});

/** A `spikeflow worker` in its own process group; its log lines collected. */
function worker(queue: string, lockMs = 2000): { proc: ChildProcess; log: string[] } {
  const proc = spawn(process.execPath, [bin, 'worker', '--redis', url, '--queue', queue, '--lock-ms', String(lockMs)], {
    detached: true,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const log: string[] = [];
  proc.stderr!.on('data', (d: Buffer) => log.push(...d.toString().split('\n').filter(Boolean)));
  children.push(proc);
  return { proc, log };
}

function stop(w: { proc: ChildProcess }): void {
  try {
    process.kill(-w.proc.pid!, 'SIGKILL');
  } catch {
    // gone
  }
}

const base = (train: Record<string, unknown>) => ({
  plugins: ['@spikeflow/neuron-lif', '@spikeflow/rule-bptt', '@spikeflow/backend-wasm', '@spikeflow/dataset-add-task'],
  backend: 'wasm',
  seed: 4,
  data: { name: 'add-task', steps: 12, trainSamples: 512, testSamples: 64 },
  model: { layers: [{ neuron: 'lif', size: 24, recurrent: true }], readout: { kappa: 0 } },
  rule: { name: 'bptt' },
  optimizer: { name: 'adam', lr: 0.003 },
  train,
});

function sweepDir(name: string, values: number[], train: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'spikeflow-sweep-redis-'));
  writeFileSync(join(dir, 'base.json'), JSON.stringify(base(train)));
  writeFileSync(join(dir, 'sweep.json'), JSON.stringify({ name, base: 'base.json', root: 'sweeps', space: { 'optimizer.lr': values } }));
  return dir;
}

/** The sweep coordinator as a child process; resolves with its exit code and output. */
function coordinator(dir: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [bin, 'sweep', 'sweep.json', ...args], { cwd: dir, env });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const rowsOf = (dir: string, name: string) =>
  readFileSync(join(dir, 'sweeps', name, 'results.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { id: string; status: string; value: number; worker?: string; resumed?: { bitwise: boolean }; runDir: string });

/** SHA-256 of a checkpoint's parameters (sorted by name, their float32 bytes). */
function weightsHash(ckpt: string): string {
  const ck = loadCheckpoint(ckpt);
  const params = (ck.trees as { params: Record<string, Tensor> }).params;
  const h = createHash('sha256');
  for (const k of Object.keys(params).sort()) h.update(k).update(Buffer.from((params[k]!.dataSync() as Float32Array).buffer));
  disposeTree(ck.trees as never);
  return h.digest('hex');
}

async function until(what: string, f: () => boolean, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('spikeflow sweep --redis and spikeflow worker (BullMQ on Redis)', {
  skip: missing !== undefined,
  meta: { requires: 'redis-server', skipReason: missing },
}, () => {
  it('gives the same results table as --local 2', async () => {
    const dir = sweepDir('same', [0.001, 0.01, 0.03], { epochs: 2, batchSize: 32, maxBatchesPerEpoch: 2 });
    const ws = [worker('q-same'), worker('q-same')];
    const redisRun = await coordinator(dir, ['--redis', url, '--queue', 'q-same']);
    ws.forEach(stop);
    expect(redisRun.code, redisRun.stderr).toBe(0);
    writeFileSync(join(dir, 'sweep.json'), JSON.stringify({ name: 'same', base: 'base.json', root: 'local', space: { 'optimizer.lr': [0.001, 0.01, 0.03] } }));
    const localRun = await coordinator(dir, ['--local', '2']);
    expect(localRun.code, localRun.stderr).toBe(0);
    // The same rows but for wall times, workers and run directories; the best trial marked alike.
    const result = (root: string) =>
      readFileSync(join(dir, root, 'same', 'results.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { id: string; status: string; value: number; epochs: number; params: unknown })
        .map(({ id, status, value, epochs, params }) => ({ id, status, value, epochs, params }))
        .sort((x, y) => x.id.localeCompare(y.id));
    expect(result('sweeps')).toEqual(result('local'));
    expect(result('sweeps').every((r) => r.status === 'done')).toBe(true);
    const best = (out: string) =>
      out
        .split('\n')
        .find((l) => l.includes(' *'))
        ?.split(/\s+/)[0];
    expect(best(redisRun.stdout)).toBe(best(localRun.stdout));
    expect(new Set(rowsOf(dir, 'same').map((r) => r.worker)).size).toBe(2);
  }, 300_000);

  it('a worker killed mid-trial: a replacement resumes the trial from its checkpoint, to the weights of an uninterrupted run; every result once', async () => {
    const dir = sweepDir('kill', [0.001, 0.002, 0.003, 0.005, 0.01, 0.02], { epochs: 2, batchSize: 32, maxBatchesPerEpoch: 8, checkpointEvery: 2 });
    const a = worker('q-kill');
    const b = worker('q-kill');
    const run = coordinator(dir, ['--redis', url, '--queue', 'q-kill']);
    // The first trial worker a starts, once it has written its first checkpoint.
    let victim = '';
    await until('a trial on worker a', () => {
      victim = a.log.map((l) => / (kill\.\d+) started/.exec(l)?.[1]).find(Boolean) ?? '';
      return victim !== '';
    });
    const trialDir = join(dir, 'sweeps', 'kill', `trial-${victim.split('.')[1]}`);
    await until('its first checkpoint', () => existsSync(join(trialDir, 'checkpoint.sfck')));
    stop(a);
    const c = worker('q-kill');
    const done = await run;
    stop(b);
    stop(c);
    expect(done.code, done.stderr).toBe(0);
    const rows = rowsOf(dir, 'kill');
    expect(rows.map((r) => r.id).sort()).toEqual(['kill:0', 'kill:1', 'kill:2', 'kill:3', 'kill:4', 'kill:5']);
    expect(rows.every((r) => r.status === 'done')).toBe(true);
    const killed = rows.find((r) => r.id === victim.replace('.', ':'))!;
    expect(killed.resumed).toEqual({ bitwise: true });
    // An uninterrupted run of the same config ends with the same weights.
    const fresh = join(dir, 'fresh');
    const r = spawnSync(process.execPath, [bin, 'train', join(trialDir, 'trial.json'), '--out', fresh, '--quiet'], { env, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(weightsHash(join(trialDir, 'checkpoint.sfck'))).toBe(weightsHash(join(fresh, 'checkpoint.sfck')));
  }, 300_000);

  it('a worker paused past its lock: another finishes the trial, and the paused one’s late result is rejected (no second row)', async () => {
    const dir = sweepDir('pause', [0.001, 0.01], { epochs: 2, batchSize: 32, maxBatchesPerEpoch: 8, checkpointEvery: 2 });
    const a = worker('q-pause');
    const run = coordinator(dir, ['--redis', url, '--queue', 'q-pause']);
    let first = '';
    await until('a trial on worker a', () => {
      first = a.log.map((l) => / (pause\.\d+) started/.exec(l)?.[1]).find(Boolean) ?? '';
      return first !== '';
    });
    await until('its first checkpoint', () => existsSync(join(dir, 'sweeps', 'pause', `trial-${first.split('.')[1]}`, 'checkpoint.sfck')));
    process.kill(-a.proc.pid!, 'SIGSTOP');
    const b = worker('q-pause');
    const done = await run;
    expect(done.code, done.stderr).toBe(0);
    process.kill(-a.proc.pid!, 'SIGCONT');
    // It loses the lock on waking, goes on training, and its result is refused when it finishes.
    await until('worker a to find its result rejected', () => a.log.some((l) => /the result of pause\.\d was rejected/.test(l)), 60_000);
    stop(a);
    stop(b);
    const rows = rowsOf(dir, 'pause');
    expect(rows.map((r) => r.id).sort()).toEqual(['pause:0', 'pause:1']);
    expect(rows.find((r) => r.id === first.replace('.', ':'))!.worker).not.toContain(String(a.proc.pid));
  }, 300_000);
});

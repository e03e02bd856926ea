import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeCheckpoint, loadCheckpoint, tf, disposeTree, type Tensor } from '@spikeflow/core';
import { encodeAedat31, encodeGestureLabels, encodeNmnist, polarityPackets } from '@spikeflow/dataset-events';
import { eventsOf } from '@spikeflow/events';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
/** A small file in the SHD layout, from the dataset-shd plugin's test data. */
const shdTestFile = (name: string) => fileURLToPath(new URL(`../../../plugins/dataset-shd/test-data/${name}`, import.meta.url));
const cli = (args: string[], cwd: string) => spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', env: { ...process.env, CI: '1' } });
/** SwiftShader's Vulkan driver and Chromium's Vulkan loader, where Debian's chromium-common puts them (WebGPU in Node without a GPU). */
const swiftshaderDir = process.env.SPIKEFLOW_SWIFTSHADER_DIR ?? '/usr/lib/chromium';
const swiftshader = existsSync(join(swiftshaderDir, 'vk_swiftshader_icd.json')) && existsSync(join(swiftshaderDir, 'libvulkan.so.1'));
const requires = 'a Vulkan driver for WebGPU in Node (SwiftShader: Debian chromium-common)';

const config = (over: Record<string, unknown> = {}) => ({
  plugins: ['@spikeflow/neuron-lif', '@spikeflow/rule-bptt', '@spikeflow/backend-wasm', '@spikeflow/dataset-add-task'],
  backend: 'wasm',
  seed: 3,
  data: { name: 'add-task', steps: 12, trainSamples: 1280, testSamples: 64 },
  model: { layers: [{ neuron: 'lif', size: 24, recurrent: true }], readout: { kappa: 0 } },
  rule: { name: 'bptt' },
  optimizer: { name: 'adam', lr: 0.003 },
  train: { epochs: 2, batchSize: 32, checkpointEvery: 3 },
  ...over,
});

function workdir(over?: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'spikeflow-cli-'));
  writeFileSync(join(dir, 'run.json'), JSON.stringify(config(over)));
  return dir;
}

/** A seeded generator for the synthetic event sets (a linear congruential one: no dependency, same files every run). */
function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

/**
 * `n` events of one synthetic sample in time order over `seconds`: class 0 fires in the left
 * third of the sensor, class 1 in the right third (random rows and polarities) — a set a conv
 * network can learn in a few updates.
 */
function syntheticEvents(label: number, n: number, width: number, height: number, seconds: number, rand: () => number) {
  const t = Array.from({ length: n }, () => rand() * seconds).sort((a, b) => a - b);
  const third = Math.floor(width / 3);
  const x = t.map(() => (label === 0 ? 0 : width - third) + Math.floor(rand() * third));
  const y = t.map(() => Math.floor(rand() * height));
  const p = t.map(() => (rand() < 0.5 ? 0 : 1));
  return eventsOf(t, x, y, p);
}

/** N-MNIST's layout in `dir`: Train/<digit>/ and Test/<digit>/ of `.bin` samples, digits 0 and 1 only. */
function writeSyntheticNmnist(dir: string, perClass: { train: number; test: number }): void {
  const rand = lcg(7);
  for (const [split, n] of [
    ['Train', perClass.train],
    ['Test', perClass.test],
  ] as const) {
    for (const digit of [0, 1]) {
      mkdirSync(join(dir, split, String(digit)), { recursive: true });
      for (let i = 0; i < n; i++) writeFileSync(join(dir, split, String(digit), `${i + 1}.bin`), encodeNmnist(syntheticEvents(digit, 300, 34, 34, 0.3, rand)));
    }
  }
}

/**
 * DVS Gesture's layout in `dir`: one AEDAT 3.1 recording per split, each with `segments` labelled
 * segments of 2 s alternating gestures 1 and 2 (labels 0 and 1), and the trials lists.
 */
function writeSyntheticGesture(dir: string, segments: { train: number; test: number }): void {
  const rand = lcg(11);
  mkdirSync(dir, { recursive: true });
  for (const [split, n, name] of [
    ['train', segments.train, 'user01_fluorescent.aedat'],
    ['test', segments.test, 'user24_led.aedat'],
  ] as const) {
    const parts = Array.from({ length: n }, (_, i) => {
      const ev = syntheticEvents(i % 2, 1500, 128, 128, 2, rand);
      return { t: Array.from(ev.t, (v) => v + 2 * i), x: Array.from(ev.x), y: Array.from(ev.y), p: Array.from(ev.p) };
    });
    const ev = eventsOf(
      parts.flatMap((q) => q.t),
      parts.flatMap((q) => q.x),
      parts.flatMap((q) => q.y),
      parts.flatMap((q) => q.p),
    );
    writeFileSync(join(dir, name), encodeAedat31(polarityPackets(ev, 4096)));
    writeFileSync(
      join(dir, name.replace('.aedat', '_labels.csv')),
      encodeGestureLabels(Array.from({ length: n }, (_, i) => ({ label: (i % 2) + 1, startUs: 2_000_000 * i, endUs: 2_000_000 * (i + 1) }))),
    );
    writeFileSync(join(dir, split === 'train' ? 'trials_to_train.txt' : 'trials_to_test.txt'), `${name}\n`);
  }
}

/**
 * The records of a metrics log a run is still writing: a last line the run has not finished
 * writing does not parse yet, and is skipped.
 */
function writtenRecords(log: string): { type: string; position?: { step: number; epoch: number; batch: number } }[] {
  return readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as { type: string; position?: { step: number; epoch: number; batch: number } }];
      } catch {
        return [];
      }
    });
}

function params(path: string): Record<string, Float32Array> {
  const ck = loadCheckpoint(path);
  const out = Object.fromEntries(Object.entries((ck.trees as { params: Record<string, Tensor> }).params).map(([k, t]) => [k, t.dataSync() as Float32Array]));
  disposeTree(ck.trees as never);
  return out;
}

describe('spikeflow train', () => {
  it('trains from a config file and writes a checkpoint, a JSONL log, a summary and plots', () => {
    const dir = workdir();
    const r = cli(['train', 'run.json', '--out', 'out', '--epochs', '1'], dir);
    expect(r.stderr).not.toMatch(/Error|spikeflow:/);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/test loss: \d\.\d{4}/);
    for (const f of ['checkpoint.sfck', 'metrics.jsonl', 'summary.json', 'config.json', 'loss.svg']) expect(existsSync(join(dir, 'out', f)), f).toBe(true);
    const events = readFileSync(join(dir, 'out', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string });
    expect(events[0]!.type).toBe('start');
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['batch', 'epoch', 'eval', 'checkpoint', 'end']));
    expect(readFileSync(join(dir, 'out', 'loss.svg'), 'utf8')).toMatch(/^<svg[\s\S]*<polyline|<circle/);
    const ev = cli(['eval', 'out'], dir);
    expect(ev.status).toBe(0);
    expect(JSON.parse(ev.stdout)).toMatchObject({ split: 'test', samples: 64 });
    // The run directory is not overwritten by accident.
    const again = cli(['train', 'run.json', '--out', 'out'], dir);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/already holds a run.*--resume/);
  });

  it('FPTT with evalWith W̄: the trainer and `spikeflow eval` both evaluate the running average', () => {
    const dir = workdir({
      plugins: ['@spikeflow/neuron-ltc', '@spikeflow/rule-fptt', '@spikeflow/backend-wasm', '@spikeflow/dataset-add-task'],
      model: { layers: [{ neuron: 'ltc', size: 16, recurrent: true, params: { threshold: 'fixed' } }], readout: { from: 'membrane', kappa: 0 } },
      rule: { name: 'fptt', window: 4, alpha: 0.5, evalWith: 'Wbar' },
      train: { epochs: 1, batchSize: 32, maxBatchesPerEpoch: 5 },
    });
    const r = cli(['train', 'run.json', '--out', 'out'], dir);
    expect(r.stderr).not.toMatch(/Error|spikeflow:/);
    expect(r.status).toBe(0);
    const events = readFileSync(join(dir, 'out', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; result?: { loss: number } });
    const lastEval = events.filter((e) => e.type === 'eval').at(-1)!.result!.loss;
    const ev = cli(['eval', 'out'], dir);
    expect(ev.status).toBe(0);
    expect((JSON.parse(ev.stdout) as { loss: number }).loss).toBeCloseTo(lastEval, 6);
    // The weights themselves (not W̄) score differently.
    writeFileSync(
      join(dir, 'w.json'),
      JSON.stringify({ ...config(), ...JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')), rule: { name: 'fptt', window: 4, alpha: 0.5 } }),
    );
    const w = cli(['train', 'w.json', '--out', 'w'], dir);
    expect(w.status).toBe(0);
    const wEval = readFileSync(join(dir, 'w', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; result?: { loss: number } })
      .filter((e) => e.type === 'eval')
      .at(-1)!.result!.loss;
    expect(wEval).not.toBeCloseTo(lastEval, 4);
  });

  it('every config shipped in apps/cli/configs names installed plugins and composes', () => {
    const dir = fileURLToPath(new URL('../configs/', import.meta.url));
    // The SHD configs read shd_train.h5 and shd_test.h5 from the cache: small files in the real layout.
    const cache = mkdtempSync(join(tmpdir(), 'spikeflow-cache-'));
    mkdirSync(join(cache, 'shd'));
    for (const split of ['train', 'test']) copyFileSync(shdTestFile('shd-f16.h5'), join(cache, 'shd', `shd_${split}.h5`));
    // The event configs read N-MNIST and DVS Gesture files in their real layouts.
    writeSyntheticNmnist(join(cache, 'nmnist'), { train: 2, test: 1 });
    writeSyntheticGesture(join(cache, 'dvs-gesture'), { train: 2, test: 2 });
    for (const name of readdirSync(dir).filter((f) => f.endsWith('.json'))) {
      const r = cli(['train', join(dir, name), '--out', join(mkdtempSync(join(tmpdir(), 'spikeflow-cfg-')), 'x'), '--dry-run', '--cache-dir', cache], dir);
      expect(r.stderr, name).toBe('');
      expect(r.status, name).toBe(0);
      const plan = JSON.parse(r.stdout) as {
        rule: { name: string; memory: string };
        parameterCount: number;
        dataset: { steps: number };
        batchesPerEpoch: number;
      };
      expect(plan.parameterCount, name).toBeGreaterThan(0);
      expect(plan.batchesPerEpoch, name).toBeGreaterThan(0);
      if (name === 'dvs-gesture-sew.json') expect(plan.dataset).toMatchObject({ steps: 16, channels: 2048, shape: [32, 32, 2] });
      if (name === 'mnist-conv.json') {
        // The image variant's shape reaches the conv layers; a conv network of LIF layers runs fused, a window at a time.
        expect((plan as unknown as { fused: boolean }).fused, name).toBe(true);
        expect(plan.dataset).toMatchObject({ steps: 4, channels: 784, shape: [28, 28, 1] });
      }
      if (name === 'add-task-fptt-1000.json') {
        expect(plan.rule).toMatchObject({ name: 'fptt(K=20, dual, terminal)', memory: 'O(k)' });
        expect(plan.dataset.steps).toBe(1000);
      }
    }
  });

  it('the shipped conv configs for N-MNIST (BPTT, TSSL-BP) and DVS Gesture (SEW-ResNet) train end to end on files in those formats: their loss falls', () => {
    const dir = fileURLToPath(new URL('../configs/', import.meta.url));
    const cache = mkdtempSync(join(tmpdir(), 'spikeflow-events-cache-'));
    writeSyntheticNmnist(join(cache, 'nmnist'), { train: 16, test: 4 });
    writeSyntheticGesture(join(cache, 'dvs-gesture'), { train: 16, test: 4 });
    for (const name of ['nmnist-conv.json', 'nmnist-tssl.json', 'dvs-gesture-sew.json']) {
      const shipped = JSON.parse(readFileSync(join(dir, name), 'utf8')) as { train: Record<string, unknown>; optimizer: Record<string, unknown> };
      // The shipped data, model, rule, loss and optimizer; a schedule of 6 epochs of batches of 8 on the 32 samples
      // (TSSL-BP's: at 20× the authors' learning rate, which takes the 60,000 digits to move).
      const optimizer = name === 'nmnist-tssl.json' ? { ...shipped.optimizer, lr: 0.01 } : shipped.optimizer;
      const work = mkdtempSync(join(tmpdir(), 'spikeflow-events-'));
      writeFileSync(join(work, 'run.json'), JSON.stringify({ ...shipped, optimizer, train: { ...shipped.train, epochs: 6, batchSize: 8 } }));
      const r = cli(['train', 'run.json', '--out', 'out', '--cache-dir', cache, '--quiet'], work);
      expect(r.stderr, name).toBe('');
      expect(r.status, name).toBe(0);
      const epochs = readFileSync(join(work, 'out', 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { type: string; loss?: number; result?: { accuracy: number } })
        .filter((e) => e.type === 'epoch');
      expect(epochs, name).toHaveLength(6);
      expect(epochs.at(-1)!.loss!, name).toBeLessThan(0.8 * epochs[0]!.loss!);
    }
  });

  it('the same config and seed give the same loss curve', () => {
    const dir = workdir();
    const a = cli(['train', 'run.json', '--out', 'a', '--epochs', '1'], dir);
    const b = cli(['train', 'run.json', '--out', 'b', '--epochs', '1'], dir);
    expect(a.status).toBe(0);
    expect(b.status).toBe(0);
    const losses = (run: string) =>
      readFileSync(join(dir, run, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { type: string; loss?: number })
        .filter((e) => e.type === 'batch' || e.type === 'epoch')
        .map((e) => e.loss);
    expect(losses('a').length).toBeGreaterThan(1);
    expect(losses('a')).toEqual(losses('b'));
  });

  it('a run killed with SIGKILL mid-epoch resumes from its last checkpoint and ends with the same weights, bitwise', async () => {
    const dir = workdir();
    const full = cli(['train', 'run.json', '--out', 'full', '--quiet'], dir);
    expect(full.status).toBe(0);

    const child = spawn(process.execPath, [bin, 'train', 'run.json', '--out', 'killed', '--quiet'], { cwd: dir, stdio: 'ignore' });
    const log = join(dir, 'killed', 'metrics.jsonl');
    const killedAt = await new Promise<number>((resolve, reject) => {
      const timer = setInterval(() => {
        if (!existsSync(log)) return;
        const cks = writtenRecords(log).filter((e) => e.type === 'checkpoint');
        const last = cks.at(-1);
        if (last && last.position!.step >= 6 && last.position!.epoch === 0) {
          clearInterval(timer);
          child.kill('SIGKILL');
          resolve(last.position!.step);
        }
      }, 5);
      child.on('exit', () => {
        clearInterval(timer);
        reject(new Error('the run ended before it could be killed'));
      });
    });
    await new Promise((r) => child.on('exit', r));
    expect(killedAt).toBeGreaterThanOrEqual(6);
    // The checkpoint on disk is intact and mid-epoch.
    const ck = loadCheckpoint<{ position: { epoch: number; batch: number } }>(join(dir, 'killed', 'checkpoint.sfck'));
    expect(ck.meta.position.epoch).toBe(0);
    expect(ck.meta.position.batch).toBeGreaterThan(0);
    disposeTree(ck.trees as never);

    const resumed = cli(['train', 'run.json', '--out', 'killed', '--resume', '--quiet'], dir);
    expect(resumed.stderr).toBe('');
    expect(resumed.status).toBe(0);
    const starts = readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; resumed?: boolean; position?: { step: number } })
      .filter((e) => e.type === 'start');
    expect(starts.length).toBe(2);
    expect(starts[1]).toMatchObject({ resumed: true, position: { step: killedAt } });
    const a = params(join(dir, 'full', 'checkpoint.sfck'));
    const b = params(join(dir, 'killed', 'checkpoint.sfck'));
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    for (const k of Object.keys(a)) expect(Buffer.from(b[k]!.buffer).equals(Buffer.from(a[k]!.buffer)), k).toBe(true);
  }, 120_000);

  it('--resume --epochs N with a decaying rate: says so when the decay had already ended, and trains on where it had not', async () => {
    const dir = workdir({ optimizer: { name: 'adam', lr: 0.003, schedule: 'cosine' }, train: { epochs: 1, batchSize: 32, maxBatchesPerEpoch: 4 } });
    expect(cli(['train', 'run.json', '--out', 'done', '--quiet'], dir).status).toBe(0);
    const extended = cli(['train', 'run.json', '--out', 'done', '--resume', '--epochs', '2', '--quiet'], dir);
    expect(extended.status, extended.stderr).toBe(0);
    expect(extended.stderr).toMatch(
      /warning: the run's cosine learning-rate schedule had run its course over 1 epoch when it was extended to 2: .*final rate \(optimizer\.minLr = 0\)/,
    );
    // The rate stayed at its final value, 0: the added epoch left the weights as they were.
    const before = params(join(dir, 'done', 'checkpoint.sfck'));
    expect(cli(['train', 'run.json', '--out', 'done', '--resume', '--epochs', '3', '--quiet'], dir).status).toBe(0);
    const after = params(join(dir, 'done', 'checkpoint.sfck'));
    for (const k of Object.keys(before)) expect(Buffer.from(after[k]!.buffer).equals(Buffer.from(before[k]!.buffer)), k).toBe(true);
    // A run of 2 epochs killed in its second, extended to 3: its decay had not ended; no warning, and it trains.
    writeFileSync(
      join(dir, 'two.json'),
      JSON.stringify(config({ optimizer: { name: 'adam', lr: 0.003, schedule: 'cosine' }, train: { epochs: 2, batchSize: 32, checkpointEvery: 1 } })),
    );
    const child = spawn(process.execPath, [bin, 'train', 'two.json', '--out', 'mid', '--quiet'], { cwd: dir, stdio: 'ignore' });
    const log = join(dir, 'mid', 'metrics.jsonl');
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (!existsSync(log)) return;
        const cks = writtenRecords(log);
        if (cks.some((e) => e.type === 'checkpoint' && e.position!.epoch === 1 && e.position!.batch >= 2)) {
          clearInterval(timer);
          child.kill('SIGKILL');
          resolve();
        }
      }, 5);
      child.on('exit', () => {
        clearInterval(timer);
        reject(new Error('the run ended before it could be killed'));
      });
    });
    await new Promise((r) => child.on('exit', r));
    const mid = params(join(dir, 'mid', 'checkpoint.sfck'));
    const more = cli(['train', 'two.json', '--out', 'mid', '--resume', '--epochs', '3', '--quiet'], dir);
    expect(more.status, more.stderr).toBe(0);
    expect(more.stderr).not.toMatch(/warning/);
    const trained = params(join(dir, 'mid', 'checkpoint.sfck'));
    expect(Object.keys(mid).some((k) => !Buffer.from(trained[k]!.buffer).equals(Buffer.from(mid[k]!.buffer)))).toBe(true);
  }, 120_000);
});

describe('bad input gets a clear error and a non-zero exit', () => {
  it('unknown config key, wrong type, unknown neuron, missing plugin', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ trian: { epochs: 1 } }, /trian: unknown key; did you mean 'train'/],
      [{ train: { epochs: 'two', batchSize: 8 } }, /train\.epochs: expected a finite number, got "two"/],
      [{ model: { layers: [{ neuron: 'lfi', size: 4 }], readout: {} } }, /model\.layers\[0\]\.neuron: unknown neuron 'lfi'; did you mean 'lif'/],
      [{ model: { layers: [{ neuron: 'lif', size: -3 }], readout: {} } }, /model\.layers\[0\]\.size: must be >= 1, got -3/],
      [{ plugins: ['@spikeflow/neuron-lif', '@spikeflow/neuron-nope'] }, /'@spikeflow\/neuron-nope' is not installed.*pnpm add @spikeflow\/neuron-nope/],
      [{ data: { name: 'add-task', stepz: 5 } }, /data\.stepz: unknown key; did you mean 'steps'/],
      [{ rule: { name: 'bptt', truncation: 4, mode: 'per-window' }, loss: 'ce_mean' }, /loss 'ce_mean' does not decompose over time/],
    ];
    for (const [over, message] of cases) {
      const dir = workdir(over);
      const r = cli(['train', 'run.json', '--out', 'x'], dir);
      expect(r.status, JSON.stringify(over)).toBe(1);
      expect(r.stderr).toMatch(message);
    }
  });

  it('reads YAML configs, and names the line of a YAML syntax error', () => {
    const dir = workdir();
    const c = config({ train: { epochs: 1, batchSize: 32 } });
    const yaml = Object.entries(c)
      .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
      .join('\n');
    writeFileSync(join(dir, 'run.yaml'), `# a comment\n${yaml}\n`);
    const r = cli(['train', 'run.yaml', '--out', 'y', '--quiet'], dir);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(existsSync(join(dir, 'y', 'checkpoint.sfck'))).toBe(true);
    writeFileSync(join(dir, 'bad.yml'), 'plugins: [a, b\nseed: 1\n');
    const bad = cli(['train', 'bad.yml'], dir);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/bad\.yml is not valid YAML.*line/s);
  });

  it('a missing config file, invalid JSON', () => {
    const dir = workdir();
    expect(cli(['train', 'nope.json'], dir).stderr).toMatch(/cannot read config file .*nope\.json/);
    writeFileSync(join(dir, 'bad.json'), '{ "plugins": [');
    const r = cli(['train', 'bad.json'], dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/bad\.json is not valid JSON/);
  });

  it('a corrupt or truncated checkpoint is refused, never half-loaded', () => {
    const dir = workdir();
    expect(cli(['train', 'run.json', '--out', 'r', '--epochs', '1', '--quiet'], dir).status).toBe(0);
    const ck = join(dir, 'r', 'checkpoint.sfck');
    const bytes = readFileSync(ck);
    const flipped = Buffer.from(bytes);
    flipped[flipped.length - 5]! ^= 0xff;
    writeFileSync(ck, flipped);
    let r = cli(['train', 'run.json', '--out', 'r', '--resume', '--epochs', '2'], dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/do not match its SHA-256 digest.*refusing to load it/);
    writeFileSync(ck, bytes);
    truncateSync(ck, statSync(ck).size - 100);
    r = cli(['eval', 'r'], dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/truncated/);
    writeFileSync(ck, 'not a checkpoint at all');
    expect(cli(['eval', 'r'], dir).stderr).toMatch(/bad magic/);
    expect(cli(['train', 'run.json', '--out', 'fresh', '--resume'], dir).stderr).toMatch(/--resume: no checkpoint/);
  });
});

describe('spikeflow export and import (NIR)', () => {
  it('moves a trained run to a NIR file and back into a run that evaluates to the same loss and trains on', () => {
    const dir = workdir({
      model: { layers: [{ neuron: 'lif', size: 16, recurrent: true, params: { reset: 'zero' } }], readout: { kappa: 0.5 } },
      train: { epochs: 1, batchSize: 32, maxBatchesPerEpoch: 3 },
    });
    expect(cli(['train', 'run.json', '--out', 'run', '--quiet'], dir).status).toBe(0);
    const ex = cli(['export', 'run', '-o', 'model.nir', '--dt', '0.001'], dir);
    expect(ex.status, ex.stderr).toBe(0);
    expect(ex.stdout).toMatch(/wrote .*model\.nir/);
    expect(ex.stderr).toMatch(/note: time constants assume Δt = 0\.001 s/);
    expect(readFileSync(join(dir, 'model.nir')).subarray(0, 8)).toEqual(Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]));
    // Another base config's data and training; the model comes from the file.
    writeFileSync(
      join(dir, 'base.json'),
      JSON.stringify(config({ plugins: ['@spikeflow/rule-bptt', '@spikeflow/backend-wasm', '@spikeflow/dataset-add-task'], model: {} })),
    );
    const im = cli(['import', 'model.nir', '--config', 'base.json', '-o', 'imported', '--dt', '0.001'], dir);
    expect(im.status, im.stderr).toBe(0);
    expect(im.stdout).toMatch(/spikeflow train .*imported\/config\.json --out .*imported --resume/);
    const stored = JSON.parse(readFileSync(join(dir, 'imported', 'config.json'), 'utf8')) as { plugins: string[]; model: { layers: { params: unknown }[] } };
    expect(stored.plugins).toContain('@spikeflow/neuron-lif');
    expect(stored.model.layers[0]!.params).toMatchObject({ reset: 'zero', beta: expect.any(Number) });
    const a = JSON.parse(cli(['eval', 'run'], dir).stdout) as { loss: number };
    const b = JSON.parse(cli(['eval', 'imported'], dir).stdout) as { loss: number };
    expect(b.loss).toBe(a.loss);
    const resumed = cli(['train', join('imported', 'config.json'), '--out', 'imported', '--resume', '--quiet'], dir);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/test loss: /);
  });

  it('refuses a subtractive-reset run unless --allow-subtract-reset, and names what is wrong', () => {
    const dir = workdir({ train: { epochs: 1, batchSize: 32, maxBatchesPerEpoch: 1 } });
    expect(cli(['train', 'run.json', '--out', 'run', '--quiet'], dir).status).toBe(0);
    const refused = cli(['export', 'run', '-o', 'model.nir'], dir);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/NIR export: model\.layers\[0\]\.params\.reset: spikeflow's subtractive reset .* \[INCOMPATIBLE\]/);
    expect(existsSync(join(dir, 'model.nir'))).toBe(false);
    const forced = cli(['export', 'run', '-o', 'model.nir', '--allow-subtract-reset'], dir);
    expect(forced.status, forced.stderr).toBe(0);
    expect(forced.stderr).toMatch(/note: layers with spikeflow's subtractive reset were exported as NIR LIF nodes/);
    const unknown = cli(['export', 'run', '-o', 'x.onnx', '--format', 'onnx'], dir);
    expect(unknown.stderr).toMatch(/--format onnx: no installed plugin exports this format \(installed formats: nir\)/);
  });
});

describe('spikeflow eval', () => {
  it("prints exactly the run's last logged test loss and accuracy (rate-encoded MNIST: its spikes depend on the eval seed)", () => {
    const dir = workdir({
      plugins: ['@spikeflow/neuron-lif', '@spikeflow/rule-bptt', '@spikeflow/backend-wasm', '@spikeflow/dataset-mnist'],
      seed: 5,
      data: { name: 'mnist', source: 'bundled', variant: 'row', encoder: 'rate', rateGain: 1, trainLimit: 192, testLimit: 96 },
      model: { layers: [{ neuron: 'lif', size: 32, recurrent: true }], readout: { kappa: 0.9 } },
      optimizer: { name: 'adam', lr: 0.003 },
      train: { epochs: 1, batchSize: 64 },
    });
    const r = cli(['train', 'run.json', '--out', 'run', '--quiet'], dir);
    expect(r.status, r.stderr).toBe(0);
    const logged = readFileSync(join(dir, 'run', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; result?: { loss: number; accuracy: number; samples: number } });
    const last = logged.filter((e) => e.type === 'eval').at(-1)!.result!;
    const ev = cli(['eval', 'run'], dir);
    expect(ev.status, ev.stderr).toBe(0);
    const got = JSON.parse(ev.stdout) as { loss: number; accuracy: number; samples: number };
    expect(got).toEqual({ split: 'test', loss: last.loss, accuracy: last.accuracy, samples: 96 });
    // Another batch size reads the same samples (the encoder is seeded per batch: the loss moves).
    expect((JSON.parse(cli(['eval', 'run', '--batch-size', '32'], dir).stdout) as { samples: number }).samples).toBe(96);
  });

  /**
   * A run whose checkpoint was edited by someone who also recomputed its digest: its stored config
   * now names `plugins`. `evil.mjs` would leave a marker file if it were ever imported.
   */
  function tampered(plugins: string[]): { dir: string; marker: string } {
    const dir = workdir({ train: { epochs: 1, batchSize: 32, maxBatchesPerEpoch: 2 } });
    const marker = join(dir, 'marker');
    writeFileSync(
      join(dir, 'evil.mjs'),
      `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(marker)}, 'top-level code ran');\nexport default { meta: { name: 'evil', version: '1.0.0' } };\n`,
    );
    expect(cli(['train', 'run.json', '--out', 'run', '--quiet'], dir).status).toBe(0);
    const path = join(dir, 'run', 'checkpoint.sfck');
    const ck = loadCheckpoint<{ config: { plugins: string[] } }>(path);
    writeFileSync(
      path,
      encodeCheckpoint({ meta: { ...ck.meta, config: { ...ck.meta.config, plugins: [...ck.meta.config.plugins, ...plugins] } }, trees: ck.trees }),
    );
    disposeTree(ck.trees as never);
    return { dir, marker };
  }

  it('refuses a checkpoint whose stored config names a module path, a URL or an uninstalled package, and imports nothing', () => {
    for (const spec of ['./evil.mjs', '../evil.mjs', 'EVIL_ABSOLUTE', 'EVIL_URL', '@evil/not-installed', 'node:fs', '@spikeflow/core/dist/index.js']) {
      const { dir, marker } = tampered(['PLACEHOLDER']);
      const path = join(dir, 'run', 'checkpoint.sfck');
      const real = spec === 'EVIL_ABSOLUTE' ? join(dir, 'evil.mjs') : spec === 'EVIL_URL' ? `file://${join(dir, 'evil.mjs')}` : spec;
      const ck = loadCheckpoint<{ config: { plugins: string[] } }>(path);
      writeFileSync(
        path,
        encodeCheckpoint({
          meta: { ...ck.meta, config: { ...ck.meta.config, plugins: ck.meta.config.plugins.map((p) => (p === 'PLACEHOLDER' ? real : p)) } },
          trees: ck.trees,
        }),
      );
      disposeTree(ck.trees as never);
      for (const cwd of [dir, join(dir, 'run')]) {
        const r = cli(['eval', join(dir, 'run')], cwd);
        expect(r.status, real).toBe(1);
        expect(r.stderr, real).toContain(`'${real}'`);
        expect(r.stderr, real).toMatch(/loaded only by installed package name.*Nothing was imported.*--plugins.*\[PLUGIN_REFUSED\]/s);
      }
      const resume = cli(['train', 'run.json', '--out', 'run', '--resume', '--epochs', '2', '--quiet'], dir);
      expect(resume.status, real).toBe(1);
      expect(resume.stderr, real).toMatch(
        new RegExp(`names plugins your config does not: '${real.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}'.*\\[PLUGIN_REFUSED\\]`, 's'),
      );
      expect(existsSync(marker), `${real}: the module's top-level code ran`).toBe(false);
    }
  });

  it('eval --plugins names the plugins explicitly: the user may load what the checkpoint could not', () => {
    const { dir, marker } = tampered(['./evil.mjs']);
    const plugins = '@spikeflow/neuron-lif,@spikeflow/rule-bptt,@spikeflow/backend-wasm,@spikeflow/dataset-add-task';
    const r = cli(['eval', 'run', '--plugins', plugins], dir);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ split: 'test', samples: 64 });
    expect(existsSync(marker)).toBe(false);
  });
});

describe('backends', () => {
  it('train --backend node-gpu without the native binding exits 1, saying what to install; nothing is trained', () => {
    const dir = workdir({ train: { epochs: 1, batchSize: 32 } });
    const r = cli(['train', 'run.json', '--out', 'x', '--backend', 'node-gpu'], dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /backend 'node-gpu': @tensorflow\/tfjs-node-gpu is not installed\. Install it with: npm i @tensorflow\/tfjs-node-gpu@4\.22\.0 on a machine with .*CUDA Toolkit 11\.2 and cuDNN 8\.1/,
    );
    expect(r.stderr).toContain('[BACKEND_UNAVAILABLE]');
    expect(existsSync(join(dir, 'x', 'checkpoint.sfck'))).toBe(false);
  });

  it('a fallback list tries each backend in order and says which it skipped', () => {
    const dir = workdir({ train: { epochs: 1, batchSize: 32, maxBatchesPerEpoch: 2 } });
    const r = cli(['train', 'run.json', '--out', 'x', '--backend', 'node,wasm', '--quiet'], dir);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/backend 'node': @tensorflow\/tfjs-node is not installed[\s\S]*trying backend 'wasm' \(the next in "node,wasm"\)/);
    expect((JSON.parse(readFileSync(join(dir, 'x', 'summary.json'), 'utf8')) as { backend: { tfBackend: string } }).backend.tfBackend).toBe('wasm');
    const none = cli(['train', 'run.json', '--out', 'y', '--backend', 'node,node-gpu'], dir);
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/none of the backends "node,node-gpu" is available/);
    // eval of that run takes the same list.
    const ev = cli(['eval', 'x'], dir);
    expect(ev.status, ev.stderr).toBe(0);
    expect(ev.stderr).toMatch(/trying backend 'wasm'/);
    expect(JSON.parse(ev.stdout)).toMatchObject({ split: 'test', samples: 64 });
  });

  it('info lists every installed backend and whether it can run here', () => {
    const r = cli(['info'], mkdtempSync(join(tmpdir(), 'spikeflow-info-')));
    expect(r.status).toBe(0);
    const available = (JSON.parse(r.stdout) as { available: Record<string, boolean> }).available;
    // webgpu's depends on the machine's Vulkan driver (below).
    expect(Object.keys(available).sort()).toEqual(['cpu', 'node', 'node-gpu', 'wasm', 'webgpu']);
    expect(available).toMatchObject({ cpu: true, node: false, 'node-gpu': false, wasm: true });
    const gpu = cli(['info', '--backend', 'node-gpu'], mkdtempSync(join(tmpdir(), 'spikeflow-info-')));
    expect(gpu.status).toBe(1);
    expect(gpu.stderr).toMatch(/@tensorflow\/tfjs-node-gpu is not installed/);
  });

  it('info --backend webgpu without a Vulkan driver says what Dawn tried and what to do', () => {
    const r = spawnSync(process.execPath, [bin, 'info', '--backend', 'webgpu'], {
      cwd: mkdtempSync(join(tmpdir(), 'spikeflow-info-')),
      encoding: 'utf8',
      env: { ...process.env, LD_LIBRARY_PATH: '', VK_ICD_FILENAMES: '/nowhere/none_icd.json', VK_ADD_DRIVER_FILES: '' },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /backend 'webgpu': Dawn \(npm 'webgpu'\) found no WebGPU adapter: (there is no Vulkan loader|.*drivers tried: \/nowhere\/none_icd\.json \(from VK_ICD_FILENAMES\)).*\[BACKEND_UNAVAILABLE\]/,
    );
  });

  it.skipIf(!swiftshader)(
    'info --backend webgpu names the adapter (SwiftShader here)',
    { meta: { requires, skipReason: `no ${swiftshaderDir}/vk_swiftshader_icd.json` } },
    () => {
      const r = spawnSync(process.execPath, [bin, 'info', '--backend', 'webgpu'], {
        cwd: mkdtempSync(join(tmpdir(), 'spikeflow-info-')),
        encoding: 'utf8',
        env: { ...process.env, LD_LIBRARY_PATH: swiftshaderDir, VK_ICD_FILENAMES: `${swiftshaderDir}/vk_swiftshader_icd.json` },
      });
      expect(r.status, r.stderr).toBe(0);
      const info = JSON.parse(r.stdout) as { backend: { tfBackend: string; device: string; details: Record<string, unknown> } };
      expect(info.backend.tfBackend).toBe('webgpu');
      expect(info.backend.device).toMatch(/SwiftShader.*\(fallback adapter: a CPU implementation, for correctness, not speed\)/);
      expect(info.backend.details).toMatchObject({ runtime: 'node', fallback: true, architecture: 'swiftshader' });
    },
  );

  it.skipIf(!swiftshader)(
    'trains on webgpu in Node: the losses and the evaluation of wasm, within float32 rounding',
    { meta: { requires, skipReason: `no ${swiftshaderDir}/vk_swiftshader_icd.json` } },
    () => {
      const dir = workdir({ train: { epochs: 1, batchSize: 32, maxBatchesPerEpoch: 3 } });
      const env = { ...process.env, LD_LIBRARY_PATH: swiftshaderDir, VK_ICD_FILENAMES: `${swiftshaderDir}/vk_swiftshader_icd.json` };
      const gpu = spawnSync(process.execPath, [bin, 'train', 'run.json', '--out', 'gpu', '--backend', 'webgpu', '--quiet'], {
        cwd: dir,
        encoding: 'utf8',
        env,
      });
      expect(gpu.status, gpu.stderr).toBe(0);
      const wasm = cli(['train', 'run.json', '--out', 'wasm', '--quiet'], dir);
      expect(wasm.status, wasm.stderr).toBe(0);
      const events = (run: string) =>
        readFileSync(join(dir, run, 'metrics.jsonl'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as { type: string; loss?: number; result?: { loss: number; accuracy?: number } });
      const [g, w] = [events('gpu'), events('wasm')];
      const epochLoss = (e: typeof g) => e.find((x) => x.type === 'epoch')!.loss!;
      const evalResult = (e: typeof g) => e.find((x) => x.type === 'eval')!.result!;
      expect(Math.abs(epochLoss(g) - epochLoss(w)) / Math.abs(epochLoss(w))).toBeLessThan(1e-5);
      expect(Math.abs(evalResult(g).loss - evalResult(w).loss) / Math.abs(evalResult(w).loss)).toBeLessThan(1e-5);
      const summary = JSON.parse(readFileSync(join(dir, 'gpu', 'summary.json'), 'utf8')) as { backend: { tfBackend: string } };
      expect(summary.backend.tfBackend).toBe('webgpu');
      // The checkpoint was written from asynchronous reads, and resumes on wasm.
      expect(existsSync(join(dir, 'gpu', 'checkpoint.sfck'))).toBe(true);
    },
  );
});

describe('spikeflow data inspect', () => {
  const idx = (type: number, dims: number[], body: number[]) => {
    const head = Buffer.alloc(4 + 4 * dims.length);
    head.writeUInt8(type, 2);
    head.writeUInt8(dims.length, 3);
    dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
    return Buffer.concat([head, Buffer.from(body)]);
  };

  it('prints samples, shape and label histogram of an IDX file as JSON', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spikeflow-idx-'));
    writeFileSync(join(dir, 'train-labels-idx1-ubyte'), idx(0x08, [6], [3, 1, 3, 0, 9, 3]));
    const r = cli(['data', 'inspect', 'train-labels-idx1-ubyte'], dir);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ format: 'idx', samples: 6, shape: [], labelHistogram: { '0': 1, '1': 1, '3': 3, '9': 1 } });
    writeFileSync(
      join(dir, 'imgs.idx'),
      idx(
        0x08,
        [2, 2, 3],
        Array.from({ length: 12 }, (_, i) => i),
      ),
    );
    expect(JSON.parse(cli(['data', 'inspect', 'imgs.idx', '--format', 'idx'], dir).stdout)).toMatchObject({ samples: 2, shape: [2, 3] });
  });

  it('refuses a truncated IDX file, one whose header lies about its size, and a missing file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spikeflow-idx-'));
    writeFileSync(join(dir, 'short.idx'), idx(0x08, [10], [1, 2, 3]));
    let r = cli(['data', 'inspect', 'short.idx'], dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/short\.idx.*truncated/i);
    writeFileSync(join(dir, 'long.idx'), idx(0x08, [2], [1, 2, 3, 4, 5]));
    r = cli(['data', 'inspect', 'long.idx'], dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/long\.idx/);
    r = cli(['data', 'inspect', 'nope.idx'], dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/nope\.idx/);
    expect(cli(['data', 'inspect', 'file.bin'], dir).stderr).toMatch(/cannot guess the format.*--format/);
  });

  it('prints the summary of an SHD-format HDF5 file, recognised by its layout', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spikeflow-shd-'));
    copyFileSync(shdTestFile('shd-many.h5'), join(dir, 'digits.h5'));
    const r = cli(['data', 'inspect', 'digits.h5'], dir);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const want = JSON.parse(readFileSync(shdTestFile('shd-many.inspect.json'), 'utf8')) as { durationSec: { max: number } };
    const got = JSON.parse(r.stdout) as Record<string, unknown> & { durationSec: { max: number } };
    const { durationSec, ...rest } = want;
    expect(got).toMatchObject({ format: 'shd', ...rest });
    expect(got.durationSec.max).toBeCloseTo(durationSec.max, 9);
    writeFileSync(join(dir, 'cut.h5'), readFileSync(join(dir, 'digits.h5')).subarray(0, 5000));
    const cut = cli(['data', 'inspect', 'cut.h5', '--format', 'shd'], dir);
    expect(cut.status).toBe(1);
    expect(cut.stderr).toMatch(/cut\.h5: truncated/);
  });

  it('prints the summary of an AEDAT 3.1 recording with its labels, and of an N-MNIST sample file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spikeflow-events-'));
    // Two gestures: 3 events in [1 s, 2 s) with class 4, 2 events in [3 s, 3.5 s) with class 11.
    const ev = eventsOf([0.5, 1, 1.2, 1.9, 3.1, 3.4], [1, 2, 3, 4, 5, 6], [7, 7, 7, 7, 7, 7], [0, 1, 0, 1, 0, 1]);
    writeFileSync(join(dir, 'user01_led.aedat'), encodeAedat31(polarityPackets(ev, 4)));
    writeFileSync(
      join(dir, 'user01_led_labels.csv'),
      encodeGestureLabels([
        { label: 3, startUs: 1_000_000, endUs: 2_000_000 },
        { label: 10, startUs: 3_000_000, endUs: 3_500_000 },
      ]),
    );
    const r = cli(['data', 'inspect', 'user01_led.aedat'], dir);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ format: 'aedat', samples: 2, eventsPerSample: { min: 2, max: 3 }, labelHistogram: { '3': 1, '10': 1 } });
    writeFileSync(join(dir, '00002.bin'), encodeNmnist(eventsOf([0, 0.001, 0.002], [0, 33, 5], [0, 33, 5], [1, 0, 1])));
    expect(JSON.parse(cli(['data', 'inspect', '00002.bin'], dir).stdout)).toMatchObject({ format: 'nmnist', samples: 1, eventsPerSample: { min: 3, max: 3 } });
  });

  it('a training run whose data files are missing fails naming them', () => {
    const dir = workdir({
      plugins: ['@spikeflow/neuron-lif', '@spikeflow/rule-bptt', '@spikeflow/backend-wasm', '@spikeflow/dataset-mnist'],
      data: { name: 'mnist', source: 'idx', dir: 'no-such-dir' },
    });
    const r = cli(['train', 'run.json', '--out', 'x'], dir);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/no-such-dir/);
    expect(r.stderr).toMatch(/train-images-idx3-ubyte/);
  });
});

describe('spikeflow plugins, info, --help', () => {
  it('lists the installed plugins and what they provide', () => {
    const r = cli(['plugins', '--json'], tmpdir());
    expect(r.status).toBe(0);
    const rows = JSON.parse(r.stdout) as { package: string; provides: Record<string, string[]> }[];
    expect(rows.find((x) => x.package === '@spikeflow/neuron-lif')?.provides).toEqual({ neurons: ['lif', 'cuba-lif'] });
    expect(rows.find((x) => x.package === '@spikeflow/backend-wasm')?.provides.backends).toEqual(['wasm']);
    expect(rows.find((x) => x.package === '@spikeflow/rule-bptt')?.provides.rules).toEqual(['bptt']);
  });

  it('describes the backend and versions', () => {
    const r = cli(['info'], tmpdir());
    expect(r.status).toBe(0);
    const info = JSON.parse(r.stdout) as { backend: { tfBackend: string }; tfjs: string; cores: number };
    expect(info.backend.tfBackend).toBe('wasm');
    expect(info.tfjs).toBe(tf.version_core);
    expect(info.cores).toBeGreaterThan(0);
  });

  it('has --help everywhere', () => {
    for (const args of [
      ['--help'],
      ['train', '--help'],
      ['eval', '--help'],
      ['plugins', '--help'],
      ['info', '--help'],
      ['data', 'inspect', '--help'],
      ['bench', '--help'],
    ]) {
      const r = cli(args, tmpdir());
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/Usage: spikeflow/);
    }
    const bench = cli(['bench', '--quick', '--rules', 'bptt', '--steps', '4'], tmpdir());
    expect(bench.status, bench.stderr).toBe(0);
    expect(bench.stderr).toMatch(/\[1\/1\] bptt T=4: \d+ ms\/iter/);
    const bad = cli(['trian'], tmpdir());
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/unknown command 'trian'/);
  });
});

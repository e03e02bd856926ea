import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { disposeTree, loadCheckpoint, type Tensor } from '@spikeflow/core';

/**
 * Every learning rule, through the fast kernels, trains to bit-identical weights on one and on two
 * kernel threads: the kernels split their rows between threads without changing any sum's order.
 * Each run is a real `spikeflow train` of a few batches of row-wise MNIST, sized so that the
 * kernels' calls are large enough to be split (a layer of 128 at batch 64 over 28 steps).
 */
const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));

const layer = (neuron: string) => ({
  neuron,
  size: 128,
  recurrent: true,
  params: neuron === 'alif' ? { beta: 0.9, threshold: 1, rho: 0.95, betaA: 0.5 } : { beta: 0.9, threshold: 1 },
});

const rules: { name: string; rule: Record<string, unknown>; neuron: string; layers?: number }[] = [
  { name: 'bptt (LIF)', rule: { name: 'bptt' }, neuron: 'lif' },
  { name: 'bptt (ALIF)', rule: { name: 'bptt' }, neuron: 'alif' },
  { name: 'truncated bptt', rule: { name: 'bptt', truncation: 10 }, neuron: 'lif' },
  { name: 'e-prop (LIF)', rule: { name: 'eprop', window: 10 }, neuron: 'lif' },
  { name: 'e-prop (ALIF), online, adaptive feedback', rule: { name: 'eprop', window: 10, mode: 'online', feedback: 'adaptive' }, neuron: 'alif' },
  { name: 'OTTT', rule: { name: 'ottt' }, neuron: 'lif' },
  { name: 'SLTT', rule: { name: 'sltt', window: 10 }, neuron: 'lif' },
  { name: 'local truncated BPTT (two layers)', rule: { name: 'local-tbptt', truncation: 7 }, neuron: 'lif', layers: 2 },
  { name: 'FPTT', rule: { name: 'fptt', window: 7 }, neuron: 'lif' },
];

function train(dir: string, threads: number): Record<string, Float32Array> {
  const out = `out-${threads}`;
  const r = spawnSync(process.execPath, [bin, 'train', 'run.json', '--out', out], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, CI: '1', SPIKEFLOW_THREADS: String(threads) },
  });
  expect(r.stderr).not.toMatch(/Error|spikeflow:/);
  expect(r.status).toBe(0);
  const ck = loadCheckpoint(join(dir, out, 'checkpoint.sfck'));
  const params = Object.fromEntries(
    Object.entries((ck.trees as { params: Record<string, Tensor> }).params).map(([k, t]) => [k, new Float32Array(t.dataSync() as Float32Array)]),
  );
  disposeTree(ck.trees as never);
  return params;
}

describe('bit-identical on 1 and 2 kernel threads', () => {
  for (const { name, rule, neuron, layers = 1 } of rules) {
    it(name, () => {
      const dir = mkdtempSync(join(tmpdir(), 'spikeflow-threads-'));
      try {
        const config = {
          plugins: [`@spikeflow/neuron-${neuron}`, `@spikeflow/rule-${rule['name'] as string}`, '@spikeflow/backend-wasm', '@spikeflow/dataset-mnist'],
          backend: 'wasm',
          seed: 1,
          data: { name: 'mnist', source: 'bundled', variant: 'row', encoder: 'direct', trainLimit: 192, testLimit: 64 },
          model: { layers: Array.from({ length: layers }, () => layer(neuron)), readout: { kappa: 0.9 } },
          rule,
          loss: 'ce_every_step',
          optimizer: { name: 'adam', lr: 0.002 },
          train: { epochs: 1, batchSize: 64 },
        };
        writeFileSync(join(dir, 'run.json'), JSON.stringify(config));
        const one = train(dir, 1);
        const two = train(dir, 2);
        const summary = JSON.parse(readFileSync(join(dir, 'out-2', 'summary.json'), 'utf8')) as { backend?: { threads?: number } };
        expect(summary.backend?.threads).toBe(2);
        expect(Object.keys(two).sort()).toEqual(Object.keys(one).sort());
        for (const [k, v] of Object.entries(one)) {
          // Not close: the same bits (a changed order of a sum shows in the last bits first).
          expect(Buffer.from(two[k]!.buffer).equals(Buffer.from(v.buffer)), k).toBe(true);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }, 300_000);
  }
});

import { beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRegistry, tf, type LearningRule } from '@spikeflow/core';
import lif from '@spikeflow/neuron-lif';
import bptt, { bptt as fullBptt } from '@spikeflow/rule-bptt';
import wasmPlugin, { wasm } from '@spikeflow/backend-wasm';
import { measure, parseRuleChoice, peakTensorBytes, profileKernels, quickWorkload, type BenchReport } from './index.js';

const bin = fileURLToPath(new URL('../bin/spikeflow-bench.mjs', import.meta.url));
beforeAll(() => wasm.activate());

describe('bench harness', () => {
  it('--quick writes the JSON (every figure per rule and T, machine, backend, revision) and the two log-log SVGs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spikeflow-bench-'));
    const r = spawnSync(process.execPath, [bin, '--quick', '--json', join(dir, 'out.json'), '--plot', join(dir, 'plots')], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\[14\/14\] tbptt\(k=4\) T=16: \d+ ms\/iter/);
    const report = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as BenchReport;
    expect(report.machine.cores).toBeGreaterThan(0);
    expect(report.machine.node).toBe(process.versions.node);
    expect(report.backend.tfBackend).toBe('wasm');
    expect(report.revision).toMatch(/^([0-9a-f]{40}(\+dirty)?|unknown)$/);
    expect(report.results.map((m) => [m.rule, m.steps])).toEqual([
      ['bptt', 8],
      ['bptt', 16],
      ['fptt:window=4', 8],
      ['fptt:window=4', 16],
      ['eprop:window=2', 8],
      ['eprop:window=2', 16],
      ['ottt', 8],
      ['ottt', 16],
      ['sltt', 8],
      ['sltt', 16],
      ['local-tbptt:truncation=4', 8],
      ['local-tbptt:truncation=4', 16],
      ['tbptt(k=4)', 8],
      ['tbptt(k=4)', 16],
    ]);
    for (const m of report.results) {
      for (const k of ['msPerIter', 'msPerStep', 'peakTensorBytes', 'peakWorkingBytes', 'peakRssBytes', 'inferStepsPerSec'] as const) {
        expect(m[k], `${m.rule} T=${m.steps} ${k}`).toBeGreaterThan(0);
      }
      expect(m.msPerStep).toBeCloseTo(m.msPerIter / m.steps, 6);
      // One rate per hidden layer, a fraction of the neurons per step.
      expect(m.inferSpikeRates).toHaveLength(1);
      expect(m.inferSpikeRates[0]).toBeGreaterThanOrEqual(0);
      expect(m.inferSpikeRates[0]).toBeLessThanOrEqual(1);
    }
    // The memory classes show in the figures: BPTT grows with T, truncated BPTT does not.
    const peak = (rule: string, T: number) => report.results.find((m) => m.rule === rule && m.steps === T)!.peakWorkingBytes;
    expect(peak('bptt', 16)).toBeGreaterThan(1.5 * peak('bptt', 8));
    expect(peak('tbptt(k=4)', 16)).toBeLessThan(peak('bptt', 16));
    expect(peak('fptt:window=4', 16)).toBeLessThan(peak('bptt', 16));
    expect(peak('fptt:window=4', 16)).toBeLessThanOrEqual(1.1 * peak('fptt:window=4', 8));
    expect(peak('eprop:window=2', 16)).toBeLessThanOrEqual(1.1 * peak('eprop:window=2', 8));
    for (const rule of ['ottt', 'sltt', 'local-tbptt:truncation=4']) {
      expect(peak(rule, 16), rule).toBeLessThanOrEqual(1.1 * peak(rule, 8));
      expect(peak(rule, 16), rule).toBeLessThan(peak('bptt', 16));
    }
    for (const m of report.results) expect(m.peakWorkingBytes).toBeLessThan(m.peakTensorBytes);
    for (const f of ['memory.svg', 'time.svg']) {
      const svg = readFileSync(join(dir, 'plots', f), 'utf8');
      expect(svg.match(/<polyline/g)?.length, f).toBe(7); // one line per rule
      expect(svg).toContain('(log)');
    }
  });

  it('--no-kernels measures with the composite references and says so in the JSON', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spikeflow-bench-'));
    const r = spawnSync(process.execPath, [bin, '--quick', '--rules', 'bptt', '--steps', '8', '--no-kernels', '--json', join(dir, 'out.json')], {
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as BenchReport;
    expect(report.workload.kernels).toBe(false);
    expect(report.results.map((m) => m.rule)).toEqual(['bptt']);
  });

  it('measures with the backend’s registered kernels, and with none of them under kernels: false', async () => {
    const registry = createRegistry([lif, bptt, wasmPlugin]);
    // BPTT runs this LIF network as one window through the fused kernels.
    let calls = 0;
    onLifLayer(registry, () => calls++);
    await measure(registry, parseRuleChoice('bptt'), 4, quickWorkload);
    expect(calls).toBeGreaterThan(0);
    calls = 0;
    await measure(registry, parseRuleChoice('bptt'), 4, { ...quickWorkload, kernels: false });
    expect(calls).toBe(0);
  });

  it('refuses an unknown rule with an error that names it', () => {
    const r = spawnSync(process.execPath, [bin, '--quick', '--rules', 'bptx'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/unknown rule 'bptx'; did you mean 'bptt'/);
  });

  it('parses rule choices', () => {
    expect(parseRuleChoice('tbptt', 25)).toEqual({ label: 'tbptt(k=25)', spec: { name: 'bptt', truncation: 25 } });
    expect(parseRuleChoice('bptt:truncation=10,mode=per-window')).toEqual({
      label: 'bptt:truncation=10,mode=per-window',
      spec: { name: 'bptt', truncation: 10, mode: 'per-window' },
    });
  });
});

describe('kernel profile', () => {
  it('counts every kernel call with its exclusive time, and restores the kernels', () => {
    const before = tf.getKernelsForBackend('wasm').map((c) => c.kernelFunc);
    const a = tf.ones([64, 64]);
    const p = profileKernels('wasm', () => {
      tf.tidy(() => {
        let y = a;
        for (let i = 0; i < 3; i++) y = tf.add(y, 1);
        tf.matMul(y, a).dataSync();
      });
    });
    const byName = Object.fromEntries(p.kernels.map((k) => [k.kernel, k]));
    expect(byName['Add']!.calls).toBe(3);
    expect(byName['BatchMatMul']!.calls).toBe(1);
    expect(p.kernels.every((k) => k.ms >= 0)).toBe(true);
    expect(p.kernelMs).toBeLessThanOrEqual(p.totalMs);
    expect(p.outsideMs).toBeCloseTo(p.totalMs - p.kernelMs, 9);
    expect(tf.getKernelsForBackend('wasm').map((c) => c.kernelFunc)).toEqual(before);
    a.dispose();
  });

  it('--profile adds a profile to every measurement', async () => {
    const registry = createRegistry([lif, bptt, wasmPlugin]);
    const m = await measure(registry, parseRuleChoice('bptt'), 4, { ...quickWorkload, profile: true });
    expect(m.profile!.kernels.length).toBeGreaterThan(3);
    expect(m.profile!.kernels.map((k) => k.kernel)).toContain('BatchMatMul');
    const plain = await measure(registry, parseRuleChoice('bptt'), 4, quickWorkload);
    expect(plain.profile).toBeUndefined();
  });
});

describe('--compare-inference', () => {
  it('times the composite references alongside the fast kernels, and only with them', async () => {
    const registry = createRegistry([lif, bptt, wasmPlugin]);
    const before = tf.memory().numTensors;
    const m = await measure(registry, parseRuleChoice('bptt'), 8, { ...quickWorkload, repeats: 3, compareInference: true });
    expect(m.inferComposite!.stepsPerSec).toBeGreaterThan(0);
    expect(Number.isFinite(m.inferComposite!.speedup) && m.inferComposite!.speedup > 0).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
    expect((await measure(registry, parseRuleChoice('bptt'), 8, { ...quickWorkload, compareInference: true, kernels: false })).inferComposite).toBeUndefined();
    expect((await measure(registry, parseRuleChoice('bptt'), 8, quickWorkload)).inferComposite).toBeUndefined();
  });

  it('--infer-repeats sets the number of inference passes, apart from the training iterations', async () => {
    const registry = createRegistry([lif, bptt, wasmPlugin]);
    let untaped = 0;
    onLifLayer(registry, () => {
      if (!(tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn()) untaped++;
    });
    const m = await measure(registry, parseRuleChoice('bptt'), 8, { ...quickWorkload, repeats: 2, inferRepeats: 5 });
    // A warm-up pass, the 5 timed ones and the pass that records the spike rates.
    expect(untaped).toBe(7);
    expect(m.repeats).toBe(2);
    expect(m.inferRepeats).toBe(5);
  });
});

describe('peak tensor memory', () => {
  it('follows calls of hundreds of thousands of kernels (where tf.profile overflows the stack), and restores the engine', async () => {
    const base = tf.memory().numBytes;
    const x = tf.ones([256]);
    const peak = await peakTensorBytes(() => {
      for (let i = 0; i < 300; i++) {
        tf.tidy(() => {
          let y = x;
          for (let j = 0; j < 1000; j++) y = tf.add(y, 1);
        });
      }
      tf.tidy(() => tf.zeros([1024, 1024])); // 4 MiB, transient
    });
    expect(peak - base).toBe(4 * 2 ** 20 + 1024); // the 4 MiB transient on top of x: exact, not sampled
    const after = await peakTensorBytes(() =>
      tf.tidy(() => {
        tf.zeros([16]);
      }),
    );
    expect(after - tf.memory().numBytes).toBe(64);
    x.dispose();
  });

  it('sees a transient allocation that is freed before the step returns', async () => {
    const base = tf.memory().numBytes;
    const peak = await peakTensorBytes(() => {
      const big = tf.zeros([1024, 1024]); // 4 MiB, gone before the function returns
      tf.tidy(() => {
        tf.add(big, 1);
      });
      big.dispose();
    });
    expect(tf.memory().numBytes).toBe(base);
    expect(peak - base).toBeGreaterThanOrEqual(2 * 4 * 2 ** 20);
  });

  it('a rule that allocates a large transient tensor inside update shows it in peakTensorBytes', async () => {
    const registry = createRegistry([lif, bptt, wasmPlugin]);
    const inner = fullBptt() as unknown as LearningRule;
    const spiky: LearningRule = {
      ...inner,
      name: 'bptt+transient',
      update(batch, state, ctx) {
        const scratch = tf.ones([2048, 1024]); // 8 MiB at the end of the forward pass, freed before returning
        scratch.dataSync();
        const r = inner.update(batch, state, ctx);
        scratch.dispose();
        return r;
      },
    };
    const plain = await measure(registry, inner, 8, quickWorkload);
    const withScratch = await measure(registry, spiky, 8, quickWorkload);
    expect(withScratch.peakTensorBytes - plain.peakTensorBytes).toBeGreaterThanOrEqual(8 * 2 ** 20 - 1024);
    expect(withScratch.peakWorkingBytes - plain.peakWorkingBytes).toBeGreaterThanOrEqual(8 * 2 ** 20 - 1024);
  });
});

/** Calls `seen` before every call of the registry's `spikeflow.integrateFireLayer` on wasm (the fused path's layer kernel). */
function onLifLayer(registry: ReturnType<typeof createRegistry>, seen: () => void): void {
  const fast = registry.kernels.get('spikeflow.integrateFireLayer', 'wasm');
  registry.kernels.register({
    kernel: 'spikeflow.integrateFireLayer',
    backend: 'wasm',
    impl: (...a) => {
      seen();
      return fast(...a);
    },
  });
}

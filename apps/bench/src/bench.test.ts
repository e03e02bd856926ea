import { beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SpikeflowError, buildNetwork, createRegistry, disposeTree, forward, isSpikeflowError, stepsOf, tf, type LearningRule } from '@spikeflow/core';
import lif from '@spikeflow/neuron-lif';
import bptt, { bptt as fullBptt } from '@spikeflow/rule-bptt';
import wasmPlugin, { wasm } from '@spikeflow/backend-wasm';
import {
  BernoulliSteps,
  MARK_STRIDE,
  infer,
  measure,
  medianRound,
  parseRuleChoice,
  peakTensorBytes,
  profileKernels,
  quickWorkload,
  quickConvWorkload,
  summaryTable,
  type BenchReport,
} from './index.js';
import { failureMessage } from './worker.js';

const bin = fileURLToPath(new URL('../bin/spikeflow-bench.mjs', import.meta.url));
beforeAll(() => wasm.activate());

describe('bench harness', () => {
  it('--quick writes the JSON (every figure per rule and T, machine, backend, revision) and the two log-log SVGs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spikeflow-bench-'));
    const r = spawnSync(process.execPath, [bin, '--quick', '--json', join(dir, 'out.json'), '--plot', join(dir, 'plots')], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\[14\/14\] tbptt\(k=4\) T=16: \d+ ms\/iter/);
    // The summary table at the end: a row per point.
    expect(r.stderr).toMatch(/^tbptt\(k=4\)\s+16\s+\d+\s+\d+\s+\d+\s+\d+$/m);
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
      ['ottt:window=2', 8],
      ['ottt:window=2', 16],
      ['sltt:window=2', 8],
      ['sltt:window=2', 16],
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
      expect(m.inputMsPerIter).toBeGreaterThanOrEqual(0);
      // The whole measuring process: Node, tfjs and the kernels' memories are tens of MiB at least.
      expect(m.peakRssBytes).toBeGreaterThan(50 * 2 ** 20);
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
    for (const rule of ['ottt:window=2', 'sltt:window=2', 'local-tbptt:truncation=4']) {
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

  it('--loss trains every rule on the loss named and records it per point; a rule that cannot learn from it is refused, an unknown loss named', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spikeflow-bench-'));
    const r = spawnSync(
      process.execPath,
      [bin, '--quick', '--rules', 'bptt,tbptt,eprop', '--steps', '8', '--loss', 'ce_every_step', '--json', join(dir, 'every.json')],
      {
        encoding: 'utf8',
      },
    );
    expect(r.status, r.stderr).toBe(0);
    const every = JSON.parse(readFileSync(join(dir, 'every.json'), 'utf8')) as BenchReport;
    expect(every.workload.loss).toBe('ce_every_step');
    expect(every.results.map((m) => `${m.rule} ${m.loss}`)).toEqual(['bptt ce_every_step', 'tbptt(k=4) ce_every_step', 'eprop ce_every_step']);
    // e-prop learns from per-step terms: CE on the mean readout is refused for it, the others measured.
    const mean = spawnSync(process.execPath, [bin, '--quick', '--rules', 'bptt,eprop', '--steps', '8', '--loss', 'ce_mean', '--json', join(dir, 'mean.json')], {
      encoding: 'utf8',
    });
    expect(mean.status, mean.stderr).toBe(0);
    const report = JSON.parse(readFileSync(join(dir, 'mean.json'), 'utf8')) as BenchReport;
    expect(report.results.map((m) => `${m.rule} ${m.loss}`)).toEqual(['bptt ce_mean']);
    expect(report.failures.map((f) => f.rule)).toEqual(['eprop']);
    expect(report.failures[0]!.message).toMatch(/^refused: .*loss 'ce_mean' does not decompose over time/);
    const unknown = spawnSync(process.execPath, [bin, '--quick', '--rules', 'bptt', '--steps', '8', '--loss', 'ce_meen'], { encoding: 'utf8' });
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/unknown loss 'ce_meen'; did you mean 'ce_mean'/);
    // Without --loss: CE on the mean readout for a rule that sees the whole sequence.
    const registry = createRegistry([lif, bptt, wasmPlugin]);
    expect((await measure(registry, parseRuleChoice('bptt'), 4, quickWorkload)).loss).toBe('ce_mean');
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

  it('--rounds 2 measures every point once per pass over the list, every rule at one T before the next T, and keeps each point’s median round with every round’s time', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spikeflow-bench-'));
    const r = spawnSync(process.execPath, [bin, '--quick', '--rules', 'bptt,tbptt', '--steps', '8,16', '--rounds', '2', '--json', join(dir, 'out.json')], {
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    // Round-robin: the whole list, then the whole list again; within a pass, the rules at T = 8, then at T = 16.
    const order = [...r.stderr.matchAll(/^\[(\d)\/8\] round (\d) (\S+) T=(\d+) \.\.\.$/gm)].map((m) => `${m[2]} ${m[3]} ${m[4]}`);
    expect(order).toEqual(['1 bptt 8', '1 tbptt(k=4) 8', '1 bptt 16', '1 tbptt(k=4) 16', '2 bptt 8', '2 tbptt(k=4) 8', '2 bptt 16', '2 tbptt(k=4) 16']);
    const report = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as BenchReport;
    // The report lists the points rule by rule, as asked.
    expect(report.results.map((m) => `${m.rule} ${m.steps}`)).toEqual(['bptt 8', 'bptt 16', 'tbptt(k=4) 8', 'tbptt(k=4) 16']);
    for (const m of report.results) {
      expect(m.roundsMsPerIter).toHaveLength(2);
      expect(m.msPerIter).toBe(Math.min(...m.roundsMsPerIter!));
    }
    const bad = spawnSync(process.execPath, [bin, '--quick', '--rounds', '0'], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--rounds must be a positive integer/);
  });

  it('--paired measures every other rule between two measurements of the reference at the same T (a rule on another neuron between the reference on that neuron), and reports each round’s ratio and their median', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spikeflow-bench-'));
    const args = [
      bin,
      '--quick',
      '--rules',
      'bptt,tbptt,sltt:window=2@alif',
      '--steps',
      '8',
      '--rounds',
      '2',
      '--paired',
      'bptt',
      '--json',
      join(dir, 'out.json'),
    ];
    const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const order = [...r.stderr.matchAll(/^\[\d+\/16\] round (\d) (\S+) T=8 \.\.\.$/gm)].map((m) => `${m[1]} ${m[2]}`);
    // bptt@alif, not asked for, is measured too: the reference of the rule on ALIF, paired itself with bptt.
    const pass = ['bptt', 'tbptt(k=4)', 'bptt', 'bptt@alif', 'bptt', 'bptt@alif', 'sltt:window=2@alif', 'bptt@alif'];
    expect(order).toEqual([...pass.map((x) => `1 ${x}`), ...pass.map((x) => `2 ${x}`)]);
    const report = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8')) as BenchReport;
    const by = Object.fromEntries(report.results.map((m) => [m.rule, m]));
    const ms = (rule: string) => by[rule]!.roundsMsPerIter!;
    // Every measurement of a reference, in order: 3 a pass each.
    expect(ms('bptt')).toHaveLength(6);
    expect(ms('bptt@alif')).toHaveLength(6);
    expect(by.bptt!.paired).toBeUndefined();
    const mean = (a: number, b: number) => (a + b) / 2;
    const expected = {
      'tbptt(k=4)': ['bptt', [0, 1].map((p) => ms('tbptt(k=4)')[p]! / mean(ms('bptt')[3 * p]!, ms('bptt')[3 * p + 1]!))],
      'bptt@alif': ['bptt', [0, 1].map((p) => ms('bptt@alif')[3 * p]! / mean(ms('bptt')[3 * p + 1]!, ms('bptt')[3 * p + 2]!))],
      'sltt:window=2@alif': ['bptt@alif', [0, 1].map((p) => ms('sltt:window=2@alif')[p]! / mean(ms('bptt@alif')[3 * p + 1]!, ms('bptt@alif')[3 * p + 2]!))],
    } as const;
    for (const [rule, [reference, ratios]] of Object.entries(expected)) {
      expect(by[rule]!.paired).toEqual({ reference, ratios, ratio: mean(ratios[0]!, ratios[1]!) });
    }
    expect(summaryTable(report)[0]).toMatch(/× reference/);
    expect(summaryTable(report).find((l) => l.startsWith('tbptt'))).toContain(`${by['tbptt(k=4)']!.paired!.ratio.toFixed(2)} bptt`);
    for (const [paired, message] of [
      ['bptx', /the reference rule 'bptx' is not among the rules measured \(bptt, tbptt\(k=4\)\)/],
      ['bptt@alif', /write --paired bptt --neuron alif/],
    ] as const) {
      const bad = spawnSync(process.execPath, [bin, '--quick', '--rules', paired === 'bptx' ? 'bptt,tbptt' : 'bptt@alif,eprop', '--paired', paired], {
        encoding: 'utf8',
      });
      expect(bad.status).toBe(1);
      expect(bad.stderr).toMatch(message);
    }
  });

  it('a rule on another neuron model (rule@neuron) builds the workload’s network on that neuron', async () => {
    const registry = createRegistry([lif, bptt, wasmPlugin]);
    await expect(measure(registry, parseRuleChoice('bptt@alif'), 4, quickWorkload)).rejects.toThrow(/alif/);
    expect((await measure(registry, parseRuleChoice('bptt@lif'), 4, { ...quickWorkload, neuron: 'alif' })).rule).toBe('bptt@lif');
  });

  it('a point’s median round: the middle one by time (the lower of the two middle ones), its figures with every round’s time', () => {
    const m = (ms: number, rss: number) => ({ msPerIter: ms, peakRssBytes: rss }) as unknown as Parameters<typeof medianRound>[0][number];
    expect(medianRound([m(5, 1)])).toEqual(m(5, 1));
    expect(medianRound([m(9, 1), m(3, 2), m(5, 3)])).toEqual({ msPerIter: 5, peakRssBytes: 3, roundsMsPerIter: [9, 3, 5] });
    expect(medianRound([m(9, 1), m(3, 2), m(5, 3), m(7, 4)])).toEqual({ msPerIter: 5, peakRssBytes: 3, roundsMsPerIter: [9, 3, 5, 7] });
  });

  it('--conv trains the conv workload (conv + max-pool stages on [H, W, C] frames): a working memory per step, a spike rate per conv layer; a rule that trains dense layers only is refused, and reported so beside the rules measured', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'spikeflow-bench-')), 'conv.json');
    const r = spawnSync(process.execPath, [bin, '--conv', '--quick', '--rules', 'bptt', '--steps', '8', '--json', out], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const report = JSON.parse(readFileSync(out, 'utf8')) as BenchReport;
    expect(report.workload).toMatchObject({ inputs: 128, conv: { shape: [8, 8, 2] } });
    const [point] = report.results;
    expect(point).toMatchObject({ rule: 'bptt', steps: 8 });
    expect(point!.msPerIter).toBeGreaterThan(0);
    expect(point!.peakWorkingBytes).toBeGreaterThan(0);
    expect(point!.inferSpikeRates).toHaveLength(2);
    expect(report.failures).toEqual([]);
    // A rule that refuses the workload: its points are reported refused, the other rules measured; alone, the run fails with its reason.
    const mixed = join(mkdtempSync(join(tmpdir(), 'spikeflow-bench-')), 'mixed.json');
    const partly = spawnSync(process.execPath, [bin, '--conv', '--quick', '--rules', 'eprop,bptt', '--steps', '8,16', '--json', mixed], { encoding: 'utf8' });
    expect(partly.status, partly.stderr).toBe(0);
    const partial = JSON.parse(readFileSync(mixed, 'utf8')) as BenchReport;
    expect(partial.results.map((p) => `${p.rule} ${p.steps}`)).toEqual(['bptt 8', 'bptt 16']);
    expect(partial.failures.map((f) => `${f.rule} ${f.steps}`)).toEqual(['eprop 8', 'eprop 16']);
    for (const f of partial.failures)
      expect(f.message).toMatch(/^refused: .*rule 'eprop[^']*' cannot train this run: model\.layers\[0\]\.type: it trains dense layers only/);
    const refused = spawnSync(process.execPath, [bin, '--conv', '--quick', '--rules', 'eprop', '--steps', '8'], { encoding: 'utf8' });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(
      /rule 'eprop[^']*' cannot train this run: model\.layers\[0\]\.type: it trains dense layers only, and this is a conv2d layer/,
    );
    const both = spawnSync(process.execPath, [bin, '--conv', '--inputs', '5'], { encoding: 'utf8' });
    expect(both.status).toBe(1);
    expect(both.stderr).toMatch(/--conv fixes the input .* drop --inputs/);
    expect(quickConvWorkload.inputs).toBe(8 * 8 * 2);
  });

  it('--tssl trains the TSSL-BP network with TSSL-BP and with BPTT through the same neurons, on the kernel loss (T = 5 and 10); a rule that cannot train it is refused', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'spikeflow-bench-')), 'tssl.json');
    const r = spawnSync(process.execPath, [bin, '--tssl', '--quick', '--json', out], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(readFileSync(out, 'utf8')) as BenchReport;
    expect(report.workload).toMatchObject({ neuron: 'tssl', tssl: true });
    expect(report.results.map((p) => `${p.rule} ${p.steps}`)).toEqual(['tssl-bp 5', 'tssl-bp 10', 'bptt 5', 'bptt 10']);
    for (const p of report.results) {
      expect(p.msPerIter).toBeGreaterThan(0);
      // One spike rate per layer of TSSL-BP neurons: hidden, hidden, output.
      expect(p.inferSpikeRates).toHaveLength(3);
    }
    // The kernel loss needs T = 5 or a multiple of 10: another T is reported with the loss's reason.
    const odd = spawnSync(process.execPath, [bin, '--tssl', '--quick', '--rules', 'tssl-bp', '--steps', '7'], { encoding: 'utf8' });
    expect(odd.status).toBe(1);
    expect(odd.stderr).toMatch(/loss\.desired: the pattern '01111' \(5 steps\) does not divide the 7 steps/);
    const refused = spawnSync(process.execPath, [bin, '--tssl', '--quick', '--rules', 'eprop', '--steps', '5'], { encoding: 'utf8' });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/rule 'eprop[^']*' cannot train this run/);
    const both = spawnSync(process.execPath, [bin, '--tssl', '--conv'], { encoding: 'utf8' });
    expect(both.status).toBe(1);
    expect(both.stderr).toMatch(/--conv and --tssl are two workloads; choose one/);
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
    expect(parseRuleChoice('eprop:window=2@alif')).toEqual({ label: 'eprop:window=2@alif', spec: { name: 'eprop', window: 2 }, neuron: 'alif' });
    expect(parseRuleChoice('tbptt@alif', 25)).toEqual({ label: 'tbptt(k=25)@alif', spec: { name: 'bptt', truncation: 25 }, neuron: 'alif' });
    for (const bad of ['bptt@', '@alif', 'bptt@a b']) expect(() => parseRuleChoice(bad)).toThrow(/names no neuron after '@'/);
  });
});

describe('the standard input, made window by window', () => {
  it('gives the values of tf.less(tf.randomUniform([T, B, I], 0, 1, float32, seed), density), windows in any order, twice', () => {
    for (const [T, B, I, p, seed] of [
      [70, 3, 11, 0.2, 1],
      [5, 2, 700, 0.05, 7],
      [MARK_STRIDE * 3, 1, 1, 0.5, 0],
    ] as const) {
      const dense = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([T, B, I], 0, 1, 'float32', seed), p), 'float32'));
      const want = dense.dataSync();
      const src = new BernoulliSteps(T, B, I, p, seed);
      const xs = stepsOf(src);
      const per = B * I;
      const cuts = [
        [Math.floor(T / 2), T],
        [0, 1],
        [T - 1, T],
        [1, Math.min(T, MARK_STRIDE + 3)],
        [0, T],
        [Math.floor(T / 2), T],
      ];
      for (const [from, to] of cuts) {
        const w = xs.window(from!, to!);
        expect(Array.from(w.dataSync()), `T=${T} [${from}, ${to})`).toEqual(Array.from(want.subarray(from! * per, to! * per)));
        w.dispose();
      }
      const step = xs.at(T - 2);
      expect(Array.from(step.dataSync())).toEqual(Array.from(want.subarray((T - 2) * per, (T - 1) * per)));
      tf.dispose([step, dense]);
      expect(src.fillMs).toBeGreaterThan(0);
    }
    const e = (() => {
      try {
        new BernoulliSteps(4, 2, 3, 0.1, 0).window(3, 5);
      } catch (err) {
        return err;
      }
    })();
    expect(isSpikeflowError(e, 'SHAPE_MISMATCH')).toBe(true);
    expect(String(e)).toMatch(/a window \[3, 5\) of 4 steps must satisfy 0 <= from < to <= 4/);
  });

  it('inference in windows of 1024 steps with the state carried gives the spike rates of forward over the whole input', async () => {
    const registry = createRegistry([lif, bptt, wasmPlugin]);
    const net = buildNetwork(
      { inputs: 6, layers: [{ neuron: 'lif', size: 8, recurrent: true, gain: 3 }], readout: { size: 2 } },
      { neurons: registry.neurons, surrogates: [...registry.surrogates.values()] },
      { seed: 1, kernels: registry.kernels },
    );
    const src = new BernoulliSteps(2100, 2, 6, 0.3, 5);
    const before = tf.memory().numTensors;
    const rates = await infer(net, src, true);
    expect(tf.memory().numTensors).toBe(before);
    const x = stepsOf(src).window(0, 2100);
    const whole = forward(net, x, { record: true });
    const want = tf.tidy(() => tf.mean(whole.spikes![0]!).dataSync()[0]!);
    expect(rates).toHaveLength(1);
    expect(rates[0]).toBeGreaterThan(0);
    expect(rates[0]).toBeCloseTo(want, 6);
    disposeTree([whole, x]);
    net.dispose();
  });
});

describe('a point that does not fit', () => {
  it('is reported as out of memory, whichever way the memory ran out, the original error kept', () => {
    const job = { choice: parseRuleChoice('bptt'), steps: 10000, workload: quickWorkload };
    expect(failureMessage(job, new WebAssembly.RuntimeError('memory access out of bounds'))).toBe(
      "out of memory: bptt at T = 10000, B = 4 does not fit in the backend's memory (RuntimeError: memory access out of bounds)",
    );
    expect(failureMessage(job, new RangeError('Array buffer allocation failed'))).toMatch(/^out of memory: bptt at T = 10000, B = 4 does not fit/);
    expect(failureMessage(job, new SpikeflowError('OUT_OF_MEMORY', 'spikeflow.integrateFireSequence needs 33 GiB'))).toBe(
      'out of memory: bptt at T = 10000, B = 4 does not fit (spikeflow.integrateFireSequence needs 33 GiB)',
    );
    expect(failureMessage(job, new Error('a rule bug'))).toBe('a rule bug');
  });
});

describe('the summary table', () => {
  it('lists every point in the order asked, a failed one as a row that says why', () => {
    const m = (rule: string, steps: number) => ({
      rule,
      steps,
      msPerIter: 1234.4,
      msPerStep: 1234.4 / steps,
      inputMsPerIter: 10,
      peakTensorBytes: 300 * 2 ** 20,
      peakWorkingBytes: 200 * 2 ** 20,
      peakRssBytes: 900 * 2 ** 20,
      inferStepsPerSec: 5000,
      inferSpikeRates: [0.1],
      repeats: 1,
      inferRepeats: 1,
    });
    const report = {
      results: [m('bptt', 1000), m('tbptt(k=50)', 1000), m('tbptt(k=50)', 10000)],
      failures: [{ rule: 'bptt', steps: 10000, message: 'spikeflow.integrateFireSequence: out of memory' }],
    } as unknown as BenchReport;
    const lines = summaryTable(report);
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatch(/^rule\s+T\s+ms\/iter\s+working MiB\s+peak RSS MiB\s+inference steps\/s$/);
    expect(lines[1]).toMatch(/^bptt\s+1000\s+1234\s+200\s+900\s+5000$/);
    expect(lines[2]).toMatch(/^bptt\s+10000\s+FAILED: spikeflow.integrateFireSequence: out of memory$/);
    expect(lines[3]).toMatch(/^tbptt\(k=50\)\s+1000\s/);
    expect(lines[4]).toMatch(/^tbptt\(k=50\)\s+10000\s/);
  });
});

describe('kernel profile', () => {
  it('counts every kernel call with its exclusive time, and restores the kernels', async () => {
    const before = tf.getKernelsForBackend('wasm').map((c) => c.kernelFunc);
    const a = tf.ones([64, 64]);
    const p = await profileKernels('wasm', () => {
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

describe('asynchronous reads', () => {
  it('asks every update for its loss as a promise (asyncReads) and times an iteration until that promise settles', async () => {
    const registry = createRegistry([lif, bptt, wasmPlugin]);
    const inner = fullBptt() as unknown as LearningRule;
    const asked: (boolean | undefined)[] = [];
    let settled = 0;
    const delayMs = 30;
    const slowLoss: LearningRule = {
      ...inner,
      name: 'bptt+slow-loss',
      update(batch, state, ctx) {
        asked.push(ctx.asyncReads);
        const r = inner.update(batch, state, ctx);
        // The loss of a device that is still busy: it settles well after update returns.
        const loss = Promise.resolve(r.report.loss).then(
          (v) =>
            new Promise<number>((resolve) =>
              setTimeout(() => {
                settled++;
                resolve(v);
              }, delayMs),
            ),
        );
        return { state: r.state, report: { ...r.report, loss } };
      },
    };
    const m = await measure(registry, slowLoss, 4, { ...quickWorkload, repeats: 2 });
    // The warm-up, the 2 timed iterations and the one whose memory is measured.
    expect(asked).toEqual([true, true, true, true]);
    expect(settled).toBe(4);
    // An iteration's time ends when its loss has been read.
    expect(m.msPerIter).toBeGreaterThanOrEqual(delayMs - 5);
  });

  it('starts every iteration from the same weights, rule state and optimizer state (the repeats do not train on)', async () => {
    const registry = createRegistry([lif, bptt, wasmPlugin]);
    const inner = fullBptt() as unknown as LearningRule;
    const weights = (params: Readonly<Record<string, tf.Tensor>>) =>
      Object.keys(params)
        .sort()
        .flatMap((k) => Array.from(params[k]!.dataSync()));
    const seen: { before: number[]; after: number[]; state: unknown }[] = [];
    const recording: LearningRule = {
      ...inner,
      name: 'bptt+recording',
      init: () => ({ updates: 0 }),
      update(batch, state, ctx) {
        const before = weights(ctx.network.params);
        const r = inner.update(batch, undefined as never, ctx);
        seen.push({ before, after: weights(ctx.network.params), state });
        // A state of the rule's own that counts its updates.
        return { state: { updates: (state as { updates: number }).updates + 1 }, report: r.report };
      },
    };
    await measure(registry, recording, 4, { ...quickWorkload, repeats: 3 });
    // The warm-up, 3 timed iterations, the one whose memory is measured.
    expect(seen).toHaveLength(5);
    // The update moves the weights...
    expect(seen[0]!.after).not.toEqual(seen[0]!.before);
    for (const s of seen.slice(1)) {
      // ... yet every iteration starts where the warm-up did, with a fresh rule state, and makes the
      // same update (Adam's moments and step count fresh too: a second Adam step would differ).
      expect(s.state).toEqual({ updates: 0 });
      expect(s.before).toEqual(seen[0]!.before);
      expect(s.after).toEqual(seen[0]!.after);
    }
  });

  it('peakTensorBytes follows an asynchronous function until its promise settles, and restores the engine', async () => {
    const engine = tf.engine() as unknown as { trackTensor: unknown };
    const track = engine.trackTensor;
    const base = tf.memory().numBytes;
    const peak = await peakTensorBytes(async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      tf.tidy(() => {
        tf.zeros([1024, 1024]); // 4 MiB, transient, after the first await
      });
    });
    expect(peak - base).toBe(4 * 2 ** 20);
    expect(engine.trackTensor).toBe(track);
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

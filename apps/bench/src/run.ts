import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import { SpikeflowError, isSpikeflowError, type BackendInfo } from '@spikeflow/core';
import { lineChart } from '@spikeflow/plot';
import { median, type Measurement, type RuleChoice, type Workload } from './measure.js';
import type { Job } from './worker.js';

export interface BenchOptions {
  readonly plugins: readonly string[];
  readonly backend: string;
  readonly rules: readonly RuleChoice[];
  readonly steps: readonly number[];
  readonly workload: Workload;
  readonly json?: string;
  readonly plot?: string;
  /**
   * Passes over the whole list of points (default 1). With more, every point is measured once per
   * pass, round-robin, so that a slow spell of the machine hits every rule alike; a point's figures
   * are those of its median round, with every round's `msPerIter` in `roundsMsPerIter`.
   */
  readonly rounds?: number;
  /**
   * A reference rule, by its label among `rules` (`bptt`): every other rule's point is measured
   * right between two measurements of the reference at the same T, and reports its time against
   * theirs (`Measurement.paired`; with `rounds`, once per round, and the median). A rule on another
   * neuron model (`eprop@alif`) is paired with the reference on that neuron (`bptt@alif`, measured
   * too when not among `rules`), and that one with the reference.
   */
  readonly paired?: string;
  /** Progress lines (default: stderr). */
  readonly progress?: (line: string) => void;
}

export interface BenchReport {
  readonly machine: { cpu: string; cores: number; memoryBytes: number; node: string; platform: string };
  readonly backend: BackendInfo | { tfBackend: string };
  readonly revision: string;
  readonly date: string;
  readonly workload: Workload;
  readonly results: readonly Measurement[];
  /** Points that could not be measured (out of memory, a rule error), with the reason. */
  readonly failures: readonly { rule: string; steps: number; message: string }[];
}

const worker = fileURLToPath(new URL('./worker.js', import.meta.url));

/**
 * Errors that are the same at every T (a bad rule name or option): the bench stops on them — but
 * for a rule that refuses the workload (`INCOMPATIBLE`: OTTT on a conv network), whose points are
 * recorded as refused while the other rules are measured.
 */
const CONFIG_CODES = ['CONFIG_INVALID', 'UNKNOWN_NAME', 'INCOMPATIBLE', 'PLUGIN_NOT_FOUND', 'PLUGIN_INVALID', 'BACKEND_UNAVAILABLE'];

/** The bench package's own folder (its package.json), one level above this module's (dist/ or src/). */
const packageRoot = fileURLToPath(new URL('..', import.meta.url));

/**
 * The revision a report was measured at: the commit of the git checkout that holds the bench's
 * own files (`root`, by default the bench's package folder), with `+dirty` where tracked files
 * have uncommitted changes; `unknown` where the bench is not tracked in a checkout (installed from
 * the registry, even inside another repository). Read where the bench lives, not in the working
 * directory, so that a report written elsewhere (`--json /elsewhere/bench.json` from another
 * folder) names the revision of the code that measured it.
 */
export function gitRevision(root: string = packageRoot): string {
  const git = (...args: string[]): string => execFileSync('git', ['-C', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    git('ls-files', '--error-unmatch', 'package.json');
    const dirty = git('status', '--porcelain', '--untracked-files=no');
    return git('rev-parse', 'HEAD') + (dirty ? '+dirty' : '');
  } catch {
    return 'unknown';
  }
}

/** One job in its own Node process, so that its peak RSS is its own. */
function runInChild(job: Job): Promise<{ measurement: Measurement; backend: BackendInfo }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [worker, '--job', JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const last = out.trim().split('\n').at(-1) ?? '';
      let msg: { ok: boolean; measurement?: Measurement; backend?: BackendInfo; message?: string; code?: string };
      try {
        msg = JSON.parse(last) as typeof msg;
      } catch {
        const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
        reject(new Error(`the measuring process ${how} and no result (out of memory?)`));
        return;
      }
      if (msg.ok) resolve({ measurement: msg.measurement!, backend: msg.backend! });
      else if (msg.code && CONFIG_CODES.includes(msg.code))
        reject(new SpikeflowError(msg.code as 'CONFIG_INVALID', `bench: ${job.choice.label}: ${msg.message}`));
      else reject(new Error(msg.message));
    });
  });
}

/**
 * The reference each rule is paired with under `paired` (see {@link BenchOptions.paired}), and the
 * list of rules with the references on other neuron models added.
 */
function pairing(
  rules: readonly RuleChoice[],
  paired: string | undefined,
  neuron: string,
): { choices: readonly RuleChoice[]; refOf: (c: RuleChoice) => RuleChoice | undefined } {
  if (paired === undefined) return { choices: rules, refOf: () => undefined };
  const ref = rules.find((c) => c.label === paired);
  if (!ref) {
    throw new SpikeflowError(
      'CONFIG_INVALID',
      `bench: the reference rule '${paired}' is not among the rules measured (${rules.map((c) => c.label).join(', ')}); name one of them`,
      { path: 'paired' },
    );
  }
  if (ref.neuron) {
    throw new SpikeflowError(
      'CONFIG_INVALID',
      `bench: the reference rule runs on the workload's neuron; write --paired ${ref.label.slice(0, ref.label.lastIndexOf('@'))} --neuron ${ref.neuron}`,
      {
        path: 'paired',
      },
    );
  }
  const choices = [...rules];
  // The reference on neuron n; where it is not among the rules, it is measured too, listed right before the first rule that needs it.
  const on = (n: string, user: RuleChoice): RuleChoice => {
    const label = `${ref.label}@${n}`;
    const found = choices.find((x) => x.label === label);
    if (found) return found;
    const added = { ...ref, label, neuron: n };
    choices.splice(choices.indexOf(user), 0, added);
    return added;
  };
  const refOf = (c: RuleChoice): RuleChoice | undefined => {
    if (c === ref) return undefined;
    const n = c.neuron ?? neuron;
    return n === neuron || c.label === `${ref.label}@${n}` ? ref : on(n, c);
  };
  for (const c of rules) refOf(c);
  return { choices, refOf };
}

/** Measures every (rule, T), one process each (`rounds` times, round-robin), and writes the JSON and the plots. */
export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const progress = o.progress ?? ((l: string) => process.stderr.write(`${l}\n`));
  const rounds = o.rounds ?? 1;
  if (!(Number.isInteger(rounds) && rounds >= 1)) {
    throw new SpikeflowError('CONFIG_INVALID', `bench: rounds must be a whole number ≥ 1, got ${rounds}`, { path: 'rounds' });
  }
  const { choices, refOf } = pairing(o.rules, o.paired, o.workload.neuron);
  const S = o.steps.length;
  const points = choices.flatMap((choice) => o.steps.map((steps) => ({ choice, steps })));
  const at = (c: RuleChoice, s: number) => choices.indexOf(c) * S + s;
  // Every measurement of each point (by index in `points`), or why it failed; under `paired`, each round's ratio to its reference.
  const measured: Measurement[][] = points.map(() => []);
  const ratios: number[][] = points.map(() => []);
  const failed = new Map<number, string>();
  let backend: BackendInfo | { tfBackend: string } = { tfBackend: o.backend };
  /**
   * The points of one pass at the s-th T, in order: every rule at that T (then every rule at the
   * next T, so that the points compared at one T run close together in time). Under `paired`,
   * each rule between two measurements of its reference (one measurement of the reference ends
   * a pair and starts the next).
   */
  const pass = (s: number): { seq: number[]; pairs: { member: number; around: [number, number] }[] } => {
    if (o.paired === undefined) return { seq: choices.map((c) => at(c, s)), pairs: [] };
    const seq: number[] = [];
    // Positions in `seq`: a paired rule's, and its reference's right before and after it.
    const pairs: { member: number; around: [number, number] }[] = [];
    for (const c of choices) {
      const ref = refOf(c);
      if (!ref) continue;
      if (seq.at(-1) !== at(ref, s)) seq.push(at(ref, s));
      seq.push(at(c, s), at(ref, s));
      pairs.push({ member: seq.length - 2, around: [seq.length - 3, seq.length - 1] });
    }
    return seq.length ? { seq, pairs } : { seq: choices.map((c) => at(c, s)), pairs: [] };
  };
  const total = rounds * o.steps.reduce((n, _, s) => n + pass(s).seq.length, 0);
  const started = performance.now();
  let n = 0;
  /** Measures point i in its own process; its time, or undefined where it failed (now or in an earlier round). */
  const measurePoint = async (i: number, round: number): Promise<number | undefined> => {
    const { choice, steps } = points[i]!;
    n++;
    // A point that failed (out of memory at a large T) is not tried again.
    if (failed.has(i)) return undefined;
    const label = `[${n}/${total}]${rounds > 1 ? ` round ${round + 1}` : ''} ${choice.label} T=${steps}`;
    progress(`${label} ...`);
    let r: Awaited<ReturnType<typeof runInChild>>;
    try {
      r = await runInChild({ plugins: o.plugins, backend: o.backend, choice, steps, workload: o.workload });
    } catch (e) {
      // A rule that refuses the workload refuses it at every T: all its points are recorded as refused.
      if (isSpikeflowError(e) && e.code === 'INCOMPATIBLE') {
        points.forEach((p, j) => p.choice === choice && failed.set(j, `refused: ${e.message}`));
        progress(`${label}: REFUSED ${e.message}`);
        return undefined;
      }
      // Any other configuration error is the same at every T: stop. Anything else (out of memory at a large T) is recorded.
      if (isSpikeflowError(e)) throw e;
      failed.set(i, (e as Error).message);
      progress(`${label}: FAILED ${(e as Error).message}`);
      return undefined;
    }
    backend = r.backend;
    measured[i]!.push(r.measurement);
    const m = r.measurement;
    progress(
      `${label}: ${m.msPerIter.toFixed(0)} ms/iter, ${(m.peakWorkingBytes / 2 ** 20).toFixed(1)} MiB working tensors (${(m.peakTensorBytes / 2 ** 20).toFixed(1)} peak), ` +
        `${(m.peakRssBytes / 2 ** 20).toFixed(0)} MiB RSS, ${m.inferStepsPerSec.toFixed(0)} inference steps/s at ${m.inferSpikeRates.map((r) => `${(100 * r).toFixed(1)}%`).join('/')} hidden spikes` +
        (m.inferComposite ? ` (composite ${m.inferComposite.stepsPerSec.toFixed(0)}: ${m.inferComposite.speedup.toFixed(1)}×)` : '') +
        ` (${((performance.now() - started) / 1000).toFixed(0)} s)`,
    );
    if (m.profile) {
      const p = m.profile;
      const pct = (ms: number) => `${((100 * ms) / p.totalMs).toFixed(0)}%`;
      progress(
        `    profile: ${p.totalMs.toFixed(0)} ms, ${pct(p.kernelMs)} in kernels (${p.kernels
          .slice(0, 6)
          .map((k) => `${k.kernel} ${pct(k.ms)}`)
          .join(', ')}), ${pct(p.outsideMs)} outside them`,
      );
    }
    return m.msPerIter;
  };
  for (let round = 0; round < rounds; round++) {
    for (let s = 0; s < S; s++) {
      const { seq, pairs } = pass(s);
      const times: (number | undefined)[] = [];
      for (const i of seq) times.push(await measurePoint(i, round));
      // Each paired rule against the mean of its reference's measurements right before and after it (either one, where the other failed).
      for (const {
        member,
        around: [before, after],
      } of pairs) {
        const i = seq[member]!;
        const ref = refOf(points[i]!.choice)!;
        const t = times[member];
        const around = [times[before], times[after]].filter((x): x is number => x !== undefined);
        if (t === undefined || around.length === 0) continue;
        const ratio = t / (around.reduce((a, b) => a + b, 0) / around.length);
        ratios[i]!.push(ratio);
        progress(`    ${points[i]!.choice.label} T=${points[i]!.steps}: ${ratio.toFixed(2)}× ${ref.label} (${around.map((x) => x.toFixed(0)).join(', ')} ms)`);
      }
    }
  }
  const results = points.flatMap(({ choice }, i) => {
    if (failed.has(i) || measured[i]!.length === 0) return [];
    const m = medianRound(measured[i]!);
    const ref = refOf(choice);
    return [ref && ratios[i]!.length ? { ...m, paired: { reference: ref.label, ratios: ratios[i]!, ratio: median(ratios[i]!) } } : m];
  });
  if (results.length === 0 && points.length > 0 && [...failed.values()].every((m) => m.startsWith('refused: '))) {
    throw new SpikeflowError('INCOMPATIBLE', [...new Set([...failed.values()].map((m) => m.slice('refused: '.length)))].join('; '));
  }
  const failures = points.flatMap(({ choice, steps }, i) => (failed.has(i) ? [{ rule: choice.label, steps, message: failed.get(i)! }] : []));
  const cpus = os.cpus();
  const report: BenchReport = {
    machine: {
      cpu: cpus[0]?.model ?? 'unknown',
      cores: cpus.length,
      memoryBytes: os.totalmem(),
      node: process.versions.node,
      platform: `${os.platform()} ${os.arch()}`,
    },
    backend,
    revision: gitRevision(),
    date: new Date().toISOString(),
    workload: o.workload,
    results,
    failures,
  };
  for (const line of summaryTable(report)) progress(line);
  if (o.json) {
    mkdirSync(dirname(o.json), { recursive: true });
    writeFileSync(o.json, `${JSON.stringify(report, null, 2)}\n`);
  }
  if (o.plot) writePlots(report, o.plot);
  return report;
}

/**
 * One point's figures from its rounds: those of the round with the median `msPerIter` (the lower
 * middle one for an even count), with every round's `msPerIter` in `roundsMsPerIter` when there
 * were several.
 */
export function medianRound(rounds: readonly Measurement[]): Measurement {
  if (rounds.length === 1) return rounds[0]!;
  const sorted = [...rounds].sort((a, b) => a.msPerIter - b.msPerIter);
  return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, roundsMsPerIter: rounds.map((m) => m.msPerIter) };
}

/**
 * The report as a table, one row per (rule, T) in the order asked: time, working tensor memory and
 * peak RSS of the point, or `FAILED` and why where it could not be measured (out of memory).
 */
export function summaryTable(report: BenchReport): string[] {
  const mib = (b: number) => (b / 2 ** 20).toFixed(0);
  // Under `paired`, each rule's median ratio to its reference at the same T.
  const paired = report.results.some((m) => m.paired);
  const rows: string[][] = [['rule', 'T', 'ms/iter', ...(paired ? ['× reference'] : []), 'working MiB', 'peak RSS MiB', 'inference steps/s']];
  const points = [
    ...report.results.map((m) => ({
      rule: m.rule,
      steps: m.steps,
      cells: [
        m.msPerIter.toFixed(0),
        ...(paired ? [m.paired ? `${m.paired.ratio.toFixed(2)} ${m.paired.reference}` : ''] : []),
        mib(m.peakWorkingBytes),
        mib(m.peakRssBytes),
        m.inferStepsPerSec.toFixed(0),
      ],
    })),
    ...report.failures.map((f) => ({ rule: f.rule, steps: f.steps, cells: [`FAILED: ${f.message}`] })),
  ];
  const order = [...new Set(points.map((p) => p.rule))];
  points.sort((a, b) => order.indexOf(a.rule) - order.indexOf(b.rule) || a.steps - b.steps);
  for (const p of points) rows.push([p.rule, String(p.steps), ...p.cells]);
  // Every column as wide as its widest cell, a row's last cell (a failure's reason) left as it is.
  const width = (i: number) => Math.max(...rows.filter((r) => i < r.length - 1).map((r) => r[i]!.length));
  return rows.map((r) => r.map((c, i) => (i < r.length - 1 ? c.padEnd(width(i)) : c)).join('  '));
}

/** memory.svg (peak tensor bytes vs T) and time.svg (ms per iteration vs T), log-log, one line per rule. */
export function writePlots(report: BenchReport, dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const rules = [...new Set(report.results.map((r) => r.rule))];
  const series = (f: (m: Measurement) => number) =>
    rules.map((name) => ({ name, points: report.results.filter((r) => r.rule === name).map((r): [number, number] => [r.steps, f(r)]) }));
  const w = report.workload;
  const net = w.conv ? `[${w.conv.shape.join('×')}] in, conv ${w.neuron}` : `${w.inputs} in, ${w.hidden} ${w.neuron}`;
  const sub = `B=${w.batch}, ${net}, ${report.backend.tfBackend}`;
  const files: [string, string][] = [
    [
      'memory.svg',
      lineChart(
        series((m) => m.peakWorkingBytes / 2 ** 20),
        {
          title: `peak tensor memory of an iteration vs T (${sub})`,
          xLabel: 'sequence length T',
          yLabel: 'MiB above weights and batch',
          logX: true,
          logY: true,
        },
      ),
    ],
    [
      'time.svg',
      lineChart(
        series((m) => m.msPerIter),
        { title: `time per training iteration vs T (${sub})`, xLabel: 'sequence length T', yLabel: 'ms', logX: true, logY: true },
      ),
    ],
  ];
  for (const [name, svg] of files) writeFileSync(join(dir, name), svg);
  return files.map(([n]) => join(dir, n));
}

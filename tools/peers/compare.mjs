#!/usr/bin/env node
// spikeflow's BPTT against PyTorch on the standard workload, run alternately so that a shared
// machine's drift falls on both alike: `--pairs` pairs, each a `spikeflow bench` point (median of
// `--iters` iterations) and a `bench_torch.py` run (median of as many), then the median of each side
// and of the per-pair ratios. Figures for the docs come from committed revisions only: it refuses
// a working tree with uncommitted changes unless `--allow-dirty` (then the JSON says so).
//
//   node tools/peers/compare.mjs --steps 100 --pairs 5 --iters 9 --out docs/bench/<dir>/peers-100.json
//     [--mode train|infer] [--threads 2] [--python /usr/bin/python3] [--impl torch|snntorch] [--hoist] [--conv]
//
// Build first (pnpm build). PyTorch: Debian's `python3-torch`; on Debian point it at the OpenMP
// OpenBLAS (see tools/peers/README.md), else it may load the reference BLAS, ~12x slower.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const flag = (name) => args.includes(name);
const steps = Number(opt('--steps', '100'));
const pairs = Number(opt('--pairs', '5'));
const iters = Number(opt('--iters', '9'));
const threads = opt('--threads', '2');
const mode = opt('--mode', 'train');
const python = opt('--python', '/usr/bin/python3');
const impl = opt('--impl', 'torch');
const out = opt('--out');

const git = (...a) => execFileSync('git', a, { cwd: root, encoding: 'utf8' }).trim();
const dirty = git('status', '--porcelain', '--untracked-files=no') !== '';
if (dirty && !flag('--allow-dirty')) {
  console.error(
    'compare: the working tree has uncommitted changes; figures for the docs come from committed revisions. Commit first, or pass --allow-dirty for a figure you will not publish.',
  );
  process.exit(2);
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const tmp = mkdtempSync(join(tmpdir(), 'spikeflow-peers-'));
const rows = [];
let torchInfo;
let benchInfo;
try {
  for (let p = 0; p < pairs; p++) {
    const json = join(tmp, `bench-${p}.json`);
    const benchArgs = ['apps/cli/dist/bin.js', 'bench', '--rules', 'bptt', '--steps', String(steps), '--json', json, ...(flag('--conv') ? ['--conv'] : [])];
    benchArgs.push(...(mode === 'infer' ? ['--repeats', '1', '--infer-repeats', String(iters)] : ['--repeats', String(iters)]));
    execFileSync(process.execPath, benchArgs, { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
    benchInfo = JSON.parse(readFileSync(json, 'utf8'));
    const point = benchInfo.results[0];
    const spikeflowMs = mode === 'infer' ? (steps / point.inferStepsPerSec) * 1000 : point.msPerIter;
    const torchArgs = [
      join(root, 'tools/peers/bench_torch.py'),
      '--steps',
      String(steps),
      '--iters',
      String(iters),
      '--threads',
      threads,
      '--mode',
      mode,
      '--impl',
      impl,
    ];
    if (flag('--hoist')) torchArgs.push('--hoist');
    if (flag('--conv')) torchArgs.push('--conv');
    torchInfo = JSON.parse(execFileSync(python, torchArgs, { encoding: 'utf8' }).trim().split('\n').at(-1));
    rows.push({ spikeflowMs, torchMs: torchInfo.msPerIter, ratio: spikeflowMs / torchInfo.msPerIter });
    console.log(
      `pair ${p + 1}/${pairs}: spikeflow ${spikeflowMs.toFixed(1)} ms, ${torchInfo.impl} ${torchInfo.msPerIter.toFixed(1)} ms (ratio ${(spikeflowMs / torchInfo.msPerIter).toFixed(2)})`,
    );
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
const report = {
  what: `BPTT ${mode === 'infer' ? 'inference pass' : 'training iteration'} on the ${flag('--conv') ? 'conv' : 'standard'} workload, T = ${steps}: spikeflow bench and tools/peers/bench_torch.py, alternating`,
  revision: git('rev-parse', 'HEAD') + (dirty ? '+dirty' : ''),
  date: new Date().toISOString(),
  machine: benchInfo.machine,
  spikeflow: { backend: benchInfo.backend, workload: benchInfo.workload, medianMs: median(rows.map((r) => r.spikeflowMs)) },
  peer: { impl: torchInfo.impl, versions: torchInfo.versions, threads: torchInfo.threads, medianMs: median(rows.map((r) => r.torchMs)) },
  medianRatio: median(rows.map((r) => r.ratio)),
  spikeflowFaster: rows.filter((r) => r.ratio < 1).length,
  pairs: rows,
};
console.log(
  `median: spikeflow ${report.spikeflow.medianMs.toFixed(1)} ms, ${report.peer.impl} ${report.peer.medianMs.toFixed(1)} ms; median ratio ${report.medianRatio.toFixed(2)}; spikeflow faster in ${report.spikeflowFaster} of ${pairs}`,
);
if (out) writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);

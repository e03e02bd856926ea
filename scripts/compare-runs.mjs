#!/usr/bin/env node
// Test curves of several runs side by side, from their metrics logs (run `pnpm build` first):
//
//   node scripts/compare-runs.mjs --title "..." [--metric accuracy|loss] --out curves.svg \
//     "BPTT=docs/results/mnist-row/alif-bptt" "e-prop=docs/results/mnist-row/eprop" ...
//
// Each run is label=directory; its `metrics.jsonl` gives one point per evaluation (x: the epoch
// the evaluation follows). Accuracy is plotted in percent.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { readMetricsLog } from '../apps/cli/dist/train.js';
import { lineChart } from '../packages/plot/dist/index.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { title: { type: 'string' }, metric: { type: 'string', default: 'accuracy' }, out: { type: 'string' } },
});
if (!values.title || !values.out || positionals.length === 0 || !['accuracy', 'loss'].includes(values.metric)) {
  console.error('usage: compare-runs.mjs --title T [--metric accuracy|loss] --out file.svg label=runDir ...');
  process.exit(2);
}
const series = positionals.map((arg) => {
  const at = arg.indexOf('=');
  if (at <= 0) throw new Error(`'${arg}': give each run as label=runDir`);
  const dir = arg.slice(at + 1);
  const points = readMetricsLog(dir)
    .filter((e) => e.type === 'eval' && e.result?.split === 'test')
    .map((e) => [e.position.epoch, values.metric === 'accuracy' ? e.result.accuracy * 100 : e.result.loss]);
  if (points.length === 0) throw new Error(`${dir}/metrics.jsonl has no test evaluation`);
  return { name: arg.slice(0, at), points };
});
const yLabel = values.metric === 'accuracy' ? 'test accuracy (%)' : 'test loss';
writeFileSync(values.out, lineChart(series, { title: values.title, xLabel: 'epoch', yLabel }));
console.log(`${values.out}: ${series.map((s) => `${s.name} (${s.points.length} points)`).join(', ')}`);

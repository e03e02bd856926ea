#!/usr/bin/env node
import { isSpikeflowError } from '@spikeflow/core';
import { DEFAULT_FIXTURE_PLUGINS, checkFixtureDir, formatReports } from './fixtures.js';

const USAGE = `Usage: spikeflow-fixtures check <dir> [--backend wasm|cpu] [--plugins pkg,pkg,...] [--tolerance 1e-4]

Runs every fixture JSON in <dir> (schema: @spikeflow/testing/fixtures/README.md) through
spikeflow's network and BPTT (TSSL-BP's fixtures: through TSSL-BP), and prints per fixture the worst relative error of loss, readout,
final state, gradients and truncated-BPTT gradients. Exits 1 if any fixture fails.

  --backend    backend plugin to run on (default: wasm)
  --plugins    extra plugin packages to load, e.g. a third-party neuron (resolved from the
               working directory); the defaults are always loaded:
               ${DEFAULT_FIXTURE_PLUGINS.join(', ')}
               TSSL-BP's fixtures (fixtures/tssl) run through TSSL-BP's neuron and rule:
               --plugins @spikeflow/neuron-tssl,@spikeflow/rule-tssl-bp
  --tolerance  relative tolerance (default: 1e-4)`;

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h') || argv.length === 0) {
    console.log(USAGE);
    return argv.length === 0 ? 2 : 0;
  }
  const [command, dir, ...rest] = argv;
  if (command !== 'check' || !dir) {
    console.error(`spikeflow-fixtures: expected 'check <dir>'\n\n${USAGE}`);
    return 2;
  }
  let backend = 'wasm';
  let tolerance = 1e-4;
  const extra: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i];
    const value = rest[i + 1];
    if (value === undefined) {
      console.error(`spikeflow-fixtures: ${flag} needs a value\n\n${USAGE}`);
      return 2;
    }
    if (flag === '--backend') backend = value;
    else if (flag === '--plugins') extra.push(...value.split(',').filter(Boolean));
    else if (flag === '--tolerance') tolerance = Number(value);
    else {
      console.error(`spikeflow-fixtures: unknown option ${flag}\n\n${USAGE}`);
      return 2;
    }
    i++;
  }
  if (!(tolerance > 0)) {
    console.error(`spikeflow-fixtures: --tolerance must be a number > 0`);
    return 2;
  }
  const reports = await checkFixtureDir(dir, { backend, tolerance, pluginNames: [...new Set([...DEFAULT_FIXTURE_PLUGINS, ...extra])] });
  console.log(formatReports(reports, backend));
  return reports.every((r) => r.pass) ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(isSpikeflowError(e) ? `spikeflow-fixtures: ${e.message}` : e);
    process.exit(2);
  },
);

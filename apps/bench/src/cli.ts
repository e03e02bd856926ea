import { Command, InvalidArgumentError } from 'commander';
import { SpikeflowError, createRegistry, isSpikeflowError, loadPlugins } from '@spikeflow/core';
import { convWorkload, parseRuleChoice, quickConvWorkload, quickTsslWorkload, quickWorkload, standardWorkload, tsslWorkload } from './measure.js';
import { runBench } from './run.js';

export const DEFAULT_PLUGINS = [
  '@spikeflow/neuron-lif',
  '@spikeflow/neuron-alif',
  '@spikeflow/neuron-ltc',
  '@spikeflow/rule-bptt',
  '@spikeflow/rule-fptt',
  '@spikeflow/rule-eprop',
  '@spikeflow/rule-ottt',
  '@spikeflow/rule-sltt',
  '@spikeflow/rule-local-tbptt',
  '@spikeflow/backend-wasm',
  '@spikeflow/backend-cpu',
  '@spikeflow/backend-webgpu',
];

/** What `--tssl` adds: TSSL-BP's neuron, rule and losses. */
export const TSSL_PLUGINS = ['@spikeflow/neuron-tssl', '@spikeflow/rule-tssl-bp'];

/**
 * How the default rule list runs a rule whose defaults do not suit a timing (FPTT updates every
 * step by default): FPTT with K = 10, or with K = 4 in `--quick` runs (T = 8, 16); in quick runs
 * e-prop, OTTT and SLTT with windows of 2 steps and local truncated BPTT with windows of 4, so that even
 * T = 8 carries state across windows as long sequences do.
 */
const presets = (quick: boolean): Readonly<Record<string, string>> => ({
  fptt: `fptt:window=${quick ? 4 : 10}`,
  ...(quick ? { eprop: 'eprop:window=2', ottt: 'ottt:window=2', sltt: 'sltt:window=2', 'local-tbptt': 'local-tbptt:truncation=4' } : {}),
});

const list = (name: string) => (v: string) => {
  const xs = v.split(',').map((x) => Number(x));
  if (!xs.length || xs.some((x) => !Number.isInteger(x) || x < 1)) throw new InvalidArgumentError(`${name}: expected comma-separated positive integers`);
  return xs;
};
const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};
const num = (name: string) => (v: string) => {
  const n = Number(v);
  if (!(n > 0 && n <= 1)) throw new InvalidArgumentError(`${name} must be in (0, 1]`);
  return n;
};

export function benchCommand(name = 'spikeflow-bench'): Command {
  return new Command(name)
    .description(
      'time, memory and inference throughput of learning rules against sequence length T (standard workload: B 64, 700 inputs at 5%, 256 recurrent LIF, 20-way readout, CE on the mean readout — at every step for rules that need a per-step loss — Adam)',
    )
    .option(
      '--rules <list>',
      "rules: registry names with options (bptt, bptt:truncation=25) or 'tbptt' (bptt with --k); default: every installed rule, and tbptt",
    )
    .option('--steps <list>', 'sequence lengths T', list('--steps'), [100, 250, 500, 1000])
    .option('--k <n>', 'truncation window of tbptt', int('--k'), 50)
    .option('--batch <n>', 'batch size', int('--batch'))
    .option('--hidden <n>', 'hidden neurons', int('--hidden'))
    .option('--outputs <n>', 'readout classes', int('--outputs'))
    .option('--inputs <n>', 'input channels', int('--inputs'))
    .option('--density <p>', 'input spike probability per step', num('--density'))
    .option('--neuron <name>', 'neuron model (lif, alif, ...)')
    .option('--repeats <n>', 'timed iterations per point (median)', int('--repeats'))
    .option('--infer-repeats <n>', 'timed inference passes per point (median; default: --repeats)', int('--infer-repeats'))
    .option(
      '--rounds <n>',
      'passes over the whole list of points, round-robin (each point: its median round; a slow spell of the machine hits every rule alike)',
      int('--rounds'),
      1,
    )
    .option(
      '--paired <rule>',
      'measure every other rule right between two measurements of this one at the same T, and report its time against theirs (per round, and the median); eprop@alif pairs with <rule>@alif',
    )
    .option('--no-kernels', "use core's composite kernels instead of the backend's fast ones (the baseline)")
    .option('--profile', 'also time one more iteration kernel by kernel (in the JSON; the top kernels in the progress line)')
    .option(
      '--compare-inference',
      "also time inference on core's composite references, alternating pass by pass with the fast kernels in the same process (the speed-up in the JSON and the progress line)",
    )
    .option('--backend <name>', 'backend (wasm, cpu, webgpu: WebGPU, in Node through Dawn, npm webgpu)', 'wasm')
    .option('--plugins <list>', 'extra plugin packages (e.g. a new rule)', '')
    .option('--quick', 'tiny sizes and T = 8,16 (exercises the harness in seconds)')
    .option(
      '--conv',
      'the conv workload: 34×34×2 event frames at 5%, batch 32, two conv + max-pool stages of LIF (configs/nmnist-conv.json), 10 classes; default rules bptt, tbptt, sltt and ottt, T = 10,20,40',
    )
    .option(
      '--tssl',
      "the TSSL-BP workload: the authors' dense MNIST network (784 inputs at 20%, 400-400-10 TSSL-BP neurons, batch 100) on their kernel loss; default rules tssl-bp and bptt (the same neurons with a surrogate), T = 5,10,30,100",
    )
    .option(
      '--loss <name>',
      'the loss every rule trains on (ce_mean, ce_every_step, ...; default: CE on the mean readout, at every step for rules that need a per-step loss; a rule that cannot learn from it is refused)',
    )
    .option('--json <file>', 'write all figures as JSON')
    .option('--plot <dir>', 'write memory.svg and time.svg')
    .action(
      async (o: {
        rules?: string;
        steps: number[];
        k: number;
        batch?: number;
        hidden?: number;
        outputs?: number;
        inputs?: number;
        density?: number;
        neuron?: string;
        repeats?: number;
        inferRepeats?: number;
        rounds: number;
        paired?: string;
        kernels: boolean;
        profile?: boolean;
        compareInference?: boolean;
        backend: string;
        plugins: string;
        quick?: boolean;
        conv?: boolean;
        tssl?: boolean;
        loss?: string;
        json?: string;
        plot?: string;
      }) => {
        if (o.conv && o.tssl) throw new SpikeflowError('CONFIG_INVALID', 'bench: --conv and --tssl are two workloads; choose one');
        if (o.conv && (o.inputs || o.hidden)) {
          throw new SpikeflowError('CONFIG_INVALID', `bench: --conv fixes the input ([34, 34, 2]) and the layers; drop ${o.inputs ? '--inputs' : '--hidden'}`);
        }
        const base = o.conv
          ? o.quick
            ? quickConvWorkload
            : convWorkload
          : o.tssl
            ? o.quick
              ? quickTsslWorkload
              : tsslWorkload
            : o.quick
              ? quickWorkload
              : standardWorkload;
        const workload = {
          ...base,
          ...(o.batch ? { batch: o.batch } : {}),
          ...(o.hidden ? { hidden: o.hidden } : {}),
          ...(o.outputs ? { outputs: o.outputs } : {}),
          ...(o.inputs ? { inputs: o.inputs } : {}),
          ...(o.density ? { density: o.density } : {}),
          ...(o.neuron ? { neuron: o.neuron } : {}),
          ...(o.repeats ? { repeats: o.repeats } : {}),
          ...(o.inferRepeats ? { inferRepeats: o.inferRepeats } : {}),
          ...(o.kernels ? {} : { kernels: false }),
          ...(o.profile ? { profile: true } : {}),
          ...(o.compareInference ? { compareInference: true } : {}),
          ...(o.loss ? { loss: o.loss } : {}),
        };
        const defaultSteps = o.steps.join() === '100,250,500,1000';
        const steps =
          o.quick && defaultSteps ? (o.tssl ? [5, 10] : [8, 16]) : o.conv && defaultSteps ? [10, 20, 40] : o.tssl && defaultSteps ? [5, 10, 30, 100] : o.steps;
        const k = o.quick && o.k === 50 ? 4 : o.conv && o.k === 50 ? 5 : o.k;
        const plugins = [...new Set([...DEFAULT_PLUGINS, ...(o.tssl ? TSSL_PLUGINS : []), ...o.plugins.split(',').filter(Boolean)])];
        // The rules that train conv networks (the others refuse them: requires.denseLayers).
        const rules =
          o.rules?.split(',').filter(Boolean) ??
          (o.conv
            ? ['bptt', 'tbptt', o.quick ? 'sltt:window=2' : 'sltt', o.quick ? 'ottt:window=2' : 'ottt']
            : o.tssl
              ? ['tssl-bp', 'bptt']
              : await installedRules(plugins, presets(Boolean(o.quick))));
        await runBench({
          plugins,
          backend: o.backend,
          rules: rules.map((r) => parseRuleChoice(r, k)),
          steps,
          workload,
          rounds: o.rounds,
          ...(o.paired ? { paired: o.paired === 'tbptt' ? parseRuleChoice('tbptt', k).label : o.paired } : {}),
          ...(o.json ? { json: o.json } : {}),
          ...(o.plot ? { plot: o.plot } : {}),
        });
      },
    );
}

/** Every rule the plugins provide (with default options, or a preset), and `tbptt` where `bptt` is among them. */
async function installedRules(plugins: readonly string[], preset: Readonly<Record<string, string>>): Promise<string[]> {
  const names = [...createRegistry(await loadPlugins(plugins, { from: import.meta.url })).rules.keys()].map((n) => preset[n] ?? n);
  return names.includes('bptt') ? [...names, 'tbptt'] : names;
}

/** The bench command line; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  try {
    await benchCommand().parseAsync(argv as string[], { from: 'user' });
    return 0;
  } catch (e) {
    if (isSpikeflowError(e)) {
      process.stderr.write(`spikeflow bench: ${e.message} [${e.code}]\n`);
      return 1;
    }
    if (e && typeof e === 'object' && 'exitCode' in e) return Number((e as { exitCode: number }).exitCode);
    process.stderr.write(`spikeflow bench: ${(e as Error)?.stack ?? String(e)}\n`);
    return 2;
  }
}

export {
  measure,
  infer,
  peakTensorBytes,
  parseRuleChoice,
  standardWorkload,
  quickWorkload,
  convWorkload,
  quickConvWorkload,
  tsslWorkload,
  quickTsslWorkload,
  workloadModelSpec,
  INFER_WINDOW,
} from './measure.js';
export { BernoulliSteps, MARK_STRIDE } from './input.js';
export type { Workload, Measurement, RuleChoice } from './measure.js';
export { runBench, summaryTable, writePlots, medianRound } from './run.js';
export type { BenchOptions, BenchReport } from './run.js';
export { benchCommand, main, DEFAULT_PLUGINS } from './cli.js';
export { profileKernels } from './profile.js';
export type { KernelProfile, KernelTime } from './profile.js';

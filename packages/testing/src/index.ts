export { describeNeuron, checkSurrogate, describeSurrogates } from './neuron-suite.js';
export type { NeuronSuiteOptions } from './neuron-suite.js';
export { describeRule, toyTask } from './rule-suite.js';
export type { RuleSuiteOptions } from './rule-suite.js';
export { describeBackend, describeKernels, kernelCases } from './backend-suite.js';
export * from './fixtures.js';
export { captureUpdates, bpttGrads, expectGradsClose, gradsOf, maxGradDiff, randomBatch, sumGrads } from './capture.js';
export type { Grads } from './capture.js';
export { expectExactResume } from './resume.js';

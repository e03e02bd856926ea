/**
 * @spikeflow/core — contracts and composition for training spiking neural networks through time.
 * @packageDocumentation
 */
export { tf } from './tf.js';
export type { Tensor, Scalar, Variable, NamedTensorMap } from './tf.js';
export { SpikeflowError, isSpikeflowError } from './errors.js';
export type { SpikeflowErrorCode, SpikeflowErrorDetails } from './errors.js';
export {
  parseSchema,
  configError,
  rejectUnknownKeys,
  checkField,
  expectObject,
  didYouMean,
  closest,
  editDistance,
  isPlainObject,
} from './validate.js';
export type { Schema, FieldSpec, SchemaValues } from './validate.js';
export { fastSigmoid, sigmoid, arctan, triangle, multiGaussian, spikeFn, builtinSurrogates, surrogateFromSpec } from './surrogates.js';
export type { Surrogate, SpikeFn, SurrogateEntry, SurrogateSpec } from './surrogates.js';
export { defineNeuron } from './neuron.js';
export type {
  NeuronModel,
  AnyNeuronModel,
  NeuronState,
  NeuronParams,
  NeuronStepContext,
  NeuronTensorParam,
  NeuronRegistry,
  JacobianEntry,
  LifKernelParams,
  LocalJacobians,
  LocalJacobiansCapability,
} from './neuron.js';
export { treeLeaves, treeMap, disposeTree, keepTree, cloneTree, tidy } from './state.js';
export type { TensorTree } from './state.js';
export { KernelTable, referenceKernels, nonDifferentiableKernels, outerSumByEvents, Dense, OuterSum, EventDense, LifSequence, LeakyScan, LifLayer, LeakyReadout, lifLayerOf, leakyReadoutOf, unstackSteps, denseByTransposes } from './kernels.js';
export type { KernelSignatures, KernelName, KernelRegistration, LifSequenceParams, LifSequenceResult } from './kernels.js';
export { Network, buildNetwork, resolveModel, unroll, advance, unrollWindow, advanceWindow, forward, stepsOf, splitSteps, checkInputs, detach, neuronParamTensor } from './network.js';
export type {
  ModelSpec,
  LayerSpec,
  ReadoutSpec,
  ResolvedModel,
  ResolvedLayer,
  ModelRegistries,
  NetState,
  LayerState,
  ParamMap,
  StepParams,
  StepOutput,
  SynapseFn,
  SynapseSite,
  PrepareOptions,
  BuildOptions,
  ForwardResult,
  Steps,
  WindowOutput,
} from './network.js';
export { ceMean, ceEveryStep, ceMseEveryStep, mseEveryStep, mseLast, builtinLosses, lossFromSpec } from './losses.js';
export type { TemporalLoss, BoundLoss, LossShape } from './losses.js';
export {
  adam,
  adamax,
  sgd,
  chain,
  scale,
  clipByGlobalNorm,
  clipByValue,
  scaleByAdam,
  scaleByAdamax,
  trace,
  scaleByLearningRate,
  constantSchedule,
  cosineSchedule,
  exponentialSchedule,
  phaseAt,
  optimizerFromSpec,
  builtinOptimizers,
  OptimizerRunner,
} from './optim.js';
export type { GradientTransformation, Optimizer, OptimizerEntry, ClipOptions, Schedule, DecaySchedule, ScheduleSpan, LearningRate } from './optim.js';
export { accumulateGrads, checkRequirements, paramGrads, ruleFromSpec, spatialStep, stepwise } from './rule.js';
export type { StepwiseOptions, SpatialStepOptions, SpatialStepResult, LearningRule, RuleContext, RuleReport, RuleEntry, RuleRequirements, MemoryClass, SequenceBatch } from './rule.js';
export type { Dataset, DatasetDescription, DatasetEntry, DatasetContext, DataFileSummary, BatchOptions } from './dataset.js';
export { closedError } from './dataset.js';
export { createRng, deriveSeed, shuffleInPlace, permutation } from './random.js';
export type { Backend, BackendInfo } from './backend.js';
export { packageBackend } from './package-backend.js';
export type { PackageBackendSpec } from './package-backend.js';
export {
  definePlugin,
  token,
  Tokens,
  validatePlugin,
  createContainer,
  registerPlugin,
  resolveRegistry,
  createRegistry,
  loadPlugins,
  checkStoredPlugins,
} from './plugin.js';
export type { SpikeflowPlugin, Token, Registry, LoadOptions, ExporterEntry, StoredPluginOptions, StoredPlugin } from './plugin.js';
export { Trainer, evaluate, evaluationSeed, fingerprintOf, parseRunMeta } from './trainer.js';
export type { TrainOptions, TrainerParts, TrainerEvent, TrainerListener, RunPosition, EvalResult, RunCheckpointMeta, RunFingerprint, Prediction } from './trainer.js';
export { saveCheckpoint, loadCheckpoint, readCheckpointMeta, encodeCheckpoint } from './checkpoint.js';
export type { CheckpointContents, LoadedCheckpoint, CheckpointReadOptions } from './checkpoint.js';
export { parseRunConfig, composeRun } from './config.js';
export type { RunConfig, ComposedRun } from './config.js';

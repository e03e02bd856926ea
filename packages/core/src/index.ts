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
export type { Schema, FieldSpec, SchemaValues, SchemaInput, FieldValue } from './validate.js';
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
  IntegrateFireParams,
  LocalJacobians,
  LocalJacobiansCapability,
} from './neuron.js';
export { treeLeaves, treeMap, disposeTree, keepTree, cloneTree, tidy } from './state.js';
export type { TensorTree } from './state.js';
export {
  KernelTable,
  referenceKernels,
  nonDifferentiableKernels,
  outerSumByEvents,
  Dense,
  OuterSum,
  EventDense,
  EventConv2d,
  MaxPool,
  IntegrateFireSequence,
  LeakyScan,
  IntegrateFireLayer,
  LeakyReadout,
  IntegrateFireEligibility,
  DecayedSum,
  AdamMoments,
  FpttPull,
  FpttAnchor,
  FpttAdamStep,
  SpikeTiming,
  LtcStep,
  ltcStepReference,
  integrateFireLayerOf,
  leakyReadoutOf,
  tracedProductReference,
  checkPresynapticTraces,
  unstackSteps,
  denseByTransposes,
} from './kernels.js';
export type {
  KernelSignatures,
  KernelName,
  KernelRegistration,
  Conv2dOptions,
  PoolOptions,
  IntegrateFireSequenceParams,
  IntegrateFireSequenceResult,
  IntegrateFireState,
  LeakyScanOptions,
  LeakyReadoutOptions,
  PresynapticTraces,
  TracedProduct,
  LtcStepParams,
  LtcStepState,
} from './kernels.js';
export { adamMomentsReference, fpttPullReference, fpttAnchorReference, fpttAdamStepReference, checkSameShapes } from './updates.js';
export type {
  AdamMomentsParams,
  AdamMomentsResult,
  FpttPullParams,
  FpttAnchorParams,
  FpttAnchorResult,
  FpttAdamStepParams,
  FpttAdamStepResult,
} from './updates.js';
export { checkEligibilitySpec, checkEligibilityWindow, checkEligibilitySignals, eligibilityOrder, integrateFireEligibilityReference } from './eligibility.js';
export type { EligibilitySpec, EligibilityTraces, EligibilityGradient, EligibilityWindow } from './eligibility.js';
export { resolveModel, isDenseModel, hasDropout } from './model.js';
export type {
  ModelSpec,
  LayerSpec,
  DenseLayerSpec,
  Conv2dLayerSpec,
  PoolLayerSpec,
  FlattenLayerSpec,
  ReadoutSpec,
  ResolvedModel,
  ResolvedLayer,
  ResolvedReadout,
  ModelRegistries,
  LayerSpecBase,
  KnownLayerSpec,
  SewBlockLayerSpec,
  DropoutLayerSpec,
  BatchNormSpec,
} from './model.js';
export { applyPools, convCurrent } from './conv.js';
export type { Conv2dGeometry, PoolGeometry, Padding, SpatialShape, PoolFn, ConvFn, BatchNormTensors } from './conv.js';
export { leakyReadout, identityReadout, builtinReadouts, defineReadout } from './readout.js';
export type { Readout, AnyReadout, ReadoutStepParams, ReadoutTensorParam } from './readout.js';
export { layerParam, readoutParam, neuronParamTensor } from './params.js';
export type { ParamMap } from './params.js';
export type { NetState, LayerState, StepParams, StepOutput, SynapseFn, SynapseSite, PrepareOptions, NetworkTraces, DropoutMasks } from './step.js';
export { masked } from './step.js';
export type { WindowOutput } from './fused.js';
export { Network, buildNetwork, detach } from './network.js';
export type { BuildOptions, Stepper } from './network.js';
export { stepsOf, splitSteps, isStepSource, checkStepSource, inputShape, denseInputs, stepSource, disposeBatch } from './steps.js';
export type { Steps, StepSource, StepInput, StepDType, StepFill } from './steps.js';
export { unroll, advance, advanceWindow } from './loops.js';
export { forward, checkInputs } from './inference.js';
export type { ForwardResult } from './inference.js';
export { trainWindows, windowHasTerm, stepTerms, accumulateGrads, LossSum } from './windows.js';
export type { WindowPlan, WindowInfo, WindowOutputs, WindowScore, WindowObjective } from './windows.js';
export { ceMean, ceEveryStep, ceMseEveryStep, mseEveryStep, mseLast, builtinLosses, lossFromSpec } from './losses.js';
export type { TemporalLoss, BoundLoss, LossShape } from './losses.js';
export {
  adam,
  adamax,
  adamw,
  addDecayedWeights,
  clampWeights,
  isWeightName,
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
export type {
  GradientTransformation,
  FusableStep,
  AnchoredStep,
  UpdateContext,
  OptimizerRunnerOptions,
  Optimizer,
  OptimizerEntry,
  ClipOptions,
  Schedule,
  DecaySchedule,
  ScheduleSpan,
  LearningRate,
  AdamState,
  AdamaxState,
  LrState,
  TraceState,
} from './optim.js';
export { checkRequirements, ensureRequirements, defineRule, lossNow, paramGrads, ruleFromSpec, stepwise } from './rule.js';
export type {
  StepwiseOptions,
  LearningRule,
  RuleContext,
  RuleReport,
  RuleEntry,
  RuleRequirements,
  NeuronCapability,
  MemoryClass,
  SequenceBatch,
} from './rule.js';
export type { Dataset, DatasetDescription, DatasetEntry, DatasetContext, DataFileSummary, BatchOptions } from './dataset.js';
export { closedError, rngAt } from './dataset.js';
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
export type {
  SpikeflowPlugin,
  Token,
  Registry,
  LoadOptions,
  ExporterEntry,
  ExportedModel,
  ImportedModel,
  StoredPluginOptions,
  StoredPlugin,
} from './plugin.js';
export { Trainer, evaluate, evaluationSeed, fingerprintOf, parseRunMeta } from './trainer.js';
export type {
  TrainOptions,
  TrainerParts,
  TrainerEvent,
  TrainerListener,
  RunPosition,
  EvalResult,
  RunCheckpointMeta,
  RunFingerprint,
  Prediction,
} from './trainer.js';
export { saveCheckpoint, loadCheckpoint, readCheckpointMeta, encodeCheckpoint } from './checkpoint.js';
export type { CheckpointContents, LoadedCheckpoint, CheckpointReadOptions } from './checkpoint.js';
export { parseRunConfig, composeRun } from './config.js';
export type { RunConfig, ComposedRun } from './config.js';
export { RunTokens, runContainer, resolveRun, openRunDataset, provide, override, resolveToken } from './container.js';
export type { RunContainer, RunContainerOptions, RunProvider, RunOverride, RunLogger, RunClock, DatasetOpener } from './container.js';
export type { ComposeOptions, RunTrainOptions } from './config.js';
export { validatingRuleEntry, validatingDatasetEntry } from './plugin.js';
export type { RegisteredRule, RegisteredDataset } from './plugin.js';
export { spikeTimingSequence, spikeTimingConstants, spikeTimingResult } from './spike-timing.js';
export type { SpikeTimingParams, SpikeTimingSequence, SpikeTimingConstants } from './spike-timing.js';

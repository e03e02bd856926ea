/**
 * @spikeflow/kernels — fast SNN kernels for tfjs backends whose tensors live in CPU memory.
 * @packageDocumentation
 */
import type { KernelRegistration } from '@spikeflow/core';
import { decayedSum, eventConv2d, eventDense, leakyReadout, leakyScan, integrateFireLayer, integrateFireSequence, maxPool } from './kernels.js';
import { integrateFireEligibility } from './eprop.js';
import { adamMoments, fpttAdamStep, fpttAnchor, fpttPull, ltcStep } from './updates.js';
import { spikeTimingSequence } from './timing.js';

export {
  eventDense,
  eventConv2d,
  maxPool,
  integrateFireSequence,
  leakyScan,
  integrateFireLayer,
  leakyReadout,
  tracedProduct,
  decayedSum,
  EVENT_DENSITY_LIMIT,
  setKernelProbe,
} from './kernels.js';
export type { KernelProbe } from './kernels.js';
export { integrateFireEligibility } from './eprop.js';
export { spikeTimingSequence } from './timing.js';
export { adamMoments, fpttPull, fpttAnchor, fpttAdamStep, ltcStep, sumRowsOnHeap, updatesInPlace } from './updates.js';
export {
  prepareKernels,
  setKernelThreads,
  simdAvailable,
  kernelThreads,
  activeThreads,
  releaseKernelMemory,
  kernelMemoryBytes,
  configureKernelPool,
} from './wasm.js';
export type { KernelPoolOptions } from './wasm.js';
export { KERNELS_VERSION } from './version.js';

/**
 * The kernels of this package as registrations for one tfjs backend whose tensors live in CPU
 * memory (`wasm`, `cpu`): a backend plugin lists them in its `kernels`.
 */
export function cpuMemoryKernels(backend: string): KernelRegistration[] {
  return [
    { kernel: 'spikeflow.eventDense', backend, impl: eventDense },
    { kernel: 'spikeflow.eventConv2d', backend, impl: eventConv2d },
    { kernel: 'spikeflow.maxPool', backend, impl: maxPool },
    { kernel: 'spikeflow.integrateFireSequence', backend, impl: integrateFireSequence },
    { kernel: 'spikeflow.leakyScan', backend, impl: leakyScan },
    { kernel: 'spikeflow.integrateFireLayer', backend, impl: integrateFireLayer },
    { kernel: 'spikeflow.leakyReadout', backend, impl: leakyReadout },
    { kernel: 'spikeflow.integrateFireEligibility', backend, impl: integrateFireEligibility },
    { kernel: 'spikeflow.decayedSum', backend, impl: decayedSum },
    { kernel: 'spikeflow.adamMoments', backend, impl: adamMoments },
    { kernel: 'spikeflow.fpttPull', backend, impl: fpttPull },
    { kernel: 'spikeflow.fpttAnchor', backend, impl: fpttAnchor },
    { kernel: 'spikeflow.fpttAdamStep', backend, impl: fpttAdamStep },
    { kernel: 'spikeflow.spikeTimingSequence', backend, impl: spikeTimingSequence },
    { kernel: 'spikeflow.ltcStep', backend, impl: ltcStep },
  ];
}

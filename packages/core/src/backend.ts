import type { KernelRegistration } from './kernels.js';

export interface BackendInfo {
  /** The tfjs backend name (`wasm`, `cpu`, `tensorflow`, `webgl`, `webgpu`). */
  readonly tfBackend: string;
  /** Human description of the device. */
  readonly device: string;
  readonly threads: number;
  /** Free-form facts: SIMD, versions, memory. */
  readonly details: Readonly<Record<string, string | number | boolean>>;
}

/**
 * A compute backend. `activate()` registers and selects its tfjs backend (and throws a
 * `BACKEND_UNAVAILABLE` SpikeflowError saying how to fix it when it cannot); `kernels` are the
 * fast SNN kernels it provides for that tfjs backend.
 */
export interface Backend {
  /** Name in configs and on the command line (`--backend wasm`). */
  readonly name: string;
  readonly description: string;
  isAvailable(): Promise<boolean>;
  activate(): Promise<void>;
  describe(): BackendInfo;
  readonly kernels?: readonly KernelRegistration[];
}

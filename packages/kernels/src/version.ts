import pkg from '../package.json' with { type: 'json' };
import { KERNELS_DIGEST } from './snn-wasm.js';

/**
 * The version of the kernels' code, e.g. `0.2.0+05037692021e`: the package's version and the
 * first 12 hex digits of a SHA-256 of the embedded WebAssembly and of the TypeScript in `src/` that drives it (written by
 * `tools/build-wasm.mjs`, checked by a test). It changes whenever the kernels' code does, so that
 * a checkpoint can record which kernels computed it (backend-wasm and backend-cpu report it as
 * `describe().details.kernels`).
 */
export const KERNELS_VERSION = `${pkg.version}+${KERNELS_DIGEST.slice(0, 12)}`;

import { definePlugin } from '@spikeflow/core';
import { wasm } from './wasm.js';
import pkg from '../package.json' with { type: 'json' };

export { wasm, wasmDense, wasmKernels, clearTransposeCache } from './wasm.js';
/**
 * In a browser, where tfjs' own `.wasm` files are served from (a bundler's asset URLs, e.g. Vite's
 * `?url` imports of `@tensorflow/tfjs-backend-wasm/dist/*.wasm`): call before `activate()`. Node
 * reads them from the installed package and needs nothing.
 */
export { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, backends: [wasm] });

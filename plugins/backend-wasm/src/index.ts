import { definePlugin } from '@spikeflow/core';
import { wasm } from './wasm.js';
import pkg from '../package.json' with { type: 'json' };

export { wasm, wasmDense, wasmKernels, clearTransposeCache } from './wasm.js';

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, backends: [wasm] });

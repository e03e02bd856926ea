import { definePlugin } from '@spikeflow/core';
import { createRequire } from 'node:module';
import { wasm } from './wasm.js';

export { wasm, wasmDense, wasmKernels, clearTransposeCache } from './wasm.js';

const pkg = createRequire(import.meta.url)('../package.json') as { name: string; version: string };

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, backends: [wasm] });

import { definePlugin } from '@spikeflow/core';
import { createRequire } from 'node:module';
import { nodeGpu } from './gpu.js';

export { nodeGpu, gpuDevices, parseNvidiaSmi, TFJS_NODE_GPU, CUDA_REQUIREMENTS, GPU_BINDING_HELP } from './gpu.js';
export type { GpuDevice } from './gpu.js';

const pkg = createRequire(import.meta.url)('../package.json') as { name: string; version: string };

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, backends: [nodeGpu] });

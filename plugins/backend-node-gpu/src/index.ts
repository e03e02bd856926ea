import { definePlugin } from '@spikeflow/core';
import { nodeGpu } from './gpu.js';
import pkg from '../package.json' with { type: 'json' };

export { nodeGpu, gpuDevices, parseNvidiaSmi, TFJS_NODE_GPU, CUDA_REQUIREMENTS, GPU_BINDING_HELP } from './gpu.js';
export type { GpuDevice } from './gpu.js';

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, backends: [nodeGpu] });

import { definePlugin } from '@spikeflow/core';
import { webgpu } from './webgpu.js';
import pkg from '../package.json' with { type: 'json' };

export { webgpu, webgpuAdapter, webgpuUnavailableReason, type WebgpuAdapter } from './webgpu.js';

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, backends: [webgpu] });

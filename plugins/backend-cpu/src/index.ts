import { definePlugin } from '@spikeflow/core';
import { cpu } from './cpu.js';
import pkg from '../package.json' with { type: 'json' };

export { cpu, cpuKernels } from './cpu.js';

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, backends: [cpu] });

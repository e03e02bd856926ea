import { definePlugin } from '@spikeflow/core';
import { createRequire } from 'node:module';
import { cpu } from './cpu.js';

export { cpu, cpuKernels } from './cpu.js';

const pkg = createRequire(import.meta.url)('../package.json') as { name: string; version: string };

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, backends: [cpu] });

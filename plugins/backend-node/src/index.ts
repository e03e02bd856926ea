import { definePlugin } from '@spikeflow/core';
import { createRequire } from 'node:module';
import { node } from './node.js';

export { node, TFJS_NODE, NODE_BINDING_HELP, libtensorflowVersion } from './node.js';

const pkg = createRequire(import.meta.url)('../package.json') as { name: string; version: string };

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, backends: [node] });

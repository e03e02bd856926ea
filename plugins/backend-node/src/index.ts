import { definePlugin } from '@spikeflow/core';
import { node } from './node.js';
import pkg from '../package.json' with { type: 'json' };

export { node, TFJS_NODE, NODE_BINDING_HELP, libtensorflowVersion } from './node.js';

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, backends: [node] });

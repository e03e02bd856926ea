import { definePlugin } from '@spikeflow/core';
import { webgl } from './webgl.js';
import pkg from '../package.json' with { type: 'json' };

export { webgl, hasWebGL2 } from './webgl.js';

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, backends: [webgl] });

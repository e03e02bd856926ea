import { definePlugin } from '@spikeflow/core';
import { createRequire } from 'node:module';
import { alif } from './alif.js';

export { alif, alifSchema } from './alif.js';
export type { AlifConfig, AlifState } from './alif.js';

const pkg = createRequire(import.meta.url)('../package.json') as { name: string; version: string };

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, neurons: [alif] });

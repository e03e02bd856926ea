import { definePlugin } from '@spikeflow/core';
import { createRequire } from 'node:module';
import { addTaskEntry } from './add-task.js';

export { addTask, addSample, addTaskEntry, addTaskSchema } from './add-task.js';
export type { AddTaskOptions } from './add-task.js';

const pkg = createRequire(import.meta.url)('../package.json') as { name: string; version: string };

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, datasets: [addTaskEntry] });

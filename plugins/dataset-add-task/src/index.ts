import { definePlugin } from '@spikeflow/core';
import { addTaskEntry } from './add-task.js';
import pkg from '../package.json' with { type: 'json' };

export { addTask, addSample, addBatch, addTaskEntry, addTaskSchema } from './add-task.js';
export type { AddTaskOptions } from './add-task.js';

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, datasets: [addTaskEntry] });

export { main, program } from './main.js';
export { train, writePlots } from './train.js';
export type { TrainFlags } from './train.js';
export { evalRun } from './evaluate.js';

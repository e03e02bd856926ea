export { main, program } from './main.js';
export { train, writePlots } from './train.js';
export type { TrainFlags } from './train.js';
export { evalRun } from './evaluate.js';
export { lineChart, svgToPng } from './plot.js';
export type { Series, PlotOptions } from './plot.js';

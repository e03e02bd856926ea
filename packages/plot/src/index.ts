export { lineChart, svgToPng } from './plot.js';
export type { Series, PlotOptions } from './plot.js';

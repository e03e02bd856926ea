import { definePlugin } from '@spikeflow/core';
import { shdEntry, sscEntry } from './datasets.js';
import pkg from '../package.json' with { type: 'json' };

export { shdEntry, sscEntry, shdSchema, openShd, SHD_CLASSES } from './datasets.js';
export type { ShdOptions } from './datasets.js';
export { ShdFile, SHD_CHANNELS, shdSensor } from './shd.js';
export type { ShdFileInfo, ShdOpenOptions } from './shd.js';
export { Hdf5Reader, isHdf5, halfToNumber } from './hdf5.js';
export type { VlenType } from './hdf5.js';
export { fetchShdFile, parseMd5Sums, SHD_BASE_URL, SHD_FILES } from './download.js';
export type { FetchShdOptions, ShdFamily } from './download.js';

export default definePlugin({
  meta: { name: pkg.name, version: pkg.version },
  datasets: [shdEntry, sscEntry],
});

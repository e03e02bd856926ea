import { definePlugin } from '@spikeflow/core';
import { dvsGestureEntry } from './gesture.js';
import { nmnistEntry } from './nmnist.js';
import pkg from '../package.json' with { type: 'json' };

export {
  nmnistEntry,
  nmnistSchema,
  openNmnist,
  inspectNmnist,
  detectNmnist,
  decodeNmnist,
  encodeNmnist,
  listNmnistSplit,
  readNmnistFile,
  nmnistSource,
  limitSchema,
  binningOf,
  NMNIST_SENSOR,
  NMNIST_EVENT_BYTES,
  NMNIST_HOME,
  NMNIST_SPLIT_DIRS,
  NMNIST_DEFAULT_BINS,
} from './nmnist.js';
export type { NmnistOptions, NmnistFile } from './nmnist.js';
export {
  dvsGestureEntry,
  dvsGestureSchema,
  openDvsGesture,
  openGestureSplit,
  indexRecording,
  readSegment,
  gestureSource,
  inspectAedat,
  detectAedat,
  parseGestureLabels,
  encodeGestureLabels,
  parseTrials,
  labelsPathOf,
  DVS128_SENSOR,
  GESTURE_CLASSES,
  GESTURE_LABELS_HEADER,
  GESTURE_TRIALS,
  DVS_GESTURE_HOME,
  DVS_GESTURE_DEFAULT_BINS,
} from './gesture.js';
export type { DvsGestureOptions, GestureSegment, GestureRecording } from './gesture.js';
export {
  encodeAedat31,
  polarityPackets,
  indexAedat,
  readAedatHeader,
  readAedatInterval,
  scanAedat,
  packetsOverlapping,
  isAedat31,
  AEDAT31_MAGIC,
  AEDAT_END_HEADER,
  PACKET_HEADER_BYTES,
  POLARITY_EVENT,
  POLARITY_EVENT_BYTES,
} from './aedat.js';
export type { AedatIndex, AedatHeader, AedatPacket, AedatPolarityPacket, AedatRawPacket, AedatEncodeOptions, PacketHeader } from './aedat.js';
export { nodeFiles, readWhole } from './files.js';
export type { FileAccess, RandomAccessFile, DirEntry } from './files.js';

export default definePlugin({
  meta: { name: pkg.name, version: pkg.version },
  datasets: [nmnistEntry, dvsGestureEntry],
});

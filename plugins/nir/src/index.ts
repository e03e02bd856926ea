import { SpikeflowError, definePlugin, type ExporterEntry, type ImportedModel, type Network } from '@spikeflow/core';
import pkg from '../package.json' with { type: 'json' };
import { readHdf5, writeHdf5 } from './hdf5.js';
import { parseNir, toHdf5, type NirFile } from './graph.js';
import { nirGraphOf, type NirExportOptions } from './export.js';
import { modelOfNir, type NirImportOptions } from './import.js';
import { validateNir } from './validate.js';

export { nirGraphOf, type NirExport, type NirExportOptions } from './export.js';
export { modelOfNir, type NirImportOptions } from './import.js';
export { validateNir } from './validate.js';
export { checkGraph, nodeShapes, parseNir, toHdf5, NIR_VERSION, NODE_PARAMS, type NirArray, type NirFile, type NirMeta, type NirNode } from './graph.js';

/** Reads a NIR file's bytes into a graph (checked as `nir.read` checks it). */
export async function readNir(bytes: Uint8Array, where = 'NIR file'): Promise<NirFile> {
  return parseNir(await readHdf5(bytes, where), where);
}

/** Writes a graph as a NIR file (HDF5, the layout of `nir.write`). */
export async function writeNir(file: NirFile): Promise<Uint8Array> {
  return writeHdf5(toHdf5(file));
}

/**
 * A network as the bytes of a NIR file, with the conversion's notes (see {@link nirGraphOf}).
 * The file is checked against NIR's layout ({@link validateNir}) before it is returned.
 */
export async function exportNir(network: Network, options: NirExportOptions = {}): Promise<{ bytes: Uint8Array; notes: readonly string[] }> {
  const { file, notes } = nirGraphOf(network, options);
  const bytes = await writeNir(file);
  const problems = await validateNir(bytes, 'the exported NIR file');
  if (problems.length) throw new Error(`NIR export wrote a file that breaks NIR's layout (a bug in @spikeflow/nir): ${problems.join('; ')}`);
  return { bytes, notes };
}

/** A NIR file's bytes as a spikeflow model spec and parameters (see {@link modelOfNir}). */
export async function importNir(bytes: Uint8Array, options: NirImportOptions = {}): Promise<ImportedModel> {
  return modelOfNir(await readNir(bytes, options.where), options);
}

const num = (o: Record<string, unknown>, key: string): number | undefined => {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number') throw new SpikeflowError('CONFIG_INVALID', `NIR: option '${key}' must be a number, got ${JSON.stringify(v)}`, { path: key });
  return v;
};

/** The `nir` format: export and import. Options: `dt` (seconds, default 1e-4), `allowSubtractReset` (export). */
export const nir: ExporterEntry = {
  name: 'nir',
  description: 'NIR (Neuromorphic Intermediate Representation): HDF5 graphs that snnTorch, Norse, Lava and neuromorphic hardware read and write',
  extension: 'nir',
  async export(network, options) {
    const dt = num(options, 'dt');
    return exportNir(network, { ...(dt !== undefined ? { dt } : {}), allowSubtractReset: options['allowSubtractReset'] === true });
  },
  async import(bytes, options) {
    const dt = num(options, 'dt');
    const where = typeof options['where'] === 'string' ? options['where'] : undefined;
    return importNir(bytes, { ...(dt !== undefined ? { dt } : {}), ...(where !== undefined ? { where } : {}) });
  },
};

export default definePlugin({ meta: { name: pkg.name, version: pkg.version }, exporters: [nir] });

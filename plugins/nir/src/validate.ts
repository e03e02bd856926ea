import { isSpikeflowError } from '@spikeflow/core';
import { readHdf5, type H5Dataset, type H5Group } from './hdf5.js';
import { checkGraph, NODE_PARAMS, parseNir } from './graph.js';

/**
 * What is wrong with a NIR file, against the layout the NIR library writes and reads with type
 * checking on (`nir.write`, `nir.read(path)`): `/version` and every `type` one variable-length
 * UTF-8 string; every node an HDF5 group of known type holding exactly its parameters (extra facts
 * only under `metadata/`); numbers as float32, float64 or int64 arrays, never scalars (Flatten's
 * dimensions excepted, which `nir.write` stores as scalars); `edges` an (E, 2) array of
 * variable-length UTF-8 strings naming nodes of the same graph; no HDF5 attributes; shapes that
 * fit along every edge, and every node reached from an Input node. An empty list: the file passes.
 */
export async function validateNir(bytes: Uint8Array, where = 'NIR file'): Promise<string[]> {
  const problems: string[] = [];
  let root: H5Group;
  try {
    root = await readHdf5(bytes, where);
  } catch (e) {
    if (isSpikeflowError(e)) return [e.message];
    throw e;
  }
  const vlenUtf8 = (d: H5Dataset) => d.type.kind === 'string' && d.type.vlen === true && d.type.utf8 === true;
  const scalarString = (at: string, e: H5Group['entries'][string] | undefined) => {
    if (e?.kind !== 'dataset') problems.push(`${at}: missing (a scalar string)`);
    else if (!vlenUtf8(e) || e.shape.length !== 0) problems.push(`${at}: must be a scalar variable-length UTF-8 string`);
  };
  const attrs = (at: string, names: readonly string[]) => {
    if (names.length) problems.push(`${at}: HDF5 attributes (${names.join(', ')}); NIR graph files have none`);
  };
  attrs('/', root.attrs);
  for (const key of Object.keys(root.entries))
    if (key !== 'version' && key !== 'node') problems.push(`/${key}: not part of a NIR file (only /version and /node)`);
  scalarString('/version', root.entries['version']);

  const metadata = (g: H5Group, at: string) => {
    attrs(at, g.attrs);
    for (const [k, e] of Object.entries(g.entries)) {
      const p = `${at}/${k}`;
      if (e.kind === 'group') metadata(e, p);
      else if (e.kind === 'dataset') {
        attrs(p, e.attrs);
        if (e.type.kind === 'string' && !vlenUtf8(e)) problems.push(`${p}: strings must be variable-length UTF-8`);
      } else problems.push(`${p}: ${e.what}, not a dataset or group`);
    }
  };
  const node = (g: H5Group, at: string) => {
    attrs(at, g.attrs);
    scalarString(`${at}/type`, g.entries['type']);
    const t = g.entries['type'];
    const type = t?.kind === 'dataset' && t.type.kind === 'string' ? (t.value as readonly string[])[0] : undefined;
    if (type !== undefined && type !== 'NIRGraph' && !NODE_PARAMS[type]) problems.push(`${at}: type '${type}' is not a NIR node type`);
    for (const [k, e] of Object.entries(g.entries)) {
      const p = `${at}/${k}`;
      if (k === 'type') continue;
      if (k === 'metadata') {
        if (e.kind !== 'group') problems.push(`${p}: metadata must be a group`);
        else if (Object.keys(e.entries).length === 0) problems.push(`${p}: an empty metadata group (nir.write omits it)`);
        else metadata(e, p);
        continue;
      }
      if (type === 'NIRGraph' && k === 'nodes' && e.kind === 'group') {
        attrs(p, e.attrs);
        for (const [name, n] of Object.entries(e.entries)) {
          if (n.kind === 'group') node(n, `${p}/${name}`);
          else problems.push(`${p}/${name}: a node must be a group`);
        }
        continue;
      }
      if (e.kind !== 'dataset') {
        problems.push(`${p}: ${e.kind === 'group' ? 'a group' : e.what} among a node's parameters`);
        continue;
      }
      attrs(p, e.attrs);
      if (type === 'NIRGraph' && k === 'edges') {
        if (!vlenUtf8(e)) problems.push(`${p}: edges must be variable-length UTF-8 strings`);
        if (e.shape.length !== 2 || e.shape[1] !== 2) problems.push(`${p}: edges must have shape (E, 2), got [${e.shape}]`);
        continue;
      }
      if ((type === 'Conv2d' || type === 'Conv1d') && k === 'padding' && e.type.kind === 'string') {
        const v = (e.value as readonly string[])[0];
        if (!vlenUtf8(e) || e.shape.length !== 0 || (v !== 'same' && v !== 'valid'))
          problems.push(`${p}: a string padding is 'same' or 'valid', one variable-length UTF-8 string`);
        continue;
      }
      // What nir.write stores from a Python int (a scalar), and the integer parameters of the spatial nodes.
      const scalarOk =
        (type === 'Flatten' && (k === 'start_dim' || k === 'end_dim')) ||
        (type?.startsWith('Conv') === true && k !== 'weight' && k !== 'bias') ||
        type?.endsWith('Pool2d') === true;
      const integer =
        (k === 'shape' && (type === 'Input' || type === 'Output')) ||
        type === 'Flatten' ||
        (type?.startsWith('Conv') === true && k !== 'weight' && k !== 'bias') ||
        type?.endsWith('Pool2d') === true;
      if (e.type.kind === 'float') {
        if (e.type.size !== 4 && e.type.size !== 8) problems.push(`${p}: float${e.type.size * 8}; NIR files hold float32 or float64`);
      } else if (e.type.kind === 'int') {
        if (e.type.size !== 8) problems.push(`${p}: int${e.type.size * 8}; NIR files hold int64 integers`);
      } else problems.push(`${p}: ${e.type.kind === 'string' ? 'strings' : 'a non-numeric type'} where NIR has numbers`);
      if (e.shape.length === 0 && !scalarOk) problems.push(`${p}: a scalar; NIR parameters are arrays (a scalar breaks nir.read's type inference)`);
      if (integer !== (e.type.kind === 'int'))
        problems.push(`${p}: ${e.type.kind === 'int' ? 'integers where NIR has real numbers' : 'NIR stores it as int64 integers'}`);
    }
  };
  const top = root.entries['node'];
  if (top?.kind !== 'group') problems.push('/node: missing (the graph, a group)');
  else node(top, '/node');
  if (problems.length) return problems;
  try {
    checkGraph(parseNir(root, where).graph, where);
  } catch (e) {
    if (!isSpikeflowError(e)) throw e;
    problems.push(e.message);
  }
  return problems;
}

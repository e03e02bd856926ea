import { packageBackend, tf, type Backend } from '@spikeflow/core';
import os from 'node:os';

/** The package this backend runs on: an optional peer dependency, installed by those who use it. */
export const TFJS_NODE = '@tensorflow/tfjs-node';

/**
 * What to do where the native binding fails to load. tfjs-node's install script downloads
 * libtensorflow (from storage.googleapis.com) and builds nothing; it honours TFJS_NODE_CDN_STORAGE
 * and TFJS_NODE_BASE_URI for a mirror, and a `scripts/custom-binary.json` naming a prebuilt
 * binary (see tfjs-node's README and docs/backends.md).
 */
export const NODE_BINDING_HELP =
  'Its native binding (libtensorflow and tfjs_binding.node) comes from a download its install script makes at install time; ' +
  'if that failed (offline, behind a proxy), run `npm rebuild @tensorflow/tfjs-node` where the network works, ' +
  'or point TFJS_NODE_CDN_STORAGE or TFJS_NODE_BASE_URI at a mirror, or name a prebuilt binary in scripts/custom-binary.json (docs/backends.md)';

/** libtensorflow's version, as the active binding reports it (undefined where it does not). */
export function libtensorflowVersion(): string | undefined {
  const b = tf.backend() as unknown as { binding?: { TF_Version?: string } };
  return typeof b.binding?.TF_Version === 'string' ? b.binding.TF_Version : undefined;
}

/**
 * TensorFlow's C library on the CPU, through `@tensorflow/tfjs-node` (tfjs backend `tensorflow`):
 * multi-threaded kernels (Eigen), no WebAssembly heap limit. Optional: where the package is not
 * installed or its binding does not load, `activate()` says so and how to fix it.
 */
export const node: Backend = packageBackend({
  name: 'node',
  description: "TensorFlow's C library on the CPU, through @tensorflow/tfjs-node (optional; npm i @tensorflow/tfjs-node@4.22.0)",
  packageName: TFJS_NODE,
  tfBackend: 'tensorflow',
  load: () => import(TFJS_NODE as string),
  install:
    `npm i ${TFJS_NODE}@4.22.0 (its install script downloads libtensorflow from storage.googleapis.com; ` +
    'behind a firewall set TFJS_NODE_CDN_STORAGE or TFJS_NODE_BASE_URI to a mirror, see docs/backends.md)',
  bindingHelp: NODE_BINDING_HELP,
  device: () => {
    const version = libtensorflowVersion();
    const details: Record<string, string> = version ? { libtensorflow: version } : {};
    return { device: os.cpus()[0]?.model ?? 'CPU', threads: os.cpus().length, details };
  },
});

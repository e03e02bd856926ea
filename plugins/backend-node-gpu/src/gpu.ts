import { packageBackend, tf, type Backend } from '@spikeflow/core';
import { execFileSync } from 'node:child_process';

/** The package this backend runs on: an optional peer dependency, installed by those who use it. */
export const TFJS_NODE_GPU = '@tensorflow/tfjs-node-gpu';

/**
 * What tfjs-node-gpu 4.x needs (its libtensorflow is built for them; the tfjs maintainers state
 * NVIDIA driver > 450, CUDA Toolkit 11.2 and cuDNN 8.1.0 for tfjs-node-gpu, tensorflow/tfjs#8362).
 */
export const CUDA_REQUIREMENTS =
  'an NVIDIA driver newer than 450, CUDA Toolkit 11.2 and cuDNN 8.1 (the libraries libcudart.so.11.0 and libcudnn.so.8 on LD_LIBRARY_PATH)';

export const GPU_BINDING_HELP =
  `It needs ${CUDA_REQUIREMENTS}. Its native binding (libtensorflow with CUDA, and tfjs_binding.node) comes from a download its install script makes at install time; ` +
  'if that failed (offline, behind a proxy), run `npm rebuild @tensorflow/tfjs-node-gpu` where the network works, ' +
  'or point TFJS_NODE_CDN_STORAGE or TFJS_NODE_BASE_URI at a mirror, or name a prebuilt binary in scripts/custom-binary.json (docs/backends.md)';

/** A GPU as `nvidia-smi` lists it. */
export interface GpuDevice {
  readonly name: string;
  readonly memoryMiB: number;
  readonly driver: string;
}

/** Parses `nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader,nounits`. */
export function parseNvidiaSmi(text: string): GpuDevice[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.split(',').map((f) => f.trim()))
    .filter((f) => f.length >= 3 && f[0])
    .map(([name, mem, driver]) => ({ name: name!, memoryMiB: Number(mem), driver: driver! }));
}

/** The GPUs `nvidia-smi` reports (none where it is missing or fails). */
export function gpuDevices(): GpuDevice[] {
  try {
    return parseNvidiaSmi(
      execFileSync('nvidia-smi', ['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader,nounits'], {
        encoding: 'utf8',
        timeout: 5000,
        stdio: ['ignore', 'pipe', 'ignore'],
      }),
    );
  } catch {
    return [];
  }
}

/**
 * TensorFlow's C library with CUDA, through `@tensorflow/tfjs-node-gpu` (tfjs backend
 * `tensorflow`). Optional: where the package is not installed or its binding does not load (no
 * CUDA 11.2 / cuDNN 8.1), `activate()` says so and how to fix it. `describe()` lists the GPUs.
 */
export const nodeGpu: Backend = packageBackend({
  name: 'node-gpu',
  description: `TensorFlow's C library with CUDA, through @tensorflow/tfjs-node-gpu (optional; needs ${CUDA_REQUIREMENTS})`,
  packageName: TFJS_NODE_GPU,
  tfBackend: 'tensorflow',
  load: () => import(TFJS_NODE_GPU as string),
  install:
    `npm i ${TFJS_NODE_GPU}@4.22.0 on a machine with ${CUDA_REQUIREMENTS} (its install script downloads libtensorflow from storage.googleapis.com; ` +
    'behind a firewall set TFJS_NODE_CDN_STORAGE or TFJS_NODE_BASE_URI to a mirror, see docs/backends.md)',
  bindingHelp: GPU_BINDING_HELP,
  device: () => {
    const gpus = gpuDevices();
    const b = tf.backend() as unknown as { binding?: { TF_Version?: string } };
    return {
      device: gpus.length ? gpus.map((g) => `${g.name} (${(g.memoryMiB / 1024).toFixed(0)} GiB)`).join(', ') : 'CUDA GPU (nvidia-smi lists none)',
      details: {
        gpus: gpus.length,
        ...(gpus[0] ? { driver: gpus[0].driver } : {}),
        ...(typeof b.binding?.TF_Version === 'string' ? { libtensorflow: b.binding.TF_Version } : {}),
      },
    };
  },
});

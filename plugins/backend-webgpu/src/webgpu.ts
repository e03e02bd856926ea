import { SpikeflowError, tf, type Backend, type BackendInfo } from '@spikeflow/core';
import { installDawn, isNode, noAdapterReason } from './node.js';
import { webgpuKernels } from './kernels.js';

interface GpuAdapterInfo {
  readonly vendor?: string;
  readonly architecture?: string;
  readonly description?: string;
  readonly isFallbackAdapter?: boolean;
}
interface GpuAdapter {
  readonly info?: GpuAdapterInfo;
  readonly isFallbackAdapter?: boolean;
}
export interface GpuLike {
  requestAdapter(): Promise<GpuAdapter | null>;
}

/** The WebGPU entry point, if any: the browser's, or Dawn's once installed in Node. */
function gpu(): GpuLike | undefined {
  return (globalThis as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
}

/** The adapter WebGPU offered, as {@link webgpuUnavailableReason} last found it. */
export interface WebgpuAdapter {
  readonly vendor: string;
  readonly architecture: string;
  readonly description: string;
  /** A fallback adapter (a CPU implementation such as SwiftShader): correct, not fast. */
  readonly fallback: boolean;
  /** `browser`, or `node` (Dawn through the npm package `webgpu`). */
  readonly runtime: 'browser' | 'node';
}

let adapter: WebgpuAdapter | undefined;

/** SwiftShader reports itself as a fallback only through its name on some versions. */
function isFallback(a: GpuAdapter): boolean {
  const info = a.info ?? {};
  return !!(info.isFallbackAdapter ?? a.isFallbackAdapter) || /swiftshader|llvmpipe|lavapipe/i.test(`${info.vendor} ${info.architecture} ${info.description}`);
}

/**
 * Why WebGPU cannot run here, or undefined where it offers an adapter (then {@link webgpuAdapter}
 * describes it). In Node, loads Dawn (the optional peer `webgpu`) first.
 */
export async function webgpuUnavailableReason(): Promise<string | undefined> {
  if (isNode()) {
    const why = await installDawn();
    if (why) return why;
  }
  const g = gpu();
  if (!g) return 'this environment has no navigator.gpu (WebGPU needs a browser that supports it: Chrome/Edge 113+, or a flag elsewhere)';
  try {
    const a = await g.requestAdapter();
    if (!a) {
      return isNode()
        ? await noAdapterReason()
        : 'navigator.gpu.requestAdapter() found no adapter (no GPU, or WebGPU disabled; headless browsers often have none)';
    }
    const info = a.info ?? {};
    adapter = {
      vendor: info.vendor ?? '',
      architecture: info.architecture ?? '',
      description: info.description ?? '',
      fallback: isFallback(a),
      runtime: isNode() ? 'node' : 'browser',
    };
    return undefined;
  } catch (e) {
    return `navigator.gpu.requestAdapter() failed (${(e as Error).message})`;
  }
}

/** The adapter found by the last successful {@link webgpuUnavailableReason} (or activation). */
export function webgpuAdapter(): WebgpuAdapter | undefined {
  return adapter;
}

/**
 * TensorFlow.js' webgpu backend cannot read GPU memory synchronously in Node (its `readSync`
 * draws through an `OffscreenCanvas`, a browser API): make that a clear error instead of
 * "OffscreenCanvas is not defined". `await tensor.data()` works everywhere.
 */
function refuseSyncReadsInNode(): void {
  if (!isNode() || typeof (globalThis as { OffscreenCanvas?: unknown }).OffscreenCanvas !== 'undefined') return;
  const backend = tf.findBackend('webgpu') as { readSync(dataId: object): unknown; tensorMap?: { get(id: object): { values?: unknown } | undefined } } | null;
  if (!backend || (backend as { spikeflowSyncRefused?: boolean }).spikeflowSyncRefused) return;
  const readSync = backend.readSync.bind(backend);
  backend.readSync = (dataId: object) => {
    // Values still on the CPU (uploaded, not yet used on the GPU) read as they are.
    if (backend.tensorMap?.get(dataId)?.values != null) return readSync(dataId);
    throw new SpikeflowError(
      'BACKEND_UNAVAILABLE',
      "backend 'webgpu' in Node cannot read GPU memory synchronously (TensorFlow.js' webgpu readSync needs OffscreenCanvas, a browser API): read with await tensor.data(), or use the wasm backend for this",
      { backend: 'webgpu', runtime: 'node' },
    );
  };
  (backend as { spikeflowSyncRefused?: boolean }).spikeflowSyncRefused = true;
}

/**
 * tfjs-webgpu's AddN binds every input to one shader, and a device allows only
 * `maxStorageBuffersPerShaderStage` storage buffers per shader (8 on SwiftShader, where the sum
 * of a 28-step sequence's terms failed validation). Sum in groups that fit, then the partial sums.
 */
function addNInGroups(): void {
  const original = tf.getKernel('AddN', 'webgpu');
  if (!original || (original as { spikeflowGrouped?: boolean }).spikeflowGrouped) return;
  type Info = { dataId: object };
  type WebgpuBackendLike = { device: { limits: { maxStorageBuffersPerShaderStage: number } }; disposeData(id: object): void };
  const kernelFunc = (args: { inputs: Record<string, unknown> | unknown[]; backend: unknown; attrs?: unknown }) => {
    const backend = args.backend as WebgpuBackendLike;
    const inputs = Object.values(args.inputs) as Info[];
    // One binding is the output.
    const most = Math.max(2, backend.device.limits.maxStorageBuffersPerShaderStage - 1);
    if (inputs.length <= most) return original.kernelFunc(args as never);
    // Only the partial sums made here are freed here; an input left alone in its group passes
    // through to the next level and stays the caller's.
    const partials = new Set<Info>();
    let level = inputs;
    while (level.length > 1) {
      const next: Info[] = [];
      for (let i = 0; i < level.length; i += most) {
        const group = level.slice(i, i + most);
        if (group.length === 1) {
          next.push(group[0]!);
          continue;
        }
        const sum = original.kernelFunc({ ...args, inputs: group } as never) as Info;
        partials.add(sum);
        next.push(sum);
        for (const t of group) if (partials.delete(t)) backend.disposeData(t.dataId);
      }
      level = next;
    }
    return level[0] as never;
  };
  tf.unregisterKernel('AddN', 'webgpu');
  tf.registerKernel({ ...original, kernelFunc: kernelFunc as never, spikeflowGrouped: true } as never);
}

/**
 * TensorFlow.js' WebGPU backend (`@tensorflow/tfjs-backend-webgpu`, loaded on activation), where
 * WebGPU offers an adapter: in a browser, or in Node through Dawn (the optional peer `webgpu`;
 * on Linux through Vulkan). float32 throughout.
 */
export const webgpu: Backend = {
  name: 'webgpu',
  description: 'WebGPU (TensorFlow.js webgpu backend: compute shaders), in a browser or in Node through Dawn (npm webgpu)',
  isAvailable: async () => (await webgpuUnavailableReason()) === undefined,
  kernels: webgpuKernels,
  async activate() {
    const why = await webgpuUnavailableReason();
    if (why) {
      throw new SpikeflowError('BACKEND_UNAVAILABLE', `backend 'webgpu': ${why}; or use ${isNode() ? 'wasm' : 'webgl or wasm'} there`, {
        backend: 'webgpu',
      });
    }
    await import('@tensorflow/tfjs-backend-webgpu');
    if (!(await tf.setBackend('webgpu'))) {
      throw new SpikeflowError(
        'BACKEND_UNAVAILABLE',
        `backend 'webgpu': TensorFlow.js could not start its webgpu backend (${isNode() ? 'see the messages above' : 'see the browser console'})`,
        { backend: 'webgpu' },
      );
    }
    await tf.ready();
    addNInGroups();
    refuseSyncReadsInNode();
  },
  describe(): BackendInfo {
    const a = adapter;
    const name = [a?.vendor, a?.architecture, a?.description].filter(Boolean).join(' ') || 'WebGPU adapter';
    return {
      tfBackend: 'webgpu',
      device: a?.fallback ? `${name} (fallback adapter: a CPU implementation, for correctness, not speed)` : name,
      threads: 1,
      details: {
        tfjs: tf.version_core,
        runtime: a?.runtime ?? (isNode() ? 'node' : 'browser'),
        vendor: a?.vendor ?? '',
        architecture: a?.architecture ?? '',
        description: a?.description ?? '',
        fallback: a?.fallback ?? false,
      },
    };
  },
};

import { SpikeflowError, tf, type Backend, type BackendInfo } from '@spikeflow/core';

interface GpuAdapterInfo {
  readonly vendor?: string;
  readonly architecture?: string;
  readonly description?: string;
}
interface GpuLike {
  requestAdapter(): Promise<{ readonly info?: GpuAdapterInfo } | null>;
}

/** The browser's WebGPU entry point, if any. */
function gpu(): GpuLike | undefined {
  return (globalThis as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
}

let adapterInfo: GpuAdapterInfo | undefined;

/**
 * Why WebGPU cannot run here, or undefined where the browser exposes an adapter (headless
 * browsers without a GPU usually expose `navigator.gpu` but no adapter).
 */
export async function webgpuUnavailableReason(): Promise<string | undefined> {
  const g = gpu();
  if (!g) return 'this environment has no navigator.gpu (WebGPU needs a browser that supports it: Chrome/Edge 113+, or a flag elsewhere)';
  try {
    const adapter = await g.requestAdapter();
    if (!adapter) return 'navigator.gpu.requestAdapter() found no adapter (no GPU, or WebGPU disabled; headless browsers often have none)';
    adapterInfo = adapter.info;
    return undefined;
  } catch (e) {
    return `navigator.gpu.requestAdapter() failed (${(e as Error).message})`;
  }
}

/**
 * TensorFlow.js' WebGPU backend (`@tensorflow/tfjs-backend-webgpu`, loaded on activation), for
 * browsers that expose a WebGPU adapter. float32 throughout.
 */
export const webgpu: Backend = {
  name: 'webgpu',
  description: 'WebGPU in the browser (TensorFlow.js webgpu backend: compute shaders)',
  isAvailable: async () => (await webgpuUnavailableReason()) === undefined,
  async activate() {
    const why = await webgpuUnavailableReason();
    if (why) throw new SpikeflowError('BACKEND_UNAVAILABLE', `backend 'webgpu': ${why}; use webgl or wasm there`, { backend: 'webgpu' });
    await import('@tensorflow/tfjs-backend-webgpu');
    if (!(await tf.setBackend('webgpu'))) {
      throw new SpikeflowError('BACKEND_UNAVAILABLE', "backend 'webgpu': TensorFlow.js could not start its webgpu backend (see the browser console)", {
        backend: 'webgpu',
      });
    }
    await tf.ready();
  },
  describe(): BackendInfo {
    const a = adapterInfo;
    return {
      tfBackend: 'webgpu',
      device: [a?.vendor, a?.architecture, a?.description].filter(Boolean).join(' ') || 'WebGPU adapter',
      threads: 1,
      details: { tfjs: tf.version_core },
    };
  },
};

import { SpikeflowError, tf, type Backend, type BackendInfo } from '@spikeflow/core';

/** Whether this environment can give a WebGL 2 context (a browser, or a worker with OffscreenCanvas). */
export function hasWebGL2(): boolean {
  try {
    const g = globalThis as {
      document?: { createElement(t: 'canvas'): { getContext(k: string): unknown } };
      OffscreenCanvas?: new (w: number, h: number) => { getContext(k: string): unknown };
    };
    const canvas = g.OffscreenCanvas ? new g.OffscreenCanvas(1, 1) : g.document?.createElement('canvas');
    return Boolean(canvas?.getContext('webgl2'));
  } catch {
    return false;
  }
}

interface GL {
  getParameter(p: number): unknown;
  getExtension(name: string): unknown;
  readonly RENDERER: number;
  readonly VERSION: number;
}

/**
 * TensorFlow.js' WebGL backend (shipped in `@tensorflow/tfjs`, which core loads), for browsers.
 * Float precision depends on the device: with float32 render targets
 * (`WEBGL_RENDER_FLOAT32_ENABLED`) results match the CPU to float32 rounding, otherwise to
 * half precision. `describe()` reports the renderer and which of the two is in use.
 */
export const webgl: Backend = {
  name: 'webgl',
  description: 'WebGL 2 in the browser (TensorFlow.js webgl backend: GPU shaders)',
  isAvailable: async () => tf.findBackendFactory('webgl') !== null && hasWebGL2(),
  async activate() {
    if (!hasWebGL2()) {
      throw new SpikeflowError(
        'BACKEND_UNAVAILABLE',
        "backend 'webgl' runs in a browser with WebGL 2 and has none here (in Node use wasm, cpu, node or node-gpu; in a browser, check that WebGL is not disabled)",
        { backend: 'webgl' },
      );
    }
    if (!(await tf.setBackend('webgl'))) {
      throw new SpikeflowError(
        'BACKEND_UNAVAILABLE',
        "backend 'webgl': TensorFlow.js could not start its webgl backend (the WebGL context failed; see the browser console)",
        { backend: 'webgl' },
      );
    }
    await tf.ready();
  },
  describe(): BackendInfo {
    const gl = (tf.backend() as unknown as { gpgpu?: { gl?: GL } }).gpgpu?.gl;
    const info = gl?.getExtension('WEBGL_debug_renderer_info') as { UNMASKED_RENDERER_WEBGL: number } | null | undefined;
    const renderer = gl ? String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER)) : 'WebGL (not active)';
    return {
      tfBackend: 'webgl',
      device: renderer,
      threads: 1,
      details: {
        tfjs: tf.version_core,
        ...(gl ? { webgl: String(gl.getParameter(gl.VERSION)) } : {}),
        float32: tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED'),
      },
    };
  },
};

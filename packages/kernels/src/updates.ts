import {
  checkSameShapes,
  SpikeflowError,
  tf,
  type AdamMomentsParams,
  type AdamMomentsResult,
  type FpttAnchorParams,
  type FpttAnchorResult,
  type FpttPullParams,
  type Tensor,
} from '@spikeflow/core';
import { probed, readF32, tensorOf } from './kernels.js';
import { UPDATE_WASM_BASE64 } from './snn-wasm.js';
import { arena, decode, snn, type UpdateExports } from './wasm.js';

/**
 * The elementwise parameter updates (core's `spikeflow.adamMoments`, `spikeflow.fpttPull`,
 * `spikeflow.fpttAnchor`), one SIMD pass each (assembly/update.ts) in place of the reference's
 * dozen tfjs ops, each a pass over the parameter of its own. On the wasm backend the pass reads
 * and writes the tensors where they lie, in tfjs' heap (a module instantiated on tfjs-wasm's
 * memory); elsewhere it copies them into the kernels' memory and back. Same float32 operations in
 * the same order as the references: the same bits.
 */

/** tfjs-wasm's backend, as far as the in-place path reads it. */
interface WasmBackend {
  wasm?: { asm?: { memory?: unknown } };
  dataIdMap?: { get(id: object): { memoryOffset?: number } | undefined };
  makeOutput?(shape: number[], dtype: 'float32'): { dataId: object; shape: number[]; dtype: 'float32' };
}

/** The module instantiated on tfjs-wasm's memory (one per memory), or null where that failed. */
let onHeap: { memory: WebAssembly.Memory; exports: UpdateExports | null } | undefined;

/**
 * The active tfjs backend, when it is tfjs-wasm with a plain memory the update module can run on;
 * else undefined (the copying path).
 */
function heapBackend(): { backend: WasmBackend; exports: UpdateExports } | undefined {
  if (tf.getBackend() !== 'wasm') return undefined;
  const backend = tf.backend() as unknown as WasmBackend;
  const memory = backend.wasm?.asm?.memory;
  if (!(memory instanceof WebAssembly.Memory) || !backend.dataIdMap || typeof backend.makeOutput !== 'function') return undefined;
  if (onHeap?.memory !== memory) {
    let exports: UpdateExports | null = null;
    try {
      // The module has no data of its own: instantiating it writes nothing into tfjs' memory.
      exports = new WebAssembly.Instance(new WebAssembly.Module(decode(UPDATE_WASM_BASE64) as BufferSource), { env: { memory } })
        .exports as unknown as UpdateExports;
    } catch {
      // A shared memory (tfjs-wasm's threaded build) does not match the module's import: copy instead.
    }
    onHeap = { memory, exports };
  }
  return onHeap.exports ? { backend, exports: onHeap.exports } : undefined;
}

/** Whether the update kernels read and write tensors in place on the active backend (tfjs-wasm), rather than copying them. */
export function updatesInPlace(): boolean {
  return heapBackend() !== undefined;
}

/** New float32 tensors of `shape` in tfjs-wasm's heap (contents unset), with their byte offsets. */
function outputs(backend: WasmBackend, shape: number[], count: number): { tensors: Tensor[]; at: number[] } {
  const tensors = Array.from({ length: count }, () => tf.engine().makeTensorFromTensorInfo(backend.makeOutput!(shape, 'float32')) as Tensor);
  return { tensors, at: tensors.map((t) => offset(backend, t)) };
}

function offset(backend: WasmBackend, t: Tensor): number {
  const at = backend.dataIdMap!.get(t.dataId)?.memoryOffset;
  if (typeof at !== 'number') {
    throw new SpikeflowError(
      'KERNEL_FAULT',
      `spikeflow kernels: tensor ${t.id} [${t.shape}] has no memory in tfjs-wasm's heap (disposed, or of another backend); run without the fast kernels (--no-kernels) and report this`,
    );
  }
  return at;
}

const float32 = (ts: readonly (Tensor | undefined)[]) => ts.every((t) => t === undefined || t.dtype === 'float32');

const adamArgs = (p: AdamMomentsParams) => {
  const f = Math.fround;
  return [f(p.beta1), f(1 - p.beta1), f(p.beta2), f(1 - p.beta2), f(1 - p.beta1 ** p.count), f(1 - p.beta2 ** p.count), f(p.eps)] as const;
};

/** `spikeflow.adamMoments`: Adam's moments and step direction for one parameter. */
export function adamMoments(g: Tensor, mu: Tensor, nu: Tensor, p: AdamMomentsParams): AdamMomentsResult {
  checkSameShapes('spikeflow.adamMoments', { g, mu, nu });
  return probed('spikeflow.adamMoments', () => {
    const n = g.size;
    const heap = float32([g, mu, nu]) ? heapBackend() : undefined;
    if (heap) {
      const { tensors, at } = outputs(heap.backend, g.shape, 3);
      const [pg, pm, pv] = [g, mu, nu].map((t) => offset(heap.backend, t)) as [number, number, number];
      heap.exports.adamMoments(pg, pm, pv, n, ...adamArgs(p), at[0]!, at[1]!, at[2]!);
      return { update: tensors[0]!, mu: tensors[1]!, nu: tensors[2]! };
    }
    const a = arena({ width: n });
    const [pg, pm, pv, po] = [a.alloc(n), a.alloc(n), a.alloc(n), a.alloc(n)];
    a.commit();
    a.f32(pg, n).set(readF32(g));
    a.f32(pm, n).set(readF32(mu));
    a.f32(pv, n).set(readF32(nu));
    snn().adamMoments(pg, pm, pv, n, ...adamArgs(p), po, pm, pv);
    return { update: tensorOf(a.f32(po, n), g.shape), mu: tensorOf(a.f32(pm, n), g.shape), nu: tensorOf(a.f32(pv, n), g.shape) };
  });
}

/** `spikeflow.fpttPull`: FPTT's regularised gradient of one parameter. */
export function fpttPull(g: Tensor | undefined, w: Tensor, wbar: Tensor, shift: Tensor, p: FpttPullParams): Tensor {
  checkSameShapes('spikeflow.fpttPull', { w, g, wbar, shift });
  return probed('spikeflow.fpttPull', () => {
    const n = w.size;
    const [alpha, scale] = [Math.fround(p.alpha), Math.fround(p.shiftScale)];
    const heap = float32([g, w, wbar, shift]) ? heapBackend() : undefined;
    if (heap) {
      const { tensors, at } = outputs(heap.backend, w.shape, 1);
      const [pw, pb, ps] = [w, wbar, shift].map((t) => offset(heap.backend, t)) as [number, number, number];
      heap.exports.fpttPull(g ? offset(heap.backend, g) : 0, g ? 1 : 0, pw, pb, ps, n, alpha, scale, at[0]!);
      return tensors[0]!;
    }
    const a = arena({ width: n });
    const [pg, pw, pb, ps, po] = [g ? a.alloc(n) : 0, a.alloc(n), a.alloc(n), a.alloc(n), a.alloc(n)];
    a.commit();
    if (g) a.f32(pg, n).set(readF32(g));
    a.f32(pw, n).set(readF32(w));
    a.f32(pb, n).set(readF32(wbar));
    a.f32(ps, n).set(readF32(shift));
    snn().fpttPull(pg, g ? 1 : 0, pw, pb, ps, n, alpha, scale, po);
    return tensorOf(a.f32(po, n), w.shape);
  });
}

/** `spikeflow.fpttAnchor`: FPTT's anchor update (dual form) of one parameter. */
export function fpttAnchor(w: Tensor, wbar: Tensor, lambda: Tensor, p: FpttAnchorParams): FpttAnchorResult {
  checkSameShapes('spikeflow.fpttAnchor', { w, wbar, lambda });
  return probed('spikeflow.fpttAnchor', () => {
    const n = w.size;
    const f = Math.fround;
    const args = [f(p.alpha), f(1 - p.beta), f(p.beta), f(p.beta / p.alpha)] as const;
    const heap = float32([w, wbar, lambda]) ? heapBackend() : undefined;
    if (heap) {
      const { tensors, at } = outputs(heap.backend, w.shape, 2);
      const [pw, pb, pl] = [w, wbar, lambda].map((t) => offset(heap.backend, t)) as [number, number, number];
      heap.exports.fpttAnchor(pw, pb, pl, n, ...args, at[0]!, at[1]!);
      return { wbar: tensors[0]!, lambda: tensors[1]! };
    }
    const a = arena({ width: n });
    const [pw, pb, pl] = [a.alloc(n), a.alloc(n), a.alloc(n)];
    a.commit();
    a.f32(pw, n).set(readF32(w));
    a.f32(pb, n).set(readF32(wbar));
    a.f32(pl, n).set(readF32(lambda));
    snn().fpttAnchor(pw, pb, pl, n, ...args, pb, pl);
    return { wbar: tensorOf(a.f32(pb, n), w.shape), lambda: tensorOf(a.f32(pl, n), w.shape) };
  });
}

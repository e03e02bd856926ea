import {
  checkSameShapes,
  SpikeflowError,
  tf,
  type AdamMomentsParams,
  type AdamMomentsResult,
  type FpttAnchorParams,
  type FpttAnchorResult,
  type FpttAdamStepParams,
  type FpttAdamStepResult,
  type FpttPullParams,
  type LtcStepParams,
  type LtcStepState,
  type Tensor,
} from '@spikeflow/core';
import { customOps, probed, readF32, tensorOf } from './kernels.js';
import { UPDATE_WASM_BASE64 } from './snn-wasm.js';
import { arena, decode, snn, type UpdateExports } from './wasm.js';

/**
 * The elementwise parameter updates (core's `spikeflow.adamMoments`, `spikeflow.fpttPull`,
 * `spikeflow.fpttAnchor`, `spikeflow.fpttAdamStep`), one SIMD pass each (assembly/update.ts) in place of the reference's
 * dozen tfjs ops, each a pass over the parameter of its own. On the wasm backend the pass reads
 * and writes the tensors where they lie, in tfjs' heap (a module instantiated on tfjs-wasm's
 * memory); elsewhere it copies them into the kernels' memory and back. Same float32 operations in
 * the same order as the references: the same bits.
 */

type TensorInfo = tf.TensorInfo;

/** tfjs-wasm's backend, as far as the in-place path reads it. */
interface WasmBackend {
  wasm?: { asm?: { memory?: unknown } };
  dataIdMap?: { get(id: object): { memoryOffset?: number } | undefined };
  makeOutput?(shape: number[], dtype: 'float32'): TensorInfo;
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

/**
 * One elementwise pass `run(loops, inputs, outputs)` over tensors of one shape: `inputs` are the
 * byte offsets of `tensors` (0 for an absent one), `outputs` those of `outCount` new tensors,
 * returned in order. In place in tfjs-wasm's heap where the backend allows it; else on copies in
 * the kernels' memory.
 */
function elementwise(
  kernel: string,
  tensors: readonly (Tensor | undefined)[],
  outCount: number,
  run: (loops: UpdateExports, inputs: number[], outputs: number[]) => void,
): Tensor[] {
  const shape = tensors.find((t) => t !== undefined)!.shape;
  return probed(kernel, () => {
    const heap = tensors.every((t) => t === undefined || t.dtype === 'float32') ? heapBackend() : undefined;
    if (heap) {
      const out = Array.from({ length: outCount }, () => tf.engine().makeTensorFromTensorInfo(heap.backend.makeOutput!(shape, 'float32')) as Tensor);
      run(
        heap.exports,
        tensors.map((t) => (t ? offset(heap.backend, t) : 0)),
        out.map((t) => offset(heap.backend, t)),
      );
      return out;
    }
    const n = tensors.find((t) => t !== undefined)!.size;
    const a = arena({ width: n });
    const inputs = tensors.map((t) => (t ? a.alloc(n) : 0));
    const outputs = Array.from({ length: outCount }, () => a.alloc(n));
    a.commit();
    tensors.forEach((t, i) => t && a.f32(inputs[i]!, n).set(readF32(t)));
    run(snn(), inputs, outputs);
    return outputs.map((at) => tensorOf(a.f32(at, n), shape));
  });
}

function offset(backend: WasmBackend, t: Tensor | TensorInfo): number {
  const at = backend.dataIdMap!.get(t.dataId)?.memoryOffset;
  if (typeof at !== 'number') {
    throw new SpikeflowError(
      'KERNEL_FAULT',
      `spikeflow kernels: tensor ${'id' in t ? t.id : ''} [${t.shape}] has no memory in tfjs-wasm's heap (disposed, or of another backend); run without the fast kernels (--no-kernels) and report this`,
    );
  }
  return at;
}

/**
 * The column sums of float32 `x` seen as `[rows, cols]` (its leading axes folded into rows), as a
 * new output of `shape` on tfjs-wasm's heap: one SIMD pass over `x` where it lies (`columnSums`),
 * each column summed in row order. For the wasm backend's Sum over leading axes, which tfjs-wasm
 * does by transposing the whole input first (62 ms against about 6 for a bias's gradient
 * `[64000, 256]` here). `undefined` where the active backend is not tfjs-wasm on a plain memory.
 */
export function sumRowsOnHeap(x: TensorInfo, rows: number, cols: number, shape: number[]): TensorInfo | undefined {
  const heap = x.dtype === 'float32' ? heapBackend() : undefined;
  if (!heap) return undefined;
  const out = heap.backend.makeOutput!(shape, 'float32');
  heap.exports.columnSums(offset(heap.backend, x), rows, cols, offset(heap.backend, out));
  return out;
}

const f = Math.fround;

/** Adam's float32 scalars as the update module takes them: β1, 1 − β1, β2, 1 − β2, the bias corrections c1 and c2, ε. */
const adamScalars = (p: AdamMomentsParams) =>
  [f(p.beta1), f(1 - p.beta1), f(p.beta2), f(1 - p.beta2), f(1 - p.beta1 ** p.count), f(1 - p.beta2 ** p.count), f(p.eps)] as const;

/** FPTT's anchor scalars as the update module takes them: α, 1 − β, β, β/α. */
const anchorScalars = (p: FpttAnchorParams) => [f(p.alpha), f(1 - p.beta), f(p.beta), f(p.beta / p.alpha)] as const;

/** `spikeflow.adamMoments`: Adam's moments and step direction for one parameter. */
export function adamMoments(g: Tensor, mu: Tensor, nu: Tensor, p: AdamMomentsParams): AdamMomentsResult {
  checkSameShapes('spikeflow.adamMoments', { g, mu, nu });
  const args = adamScalars(p);
  const [update, m, v] = elementwise('spikeflow.adamMoments', [g, mu, nu], 3, (loops, [pg, pm, pv], [po, pmo, pvo]) =>
    loops.adamMoments(pg!, pm!, pv!, g.size, ...args, po!, pmo!, pvo!),
  );
  return { update: update!, mu: m!, nu: v! };
}

/** `spikeflow.fpttPull`: FPTT's regularised gradient of one parameter. */
export function fpttPull(g: Tensor | undefined, w: Tensor, wbar: Tensor, shift: Tensor, p: FpttPullParams): Tensor {
  checkSameShapes('spikeflow.fpttPull', { w, g, wbar, shift });
  return elementwise('spikeflow.fpttPull', [g, w, wbar, shift], 1, (loops, [pg, pw, pb, ps], [po]) =>
    loops.fpttPull(pg!, g ? 1 : 0, pw!, pb!, ps!, w.size, f(p.alpha), f(p.shiftScale), po!),
  )[0]!;
}

/** `spikeflow.fpttAnchor`: FPTT's anchor update (dual form) of one parameter. */
export function fpttAnchor(w: Tensor, wbar: Tensor, lambda: Tensor, p: FpttAnchorParams): FpttAnchorResult {
  checkSameShapes('spikeflow.fpttAnchor', { w, wbar, lambda });
  const [wb, l] = elementwise('spikeflow.fpttAnchor', [w, wbar, lambda], 2, (loops, [pw, pb, pl], [pbo, plo]) =>
    loops.fpttAnchor(pw!, pb!, pl!, w.size, ...anchorScalars(p), pbo!, plo!),
  );
  return { wbar: wb!, lambda: l! };
}

/** `spikeflow.fpttAdamStep`: FPTT's whole update (dual form) of one parameter with Adam, in one pass. */
export function fpttAdamStep(
  g: Tensor | undefined,
  w: Tensor,
  wbar: Tensor,
  lambda: Tensor,
  mu: Tensor,
  nu: Tensor,
  p: FpttAdamStepParams,
): FpttAdamStepResult {
  checkSameShapes('spikeflow.fpttAdamStep', { w, g, wbar, lambda, mu, nu });
  const args = [...anchorScalars(p), ...adamScalars(p), f(-p.lr)] as const;
  const [w2, wb, l, m, v] = elementwise('spikeflow.fpttAdamStep', [g, w, wbar, lambda, mu, nu], 5, (loops, [pg, pw, pb, pl, pm, pv], out) =>
    loops.fpttAdamStep(pg!, g ? 1 : 0, pw!, pb!, pl!, pm!, pv!, w.size, ...args, ...(out as [number, number, number, number, number])),
  );
  return { w: w2!, wbar: wb!, lambda: l!, mu: m!, nu: v! };
}

/**
 * `spikeflow.ltcStep`: the elementwise part of one LTC-SN step (core's `LtcStepParams`) in one
 * pass (assembly/update.ts `ltcForward`), and its backward pass in one more (`ltcBackward`) after
 * the surrogate's derivative ψ(v − θ) in tfjs ops — in place of the reference's ~15 ops forward and
 * ~30 backward, each a pass of its own. In tfjs-wasm's heap where it can, else on copies.
 */
export function ltcStep(zAlpha: Tensor, zRho: Tensor | undefined, current: Tensor, state: LtcStepState, p: LtcStepParams): LtcStepState {
  const adaptive = zRho !== undefined;
  if (adaptive && !state.b)
    throw new SpikeflowError('SHAPE_MISMATCH', 'spikeflow.ltcStep: an adaptive threshold (zRho given) needs the adaptation b in the state');
  const { u, s } = state;
  const b = adaptive ? state.b : undefined;
  checkSameShapes('spikeflow.ltcStep', { zAlpha, zRho, current, u, b, s: adaptive ? s : undefined });
  const thr = f(p.threshold);
  const k = f(p.strength);
  const inputs: Record<string, Tensor> = adaptive ? { zAlpha, zRho: zRho!, current, u, b: b!, s } : { zAlpha, current, u };
  const out = customOps('spikeflow.ltcStep', {
    inputs,
    forwardFunc: (_backend, save) => {
      const r = elementwise('spikeflow.ltcStep (ltcForward)', [zAlpha, zRho, current, u, b, adaptive ? s : undefined], adaptive ? 7 : 5, (loops, i, o) => {
        const [pu, ps, pb, pa, pr, pv, px] = adaptive ? o : [o[0], o[1], 0, o[2], 0, o[3], o[4]];
        loops.ltcForward(i[0]!, i[1]!, i[2]!, i[3]!, i[4]!, i[5]!, u.size, thr, k, adaptive ? 1 : 0, pu!, ps!, pb!, pa!, pr!, pv!, px!);
      });
      const [u2, s2, b2, alpha, rho, v, x] = adaptive ? r : [r[0], r[1], undefined, r[2], undefined, r[3], r[4]];
      save(adaptive ? [alpha!, v!, x!, s2!, current, u, rho!, b!, s] : [alpha!, v!, x!, s2!, current, u]);
      return adaptive ? [u2!, s2!, b2!] : [u2!, s2!];
    },
    backwardsFunc: (dy, saved) => {
      const [alpha, v, x, s2, cur, u0, rho, b0, sPrev] = saved;
      // One gradient per output, zeros for an output nothing read (the engine's rule).
      const [gu, gs, gb] = dy as Tensor[];
      const psi = p.surrogate.derivative(x!);
      const g = elementwise('spikeflow.ltcStep (ltcBackward)', [gu, gs, gb, psi, alpha, rho, v, s2, cur, u0, b0, sPrev], adaptive ? 6 : 3, (loops, i, o) => {
        const [pzA, pzR, pc, pu, pb, ps] = adaptive ? o : [o[0], 0, o[1], o[2], 0, 0];
        loops.ltcBackward(...(i as [number, ...number[]]), u.size, k, adaptive ? 1 : 0, pzA!, pzR!, pc!, pu!, pb!, ps!);
      });
      psi.dispose();
      const [dzA, dzR, dCur, dU, dB, dS] = adaptive ? g : [g[0], undefined, g[1], g[2], undefined, undefined];
      return {
        zAlpha: () => dzA!,
        current: () => dCur!,
        u: () => dU!,
        ...(adaptive ? { zRho: () => dzR!, b: () => dB!, s: () => dS! } : {}),
      };
    },
  });
  return adaptive ? { u: out[0]!, s: out[1]!, b: out[2]! } : { u: out[0]!, s: out[1]! };
}

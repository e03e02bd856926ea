import {
  SpikeflowError,
  checkPresynapticTraces,
  denseByTransposes,
  integrateFireLayerOf,
  leakyReadoutOf,
  referenceKernels,
  tf,
  type IntegrateFireSequenceResult,
  type IntegrateFireState,
  type KernelRegistration,
  type KernelSignatures,
  type LeakyScanOptions,
  type Tensor,
} from '@spikeflow/core';

/**
 * spikeflow's SNN kernels in WGSL, for TensorFlow.js' webgpu backend: a whole window of an
 * integrate-and-fire layer forward and backward through time, the leaky readout's scan both ways,
 * and e-prop's per-example outer-product sum. Each is one compute-shader dispatch (plus a few tfjs
 * ops around it); the input products stay tfjs' own matMul. The equations are core's (see
 * `IntegrateFireSequenceParams`, `spikeflow.leakyScan`, `spikeflow.outerSum`); the backend suite
 * checks values and gradients against core's composite references.
 *
 * A recurrent layer runs one workgroup per batch row, its threads over the neurons, the previous
 * step's spikes in workgroup memory (a step's recurrent input skips the neurons that did not
 * spike: the same branch for every thread, so it costs no divergence); a layer without recurrence
 * runs one thread per (row, neuron). Outside what a shader can hold (a recurrent layer wider than
 * {@link MAX_SHARED_WIDTH} neurons, or a window whose record exceeds one storage binding of the
 * device) the kernels run core's composite reference.
 */

/** What the kernels use of tfjs-webgpu's backend object. */
interface WebgpuBackendLike {
  runWebGPUProgram(program: WgslProgram, inputs: Tensor[], dtype: 'float32'): tf.TensorInfo;
}

/** The fields of tfjs-webgpu's `WebGPUProgram` these kernels set. */
interface WgslProgram {
  readonly variableNames: string[];
  readonly outputShape: number[];
  readonly shaderKey: string;
  readonly dispatchLayout: { x: number[] };
  dispatch: [number, number, number];
  readonly workgroupSize: [number, number, number];
  getUserCode(): string;
}

/** Threads per workgroup (WebGPU's default limit on invocations per workgroup). */
const WORKGROUP = 256;
/** A recurrent layer's widest: one step's spikes (and, backward, its membrane gradients) in 16 KiB of workgroup memory. */
export const MAX_SHARED_WIDTH = 4096;

/** A WGSL f32 literal that rounds to `x` as float32. */
function lit(x: number): string {
  const f = Math.fround(x);
  if (!Number.isFinite(f)) throw new SpikeflowError('CONFIG_INVALID', `webgpu kernels: a constant must be finite, got ${x}`);
  const s = String(f);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/**
 * Whether a buffer of `floats` float32 values fits one storage binding of the device (WebGPU
 * guarantees 128 MiB; adapters offer more, and tfjs-webgpu asks for the adapter's limit). Beyond
 * it a kernel runs core's composite reference, step by step.
 */
function fitsBinding(floats: number): boolean {
  const limits = (tf.backend() as { device?: { limits?: { maxStorageBufferBindingSize?: number } } }).device?.limits;
  return 4 * floats <= (limits?.maxStorageBufferBindingSize ?? 128 * 2 ** 20);
}

/** Runs a program on the active webgpu backend; the output as a tensor `[n]` (float32). */
function run(program: WgslProgram, inputs: Tensor[]): Tensor {
  const backend = tf.backend() as unknown as WebgpuBackendLike;
  if (typeof backend.runWebGPUProgram !== 'function') {
    throw new SpikeflowError('BACKEND_UNAVAILABLE', `webgpu kernels: the active tfjs backend is '${tf.getBackend()}', not webgpu`);
  }
  const flat = inputs.map((t) => (t.rank === 1 ? t : tf.reshape(t, [t.size])));
  const out = backend.runWebGPUProgram(program, flat, 'float32');
  flat.forEach((t, i) => t !== inputs[i] && t.dispose());
  return tf.engine().makeTensorFromTensorInfo(out) as Tensor;
}

/** A program over `n` threads in workgroups of {@link WORKGROUP} (or `groups` workgroups of `size`), `main(index)` its code. */
function program(key: string, names: string[], outputs: number, code: string, groups?: { count: number; size: number }): WgslProgram {
  const size = groups?.size ?? WORKGROUP;
  // tfjs binds its uniforms and every input to each program, while a layout derived from the
  // shader ('auto') has only the bindings the shader uses: use them all.
  const uses = ['_ = uniforms.NAN;', ...names.map((n) => `_ = arrayLength(&${n});`)].join(' ');
  const userCode = code.replace(/fn main\(index: i32\) \{/, `fn main(index: i32) {\n    ${uses}`);
  return {
    variableNames: names,
    outputShape: [outputs],
    shaderKey: `spikeflow_${key}`,
    dispatchLayout: { x: [0] },
    dispatch: [groups?.count ?? Math.ceil(outputs / size), 1, 1],
    workgroupSize: [size, 1, 1],
    getUserCode: () => userCode,
  };
}

/** One decay (β or ρ) per neuron, `[H]`, from a scalar or per-neuron tensor. */
function perNeuron(decay: Tensor, H: number, what: string): Tensor {
  if (decay.size === H) return tf.reshape(decay, [H]);
  if (decay.size === 1) return tf.broadcastTo(tf.reshape(decay, [1]), [H]);
  throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.integrateFireSequence: ${what} must be a scalar or one value per neuron [${H}], got [${decay.shape}]`);
}

/** A decay's gradient from its per-(row, neuron) partial sums `[B·H]`, in the decay's own shape. */
function decayGradient(partial: Tensor, B: number, H: number, decay: Tensor): Tensor {
  const perH = tf.sum(tf.reshape(partial, [B, H]), 0);
  return decay.size === H && H > 1 ? tf.reshape(perH, decay.shape) : tf.reshape(tf.sum(perH), decay.shape);
}

/** The shape of one layer window, and the equations' options, as baked into a shader. */
interface LifShape {
  readonly T: number;
  readonly B: number;
  readonly H: number;
  readonly recurrent: boolean;
  readonly adaptive: boolean;
  readonly threshold: number;
  readonly strength: number;
  readonly resetDetach: boolean;
  readonly temporal: boolean;
}

/**
 * The per-thread loop over a recurrent layer's neurons (one workgroup per row) or the single
 * (row, neuron) of a thread without recurrence: `body` runs with `b`, `h` and `k` (the neuron's
 * slot in the thread's private arrays) in scope.
 */
function forNeurons(s: LifShape, body: string): string {
  return s.recurrent
    ? `for (var k = 0; k < NPT; k++) { let h = lid + k * WG; if (h < H) { ${body} } }`
    : `if (row < B * H) { let k = 0; let h = row % H; ${body} }`;
}

/** Constants and indices common to the forward and backward shaders. */
function lifPrelude(s: LifShape, wg: number): string {
  const npt = s.recurrent ? Math.ceil(s.H / wg) : 1;
  return `
  const T = ${s.T}; const B = ${s.B}; const H = ${s.H}; const BH = ${s.B * s.H};
  const WG = ${wg}; const NPT = ${npt};
  const THR = ${lit(s.threshold)}; const STR = ${lit(s.strength)};`;
}

function lifKey(s: LifShape, wg: number): string {
  return `lif_${s.T}_${s.B}_${s.H}_${wg}_${+s.recurrent}${+s.adaptive}${+s.resetDetach}${+s.temporal}_${lit(s.threshold)}_${lit(s.strength)}`;
}

/**
 * Forward through the window. Inputs: C (currents `[T·B·H]`), I (v0, s0, a0 `[3·B·H]`), W (W_rec
 * `[H·H]`, recurrent only), P (β, ρ per neuron `[2·H]`). Output: the spikes, membranes and (with
 * an adaptive threshold) adaptations of every step, `[K·T·B·H]`, K = 2 or 3.
 */
function lifForwardProgram(s: LifShape, wg: number): WgslProgram {
  const K = s.adaptive ? 3 : 2;
  const step = `
        let i = (t * B + b) * H + h;
        var cur = C[i];
        ${
          s.recurrent
            ? `var r = 0.0;
        for (var j = 0; j < H; j++) { let sj = sh[j]; if (sj != 0.0) { r = r + sj * W[j * H + h]; } }
        cur = cur + r;`
            : ''
        }
        let sp = ${s.recurrent ? 'sh[h]' : 'sn[k]'};
        let vn = (P[h] * v[k] + cur) - THR * sp;
        v[k] = vn;
        ${s.adaptive ? 'a[k] = P[H + h] * a[k] + sp;\n        let u = vn - (THR + STR * a[k]);' : 'let u = vn - THR;'}
        let sv = select(0.0, 1.0, u > 0.0);
        sn[k] = sv;
        result[i] = sv;
        result[T * BH + i] = vn;
        ${s.adaptive ? 'result[2 * T * BH + i] = a[k];' : ''}`;
  const load = `let n = b * H + h; v[k] = I[n]; sn[k] = I[BH + n]; ${s.adaptive ? 'a[k] = I[2 * BH + n];' : ''} ${s.recurrent ? 'sh[h] = sn[k];' : ''}`;
  const code = `${lifPrelude(s, wg)}
  ${s.recurrent ? 'var<workgroup> sh: array<f32, H>;' : ''}
  fn main(index: i32) {
    ${s.recurrent ? 'let b = i32(workgroupId.x); let lid = i32(localId.x);' : 'let row = index; let b = row / H;'}
    var v: array<f32, NPT>; var a: array<f32, NPT>; var sn: array<f32, NPT>;
    ${forNeurons(s, load)}
    ${s.recurrent ? 'workgroupBarrier();' : ''}
    for (var t = 0; t < T; t++) {
      ${forNeurons(s, step)}
      ${s.recurrent ? `workgroupBarrier();\n      ${forNeurons(s, 'sh[h] = sn[k];')}\n      workgroupBarrier();` : ''}
    }
  }`;
  return program(`${lifKey(s, wg)}_fwd`, ['C', 'I', ...(s.recurrent ? ['W'] : []), 'P'], K * s.T * s.B * s.H, code, groupsOf(s, wg));
}

/**
 * Backward through the window. Inputs: G (∂L/∂s of every step), Q (ψ of every step), R (the
 * forward output), I (the state before the window), W (recurrent only), P. Output, `[(T + 5)·B·H]`:
 * ∂L/∂c of every step (= ∂L/∂v_t), then ∂L/∂v0, ∂L/∂s0, ∂L/∂a0, and per (row, neuron) the partial
 * sums of β's and ρ's gradients.
 */
function lifBackwardProgram(s: LifShape, wg: number): WgslProgram {
  const step = `
        let i = (t * B + b) * H + h;
        let n = b * H + h;
        let du = (G[i] + dsN[k]) * Q[i];
        let dv = du + dvN[k];
        result[i] = dv;
        var vPrev = I[n];
        if (t > 0) { vPrev = R[T * BH + i - BH]; }
        dB[k] = dB[k] + dv * vPrev;
        var own = 0.0;
        ${s.temporal ? 'dvN[k] = P[h] * dv;' : ''}
        ${s.temporal && !s.resetDetach ? 'own = -THR * dv;' : ''}
        ${
          s.adaptive
            ? `let da = -STR * du + daN[k];
        var aPrev = I[2 * BH + n];
        if (t > 0) { aPrev = R[2 * T * BH + i - BH]; }
        dR[k] = dR[k] + da * aPrev;
        ${s.temporal ? 'daN[k] = P[H + h] * da;\n        own = own + da;' : ''}`
            : ''
        }
        ${s.recurrent ? 'dsh[h] = dv;' : ''}
        own_[k] = own;`;
  // The gradient into s_{t−1}: through the reset and the adaptation (own), and W_rec's row h.
  const carry = readsW(s) ? 'var r = 0.0; for (var j = 0; j < H; j++) { r = r + dsh[j] * W[h * H + j]; } dsN[k] = own_[k] + r;' : 'dsN[k] = own_[k];';
  const store =
    'let n = b * H + h; let o = T * BH; result[o + n] = dvN[k]; result[o + BH + n] = dsN[k]; result[o + 2 * BH + n] = daN[k]; result[o + 3 * BH + n] = dB[k]; result[o + 4 * BH + n] = dR[k];';
  const code = `${lifPrelude(s, wg)}
  ${s.recurrent ? 'var<workgroup> dsh: array<f32, H>;' : ''}
  fn main(index: i32) {
    ${s.recurrent ? 'let b = i32(workgroupId.x); let lid = i32(localId.x);' : 'let row = index; let b = row / H;'}
    var dvN: array<f32, NPT>; var daN: array<f32, NPT>; var dsN: array<f32, NPT>;
    var dB: array<f32, NPT>; var dR: array<f32, NPT>; var own_: array<f32, NPT>;
    for (var t = T - 1; t >= 0; t--) {
      ${forNeurons(s, step)}
      ${s.temporal ? `${s.recurrent ? 'workgroupBarrier();' : ''}\n      ${forNeurons(s, carry)}\n      ${s.recurrent ? 'workgroupBarrier();' : ''}` : ''}
    }
    ${forNeurons(s, store)}
  }`;
  return program(`${lifKey(s, wg)}_bwd`, ['G', 'Q', 'R', 'I', ...(readsW(s) ? ['W'] : []), 'P'], (s.T + 5) * s.B * s.H, code, groupsOf(s, wg));
}

/** Whether the backward shader reads W_rec: only to carry the gradient to the previous step's spikes. */
function readsW(s: LifShape): boolean {
  return s.recurrent && s.temporal;
}

function groupsOf(s: LifShape, wg: number): { count: number; size: number } {
  return s.recurrent ? { count: s.B, size: wg } : { count: Math.ceil((s.B * s.H) / WORKGROUP), size: WORKGROUP };
}

/** Threads per workgroup of a recurrent layer: its width, rounded up to 32, at most {@link WORKGROUP}. */
const workgroupOf = (H: number) => Math.min(WORKGROUP, Math.max(32, Math.ceil(H / 32) * 32));

/** Slice `n` values at `from` of a flat tensor, shaped. */
const part = (x: Tensor, from: number, shape: number[]) => tf.reshape(tf.slice(x, [from], [shape.reduce((a, b) => a * b, 1)]), shape);

/**
 * `spikeflow.integrateFireSequence` in WGSL: the window forward in one dispatch, backward in
 * another; W_rec's gradient is one matMul of the window's presynaptic spikes (or their traces,
 * made by the leaky scan shader) with the currents' gradient. ψ is the surrogate's own derivative
 * on the window's recorded membranes (any surrogate, built-in or a plugin's).
 */
export const integrateFireSequenceWgsl: KernelSignatures['spikeflow.integrateFireSequence'] = (currents, init, wRec, p) => {
  const [T, B, H] = currents.shape as [number, number, number];
  if (currents.rank !== 3 || init.v.shape.join() !== `${B},${H}` || init.s.shape.join() !== `${B},${H}`) {
    throw new SpikeflowError(
      'SHAPE_MISMATCH',
      `spikeflow.integrateFireSequence: expected currents [T, B, H] and a state v, s [B, H], got [${currents.shape}], [${init.v.shape}] and [${init.s.shape}]`,
    );
  }
  const adapt = p.adaptation;
  // The forward pass records K values per step and neuron, the backward one returns T + 5.
  const recorded = Math.max((adapt ? 3 : 2) * T, T + 5) * B * H;
  if ((wRec && H > MAX_SHARED_WIDTH) || !fitsBinding(recorded)) return referenceKernels['spikeflow.integrateFireSequence'](currents, init, wRec, p);
  if (adapt && !init.a) {
    throw new SpikeflowError('SHAPE_MISMATCH', 'spikeflow.integrateFireSequence: an adaptive threshold needs the adaptation a in the initial state');
  }
  if (wRec && wRec.shape.join() !== `${H},${H}`) {
    throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.integrateFireSequence: W_rec must be [${H}, ${H}], got [${wRec.shape}]`);
  }
  if (p.traces && wRec) checkPresynapticTraces('spikeflow.integrateFireSequence', p.traces, B, { recurrent: H });
  const shape: LifShape = {
    T,
    B,
    H,
    recurrent: wRec !== undefined,
    adaptive: adapt !== undefined,
    threshold: p.threshold,
    strength: adapt?.strength ?? 0,
    resetDetach: p.resetDetach,
    temporal: p.temporal !== false,
  };
  const wg = wRec ? workgroupOf(H) : WORKGROUP;
  const BH = B * H;
  // The state before the window and the decays, packed (a device allows few buffers per shader).
  const packed = tf.tidy(() => ({
    I: tf.concat([tf.reshape(init.v, [BH]), tf.reshape(init.s, [BH]), adapt ? tf.reshape(init.a!, [BH]) : tf.zeros([BH])]),
    P: tf.concat([perNeuron(p.beta, H, 'β'), adapt ? perNeuron(adapt.rho, H, 'ρ') : tf.zeros([H])]),
  }));
  const rec = run(lifForwardProgram(shape, wg), [currents, packed.I, ...(wRec ? [wRec] : []), packed.P]);
  const final: IntegrateFireState = tf.tidy(() => ({
    v: part(rec, T * BH + (T - 1) * BH, [B, H]),
    s: part(rec, (T - 1) * BH, [B, H]),
    ...(adapt ? { a: part(rec, 2 * T * BH + (T - 1) * BH, [B, H]) } : {}),
  }));
  const inputs = [currents, init.v, init.s, ...(adapt ? [init.a!] : []), ...(wRec ? [wRec] : []), p.beta, ...(adapt ? [adapt.rho] : [])];
  const f = tf.customGrad(((...args: unknown[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    // The trace before the window too: the caller may free it once the forward pass returns.
    const r0 = p.traces?.recurrent;
    save([rec, packed.I, packed.P, ...(r0 ? [r0] : [])]);
    return {
      value: part(rec, 0, [T, B, H]),
      gradFunc: (dy: Tensor, [R, I, P, r0]: Tensor[]) => {
        const thr = tf.scalar(p.threshold);
        const v = part(R!, T * BH, [T, B, H]);
        const u = adapt ? tf.sub(v, tf.add(thr, tf.mul(adapt.strength, part(R!, 2 * T * BH, [T, B, H])))) : tf.sub(v, thr);
        const psi = p.surrogate.derivative(u);
        const out = run(lifBackwardProgram(shape, wg), [dy, psi, R!, I!, ...(wRec && readsW(shape) ? [wRec] : []), P!]);
        const dc = part(out, 0, [T, B, H]);
        const grads: Tensor[] = [dc, part(out, T * BH, [B, H]), part(out, T * BH + BH, [B, H])];
        if (adapt) grads.push(part(out, T * BH + 2 * BH, [B, H]));
        if (wRec) {
          // Σ_t x_{t−1}ᵀ·g_t, x = the spikes before each step (s0, then the window's), or their traces.
          const s0 = part(I!, BH, [1, B, H]);
          const sPrev = T > 1 ? tf.concat([s0, part(R!, 0, [T - 1, B, H])]) : s0;
          const x = p.traces ? leakyScanForward(sPrev, r0 ?? tf.zeros([B, H]), p.traces.decay) : sPrev;
          grads.push(tf.matMul(tf.transpose(tf.reshape(x, [T * B, H])), tf.reshape(dc, [T * B, H])));
        }
        grads.push(decayGradient(part(out, T * BH + 3 * BH, [BH]), B, H, p.beta));
        if (adapt) grads.push(decayGradient(part(out, T * BH + 4 * BH, [BH]), B, H, adapt.rho));
        return grads;
      },
    };
  }) as never) as (...args: Tensor[]) => Tensor;
  const spikes = f(...inputs);
  tf.dispose([rec, packed.I, packed.P]);
  return { spikes, final } satisfies IntegrateFireSequenceResult;
};

/** `y_t = κ·y_{t−1} + d_t` over `d [T, B, O]` from `y0 [B, O]` (backward: the reverse scan of the gradient, and y0's). */
function scanProgram(T: number, n: number, kappa: number, mode: 'forward' | 'backward' | 'backward-local'): WgslProgram {
  const K = lit(kappa);
  const body =
    mode === 'forward'
      ? `var y = Y[index]; for (var t = 0; t < T; t++) { let i = t * N + index; y = ${K} * y + D[i]; result[i] = y; }`
      : mode === 'backward'
        ? `var g = 0.0; for (var t = T - 1; t >= 0; t--) { let i = t * N + index; g = D[i] + ${K} * g; result[i] = g; } result[T * N + index] = ${K} * g;`
        : `for (var t = 0; t < T; t++) { let i = t * N + index; result[i] = D[i]; } result[T * N + index] = 0.0;`;
  const code = `
  const T = ${T}; const N = ${n};
  fn main(index: i32) { if (index < N) { ${body} } }`;
  const outputs = mode === 'forward' ? T * n : (T + 1) * n;
  return program(`scan_${mode}_${T}_${n}_${K}`, mode === 'forward' ? ['D', 'Y'] : ['D'], outputs, code, { count: Math.ceil(n / WORKGROUP), size: WORKGROUP });
}

/** The scan's values, no gradient. */
function leakyScanForward(d: Tensor, y0: Tensor, kappa: number): Tensor {
  const [T, B, O] = d.shape as [number, number, number];
  return tf.reshape(run(scanProgram(T, B * O, kappa, 'forward'), [d, y0]), [T, B, O]);
}

/** `spikeflow.leakyScan` in WGSL: one thread per (row, output) through the window, both ways. */
export const leakyScanWgsl: KernelSignatures['spikeflow.leakyScan'] = (d, y0, kappa, options: LeakyScanOptions = {}) => {
  const [T, B, O] = d.shape as [number, number, number];
  if (d.rank !== 3 || y0.shape.join() !== `${B},${O}`) {
    throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.leakyScan: expected d [T, B, O] and y0 [B, O], got [${d.shape}] and [${y0.shape}]`);
  }
  if (!fitsBinding((T + 1) * B * O)) return referenceKernels['spikeflow.leakyScan'](d, y0, kappa, options);
  const f = tf.customGrad(((dd: Tensor, yy: Tensor, save: tf.GradSaveFunc) => {
    save([]);
    return {
      value: leakyScanForward(dd, yy, kappa),
      gradFunc: (dy: Tensor) => {
        const out = run(scanProgram(T, B * O, kappa, options.temporal === false ? 'backward-local' : 'backward'), [dy]);
        return [part(out, 0, [T, B, O]), part(out, T * B * O, [B, O])];
      },
    };
  }) as never) as (d: Tensor, y0: Tensor) => Tensor;
  return f(d, y0);
};

/** `spikeflow.outerSum` in WGSL: one thread per `[b, i, h]`, skipping the steps where `pre` is zero. */
export const outerSumWgsl: KernelSignatures['spikeflow.outerSum'] = (pre, post) => {
  const [n, B, I] = pre.shape as [number, number, number];
  const H = post.shape[2]!;
  if (pre.rank !== 3 || post.rank !== 3 || post.shape[0] !== n || post.shape[1] !== B) {
    throw new SpikeflowError('SHAPE_MISMATCH', `spikeflow.outerSum: expected pre [n, B, I] and post [n, B, H], got [${pre.shape}] and [${post.shape}]`);
  }
  if (!fitsBinding(B * I * H)) return referenceKernels['spikeflow.outerSum'](pre, post);
  const code = `
  const K = ${n}; const B = ${B}; const I = ${I}; const H = ${H};
  fn main(index: i32) {
    if (index < B * I * H) {
      let b = index / (I * H); let i = (index / H) % I; let h = index % H;
      var acc = 0.0;
      for (var k = 0; k < K; k++) { let x = A[(k * B + b) * I + i]; if (x != 0.0) { acc = acc + x * Z[(k * B + b) * H + h]; } }
      result[index] = acc;
    }
  }`;
  return tf.tidy(() => tf.reshape(run(program(`outer_${n}_${B}_${I}_${H}`, ['A', 'Z'], B * I * H, code), [tf.cast(pre, 'float32'), post]), [B, I, H]));
};

const dense = denseByTransposes();

/** The WGSL kernels, registered for tfjs' `webgpu` backend. */
export const webgpuKernels: readonly KernelRegistration[] = [
  { kernel: 'spikeflow.integrateFireSequence', backend: 'webgpu', impl: integrateFireSequenceWgsl },
  { kernel: 'spikeflow.leakyScan', backend: 'webgpu', impl: leakyScanWgsl },
  { kernel: 'spikeflow.integrateFireLayer', backend: 'webgpu', impl: integrateFireLayerOf(dense, integrateFireSequenceWgsl) },
  { kernel: 'spikeflow.leakyReadout', backend: 'webgpu', impl: leakyReadoutOf(dense, leakyScanWgsl) },
  { kernel: 'spikeflow.outerSum', backend: 'webgpu', impl: outerSumWgsl },
];

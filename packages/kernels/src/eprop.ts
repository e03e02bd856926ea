import {
  SpikeflowError,
  checkEligibilitySignals,
  checkEligibilitySpec,
  checkEligibilityWindow,
  eligibilityOrder,
  tf,
  type EligibilityGradient,
  type EligibilitySpec,
  type EligibilityTraces,
  type EligibilityWindow,
  type Tensor,
} from '@spikeflow/core';
import { readF32 } from './kernels.js';
import { arena, inKernel, keep, parallelRows, partsFor, scanWork, snn, type Arena, type Kept } from './wasm.js';

/**
 * `spikeflow.integrateFireEligibility` in WebAssembly (assembly/eprop.ts), for backends whose
 * tensors live in CPU memory. The per-synapse traces stay in the kernels' memory from one window
 * to the next ({@link keep}): the K traces carried per synapse — F (always), V (the membrane's,
 * where it depends on the postsynaptic neuron: the reset attached, or a decay per neuron) and E
 * (the adaptation's) — in blocks of 16 neurons, `[B, ⌈H/16⌉, fan, K, 16]`, so that a pass reads
 * them in the order they lie while a block's coefficients of every step stay in the first cache;
 * with the reset detached and one shared β, the membrane's trace is the presynaptic z̄ `[B, fan]`.
 *
 * Per window of n steps from t0, writing V_u, E_u for what the steps before u contribute to ε^v_u,
 * ε^a_u (so ε^v_u = V_u + pre_u, e_u = ψ_u·(ε^v_u − β_a·E_u), V_{u+1} = β·ε^v_u − ϑ_r·e_u,
 * E_{u+1} = ρ·E_u + e_u), every per-synapse quantity the window needs — its gradient
 * Σ_u m_u·e_u, and F, V, E at its end — is linear in V_{t0}, E_{t0} and the window's
 * presynaptic activity pre_u, with per-neuron coefficients: one reverse sweep over the window per
 * quantity (`epropSweep`, `[n, B, H]` work) gives them. Then one pass over the traces
 * (`epropTraces`) forms, for each synapse, the coefficients times the traces carried in, plus the
 * coefficients of each step times the presynaptic events — work in proportion to the input
 * events, like BPTT's weight gradient — and the gradient, summed over the batch per presynaptic
 * unit (threads take ranges of units: the same sums in the same order on any number of threads).
 */
export function integrateFireEligibility(spec: EligibilitySpec): EligibilityTraces {
  checkEligibilitySpec(spec);
  const { batch: B, inputs: I, size: H } = spec;
  const BH = B * H;
  const p = spec.neuron;
  const adapt = p.adaptation;
  const beta = Float32Array.from(p.beta.dataSync());
  const rho = adapt ? Float32Array.from(adapt.rho.dataSync()) : new Float32Array(1);
  const perNeuron = beta.length === H && H > 1 ? 1 : 0;
  const perNeuronRho = rho.length === H && H > 1 ? 1 : 0;
  // The membrane's trace is presynaptic (z̄) where nothing postsynaptic enters it.
  const presynaptic = p.resetDetach && !perNeuron;
  const withV = !presynaptic;
  const withE = adapt !== undefined;
  const K = 1 + (withV ? 1 : 0) + (withE ? 1 : 0);
  // The traces lie in blocks of 16 neurons (LB of them, the last padded with zeros).
  const LB = Math.ceil(H / 16);
  const thr = Math.fround(p.threshold);
  const thrR = p.resetDetach ? 0 : thr;
  const strength = adapt ? Math.fround(adapt.strength) : 0;
  const kappa = Math.fround(spec.kappa);
  const slope =
    p.surrogate.name === 'fast_sigmoid' && typeof p.surrogate.params['slope'] === 'number' && p.surrogate.params['slope'] > 0 ? p.surrogate.params['slope'] : 0;
  const groups = [
    { name: 'w', cols: I, off: 0 },
    ...(spec.recurrent ? [{ name: 'wRec', cols: H, off: I }] : []),
    ...(spec.bias ? [{ name: 'b', cols: 1, off: I + (spec.recurrent ? H : 0) }] : []),
  ] as const;
  const fan = I + (spec.recurrent ? H : 0) + (spec.bias ? 1 : 0);

  // The kept memory, in 4-byte elements from kept.at: the state, β and ρ, z̄ and the traces, then
  // the current window's spikes S [n + 1, B, H] and ψ X [n, B, H].
  let end = 0;
  const take = (n: number) => {
    const at = end;
    end += Math.ceil(n / 4) * 4;
    return at;
  };
  const oV = take(BH);
  const oS = take(BH);
  const oA = take(withE ? BH : 0);
  const oBeta = take(beta.length);
  const oRho = take(rho.length);
  const oZ = take(presynaptic ? B * fan : 0);
  const oP = take(B * LB * fan * K * 16);
  const fixed = end;
  const size = { batch: B, width: `${fan} presynaptic × ${H} neurons × ${K} traces` };
  const kept: Kept = inKernel('spikeflow.integrateFireEligibility', () => keep(fixed, size));
  const ptr = (o: number) => kept.at + 4 * o;
  kept.f32(ptr(oV), BH).fill(0);
  kept.f32(ptr(oS), BH).fill(0);
  if (withE) kept.f32(ptr(oA), BH).fill(0);
  kept.f32(ptr(oBeta), beta.length).set(beta);
  kept.f32(ptr(oRho), rho.length).set(rho);

  /** The window forward ran last: its length, where its S and X lie, its input's events by column. */
  let window: { n: number; oSw: number; oX: number; xcol: ColumnArrays } | undefined;
  let carry = false;
  let spent = false;
  const live = () => {
    if (!kept.live()) {
      throw new SpikeflowError(
        'KERNEL_FAULT',
        "spikeflow.integrateFireEligibility: the kernels' memory that held the traces was released or taken over mid-sequence (a kernel fault, releaseKernelMemory(), or another set of traces); run the sequence again",
      );
    }
  };

  return {
    forward(x, w, b, wRec): EligibilityWindow {
      eligibilityOrder('forward', window !== undefined, spent);
      checkEligibilityWindow(spec, x, w, b, wRec);
      live();
      return inKernel('spikeflow.integrateFireEligibility (forward)', () => {
        const n = x.shape[0]!;
        const N = n * B;
        end = fixed;
        const oSw = take((n + 1) * BH);
        const oX = take(n * BH);
        kept.resize(end);
        const a = arena({ T: n, batch: B, width: `${I} → ${H}` });
        const px = a.alloc(N * I);
        const pw = a.alloc(I * H);
        const pp = a.alloc(I * H);
        const pb = b ? a.alloc(H) : 0;
        const pc = a.alloc(N * H);
        const pr = wRec ? a.alloc(H * H) : 0;
        const rec = a.alloc(BH);
        const pf = a.alloc(BH);
        const pcnt = a.alloc(BH);
        a.commit();
        a.f32(px, N * I).set(readF32(x));
        const ev = rowEvents(a, px, N, I);
        a.f32(pw, I * H).set(readF32(w));
        if (b) a.f32(pb, H).set(readF32(b));
        if (wRec) a.f32(pr, H * H).set(readF32(wRec));
        const m = snn();
        m.packBlocks(pw, I, H, pp);
        // The input currents c_t = x_t·W + b, as the fused forward pass sums them.
        parallelRows('scatterRowRange', N, (n0, n1) => [ev.ptr, ev.cols, ev.vals, n0, n1, pw, pp, I, 0, H, pc, 0, ev.binary ? 1 : 0, pb], (ev.nnz + N) * H);
        const xcol = arraysOf(a, columnsOf(a, ev, n, B, I), I);
        const S = ptr(oSw);
        kept.f32(S, BH).set(kept.f32(ptr(oS), BH));
        parallelRows(
          'epropForward',
          B,
          (b0, b1) => [
            pc,
            S,
            ptr(oV),
            withE ? ptr(oA) : 0,
            pr,
            ptr(oBeta),
            perNeuron,
            ptr(oRho),
            perNeuronRho,
            strength,
            thr,
            slope,
            n,
            B,
            H,
            b0,
            b1,
            ptr(oX),
            rec,
            kappa,
            pf,
            pcnt,
          ],
          N * H * (wRec ? 4 : 2),
        );
        kept.f32(ptr(oS), BH).set(kept.f32(S + 4 * n * BH, BH));
        if (slope === 0) {
          // ψ_t by the layer's own surrogate, on v_t − A_t.
          const psi = tf.tidy(() => p.surrogate.derivative(tf.tensor(kept.f32(ptr(oX), n * BH).slice(), [n, B, H])));
          const values = psi.dataSync() as Float32Array;
          kept.f32(ptr(oX), n * BH).set(values);
          psi.dispose();
        }
        window = { n, oSw, oX, xcol };
        const state = (o: number) => tf.tensor2d(kept.f32(ptr(o), BH).slice(), [B, H]);
        // Each neuron's count: the rows' counts summed in batch order.
        const rows = a.f32(pcnt, BH);
        const count = new Float32Array(H);
        for (let r = 0; r < B; r++) for (let j = 0; j < H; j++) count[j]! += rows[r * H + j]!;
        return {
          spikes: tf.tensor3d(kept.f32(S + 4 * BH, N * H).slice(), [n, B, H]),
          final: { v: state(oV), s: state(oS), ...(withE ? { a: state(oA) } : {}) },
          filtered: tf.tensor2d(a.f32(pf, BH).slice(), [B, H]),
          count: tf.tensor1d(count),
        };
      });
    },

    backward(mt, c, advance): EligibilityGradient {
      eligibilityOrder('backward', window !== undefined, spent);
      const { n, oSw, oX, xcol } = window!;
      checkEligibilitySignals(spec, n, mt, c);
      live();
      return inKernel('spikeflow.integrateFireEligibility (backward)', () => {
        const N = n * B;
        const X = advance ? 2 + (withV ? 1 : 0) + (withE ? 1 : 0) : 1;
        const a = arena({ T: n, batch: B, width: `${fan} presynaptic × ${H} neurons` });
        const pm = a.alloc(N * H);
        const paz = a.alloc(B * LB * n * X * 16);
        const pcoef = a.alloc(B * LB * X * 2 * 16);
        const pct = a.alloc(B * LB * 16);
        // The carried signal c, zeros where there is none.
        const pc = a.alloc(BH);
        const pow = a.alloc(n);
        const grads = groups.map((g) => a.alloc(g.cols * H));
        a.commit();
        a.f32(pm, N * H).set(readF32(mt));
        if (c) a.f32(pc, BH).set(readF32(c));
        else a.f32(pc, BH).fill(0);
        const b0 = beta[0]!;
        a.f32(pow, n).set(Array.from({ length: n }, (_, w) => b0 ** (n - 1 - w)));
        // Each group's events by column: the input's (kept since forward), the recurrent
        // spikes s_{t−1} (S[0 … n−1] in the kept memory), and the bias (1 at every step).
        const cols: Columns[] = groups.map((g) => {
          if (g.name === 'w') return placeColumns(a, xcol);
          if (g.name === 'wRec') return columnsOf(a, rowEvents(a, ptr(oSw), N, H), n, B, H);
          return placeColumns(a, { ptr: Int32Array.of(0, N), rows: Int32Array.from({ length: N }, (_, r) => r), vals: new Float32Array(N).fill(1) });
        });
        const widest = Math.max(...groups.map((g) => g.cols));
        const cursor = a.alloc(2 * widest);
        const gt = a.alloc(widest * LB * 16);
        a.commit();
        parallelRows(
          'epropSweep',
          B,
          (r0, r1) => [
            ptr(oX),
            pm,
            pc,
            n,
            B,
            H,
            LB,
            r0,
            r1,
            ptr(oBeta),
            perNeuron,
            ptr(oRho),
            perNeuronRho,
            strength,
            thrR,
            kappa,
            X,
            withV ? 1 : 0,
            withE ? 1 : 0,
            paz,
            pcoef,
            pct,
          ],
          N * H * X * 4,
        );
        groups.forEach((g, gi) => {
          const col = cols[gi]!;
          parallelRows(
            'epropTraces',
            g.cols,
            (i0, i1) => [
              col.ptr,
              col.rows,
              col.vals,
              cursor,
              g.cols,
              i0,
              i1,
              n,
              B,
              H,
              LB,
              ptr(oP),
              fan,
              g.off,
              K,
              presynaptic ? ptr(oZ) + 4 * g.off : 0,
              b0,
              Math.fround(b0 ** n),
              pow,
              Math.fround(kappa ** n),
              pct,
              pcoef,
              paz,
              X,
              withV ? 1 : 0,
              withE ? 1 : 0,
              carry ? 1 : 0,
              advance ? 1 : 0,
              gt,
              grads[gi]!,
            ],
            g.cols * B * H * (carry ? 4 * K : 1) + col.nnz * H * X,
          );
        });
        const out: Record<string, Tensor> = {};
        groups.forEach((g, gi) => {
          const values = a.f32(grads[gi]!, g.cols * H).slice();
          out[g.name] = g.name === 'b' ? tf.tensor1d(values) : tf.tensor2d(values, [g.cols, H]);
        });
        window = undefined;
        if (advance) carry = true;
        else {
          spent = true;
          kept.release();
        }
        return out as unknown as EligibilityGradient;
      });
    },

    dispose() {
      window = undefined;
      spent = true;
      kept.release();
    },
  };
}

/** Events by row in the arena: compressed rows of a `[N, C]` matrix (see assembly/snn.ts, `events`). */
interface RowEvents {
  readonly ptr: number;
  readonly cols: number;
  readonly vals: number;
  readonly nnz: number;
  readonly binary: boolean;
}

/** The non-zero entries of `x [N, C]` at `px` by row, counted and listed by every thread. */
function rowEvents(a: Arena, px: number, N: number, C: number): RowEvents {
  // One split for the count and the listing: each thread lists the rows it counted.
  const work = scanWork(N * C);
  const parts = partsFor(N, work);
  const counts = a.alloc(parts);
  a.commit();
  parallelRows('countRows', N, (n0, n1, part) => [px, n0, n1, C, counts + 4 * part], work);
  const starts = [0];
  for (const k of a.i32(counts, parts)) starts.push(starts.at(-1)! + k);
  const nnz = starts.pop()!;
  // Room for 4 more entries: the listing stores 4 at a time.
  const ev = { ptr: a.alloc(N + 1), cols: a.alloc(nnz + 4), vals: a.alloc(nnz + 4) };
  a.commit();
  parallelRows('events', N, (n0, n1, part) => [px + 4 * n0 * C, n0, n1, C, ev.ptr, ev.cols, ev.vals, starts[part]!, starts[part + 1] ?? nnz + 4], work);
  return { ...ev, nnz, binary: snn().allOnes(ev.vals, nnz) !== 0 };
}

/** Events by column (compressed columns: the rows r = b·n + w in increasing order), in the arena or as arrays. */
interface Columns {
  readonly ptr: number;
  readonly rows: number;
  readonly vals: number;
  readonly nnz: number;
}
interface ColumnArrays {
  readonly ptr: Int32Array;
  readonly rows: Int32Array;
  readonly vals: Float32Array;
}

/** The events of a window `[n, B, C]` by column, from its events by row, in the arena (see assembly/eprop.ts, `epropColumns`). */
function columnsOf(a: Arena, ev: RowEvents, n: number, B: number, C: number): Columns {
  const col = { ptr: a.alloc(C + 1), rows: a.alloc(ev.nnz), vals: a.alloc(ev.nnz), nnz: ev.nnz };
  a.commit();
  snn().epropColumns(ev.ptr, ev.cols, ev.vals, n, B, C, col.ptr, col.rows, col.vals);
  return col;
}

/** Column events of `C` columns copied out of the arena (kept from one call to the next). */
function arraysOf(a: Arena, c: Columns, C: number): ColumnArrays {
  return { ptr: a.i32(c.ptr, C + 1).slice(), rows: a.i32(c.rows, c.nnz).slice(), vals: a.f32(c.vals, c.nnz).slice() };
}

/** Copies column events into the arena. */
function placeColumns(a: Arena, arrays: ColumnArrays): Columns {
  const nnz = arrays.rows.length;
  const col = { ptr: a.alloc(arrays.ptr.length), rows: a.alloc(nnz), vals: a.alloc(nnz), nnz };
  a.commit();
  a.i32(col.ptr, arrays.ptr.length).set(arrays.ptr);
  a.i32(col.rows, nnz).set(arrays.rows);
  a.f32(col.vals, nnz).set(arrays.vals);
  return col;
}

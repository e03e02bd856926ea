// The hot loops of spikeflow's fast SNN kernels, in AssemblyScript compiled to WebAssembly with
// SIMD (`pnpm --filter @spikeflow/kernels build:wasm`). Every pointer is a byte offset into this
// module's memory, laid out and filled by the TypeScript side (src/kernels.ts); nothing here
// allocates. float32 arithmetic throughout, in the order the composite references use.

import { adaptiveBackStep, adaptiveRow } from './adaptive';

@inline function f32At(base: usize, i: i32): usize {
  return base + (<usize>i << 2);
}

/** Bit j set where `x[i + j]` is not zero, for j < 16 (four lanes per SIMD comparison). */
@inline function nonZeroMask16(x: usize, i: i32): i32 {
  const zero = f32x4.splat(0);
  return (
    i32x4.bitmask(f32x4.ne(v128.load(f32At(x, i)), zero)) |
    (i32x4.bitmask(f32x4.ne(v128.load(f32At(x, i + 4)), zero)) << 4) |
    (i32x4.bitmask(f32x4.ne(v128.load(f32At(x, i + 8)), zero)) << 8) |
    (i32x4.bitmask(f32x4.ne(v128.load(f32At(x, i + 12)), zero)) << 12)
  );
}

/** Non-zero entries among `n` floats at `x`. */
function countNonZero(x: usize, n: i32): i32 {
  let count = 0;
  let i = 0;
  for (; i + 16 <= n; i += 16) count += popcnt(nonZeroMask16(x, i));
  for (; i < n; i++) if (load<f32>(f32At(x, i)) != 0) count++;
  return count;
}

/** Whether each of the `n` floats at `x` is 1 (event values that are spikes). */
export function allOnes(x: usize, n: i32): bool {
  const one = f32x4.splat(1);
  let i = 0;
  for (; i + 4 <= n; i += 4) if (!i32x4.all_true(f32x4.eq(v128.load(f32At(x, i)), one))) return false;
  for (; i < n; i++) if (load<f32>(f32At(x, i)) != 1) return false;
  return true;
}

/** The non-zero entries of rows `[n0, n1)` of `x [·, I]`, stored as one int at `out`. */
export function countRows(x: usize, n0: i32, n1: i32, I: i32, out: usize): void {
  store<i32>(out, countNonZero(x + ((<usize>n0 * <usize>I) << 2), (n1 - n0) * I));
}

/**
 * The non-zero entries of rows `[n0, n1)` of a matrix `[N, I]` as compressed sparse rows: row n's
 * entries are `cols[ptr[n] .. ptr[n+1])` with values `vals[...]`, numbered from `k0` (the entries
 * of the rows before n0; {@link countRows} gives them, so threads can take each range). `x` holds
 * the rows `[n0, n1)` only (the range of a matrix, or a copy of it staged on its own). `cols` and
 * `vals` need room for 3 entries past the last ({@link rowEvents}); nothing is written at or
 * past `kEnd` (where the next range's entries begin, if another thread lists them).
 */
export function events(x: usize, n0: i32, n1: i32, I: i32, ptr: usize, cols: usize, vals: usize, k0: i32, kEnd: i32): void {
  let k = k0;
  if (n0 == 0) store<i32>(ptr, 0);
  for (let n = n0; n < n1; n++) {
    const row = x + ((<usize>(n - n0) * <usize>I) << 2);
    // Nothing is stored at or past `kEnd`: another thread may be listing the next range's entries
    // there. A row stores at most I + 3 entries from k.
    k = kEnd - k >= I + 3 ? rowEvents(row, I, cols, vals, k) : rowEventsExact(row, I, cols, vals, k);
    store<i32>(f32At(ptr, n + 1), k);
  }
}

/** The non-zero entries of `row [i, I)`, one at a time, appended at `k`; returns the position after them. */
@inline function tailEvents(row: usize, i: i32, I: i32, cols: usize, vals: usize, k: i32): i32 {
  for (; i < I; i++) {
    const v = load<f32>(f32At(row, i));
    if (v != 0) {
      store<i32>(f32At(cols, k), i);
      store<f32>(f32At(vals, k), v);
      k++;
    }
  }
  return k;
}

/** {@link rowEvents} without its overreach: one entry at a time, a loop per set bit of each 16 lanes. */
function rowEventsExact(row: usize, I: i32, cols: usize, vals: usize, k: i32): i32 {
  let i = 0;
  for (; i + 16 <= I; i += 16) {
    let m = nonZeroMask16(row, i);
    while (m != 0) {
      const j = i + ctz(m);
      store<i32>(f32At(cols, k), j);
      store<f32>(f32At(vals, k), load<f32>(f32At(row, j)));
      k++;
      m &= m - 1;
    }
  }
  return tailEvents(row, i, I, cols, vals, k);
}

/**
 * For each 4-bit mask of non-zero lanes, the byte shuffle that moves those lanes (4 bytes each) to
 * the front in order; lanes after them are zeroed (index 0x80).
 */
const COMPACT: usize = memory.data<u8>([
  0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
  0x00, 0x01, 0x02, 0x03, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
  0x04, 0x05, 0x06, 0x07, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
  0x08, 0x09, 0x0a, 0x0b, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
  0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0a, 0x0b, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
  0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x80, 0x80, 0x80, 0x80,
  0x0c, 0x0d, 0x0e, 0x0f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
  0x00, 0x01, 0x02, 0x03, 0x0c, 0x0d, 0x0e, 0x0f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
  0x04, 0x05, 0x06, 0x07, 0x0c, 0x0d, 0x0e, 0x0f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0c, 0x0d, 0x0e, 0x0f, 0x80, 0x80, 0x80, 0x80,
  0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
  0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x80, 0x80, 0x80, 0x80,
  0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x80, 0x80, 0x80, 0x80,
  0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
]);

/**
 * Appends the non-zero entries of `row [I]` at position `k` of `cols` (indices) and `vals`
 * (values); returns the position after them. Branch-free: every 4 lanes are compared at once,
 * the non-zero ones moved to the front by a byte shuffle and all 4 stored, and `k` advances by
 * their number (a loop per set bit mispredicts on random spikes and took ~1.7× as long on the
 * bench's hidden spikes). The stores reach up to 3 entries past the last one: `cols` and `vals`
 * need that much room beyond the entries they hold.
 */
@inline function rowEvents(row: usize, I: i32, cols: usize, vals: usize, k: i32): i32 {
  const zero = f32x4.splat(0);
  const step = i32x4.splat(4);
  let idx = i32x4(0, 1, 2, 3);
  let i = 0;
  for (; i + 4 <= I; i += 4) {
    const v = v128.load(f32At(row, i));
    const m = i32x4.bitmask(f32x4.ne(v, zero));
    const shuffle = v128.load(COMPACT + (<usize>m << 4));
    v128.store(f32At(cols, k), i8x16.swizzle(idx, shuffle));
    v128.store(f32At(vals, k), i8x16.swizzle(v, shuffle));
    k += popcnt(m);
    idx = i32x4.add(idx, step);
  }
  return tailEvents(row, i, I, cols, vals, k);
}

/**
 * The 16-column blocks of `w [R, O]` (its first `O & ~15` columns), each stored contiguously:
 * block b's row r at `packed + (b·R + r)·64` bytes, one cache line. {@link scatterRowRange}
 * reads W's rows in an order given by the events; rows 1 KiB apart in W would fall into few
 * cache sets.
 */
export function packBlocks(w: usize, R: i32, O: i32, packed: usize): void {
  const O16 = O & ~15;
  for (let j = 0; j < O16; j += 16) {
    const dst = packed + ((<usize>(j >> 4) * <usize>R) << 6);
    for (let r = 0; r < R; r++) {
      const src = w + ((<usize>r * <usize>O + <usize>j) << 2);
      const d = dst + (<usize>r << 6);
      v128.store(d, v128.load(src));
      v128.store(d, v128.load(src, 16), 16);
      v128.store(d, v128.load(src, 32), 32);
      v128.store(d, v128.load(src, 48), 48);
    }
  }
}

/** `a + (at ≠ 0 ? the 4 floats at at + 4·j : 0)`: a bias added to a sum (0: no bias). */
@inline function plusBias(a: v128, at: usize, j: i32): v128 {
  return at != 0 ? f32x4.add(a, v128.load(f32At(at, j))) : a;
}

/**
 * One output row's 16 columns: the rows `cols[k0..k1)` of a 16-column block `blk` (as
 * {@link packBlocks} leaves it, the row numbers relative to it) summed in 4 registers (times
 * `vals[k]` unless `binary`), plus what `dst` holds if `accumulate`, plus the 16 floats at `bias`
 * (0: none), stored at `dst`. Two events per iteration, each register's sum in event order: with
 * 4 sums and 8 loads in flight the loop fits the 16 SIMD registers (8 sums of 32 columns did
 * not: V8 kept one on the stack, and the loop ran ~1.4× slower).
 */
@inline function blockRow(cols: usize, vals: usize, k0: i32, k1: i32, blk: usize, binary: bool, dst: usize, accumulate: bool, bias: usize): void {
  let a0 = f32x4.splat(0);
  let a1 = f32x4.splat(0);
  let a2 = f32x4.splat(0);
  let a3 = f32x4.splat(0);
  let k = k0;
  // Spikes (every value 1) are added without the multiplication; 1·w is w, so the two loops
  // give the same sums.
  if (binary) {
    for (; k + 2 <= k1; k += 2) {
      const s = blk + (<usize>load<i32>(f32At(cols, k)) << 6);
      const t = blk + (<usize>load<i32>(f32At(cols, k + 1)) << 6);
      a0 = f32x4.add(f32x4.add(a0, v128.load(s)), v128.load(t));
      a1 = f32x4.add(f32x4.add(a1, v128.load(s, 16)), v128.load(t, 16));
      a2 = f32x4.add(f32x4.add(a2, v128.load(s, 32)), v128.load(t, 32));
      a3 = f32x4.add(f32x4.add(a3, v128.load(s, 48)), v128.load(t, 48));
    }
    if (k < k1) {
      const s = blk + (<usize>load<i32>(f32At(cols, k)) << 6);
      a0 = f32x4.add(a0, v128.load(s));
      a1 = f32x4.add(a1, v128.load(s, 16));
      a2 = f32x4.add(a2, v128.load(s, 32));
      a3 = f32x4.add(a3, v128.load(s, 48));
    }
  } else {
    for (; k + 2 <= k1; k += 2) {
      const s = blk + (<usize>load<i32>(f32At(cols, k)) << 6);
      const t = blk + (<usize>load<i32>(f32At(cols, k + 1)) << 6);
      const vs = v128.load32_splat(f32At(vals, k));
      const vt = v128.load32_splat(f32At(vals, k + 1));
      a0 = f32x4.add(f32x4.add(a0, f32x4.mul(vs, v128.load(s))), f32x4.mul(vt, v128.load(t)));
      a1 = f32x4.add(f32x4.add(a1, f32x4.mul(vs, v128.load(s, 16))), f32x4.mul(vt, v128.load(t, 16)));
      a2 = f32x4.add(f32x4.add(a2, f32x4.mul(vs, v128.load(s, 32))), f32x4.mul(vt, v128.load(t, 32)));
      a3 = f32x4.add(f32x4.add(a3, f32x4.mul(vs, v128.load(s, 48))), f32x4.mul(vt, v128.load(t, 48)));
    }
    if (k < k1) {
      const s = blk + (<usize>load<i32>(f32At(cols, k)) << 6);
      const vs = v128.load32_splat(f32At(vals, k));
      a0 = f32x4.add(a0, f32x4.mul(vs, v128.load(s)));
      a1 = f32x4.add(a1, f32x4.mul(vs, v128.load(s, 16)));
      a2 = f32x4.add(a2, f32x4.mul(vs, v128.load(s, 32)));
      a3 = f32x4.add(a3, f32x4.mul(vs, v128.load(s, 48)));
    }
  }
  if (accumulate) {
    a0 = f32x4.add(a0, v128.load(dst));
    a1 = f32x4.add(a1, v128.load(dst, 16));
    a2 = f32x4.add(a2, v128.load(dst, 32));
    a3 = f32x4.add(a3, v128.load(dst, 48));
  }
  v128.store(dst, plusBias(a0, bias, 0));
  v128.store(dst, plusBias(a1, bias, 4), 16);
  v128.store(dst, plusBias(a2, bias, 8), 32);
  v128.store(dst, plusBias(a3, bias, 12), 48);
}

/**
 * `out [N, O] = x·W (+ b)` for `x` given by its events and `W [·, O]`, output rows `[n0, n1)`
 * only (rows are independent: a thread can take each range); with `accumulate` added to what
 * `out` holds. Each output row sums W's rows of its events: 16 columns at a time from `packed`
 * (rows `[base, base + R)` of W, as {@link packBlocks} leaves them; a block stays in cache
 * across all rows), then the last `O mod 16` from `w` (all of W: events name its rows) in one
 * pass over the events. `binary`: every value is 1 ({@link allOnes}). `bias`: `b [O]` added to
 * every row's sum (0: none), after it, as `x·W + b` is computed.
 */
export function scatterRowRange(ptr: usize, cols: usize, vals: usize, n0: i32, n1: i32, w: usize, packed: usize, R: i32, base: i32, O: i32, out: usize, accumulate: bool, binary: bool, bias: usize): void {
  const O16 = O & ~15;
  for (let j = 0; j < O16; j += 16) {
    const blk = packed + ((<usize>(j >> 4) * <usize>R - <usize>base) << 6);
    const bj = bias != 0 ? f32At(bias, j) : 0;
    for (let n = n0; n < n1; n++) {
      blockRow(cols, vals, load<i32>(f32At(ptr, n)), load<i32>(f32At(ptr, n + 1)), blk, binary, out + ((<usize>n * <usize>O + <usize>j) << 2), accumulate, bj);
    }
  }
  if (O16 < O) scatterNarrow(ptr, cols, vals, n0, n1, w, O, O16, out, accumulate, binary, bias);
}

/**
 * `out [N, O] = x·W (+ b)` for rows `[n0, n1)` of a dense `x [N, I]` at `x` (row n at
 * `x + 4·n·I`), in blocks of `block` rows: each block's non-zero entries are listed into this
 * thread's scratch (`ptr [block + 1]`, `cols` and `vals` with room for `cap + I + 4` entries) and
 * summed by {@link scatterRowRange} while they are in cache; nothing of the size of `x` is built.
 * `w`, `packed`, `O` and `bias` as there. Returns the number of non-zero entries, or −1 as soon
 * as a block has more than `cap` (the caller takes a dense product instead; `out` is then
 * incomplete).
 */
export function eventProduct(x: usize, n0: i32, n1: i32, I: i32, ptr: usize, cols: usize, vals: usize, cap: i32, block: i32, w: usize, packed: usize, O: i32, out: usize, bias: usize): i32 {
  let total = 0;
  for (let r0 = n0; r0 < n1; r0 += block) {
    const r1 = min(n1, r0 + block);
    store<i32>(ptr, 0);
    let k = 0;
    for (let n = r0; n < r1; n++) {
      k = rowEvents(x + ((<usize>n * <usize>I) << 2), I, cols, vals, k);
      if (k > cap) return -1;
      store<i32>(f32At(ptr, n - r0 + 1), k);
    }
    // Rows r0.. are numbered from 0 in this block's lists: shift the row pointers' base.
    scatterRowRange(ptr - (<usize>r0 << 2), cols, vals, r0, r1, w, packed, I, 0, O, out, false, allOnes(vals, k), bias);
    total += k;
  }
  return total;
}

/**
 * {@link scatterRowRange} for the columns `[O16, O)` (fewer than 16: a small readout, or what is
 * left of the blocks), from W's rows as they lie: up to 3 groups of 4 columns summed in one pass
 * over each row's events (the tests on `g` are the same for every event and predicted), then the
 * last `O mod 4` one at a time.
 */
function scatterNarrow(ptr: usize, cols: usize, vals: usize, n0: i32, n1: i32, w: usize, O: i32, O16: i32, out: usize, accumulate: bool, binary: bool, bias: usize): void {
  const O4 = O & ~3;
  const g = (O4 - O16) >> 2;
  const rowBytes = <usize>O << 2;
  const first = w + (<usize>O16 << 2);
  for (let n = n0; n < n1; n++) {
    const k0 = load<i32>(f32At(ptr, n));
    const k1 = load<i32>(f32At(ptr, n + 1));
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    for (let k = k0; k < k1; k++) {
      const src = first + <usize>load<i32>(f32At(cols, k)) * rowBytes;
      const vv = binary ? f32x4.splat(1) : v128.load32_splat(f32At(vals, k));
      if (g > 0) a0 = f32x4.add(a0, f32x4.mul(vv, v128.load(src)));
      if (g > 1) a1 = f32x4.add(a1, f32x4.mul(vv, v128.load(src, 16)));
      if (g > 2) a2 = f32x4.add(a2, f32x4.mul(vv, v128.load(src, 32)));
    }
    const dst = out + ((<usize>n * <usize>O + <usize>O16) << 2);
    for (let q = 0; q < g; q++) {
      let a = q == 0 ? a0 : q == 1 ? a1 : a2;
      const d = dst + (<usize>q << 4);
      if (accumulate) a = f32x4.add(a, v128.load(d));
      v128.store(d, plusBias(a, bias, O16 + 4 * q));
    }
    for (let j = O4; j < O; j++) {
      let acc: f32 = 0;
      for (let k = k0; k < k1; k++) acc += load<f32>(f32At(vals, k)) * load<f32>(w + ((<usize>load<i32>(f32At(cols, k)) * <usize>O + <usize>j) << 2));
      const d = f32At(out, n * O + j);
      if (accumulate) acc += load<f32>(d);
      store<f32>(d, bias != 0 ? acc + load<f32>(f32At(bias, j)) : acc);
    }
  }
}

/**
 * The events of `xᵀ [I, ·]` from those of rows `[n0, n1)` of `x [N, I]` (a counting sort by
 * column): row i of the result lists the rows n where `x[n, i]` is non-zero. Then `xᵀ·g` is
 * {@link scatterRowRange} on them: every output row's sums stay in registers instead of being
 * read and written once per event. (A range of rows keeps the rows of g it reads in cache.)
 */
export function transposeEvents(ptr: usize, cols: usize, vals: usize, n0: i32, n1: i32, I: i32, tptr: usize, tcols: usize, tvals: usize): void {
  memory.fill(tptr, 0, (<usize>I + 1) << 2);
  const kEnd = load<i32>(f32At(ptr, n1));
  for (let k = load<i32>(f32At(ptr, n0)); k < kEnd; k++) {
    const at = f32At(tptr, load<i32>(f32At(cols, k)) + 1);
    store<i32>(at, load<i32>(at) + 1);
  }
  for (let i = 0; i < I; i++) store<i32>(f32At(tptr, i + 1), load<i32>(f32At(tptr, i + 1)) + load<i32>(f32At(tptr, i)));
  // tptr[i] now is where column i's entries start; use it as a cursor, then shift it back.
  for (let n = n0; n < n1; n++) {
    const k1 = load<i32>(f32At(ptr, n + 1));
    for (let k = load<i32>(f32At(ptr, n)); k < k1; k++) {
      const at = f32At(tptr, load<i32>(f32At(cols, k)));
      const dst = load<i32>(at);
      store<i32>(f32At(tcols, dst), n);
      store<f32>(f32At(tvals, dst), load<f32>(f32At(vals, k)));
      store<i32>(at, dst + 1);
    }
  }
  for (let i = I; i > 0; i--) store<i32>(f32At(tptr, i), load<i32>(f32At(tptr, i - 1)));
  store<i32>(tptr, 0);
}

/** Bytes before a row's lists in {@link lifForward}'s `act`: their number and whether every value is 1. */
const ACT_HEADER: usize = 16;

/**
 * The non-zero entries of `x [n]`: indices at `act`, values at `act + 4(n + 4)` (room for
 * {@link rowEvents}' overreach; `act` holds `2n + 8` entries). Returns their number.
 */
function activeOf(x: usize, n: i32, act: usize): i32 {
  return rowEvents(x, n, act, act + (<usize>(n + 4) << 2), 0);
}

/**
 * A LIF layer through T steps. `c [T, B, H]` currents; `v0`, `s0 [B, H]` the state before;
 * `w [H, H]` the recurrent weights (0: none) and `packed` the same in 16-column blocks
 * ({@link packBlocks}); `beta` H values (`perNeuron`) or one. Writes `V`, `S [T, B, H]` for
 * batch rows `[b0, b1)` (rows are independent: a thread can take each range). Scratch, used for
 * rows `[b0, b1)` only: `rec [B, H]` floats (each row's recurrent current) and `act [B, 2H + 12]`
 * (each row's active neurons: their number, then indices and values, {@link ACT_HEADER}).
 *
 *     v_t = (β·v_{t−1} + (c_t + s_{t−1}·W)) − ϑ·s_{t−1},   s_t = v_t > ϑ
 *
 * With an adaptive threshold (`a0` ≠ 0: the adaptation before, `[B, H]`), also
 * a_t = ρ·a_{t−1} + s_{t−1} into `A [T, B, H]`, and s_t = v_t > ϑ + β_a·a_t (`rho` H values
 * (`perNeuronRho`) or one, `strength` β_a; assembly/adaptive.ts).
 *
 * Per step, every row lists the neurons that spiked at the step before, then the recurrent
 * currents are summed 16 columns of W_rec at a time for all rows (a 16 KiB block of a 256-neuron
 * W_rec stays in L1 across the rows, where a row at a time ran through all of W_rec from L2),
 * then the neurons are updated row by row.
 */
export function lifForward(
  c: usize,
  v0: usize,
  s0: usize,
  w: usize,
  packed: usize,
  beta: usize,
  perNeuron: bool,
  thr: f32,
  T: i32,
  B: i32,
  H: i32,
  b0: i32,
  b1: i32,
  V: usize,
  S: usize,
  rec: usize,
  act: usize,
  a0: usize,
  A: usize,
  rho: usize,
  perNeuronRho: bool,
  strength: f32,
): void {
  const BH = B * H;
  const H4 = H & ~3;
  const H16 = H & ~15;
  const one = f32x4.splat(1);
  const thrv = f32x4.splat(thr);
  const beta0 = load<f32>(beta);
  const b0v = f32x4.splat(beta0);
  const actBytes = <usize>(2 * H + 12) << 2;
  for (let t = 0; t < T; t++) {
    const vPrev = t == 0 ? v0 : V + ((<usize>(t - 1) * <usize>BH) << 2);
    const sPrev = t == 0 ? s0 : S + ((<usize>(t - 1) * <usize>BH) << 2);
    const aPrev = t == 0 ? a0 : A + ((<usize>(t - 1) * <usize>BH) << 2);
    const base = <usize>t * <usize>BH;
    if (w != 0) {
      // Each row's active neurons of the previous step; the spikes this kernel writes are 0/1,
      // only an initial state may hold other values.
      for (let b = b0; b < b1; b++) {
        const at = act + <usize>b * actBytes;
        const n = activeOf(f32At(sPrev, b * H), H, at + ACT_HEADER);
        store<i32>(at, n);
        store<i32>(at, t > 0 || allOnes(at + ACT_HEADER + (<usize>(H + 4) << 2), n) ? 1 : 0, 4);
      }
      for (let j = 0; j < H16; j += 16) {
        const blk = packed + ((<usize>(j >> 4) * <usize>H) << 6);
        for (let b = b0; b < b1; b++) {
          const at = act + <usize>b * actBytes;
          const cols = at + ACT_HEADER;
          blockRow(cols, cols + (<usize>(H + 4) << 2), 0, load<i32>(at), blk, load<i32>(at, 4) != 0, f32At(rec, b * H + j), false, 0);
        }
      }
      for (let b = b0; b < b1; b++) {
        const at = act + <usize>b * actBytes;
        const cols = at + ACT_HEADER;
        const vals = cols + (<usize>(H + 4) << 2);
        const n = load<i32>(at);
        for (let j = H16; j < H; j++) {
          let acc: f32 = 0;
          for (let k = 0; k < n; k++) acc += load<f32>(f32At(vals, k)) * load<f32>(w + ((<usize>load<i32>(f32At(cols, k)) * <usize>H + <usize>j) << 2));
          store<f32>(f32At(rec, b * H + j), acc);
        }
      }
    }
    for (let b = b0; b < b1; b++) {
      const row = b * H;
      const sp = f32At(sPrev, row);
      const vp = f32At(vPrev, row);
      const cr = c + ((base + <usize>row) << 2);
      const vo = V + ((base + <usize>row) << 2);
      const so = S + ((base + <usize>row) << 2);
      const rr = f32At(rec, row);
      // Without W_rec, or without a spike in the row, I_t = c_t (no +0: the same float ops as the reference).
      const hasRec = w != 0 && load<i32>(act + <usize>b * actBytes) > 0;
      if (a0 != 0) {
        adaptiveRow(cr, hasRec ? rr : 0, vp, sp, f32At(aPrev, row), beta, perNeuron, rho, perNeuronRho, thr, strength, H, vo, so, A + ((base + <usize>row) << 2));
        continue;
      }
      for (let j = 0; j < H4; j += 4) {
        let cur = v128.load(f32At(cr, j));
        if (hasRec) cur = f32x4.add(cur, v128.load(f32At(rr, j)));
        const bv = perNeuron ? v128.load(f32At(beta, j)) : b0v;
        const v = f32x4.sub(f32x4.add(f32x4.mul(bv, v128.load(f32At(vp, j))), cur), f32x4.mul(thrv, v128.load(f32At(sp, j))));
        v128.store(f32At(vo, j), v);
        v128.store(f32At(so, j), v128.and(f32x4.gt(v, thrv), one));
      }
      for (let j = H4; j < H; j++) {
        let cur = load<f32>(f32At(cr, j));
        if (hasRec) cur += load<f32>(f32At(rr, j));
        const bj = perNeuron ? load<f32>(f32At(beta, j)) : beta0;
        const v = bj * load<f32>(f32At(vp, j)) + cur - thr * load<f32>(f32At(sp, j));
        store<f32>(f32At(vo, j), v);
        store<f32>(f32At(so, j), v > thr ? 1 : 0);
      }
    }
  }
}

/**
 * One step of the LIF layer's backward pass, for all B·H neurons:
 *
 *     ∂L/∂s_t = dS_t + carry − ϑ_a·g_{t+1}     (carry = g_{t+1}·W_recᵀ, 0: none; ϑ_a = ϑ with the reset attached, else 0)
 *     g_t     = ∂L/∂s_t·ψ_t + β·g_{t+1}        (g_{t+1} = 0: the last step)
 *
 * `g_t` is ∂L/∂v_t, also the gradient of the step's input current. ψ_t is read from `psi`, or,
 * with `slope` > 0, is the fast sigmoid 1/(1 + slope·|v_t − ϑ|)² of the membrane at `psi`
 * (core's `fast_sigmoid`, in the same float32 operations).
 */
function lifBackStep(dS: usize, psi: usize, slope: f32, thr: f32, carry: usize, gNext: usize, beta: usize, perNeuron: bool, thrAttached: f32, B: i32, H: i32, g: usize): void {
  const H4 = H & ~3;
  const tv = f32x4.splat(thrAttached);
  const b0 = load<f32>(beta);
  const b0v = f32x4.splat(b0);
  const kv = f32x4.splat(slope);
  const thrv = f32x4.splat(thr);
  const onev = f32x4.splat(1);
  for (let b = 0; b < B; b++) {
    const row = b * H;
    for (let j = 0; j < H4; j += 4) {
      const i = row + j;
      let gs = v128.load(f32At(dS, i));
      let next = f32x4.splat(0);
      if (gNext != 0) {
        next = v128.load(f32At(gNext, i));
        gs = f32x4.sub(gs, f32x4.mul(tv, next));
      }
      if (carry != 0) gs = f32x4.add(gs, v128.load(f32At(carry, i)));
      let ps = v128.load(f32At(psi, i));
      if (slope > 0) {
        const d = f32x4.add(onev, f32x4.mul(kv, f32x4.abs(f32x4.sub(ps, thrv))));
        ps = f32x4.div(onev, f32x4.mul(d, d));
      }
      const bv = perNeuron ? v128.load(f32At(beta, j)) : b0v;
      v128.store(f32At(g, i), f32x4.add(f32x4.mul(gs, ps), f32x4.mul(bv, next)));
    }
    for (let j = H4; j < H; j++) {
      const i = row + j;
      let gs = load<f32>(f32At(dS, i));
      let next: f32 = 0;
      if (gNext != 0) {
        next = load<f32>(f32At(gNext, i));
        gs -= thrAttached * next;
      }
      if (carry != 0) gs += load<f32>(f32At(carry, i));
      let ps = load<f32>(f32At(psi, i));
      if (slope > 0) {
        const d: f32 = 1 + slope * abs<f32>(ps - thr);
        ps = 1 / (d * d);
      }
      const bj = perNeuron ? load<f32>(f32At(beta, j)) : b0;
      store<f32>(f32At(g, i), gs * ps + bj * next);
    }
  }
}

/** `y_t = κ·y_{t−1} + d_t` over `T` steps of `n` values: `d`, `y [T, n]`, `y0 [n]`. */
export function leakyScan(d: usize, y0: usize, kappa: f32, T: i32, n: i32, y: usize): void {
  const kv = f32x4.splat(kappa);
  const n4 = n & ~3;
  for (let t = 0; t < T; t++) {
    const prev = t == 0 ? y0 : y + ((<usize>(t - 1) * <usize>n) << 2);
    const o = (<usize>t * <usize>n) << 2;
    for (let i = 0; i < n4; i += 4) v128.store(f32At(y + o, i), f32x4.add(f32x4.mul(kv, v128.load(f32At(prev, i))), v128.load(f32At(d + o, i))));
    for (let i = n4; i < n; i++) store<f32>(f32At(y + o, i), kappa * load<f32>(f32At(prev, i)) + load<f32>(f32At(d + o, i)));
  }
}

/** The leaky scan's backward pass: `g_t = dy_t + κ·g_{t+1}` from the last step down. */
export function leakyScanBack(dy: usize, kappa: f32, T: i32, n: i32, g: usize): void {
  const kv = f32x4.splat(kappa);
  const n4 = n & ~3;
  for (let t = T - 1; t >= 0; t--) {
    const o = (<usize>t * <usize>n) << 2;
    if (t == T - 1) {
      memory.copy(g + o, dy + o, <usize>n << 2);
      continue;
    }
    const next = g + o + (<usize>n << 2);
    for (let i = 0; i < n4; i += 4) v128.store(f32At(g + o, i), f32x4.add(v128.load(f32At(dy + o, i)), f32x4.mul(kv, v128.load(f32At(next, i)))));
    for (let i = n4; i < n; i++) store<f32>(f32At(g + o, i), load<f32>(f32At(dy + o, i)) + kappa * load<f32>(f32At(next, i)));
  }
}

/**
 * `out [R, H] += scale·aᵀ·g` for `a [K, R]` and `g [K, H]`, dense (`t`: room for aᵀ, `R·K` floats;
 * `p`: room for the product, `R·H`): a window's start term `λ·â_{t0−1}ᵀ·ĝ_{t0}` added to a weight
 * gradient with presynaptic traces (OTTT), K the batch.
 */
export function addTransposedProduct(a: usize, K: i32, R: i32, g: usize, H: i32, t: usize, p: usize, out: usize, scale: f32): void {
  transpose(a, K, R, t);
  matmul(t, R, K, g, H, p);
  const n = R * H;
  const n4 = n & ~3;
  const sv = f32x4.splat(scale);
  for (let i = 0; i < n4; i += 4) v128.store(f32At(out, i), f32x4.add(v128.load(f32At(out, i)), f32x4.mul(sv, v128.load(f32At(p, i)))));
  for (let i = n4; i < n; i++) store<f32>(f32At(out, i), load<f32>(f32At(out, i)) + scale * load<f32>(f32At(p, i)));
}

/**
 * `out [O] = Σ_t c_t·Σ_b g[t, b]` for `g [T, B, O]` and a weight per step `c [T]` (f32): a bias'
 * gradient under its presynaptic trace (OTTT). Each step's rows are summed in float32 (`row`:
 * room for `O` floats), the steps in float64 (`out`: `O` doubles).
 */
export function stepWeightedSums(g: usize, T: i32, B: i32, O: i32, c: usize, row: usize, out: usize): void {
  const O4 = O & ~3;
  memory.fill(out, 0, <usize>O << 3);
  for (let t = 0; t < T; t++) {
    memory.fill(row, 0, <usize>O << 2);
    for (let b = 0; b < B; b++) {
      const r = g + ((<usize>(t * B + b) * <usize>O) << 2);
      for (let j = 0; j < O4; j += 4) v128.store(f32At(row, j), f32x4.add(v128.load(f32At(row, j)), v128.load(f32At(r, j))));
      for (let j = O4; j < O; j++) store<f32>(f32At(row, j), load<f32>(f32At(row, j)) + load<f32>(f32At(r, j)));
    }
    const ct = <f64>load<f32>(f32At(c, t));
    for (let j = 0; j < O; j++) {
      const at = out + (<usize>j << 3);
      store<f64>(at, load<f64>(at) + ct * <f64>load<f32>(f32At(row, j)));
    }
  }
}

/** `dst [C, R] = srcᵀ` for `src [R, C]`. */
export function transpose(src: usize, R: i32, C: i32, dst: usize): void {
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) store<f32>(f32At(dst, c * R + r), load<f32>(f32At(src, r * C + c)));
  }
}

/**
 * `out [R, H] = g [R, K] · w [K, H]`, dense: blocks of 4 rows × 8 columns held in registers over
 * the whole sum (~18 GFLOP/s on one core here, as fast as XNNPACK on these shapes).
 */
function matmul(g: usize, R: i32, K: i32, w: usize, H: i32, out: usize): void {
  const H8 = H & ~7;
  const st = <usize>H << 2;
  let r = 0;
  for (; r + 4 <= R; r += 4) {
    const g0 = g + ((<usize>r * <usize>K) << 2);
    const g1 = g0 + (<usize>K << 2);
    const g2 = g1 + (<usize>K << 2);
    const g3 = g2 + (<usize>K << 2);
    for (let j = 0; j < H8; j += 8) {
      let a00 = f32x4.splat(0);
      let a01 = f32x4.splat(0);
      let a10 = f32x4.splat(0);
      let a11 = f32x4.splat(0);
      let a20 = f32x4.splat(0);
      let a21 = f32x4.splat(0);
      let a30 = f32x4.splat(0);
      let a31 = f32x4.splat(0);
      for (let k = 0; k < K; k++) {
        const src = w + ((<usize>k * <usize>H + <usize>j) << 2);
        const w0 = v128.load(src);
        const w1 = v128.load(src, 16);
        const x0 = f32x4.splat(load<f32>(f32At(g0, k)));
        const x1 = f32x4.splat(load<f32>(f32At(g1, k)));
        const x2 = f32x4.splat(load<f32>(f32At(g2, k)));
        const x3 = f32x4.splat(load<f32>(f32At(g3, k)));
        a00 = f32x4.add(a00, f32x4.mul(x0, w0));
        a01 = f32x4.add(a01, f32x4.mul(x0, w1));
        a10 = f32x4.add(a10, f32x4.mul(x1, w0));
        a11 = f32x4.add(a11, f32x4.mul(x1, w1));
        a20 = f32x4.add(a20, f32x4.mul(x2, w0));
        a21 = f32x4.add(a21, f32x4.mul(x2, w1));
        a30 = f32x4.add(a30, f32x4.mul(x3, w0));
        a31 = f32x4.add(a31, f32x4.mul(x3, w1));
      }
      const o = out + ((<usize>r * <usize>H + <usize>j) << 2);
      v128.store(o, a00);
      v128.store(o, a01, 16);
      v128.store(o + st, a10);
      v128.store(o + st, a11, 16);
      v128.store(o + 2 * st, a20);
      v128.store(o + 2 * st, a21, 16);
      v128.store(o + 3 * st, a30);
      v128.store(o + 3 * st, a31, 16);
    }
  }
  // Rows left over, then columns left over: one at a time.
  for (; r < R; r++) {
    const gr = g + ((<usize>r * <usize>K) << 2);
    for (let j = 0; j < H8; j += 8) {
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      for (let k = 0; k < K; k++) {
        const src = w + ((<usize>k * <usize>H + <usize>j) << 2);
        const x = f32x4.splat(load<f32>(f32At(gr, k)));
        a0 = f32x4.add(a0, f32x4.mul(x, v128.load(src)));
        a1 = f32x4.add(a1, f32x4.mul(x, v128.load(src, 16)));
      }
      const o = out + ((<usize>r * <usize>H + <usize>j) << 2);
      v128.store(o, a0);
      v128.store(o, a1, 16);
    }
  }
  for (let rr = 0; rr < R; rr++) {
    for (let j = H8; j < H; j++) {
      let acc: f32 = 0;
      for (let k = 0; k < K; k++) acc += load<f32>(f32At(g, rr * K + k)) * load<f32>(f32At(w, k * H + j));
      store<f32>(f32At(out, rr * H + j), acc);
    }
  }
}

/**
 * The LIF layer's whole backward pass for batch rows `[b0, b1)` (rows are independent: a thread
 * can take each range): {@link lifBackStep} from the last step down, and after each step the
 * recurrent share of the previous step's spike gradient, `carry = g_t·W_recᵀ` (`wT` = W_recᵀ,
 * 0: no recurrence). All buffers are `[T, B, H]` (`carry` `[B, H]`); on return `carry` holds
 * `g_0·W_recᵀ`.
 *
 * Without the `temporal` path every step is on its own (g_{t+1} = 0, no carry, no product):
 * g_t = dS_t·ψ_t. With an adaptive threshold (`A` ≠ 0: the adaptation of every step, `[T, B, H]`,
 * and `a0` before the window) each step is {@link adaptiveBackStep} instead, with `h [B, H]` the
 * adaptation's gradient (h_0 on return, with the temporal path) and `dRho [B, H]` float64, set to
 * Σ_t h_t·a_{t−1} per row and neuron.
 */
export function lifBackward(
  dS: usize,
  psi: usize,
  slope: f32,
  thr: f32,
  wT: usize,
  beta: usize,
  perNeuron: bool,
  thrAttached: f32,
  T: i32,
  B: i32,
  H: i32,
  b0: i32,
  b1: i32,
  g: usize,
  carry: usize,
  temporal: bool,
  A: usize,
  a0: usize,
  rho: usize,
  perNeuronRho: bool,
  strength: f32,
  h: usize,
  dRho: usize,
): void {
  const BH = <usize>B * <usize>H;
  const rows = b1 - b0;
  const off = (<usize>b0 * <usize>H) << 2;
  if (A != 0) memory.fill(dRho + (off << 1), 0, (<usize>rows * <usize>H) << 3);
  for (let t = T - 1; t >= 0; t--) {
    const o = ((<usize>t * BH) << 2) + off;
    const gt = g + o;
    const linked = temporal && t < T - 1;
    const carried = wT != 0 && linked ? carry + off : 0;
    const gNext = linked ? gt + (BH << 2) : 0;
    if (A != 0) {
      const aPrev = t == 0 ? a0 + off : A + o - (BH << 2);
      adaptiveBackStep(dS + o, psi + o, A + o, aPrev, slope, thr, strength, carried, gNext, beta, perNeuron, rho, perNeuronRho, thrAttached, rows, H, gt, h + off, dRho + (off << 1));
    } else {
      lifBackStep(dS + o, psi + o, slope, thr, carried, gNext, beta, perNeuron, thrAttached, rows, H, gt);
    }
    if (wT != 0 && temporal) matmul(gt, rows, H, wT, H, carry + off);
  }
}
export * from './eprop';
/**
 * `v·w[p, q, c, :]` added to `out`'s `O` floats (four at a time): one event's share of a
 * convolution's output position, or (`convFilterEvents`) `v·dy[...]` into a filter row.
 */
@inline function addScaled(out: usize, w: usize, v: f32, O: i32, binary: bool): void {
  const O4 = O & ~3;
  if (binary) {
    for (let m = 0; m < O4; m += 4) v128.store(f32At(out, m), f32x4.add(v128.load(f32At(out, m)), v128.load(f32At(w, m))));
    for (let m = O4; m < O; m++) store<f32>(f32At(out, m), load<f32>(f32At(out, m)) + load<f32>(f32At(w, m)));
  } else {
    const vv = f32x4.splat(v);
    for (let m = 0; m < O4; m += 4) v128.store(f32At(out, m), f32x4.add(v128.load(f32At(out, m)), f32x4.mul(vv, v128.load(f32At(w, m)))));
    for (let m = O4; m < O; m++) store<f32>(f32At(out, m), load<f32>(f32At(out, m)) + v * load<f32>(f32At(w, m)));
  }
}

/**
 * The pairs a convolution by events visits: for each event x[n, i, j, c] = v of images `[n0, n1)`
 * (image n's events are `cols`/`vals[ptr[n] .. ptr[n+1])`, flat index (i·W + j)·C + c) and each
 * kernel offset (p, q) with i + top − p = o_i·sh and j + left − q = o_j·sw inside `[Ho, Wo]`, the
 * output row (n, o_i, o_j) of `rows [N, Ho, Wo, O]` and the filter row (p, q, c) of
 * `filters [kh, kw, C, O]`. The forward pass adds v·filter row into the output row, the filter
 * gradient (`filterGradient`) v·output row into the filter row; both in image and event order.
 */
@inline function eventSweep(
  ptr: usize, cols: usize, vals: usize, n0: i32, n1: i32, W: i32, C: i32, kh: i32, kw: i32, O: i32,
  sh: i32, sw: i32, top: i32, left: i32, Ho: i32, Wo: i32, rows: usize, filters: usize, binary: bool, filterGradient: bool,
): void {
  const image = Ho * Wo * O;
  for (let n = n0; n < n1; n++) {
    const base = rows + ((<usize>n * <usize>image) << 2);
    const k1 = load<i32>(f32At(ptr, n + 1));
    for (let k = load<i32>(f32At(ptr, n)); k < k1; k++) {
      const f = load<i32>(f32At(cols, k));
      const v = load<f32>(f32At(vals, k));
      const c = f % C;
      const ij = f / C;
      const i = ij / W;
      const j = ij - i * W;
      for (let p = 0; p < kh; p++) {
        const ri = i + top - p;
        if (ri < 0) break;
        const oi = ri / sh;
        if (oi * sh != ri || oi >= Ho) continue;
        for (let q = 0; q < kw; q++) {
          const rj = j + left - q;
          if (rj < 0) break;
          const oj = rj / sw;
          if (oj * sw != rj || oj >= Wo) continue;
          const row = base + ((<usize>(oi * Wo + oj) * <usize>O) << 2);
          const filter = filters + ((<usize>((p * kw + q) * C + c) * <usize>O) << 2);
          if (filterGradient) addScaled(filter, row, v, O, binary);
          else addScaled(row, filter, v, O, binary);
        }
      }
    }
  }
}

/**
 * A 2-D convolution (channels-last, cross-correlation as TensorFlow's conv2d) by events
 * ({@link eventSweep}): each event x[n, i, j, c] = v adds v·w[p, q, c, :] to every output
 * out[n, o_i, o_j, :] it reaches. Images `[n0, n1)` of `out [N, Ho, Wo, O]` are zeroed first.
 * `binary`: every value is 1.
 */
export function convEvents(
  ptr: usize, cols: usize, vals: usize, n0: i32, n1: i32, W: i32, C: i32,
  w: usize, kh: i32, kw: i32, O: i32, sh: i32, sw: i32, top: i32, left: i32, Ho: i32, Wo: i32, out: usize, binary: bool,
): void {
  const image = Ho * Wo * O;
  memory.fill(out + ((<usize>n0 * <usize>image) << 2), 0, (<usize>(n1 - n0) * <usize>image) << 2);
  eventSweep(ptr, cols, vals, n0, n1, W, C, kh, kw, O, sh, sw, top, left, Ho, Wo, out, w, binary, false);
}

/**
 * The filter gradient of {@link convEvents}: dw[p, q, c, :] += v·dy[n, o_i, o_j, :] over every
 * pair (the same sums on any thread count: one thread). `dw [kh, kw, C, O]` is zeroed first.
 */
export function convFilterEvents(
  ptr: usize, cols: usize, vals: usize, N: i32, W: i32, C: i32,
  dy: usize, kh: i32, kw: i32, O: i32, sh: i32, sw: i32, top: i32, left: i32, Ho: i32, Wo: i32, dw: usize, binary: bool,
): void {
  memory.fill(dw, 0, (<usize>(kh * kw * C) * <usize>O) << 2);
  eventSweep(ptr, cols, vals, 0, N, W, C, kh, kw, O, sh, sw, top, left, Ho, Wo, dy, dw, binary, true);
}

/**
 * Max pooling of channels-last images (`valid` windows `ph × pw` at stride `sh × sw`) that records,
 * for each output, where its maximum came from: the first maximum in row-major window order (a
 * later equal value does not replace it), as the flat position i·W + j in its image. Images
 * `[n0, n1)` of `out` and `arg` (`[N, Ho, Wo, C]` each); four channels at a time.
 */
export function maxPoolFirst(x: usize, n0: i32, n1: i32, H: i32, W: i32, C: i32, ph: i32, pw: i32, sh: i32, sw: i32, Ho: i32, Wo: i32, out: usize, arg: usize): void {
  const C4 = C & ~3;
  for (let n = n0; n < n1; n++) {
    const img = x + ((<usize>n * <usize>(H * W * C)) << 2);
    for (let oi = 0; oi < Ho; oi++) {
      for (let oj = 0; oj < Wo; oj++) {
        const o = (<usize>((n * Ho + oi) * Wo + oj) * <usize>C) << 2;
        const i0 = oi * sh;
        const j0 = oj * sw;
        for (let c = 0; c < C4; c += 4) {
          let best = v128.load(img + ((<usize>((i0 * W + j0) * C + c)) << 2));
          let at = i32x4.splat(i0 * W + j0);
          for (let p = 0; p < ph; p++) {
            for (let q = 0; q < pw; q++) {
              if (p == 0 && q == 0) continue;
              const pos = (i0 + p) * W + j0 + q;
              const v = v128.load(img + ((<usize>(pos * C + c)) << 2));
              const more = f32x4.gt(v, best);
              best = v128.bitselect(v, best, more);
              at = v128.bitselect(i32x4.splat(pos), at, more);
            }
          }
          v128.store(out + o + (<usize>c << 2), best);
          v128.store(arg + o + (<usize>c << 2), at);
        }
        for (let c = C4; c < C; c++) {
          let best = load<f32>(img + ((<usize>((i0 * W + j0) * C + c)) << 2));
          let at = i0 * W + j0;
          for (let p = 0; p < ph; p++) {
            for (let q = 0; q < pw; q++) {
              const pos = (i0 + p) * W + j0 + q;
              const v = load<f32>(img + ((<usize>(pos * C + c)) << 2));
              if (v > best) {
                best = v;
                at = pos;
              }
            }
          }
          store<f32>(out + o + (<usize>c << 2), best);
          store<i32>(arg + o + (<usize>c << 2), at);
        }
      }
    }
  }
}

/**
 * The gradient of {@link maxPoolFirst}: `dx [N, H, W, C]` zeroed, then each output's gradient
 * added at the position its maximum came from (`arg`); overlapping windows add up.
 */
export function maxPoolFirstBack(dy: usize, arg: usize, N: i32, H: i32, W: i32, C: i32, Ho: i32, Wo: i32, dx: usize): void {
  memory.fill(dx, 0, (<usize>N * <usize>(H * W * C)) << 2);
  const per = Ho * Wo;
  for (let n = 0; n < N; n++) {
    const img = dx + ((<usize>n * <usize>(H * W * C)) << 2);
    for (let k = 0; k < per; k++) {
      const o = (<usize>(n * per + k) * <usize>C) << 2;
      for (let c = 0; c < C; c++) {
        const at = img + ((<usize>(load<i32>(arg + o + (<usize>c << 2)) * C + c)) << 2);
        store<f32>(at, load<f32>(at) + load<f32>(dy + o + (<usize>c << 2)));
      }
    }
  }
}

export * from './update';
export * from './timing';

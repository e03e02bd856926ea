import { SpikeflowError, tf, type StepSource, type Tensor } from '@spikeflow/core';

/**
 * The standard workload's input, made a window at a time: `[T, B, I]` Bernoulli(`density`)
 * spikes, exactly the values of `tf.less(tf.randomUniform([T, B, I], 0, 1, 'float32', seed),
 * density)` (the bench's input before it streamed), but never all of T in memory.
 *
 * tfjs' seeded `randomUniform` draws its values in row-major order from Alea (Baagøe 2010), seeded
 * with the seed's decimal text, and stores them as float32; an element is a spike where that
 * float32 is below the float32 `density`. Alea's state is four numbers, so the source keeps the
 * state at every {@link MARK_STRIDE}-th step it passes: a window anywhere in the sequence starts
 * from the nearest mark at or before it (a window asked for twice, or out of order, costs at most
 * a stride of extra draws), and memory is O(T / stride) numbers.
 *
 * `fillMs` adds up the milliseconds spent drawing values, so that the bench can tell the input's
 * cost apart from the rule's.
 */
export class BernoulliSteps implements StepSource {
  readonly steps: number;
  readonly stepShape: readonly number[];
  readonly dtype = 'float32' as const;
  /** Milliseconds spent drawing values so far. */
  fillMs = 0;
  readonly #per: number;
  readonly #p: number;
  /** Alea's state (s0, s1, s2, c) at step #pos. */
  readonly #state: Float64Array;
  #pos = 0;
  /** The state at steps 0, S, 2S, … (S = MARK_STRIDE), the first #marked of them recorded. */
  readonly #marks: Float64Array;
  #marked = 0;
  /**
   * Where windows are drawn on the wasm backend, which copies a tensor's values into its heap as
   * it makes it: one array reused, so that a pass over T holds one window's values in JavaScript,
   * not two (a window of 1024 steps is 183 MB at the standard sizes, and the last one's array
   * would wait for the garbage collector while the next is drawn). Other backends may keep the
   * array they are given: a fresh one per window there.
   */
  #scratch: Float32Array | undefined;

  constructor(steps: number, batch: number, inputs: number, density: number, seed: number) {
    for (const [name, v] of Object.entries({ steps, batch, inputs })) {
      if (!(Number.isSafeInteger(v) && v >= 1)) throw new SpikeflowError('CONFIG_INVALID', `bench input: ${name} must be a whole number >= 1, got ${v}`);
    }
    if (!(density >= 0 && density <= 1)) throw new SpikeflowError('CONFIG_INVALID', `bench input: density must be in [0, 1], got ${density}`);
    this.steps = steps;
    this.stepShape = [batch, inputs];
    this.#per = batch * inputs;
    this.#p = Math.fround(density);
    this.#state = aleaState(String(seed));
    this.#marks = new Float64Array(4 * (Math.floor(steps / MARK_STRIDE) + 1));
    this.#marks.set(this.#state);
    this.#marked = 1;
  }

  window(from: number, to: number): Tensor {
    if (!(Number.isInteger(from) && Number.isInteger(to) && 0 <= from && from < to && to <= this.steps)) {
      throw new SpikeflowError('SHAPE_MISMATCH', `bench input: a window [${from}, ${to}) of ${this.steps} steps must satisfy 0 <= from < to <= ${this.steps}`);
    }
    const t0 = performance.now();
    const n = (to - from) * this.#per;
    let out: Float32Array;
    if (tf.getBackend() === 'wasm') {
      if (!this.#scratch || this.#scratch.length < n) this.#scratch = new Float32Array(n);
      out = this.#scratch.subarray(0, n);
    } else out = new Float32Array(n);
    this.#seek(from);
    this.#draw(to - from, out);
    this.fillMs += performance.now() - t0;
    return tf.tensor(out, [to - from, ...this.stepShape], 'float32');
  }

  /** Moves the generator to step `t`: from the current step, or from the last mark at or before `t`, whichever is later. */
  #seek(t: number): void {
    if (t === this.#pos) return;
    const m = Math.min(Math.floor(t / MARK_STRIDE), this.#marked - 1);
    if (t < this.#pos || m * MARK_STRIDE > this.#pos) {
      this.#state.set(this.#marks.subarray(4 * m, 4 * m + 4));
      this.#pos = m * MARK_STRIDE;
    }
    this.#draw(t - this.#pos, undefined);
  }

  /** Draws `n` steps from the current one into `out` (or only advances), recording the marks it passes. */
  #draw(n: number, out: Float32Array | undefined): void {
    const st = this.#state;
    const per = this.#per;
    const p = this.#p;
    let [s0, s1, s2, c] = [st[0]!, st[1]!, st[2]!, st[3]!];
    let o = 0;
    for (let k = 0; k < n; k++) {
      const step = this.#pos + k;
      if (step % MARK_STRIDE === 0 && step / MARK_STRIDE === this.#marked) {
        this.#marks.set([s0, s1, s2, c], 4 * this.#marked);
        this.#marked++;
      }
      // Alea's step (c = ⌊t⌋: t is positive; Math.floor keeps the loop in doubles, twice as fast as `t | 0`).
      if (out) {
        for (let i = 0; i < per; i++, o++) {
          const t = 2091639 * s0 + c * 2.3283064365386963e-10;
          s0 = s1;
          s1 = s2;
          c = Math.floor(t);
          s2 = t - c;
          out[o] = Math.fround(s2) < p ? 1 : 0;
        }
      } else {
        for (let i = 0; i < per; i++) {
          const t = 2091639 * s0 + c * 2.3283064365386963e-10;
          s0 = s1;
          s1 = s2;
          c = Math.floor(t);
          s2 = t - c;
        }
      }
    }
    st.set([s0, s1, s2, c]);
    this.#pos += n;
  }
}

/** Steps between the generator states {@link BernoulliSteps} keeps. */
export const MARK_STRIDE = 16;

/**
 * Alea's initial state (s0, s1, s2, c) for a seed, as Baagøe's algorithm defines it: three
 * fractions from the Mash hash of a space, each less Mash of the seed (wrapped into [0, 1)), and
 * c = 1. Mash keeps its running value across calls.
 */
function aleaState(seed: string): Float64Array {
  let n = 0xefc8249d;
  const mash = (data: string): number => {
    for (let i = 0; i < data.length; i++) {
      n += data.charCodeAt(i);
      let h = 0.02519603282416938 * n;
      n = h >>> 0;
      h -= n;
      h *= n;
      n = h >>> 0;
      h -= n;
      n += h * 0x100000000;
    }
    return (n >>> 0) * 2.3283064365386963e-10;
  };
  const s = [mash(' '), mash(' '), mash(' ')];
  for (let i = 0; i < 3; i++) {
    s[i]! -= mash(seed);
    if (s[i]! < 0) s[i]! += 1;
  }
  return Float64Array.from([s[0]!, s[1]!, s[2]!, 1]);
}

import { SpikeflowError, isPlainObject } from '@spikeflow/core';

/**
 * Early stopping for sweeps: a pruner sees each trial's metric after each epoch it evaluates, in the
 * order the reports arrive, and says whether the trial goes on. Its state is plain data (the values
 * recorded so far), so a coordinator that restarts rebuilds it from the trials' logs.
 */

/** `min` for a loss, `max` for an accuracy. */
export type Mode = 'min' | 'max';

export type PrunerSpec =
  | { readonly kind: 'none' }
  /**
   * Optuna's median rule: after `warmup` epochs, once `startup` trials have finished, a trial stops
   * when its best value so far is worse than the median of the finished trials' values at the
   * same epoch.
   */
  | { readonly kind: 'median'; readonly warmup: number; readonly startup: number }
  /**
   * Asynchronous successive halving (Li et al., "A System for Massively Parallel Hyperparameter
   * Tuning", MLSys 2020; the stopping form of Ray Tune's ASHA): rungs at `minEpochs`·ηᵏ epochs; a
   * trial reaching a rung goes on only if its value is in the best 1/η of all values recorded at
   * that rung so far (itself included; with fewer than η values recorded, it goes on).
   */
  | { readonly kind: 'asha'; readonly minEpochs: number; readonly eta: number };

/** Parses a sweep's `prune` field (`path` names it in errors). */
export function parsePruner(value: unknown, path: string): PrunerSpec {
  if (value === undefined || value === 'none') return { kind: 'none' };
  if (!isPlainObject(value) || typeof value['kind'] !== 'string')
    throw new SpikeflowError('CONFIG_INVALID', `${path}: expected { kind: median | asha | none, ... }, got ${JSON.stringify(value)}`, { path });
  const int = (key: string, fallback: number, min: number) => {
    const v = value[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
      throw new SpikeflowError('CONFIG_INVALID', `${path}.${key}: must be an integer >= ${min}, got ${JSON.stringify(v)}`, { path: `${path}.${key}` });
    return v;
  };
  const allowed = (keys: string[]) => {
    for (const k of Object.keys(value))
      if (!keys.includes(k)) throw new SpikeflowError('CONFIG_INVALID', `${path}.${k}: unknown key (allowed: ${keys.join(', ')})`, { path: `${path}.${k}` });
  };
  if (value['kind'] === 'none') return { kind: 'none' };
  if (value['kind'] === 'median') {
    allowed(['kind', 'warmup', 'startup']);
    return { kind: 'median', warmup: int('warmup', 1, 0), startup: int('startup', 3, 1) };
  }
  if (value['kind'] === 'asha') {
    allowed(['kind', 'minEpochs', 'eta']);
    return { kind: 'asha', minEpochs: int('minEpochs', 1, 1), eta: int('eta', 3, 2) };
  }
  throw new SpikeflowError('CONFIG_INVALID', `${path}.kind: '${String(value['kind'])}' is no pruner (median, asha, none)`, { path: `${path}.kind` });
}

const better = (mode: Mode) => (a: number, b: number) => (mode === 'min' ? a < b : a > b);

/** A pruner's memory: the values recorded at each epoch, and the finished trials' curves. */
export class Pruner {
  readonly spec: PrunerSpec;
  readonly mode: Mode;
  /** ASHA: the values recorded at each rung (by epoch). */
  readonly #rungs = new Map<number, number[]>();
  /** Median: the finished trials' values by epoch. */
  readonly #finished: Map<number, number>[] = [];
  /** Each trial's values so far, by epoch. */
  readonly #curves = new Map<string, Map<number, number>>();

  constructor(spec: PrunerSpec, mode: Mode) {
    this.spec = spec;
    this.mode = mode;
  }

  /** The epochs at which ASHA decides, up to `epochs`. */
  rungs(epochs: number): number[] {
    if (this.spec.kind !== 'asha') return [];
    const out: number[] = [];
    for (let r = this.spec.minEpochs; r < epochs; r *= this.spec.eta) out.push(r);
    return out;
  }

  /**
   * Trial `id` reports `value` after `epoch` epochs (of `epochs` in all). Returns whether it goes
   * on. A value that is not a finite number counts as the worst.
   */
  report(id: string, epoch: number, value: number, epochs: number): boolean {
    const v = Number.isFinite(value) ? value : this.mode === 'min' ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
    const curve = this.#curves.get(id) ?? new Map<number, number>();
    this.#curves.set(id, curve);
    curve.set(epoch, v);
    if (epoch >= epochs) return true;
    const s = this.spec;
    const beats = better(this.mode);
    if (s.kind === 'asha') {
      if (!this.rungs(epochs).includes(epoch)) return true;
      const recorded = this.#rungs.get(epoch) ?? [];
      recorded.push(v);
      this.#rungs.set(epoch, recorded);
      if (recorded.length < s.eta) return true;
      const keep = Math.max(1, Math.floor(recorded.length / s.eta));
      const sorted = [...recorded].sort((a, b) => (beats(a, b) ? -1 : beats(b, a) ? 1 : 0));
      // Ties with the cutoff go on.
      return !beats(sorted[keep - 1]!, v);
    }
    if (s.kind === 'median') {
      if (epoch < s.warmup || this.#finished.length < s.startup) return true;
      const others = this.#finished.map((c) => c.get(epoch)).filter((x): x is number => x !== undefined);
      if (others.length === 0) return true;
      const sorted = others.sort((a, b) => a - b);
      const mid = sorted.length / 2;
      const median = sorted.length % 2 ? sorted[Math.floor(mid)]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
      const best = [...curve.values()].reduce((a, b) => (beats(b, a) ? b : a));
      return !beats(median, best);
    }
    return true;
  }

  /** Trial `id` finished all its epochs: its curve joins the median rule's references. */
  finished(id: string): void {
    const c = this.#curves.get(id);
    if (c) this.#finished.push(c);
  }
}

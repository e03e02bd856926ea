import type { Tensor } from './tf.js';
import { tidy, treeLeaves } from './state.js';
import type { Network } from './network.js';
import type { NetState, StepOutput, StepParams } from './step.js';
import { splitSteps, type Steps } from './steps.js';

/*
 * The time loops: step by step on a tape (unroll), step by step without one (advance), and a
 * window at a time without one, through the fused kernels where the network runs fused
 * (advanceWindow). Core's window engine (windows.ts) and inference are built on them; rules use
 * the engine.
 */

/**
 * Runs steps `[from, to)` of `xs` from `state`, calling `onStep` after each. Creates no scope:
 * run it inside `tf.variableGrads` (intermediates kept for the backward pass) or use
 * {@link forward} for inference. Returns the final state.
 */
export function unroll(
  net: Network,
  p: StepParams,
  state: NetState,
  xs: Steps,
  from: number,
  to: number,
  onStep?: (t: number, out: StepOutput) => void,
): NetState {
  let s = state;
  for (let t = from; t < to; t++) {
    const out = net.step(p, s, xs.at(t));
    onStep?.(t, out);
    s = out.state;
  }
  return s;
}

/**
 * Runs steps `[from, to)` of `xs` from `state` without a gradient tape, one `tf.tidy` per step:
 * memory does not grow with the number of steps. `onStep` may return tensors of the step's output
 * to retain (they are then the caller's to dispose). `state` itself is left alone; every
 * intermediate state is disposed. Returns the final state (the caller's to dispose).
 */
export function advance(
  net: Network,
  state: NetState,
  xs: Steps,
  from: number,
  to: number,
  onStep?: (t: number, out: StepOutput) => readonly Tensor[] | void,
): NetState {
  const retained = new Set<Tensor>(treeLeaves(state));
  let s = state;
  for (let t = from; t < to; t++) {
    const prev = s;
    const out = tidy(() => net.step(net.prepare(), prev, xs.at(t)));
    for (const x of onStep?.(t, out) ?? []) retained.add(x);
    const live = new Set(treeLeaves(out.state));
    for (const x of new Set([...treeLeaves(prev), ...out.currents])) if (!live.has(x) && !retained.has(x)) x.dispose();
    s = out.state;
  }
  return s;
}

/**
 * Steps `[from, to)` from `state` without a gradient tape: one {@link Network.runWindow} where the
 * network runs fused, else step by step ({@link advance}). Hands each step's readout to
 * `onReadout`, which returns `true` to keep it (it is then the caller's to dispose; the others,
 * whatever else it returns, are disposed). `state` is left alone; returns the new state (the caller's to dispose).
 */
export function advanceWindow(
  net: Network,
  state: NetState,
  xs: Steps,
  from: number,
  to: number,
  onReadout?: (t: number, y: Tensor) => boolean | void,
): NetState {
  if (!net.fused) {
    return advance(net, state, xs, from, to, (t, out) => (onReadout?.(t, out.readout) === true ? [out.readout] : []));
  }
  const out = runWindowValues(net, state, xs, from, to);
  try {
    if (onReadout) {
      for (const [i, y] of splitSteps(out.readout).entries()) if (onReadout(from + i, y) !== true) y.dispose();
    }
  } finally {
    out.readout.dispose();
  }
  return out.state;
}

/**
 * Steps `[from, to)` from `state` in one fused {@link Network.runWindow} without a tape (the network
 * must run fused): the readout of every step, `[to − from, B, O]`, and the new state, both the
 * caller's to dispose. `state` is left alone.
 */
export function runWindowValues(net: Network, state: NetState, xs: Steps, from: number, to: number): { readout: Tensor; state: NetState } {
  return tidy(() => {
    const o = net.runWindow(net.prepare(), state, xs.window(from, to));
    return { readout: o.readout, state: o.state };
  });
}

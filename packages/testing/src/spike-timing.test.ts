import { beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spikeTimingSequence, tf, type Tensor } from '@spikeflow/core';

/** TSSL-BP's fixtures: float64, from the authors' unmodified code (see fixtures/README.md). */
const dir = new URL('../fixtures/tssl/', import.meta.url).pathname;

type Grid = number[][][];
interface TsslFixture {
  readonly name: string;
  readonly config: {
    readonly tau_m: number;
    readonly tau_s: number;
    readonly threshold: number[];
    readonly fallback_psp_threshold: number;
    readonly rho_max: number;
    readonly surrogate_a: number;
    readonly surrogate_clamp: number;
  };
  readonly params: Record<string, number[][]>;
  readonly expected: {
    readonly input_psp: Grid;
    readonly grads: Record<string, number[][]>;
    readonly layers: {
      readonly x: Grid;
      readonly membrane: Grid;
      readonly delta_u: Grid;
      readonly spikes: Grid;
      readonly psp: Grid;
      readonly dL_da: Grid;
      readonly dL_dx: Grid;
      readonly fallback: Grid;
    }[];
  };
}

const fixtures: TsslFixture[] = readdirSync(dir)
  .filter((f) => f.endsWith('.json') && f !== 'index.json')
  .sort()
  .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as TsslFixture);

const flat = (g: number[][] | Grid): number[] => (g as unknown[]).flat(2) as number[];

/** Every entry of `got` within `tol` of `want`'s largest entry. */
function expectClose(got: Tensor | ArrayLike<number>, want: number[][] | Grid, what: string, tol = 1e-5) {
  const w = flat(want);
  const g = got instanceof tf.Tensor ? got.dataSync() : got;
  expect(g.length, what).toBe(w.length);
  const scale = Math.max(1e-12, ...w.map(Math.abs));
  let worst = 0;
  for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(g[i]! - w[i]!) / scale);
  expect(worst, what).toBeLessThan(tol);
}

const paramsOf = (f: TsslFixture, layer: number) => ({
  tauM: f.config.tau_m,
  tauS: f.config.tau_s,
  threshold: f.config.threshold[layer]!,
  fallbackPsp: f.config.fallback_psp_threshold,
  rhoMax: f.config.rho_max,
  surrogateWidth: f.config.surrogate_a,
  surrogateClamp: f.config.surrogate_clamp,
});

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('TSSL-BP’s neuron (core’s spikeTimingSequence) against the authors’ fixtures, in float32', () => {
  it('there are fixtures to check', () => {
    expect(fixtures.map((f) => f.name).sort()).toEqual(
      JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'))
        .map((e: { name: string }) => e.name)
        .sort(),
    );
    expect(fixtures.length).toBeGreaterThanOrEqual(8);
  });

  for (const f of fixtures) {
    it(`${f.name}: every layer's spikes exactly, membrane, Δu and PSP, and ∂L/∂a → ∂L/∂x (the inter-, intra-neuron, leak and fallback paths)`, () => {
      f.expected.layers.forEach((l, i) => {
        const x = tf.tensor3d(l.x);
        const g = tf.tensor3d(l.dL_da);
        const out = spikeTimingSequence(x, paramsOf(f, i));
        const dx = tf.grad((xi: Tensor) => tf.sum(tf.mul(spikeTimingSequence(xi, paramsOf(f, i)).psp, g)))(x);
        try {
          expect(Array.from(out.spikes.dataSync()), `layer ${i} spikes`).toEqual(flat(l.spikes));
          expectClose(out.membrane, l.membrane, `layer ${i} membrane`);
          expectClose(out.deltaU, l.delta_u, `layer ${i} Δu`);
          expectClose(out.psp, l.psp, `layer ${i} psp`);
          const fell = Array.from(out.psp.dataSync(), (a) => (a < f.config.fallback_psp_threshold ? 1 : 0));
          expect(fell, `layer ${i} fallback steps`).toEqual(flat(l.fallback));
          expectClose(dx, l.dL_dx, `layer ${i} ∂L/∂x`);
        } finally {
          tf.dispose([x, g, dx, out.psp, out.spikes, out.membrane, out.deltaU]);
        }
      });
    });

    it(`${f.name}: the network x_l = a_{l−1}·W_l and every weight gradient, from the loss's ∂L/∂a alone`, () => {
      const layers = f.expected.layers;
      const L = layers.length;
      const ws = Array.from({ length: L }, (_, i) => tf.variable(tf.tensor2d(f.params[`W${i + 1}`]!)));
      const input = tf.tensor3d(f.expected.input_psp);
      const gOut = tf.tensor3d(layers[L - 1]!.dL_da);
      const [T, B] = input.shape as [number, number, number];
      const xs: Tensor[] = [];
      const { value, grads } = tf.variableGrads(() => {
        let a: Tensor = input;
        ws.forEach((w, i) => {
          const x = tf.reshape(tf.matMul(tf.reshape(a, [T * B, -1]), w), [T, B, -1]);
          xs.push(tf.keep(tf.clone(x)));
          a = spikeTimingSequence(x, paramsOf(f, i)).psp;
        });
        // ⟨a_L, ∂L/∂a_L⟩: its gradient is the loss's, by the chain rule.
        return tf.sum(tf.mul(a, gOut)) as tf.Scalar;
      }, ws);
      try {
        xs.forEach((x, i) => expectClose(x, layers[i]!.x, `x of layer ${i}`));
        ws.forEach((w, i) => expectClose(grads[w.name]!, f.expected.grads[`W${i + 1}`]!, `∂L/∂W${i + 1}`));
      } finally {
        tf.dispose([value, ...Object.values(grads), ...ws, input, gOut, ...xs]);
      }
    });
  }

  it('refuses bad inputs and time constants with what to fix', () => {
    expect(() => spikeTimingSequence(tf.zeros([3, 4]), { tauM: 5, tauS: 3, threshold: 1 })).toThrow(/expected input currents x \[T, B, H\], got \[3,4\]/);
    expect(() => spikeTimingSequence(tf.zeros([3, 1, 4]), { tauM: 0.5, tauS: 3, threshold: 1 })).toThrow(/tauM must be a number of steps >= 1, got 0.5/);
  });
});

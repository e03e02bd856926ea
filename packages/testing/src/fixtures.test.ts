import { beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { disposeTree, isSpikeflowError, tf, type DenseLayerSpec } from '@spikeflow/core';
import { fixtureModelSpec, fixtureParams, formatReports, readFixtures, relativeError, type Fixture } from './fixtures.js';
import { toyTask } from './rule-suite.js';

const fixturesDir = new URL('../fixtures/', import.meta.url).pathname;

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('fixture helpers', () => {
  it('relativeError is max |a − e| over max |e|, absolute where e is all zero, Infinity on length mismatch', () => {
    expect(relativeError([1, 2.5], [1, 2])).toBeCloseTo(0.25);
    expect(relativeError([0.001, 0], [0, 0])).toBeCloseTo(0.001);
    expect(relativeError([1], [1, 2])).toBe(Infinity);
    expect(relativeError([NaN], [1])).toBe(Infinity);
  });

  it('maps a fixture onto a model spec: snake_case layer keys become camelCase neuron params', () => {
    const f = JSON.parse(readFileSync(join(fixturesDir, 'triangle_alif_mse_last.json'), 'utf8')) as Fixture;
    const spec = fixtureModelSpec(f);
    expect(spec.inputs).toBe(f.sizes.inputs);
    expect(spec.readout).toEqual({ size: f.sizes.outputs, kappa: f.readout.kappa });
    expect(spec.layers[0]).toMatchObject({ neuron: 'alif', size: 5, recurrent: true });
    expect((spec.layers[0] as DenseLayerSpec).params).toEqual({ beta: 0.9, threshold: 1, reset: 'subtract', resetDetach: true, rho: 0.95, betaA: 1.8 });
    expect(spec.surrogate).toEqual({ name: 'triangle', gamma: 0.3, width: 1 });
    expect(Object.keys(fixtureParams(f.params)).sort()).toEqual(['layers.0.W', 'layers.0.W_rec', 'layers.0.b', 'readout.W', 'readout.b']);
  });

  it('maps LTC fixtures: neuron tensor parameters and the ltc readout gate by name, readout kind/from, no kappa on an ltc readout', () => {
    const read = (name: string) => JSON.parse(readFileSync(join(fixturesDir, '..', 'fixtures-generated', 'ltc', `${name}.json`), 'utf8')) as Fixture;
    const a = read('ltc_adaptive_ltc_readout');
    const spec = fixtureModelSpec(a);
    expect(spec.readout).toEqual({ size: a.sizes.outputs, kind: 'ltc' });
    expect(spec.layers[0]).toMatchObject({ neuron: 'ltc', size: 5, recurrent: true, params: { threshold: 'adaptive', b0: 0.2, beta: 1.2 } });
    expect(spec.surrogate).toEqual({ name: 'multi_gaussian', sigma: 0.3, height: 0.15, scale: 6, gamma: 0.5 });
    expect(Object.keys(fixtureParams(a.params)).sort()).toEqual(
      [
        'layers.0.W',
        'layers.0.W_rec',
        'layers.0.alpha_W',
        'layers.0.alpha_b',
        'layers.0.b',
        'layers.0.rho_W',
        'layers.0.rho_b',
        'readout.W',
        'readout.W_kappa',
        'readout.b',
        'readout.b_kappa',
      ].sort(),
    );
    expect(Object.keys(fixtureParams(a.expected.grads))).toEqual(Object.keys(fixtureParams(a.params)));
    const add = fixtureModelSpec(read('ltc_fixed_membrane_add'));
    expect(add.readout).toEqual({ size: 1, from: 'membrane', kappa: 0 });
    expect((add.layers[0] as DenseLayerSpec).params).toEqual({ threshold: 'fixed', theta: 0.4 });
  });

  it('reads a directory of fixtures sorted by name, and refuses a missing directory, bad JSON or a missing key', async () => {
    const all = await readFixtures(fixturesDir);
    expect(all.map((x) => x.file)).toEqual([...all.map((x) => x.file)].sort());
    expect(all.length).toBeGreaterThanOrEqual(8);
    await expect(readFixtures(join(fixturesDir, 'nope'))).rejects.toMatchObject({ code: 'DATA_INVALID' });
    const dir = await mkdtemp(join(tmpdir(), 'sf-fixtures-'));
    await writeFile(join(dir, 'a.json'), '{ not json');
    await expect(readFixtures(dir)).rejects.toThrow(/a\.json is not valid JSON/);
    await writeFile(join(dir, 'a.json'), JSON.stringify({ name: 'x', sizes: {} }));
    const err = await readFixtures(dir).catch((e: unknown) => e);
    expect(isSpikeflowError(err, 'DATA_INVALID')).toBe(true);
    expect((err as Error).message).toMatch(/lacks 'layers'/);
    const empty = await mkdtemp(join(tmpdir(), 'sf-fixtures-'));
    await expect(readFixtures(empty)).rejects.toThrow(/no \*\.json fixture/);
  });

  it('formats a table with one line per fixture and the failures after it', () => {
    const text = formatReports(
      [
        { name: 'a', pass: true, spikeMismatches: 0, errors: { loss: 1e-7, readout: 2e-7, finalState: 0, grads: 3e-6 }, worst: 3e-6, failures: [] },
        {
          name: 'b',
          pass: false,
          spikeMismatches: 2,
          errors: { loss: 1e-2, readout: 0, finalState: 0, grads: 0, tbptt: 0 },
          worst: 1e-2,
          failures: ['loss L: too big'],
        },
      ],
      'cpu',
    );
    expect(text).toMatch(/fixtures on cpu: 1\/2 pass/);
    expect(text).toMatch(/^a\s+PASS\s+same/m);
    expect(text).toMatch(/^b\s+FAIL\s+2 diff/m);
    expect(text).toContain('  b: loss L: too big');
  });
});

describe('toyTask', () => {
  it('is time-major 0/1 spikes with alternating labels, deterministic under its seed', () => {
    const a = toyTask({ steps: 7, batch: 4, seed: 2 });
    const b = toyTask({ steps: 7, batch: 4, seed: 2 });
    expect(a.inputs.shape).toEqual([7, 4, 8]);
    expect(Array.from(a.targets.dataSync())).toEqual([0, 1, 0, 1]);
    expect(Array.from(a.inputs.dataSync())).toEqual(Array.from(b.inputs.dataSync()));
    expect(new Set(a.inputs.dataSync())).toEqual(new Set([0, 1]));
    disposeTree([a, b] as never);
  });
});

import { describe, expect, it } from 'vitest';
import { tf, type Tensor } from './tf.js';
import { builtinSurrogates } from './surrogates.js';
import { applyPools, convCurrent } from './conv.js';
import { isDenseModel, resolveModel, type ModelRegistries } from './model.js';
import { buildNetwork } from './network.js';
import { forward } from './inference.js';
import { fusedWindowSteps } from './fused.js';
import { disposeTree } from './state.js';
import { checkRequirements, type LearningRule } from './rule.js';
import { referenceFusedKernels, errorOf, iaf, useCpuBackend, fusableIaf } from './test-support.js';
import type { AnyNeuronModel } from './neuron.js';
import { ceMean } from './losses.js';

useCpuBackend();

const fusable = fusableIaf;

const reg: ModelRegistries = {
  neurons: new Map<string, AnyNeuronModel>([
    ['iaf', iaf as AnyNeuronModel],
    ['iaf-fused', fusable],
  ]),
  surrogates: builtinSurrogates,
};

const convNet = {
  inputShape: [8, 8, 2],
  layers: [
    { type: 'conv2d', neuron: 'iaf', channels: 4, kernel: 3, stride: 2, padding: 'valid' },
    { type: 'maxpool', size: 2, stride: 1 },
    { type: 'flatten' },
    { neuron: 'iaf', size: 6 },
  ],
  readout: { size: 3 },
};

describe('spatial layers in the model spec', () => {
  it('resolves conv2d, pooling and flatten: shapes by TensorFlow’s rules, pooling folded into what reads it, parameters numbered over the layers with neurons', () => {
    const m = resolveModel(convNet, reg);
    expect(m.inputs).toBe(128);
    expect(m.inputShape).toEqual([8, 8, 2]);
    expect(m.layers.map((l) => [l.index, l.specIndex, l.type, l.size, l.fanIn])).toEqual([
      [0, 0, 'conv2d', 3 * 3 * 4, 3 * 3 * 2],
      [1, 3, 'dense', 6, 2 * 2 * 4],
    ]);
    expect(m.layers[0]!.conv).toMatchObject({ inShape: [8, 8, 2], outShape: [3, 3, 4], kernel: [3, 3], stride: [2, 2], padding: 'valid' });
    expect(m.layers[1]!.pools).toEqual([{ type: 'maxpool', inShape: [3, 3, 4], outShape: [2, 2, 4], size: [2, 2], stride: [1, 1] }]);
    expect(m.readoutPools).toEqual([]);
    expect(m.readoutFanIn).toBe(6);
    expect(isDenseModel(m)).toBe(false);
    // "same": ⌈H/stride⌉, whatever the kernel; pooling right before the readout is the readout's.
    const same = resolveModel(
      {
        inputShape: [7, 5, 1],
        layers: [
          { type: 'conv2d', neuron: 'iaf', channels: 2, kernel: [3, 2], stride: 2, padding: 'same' },
          { type: 'avgpool', size: [2, 3] },
          { type: 'flatten' },
        ],
        readout: { size: 2 },
      },
      reg,
    );
    expect(same.layers[0]!.conv!.outShape).toEqual([4, 3, 2]);
    expect(same.readoutPools.map((p) => p.outShape)).toEqual([[2, 1, 2]]);
    expect(same.readoutFanIn).toBe(4);
  });

  it('creates HWIO conv weights with a bias per channel, and the readout’s rows from what it reads', () => {
    const net = buildNetwork(convNet, reg);
    try {
      const shapes = Object.fromEntries(Object.entries(net.params).map(([k, v]) => [k, v.shape]));
      expect(shapes).toEqual({
        'layers.0.W': [3, 3, 2, 4],
        'layers.0.b': [4],
        'layers.1.W': [16, 6],
        'layers.1.b': [6],
        'readout.W': [6, 3],
        'readout.b': [3],
      });
      // Uniform in ±1/√(kh·kw·C_in).
      expect(tf.max(tf.abs(net.params['layers.0.W']!)).dataSync()[0]).toBeLessThanOrEqual(1 / Math.sqrt(18));
    } finally {
      net.dispose();
    }
  });

  it('refuses specs that do not fit, naming the entry and the way out', () => {
    const at = (layers: unknown[], extra: Record<string, unknown> = {}) =>
      errorOf(() => resolveModel({ inputShape: [6, 6, 2], layers, readout: { size: 2 }, ...extra }, reg));
    const conv = { type: 'conv2d', neuron: 'iaf', channels: 2, kernel: 3 };
    expect(at([conv, { neuron: 'iaf', size: 3 }]).message).toMatch(
      /model\.layers\[1\]\.type: a dense layer reads flat features.*put a \{ "type": "flatten" \} before it/,
    );
    expect(at([{ type: 'flatten' }, conv]).message).toMatch(
      /model\.layers\[1\]\.type: conv2d reads a spatial \[H, W, C\] input, and layers\[0\] gives 72 flat features/,
    );
    expect(errorOf(() => resolveModel({ inputs: 4, layers: [conv], readout: { size: 2 } }, reg)).message).toMatch(/give the model an "inputShape"/);
    expect(at([{ ...conv, kernel: 7 }]).message).toMatch(/model\.layers\[0\]\.kernel: a 7-wide kernel does not fit the input's 6 rows/);
    expect(at([{ ...conv, kernel: [3, 0] }]).message).toMatch(/model\.layers\[0\]\.kernel: expected the kernel size: a positive integer or a pair/);
    expect(at([conv, { type: 'maxpool', size: 2, padding: 'same' }, { type: 'flatten' }]).message).toMatch(
      /model\.layers\[1\]\.padding: pooling takes "valid" windows only/,
    );
    expect(at([conv, { type: 'avgpool', size: 5 }]).message).toMatch(/model\.layers\[1\]\.size: a \[5,5\] window does not fit the input's \[4, 4\]/);
    expect(at([conv]).message).toMatch(/model\.layers: end in a \[4,4,2\] map.*end them with a \{ "type": "flatten" \}/);
    expect(at([{ ...conv, recurrent: true }]).message).toMatch(
      /model\.layers\[0\]\.recurrent: unknown key \(allowed: type, neuron, channels, kernel, stride, padding/,
    );
    expect(at([{ type: 'conv3d' }]).message).toMatch(/model\.layers\[0\]\.type: unknown layer type "conv3d"; did you mean 'conv2d'/);
    expect(at([{ type: 'flatten' }]).message).toMatch(/model\.layers: has no layer with neurons/);
    expect(at([conv, { type: 'flatten' }], { inputs: 70 }).message).toMatch(/model\.inputs: is 70, but inputShape \[6,6,2\] holds 72 features/);
    expect(at([conv, { type: 'flatten' }], { readout: { size: 2, from: 'membrane' } }).message).toMatch(
      /model\.readout\.from: a readout of the membrane reads the last layer directly/,
    );
  });
});

describe('SEW blocks', () => {
  const sewNet = (connect: string, extra: Record<string, unknown> = {}) => ({
    inputShape: [4, 4, 2],
    layers: [{ type: 'sew_block', neuron: 'iaf', connect, ...extra }, { type: 'flatten' }],
    readout: { size: 2 },
  });

  it('resolve to one layer of two same-padded stride-1 convolutions keeping the input’s channels, W, b, W2, b2, a state per stage', () => {
    const net = buildNetwork(sewNet('IAND', { channels: 2, kernel: 3 }), reg);
    try {
      const l = net.model.layers[0]!;
      expect([l.type, l.connect, l.size, l.fanIn]).toEqual(['sew_block', 'IAND', 32, 18]);
      expect(l.conv).toMatchObject({ inShape: [4, 4, 2], outShape: [4, 4, 2], stride: [1, 1], padding: 'same' });
      expect(Object.fromEntries(Object.entries(net.params).map(([k, v]) => [k, v.shape]))).toMatchObject({
        'layers.0.W': [3, 3, 2, 2],
        'layers.0.b': [2],
        'layers.0.W2': [3, 3, 2, 2],
        'layers.0.b2': [2],
      });
      const st = net.init(3);
      expect(Object.keys(st.layers[0]!.neuron).sort()).toEqual(['s1', 's2', 'v1', 'v2']);
      tf.dispose(st as never);
    } finally {
      net.dispose();
    }
    expect(errorOf(() => resolveModel(sewNet('ADD', { channels: 3 }), reg)).message).toMatch(
      /model\.layers\[0\]\.channels: is 3, but the block's input has 2 channels/,
    );
    expect(errorOf(() => resolveModel(sewNet('OR'), reg)).message).toMatch(/model\.layers\[0\]\.connect: must be one of 'ADD', 'IAND', 'AND'/);
    expect(
      errorOf(() => resolveModel({ inputs: 4, layers: [{ type: 'sew_block', neuron: 'iaf', connect: 'ADD' }], readout: { size: 2 } }, reg)).message,
    ).toMatch(/sew_block reads a spatial \[H, W, C\] input/);
  });

  it('connect the second stage’s spikes s2 with the input x: ADD s2 + x, IAND (1 − s2)·x, AND s2·x', () => {
    // One step, so the final state's s2 is the step's; binary input so all three are exact.
    const x = tf.tidy(() => tf.cast(tf.greater(tf.randomUniform([1, 3, 32], 0, 1, 'float32', 5), 0.5), 'float32'));
    for (const connect of ['ADD', 'IAND', 'AND'] as const) {
      const net = buildNetwork(sewNet(connect), reg);
      // Weights large enough that some second-stage neurons fire and some do not.
      net.setParams({
        'layers.0.W': Array.from({ length: 36 }, (_, i) => ((i * 7) % 5) - 1.5),
        'layers.0.W2': Array.from({ length: 36 }, (_, i) => ((i * 3) % 4) - 1.2),
      });
      const out = forward(net, x, { record: true });
      const o = Array.from(out.spikes![0]!.dataSync());
      const s2 = Array.from(out.state.layers[0]!.neuron['s2']!.dataSync());
      const xs = Array.from(x.dataSync());
      expect(new Set(s2)).toEqual(new Set([0, 1]));
      const want = xs.map((xv, i) => (connect === 'ADD' ? s2[i]! + xv : connect === 'IAND' ? (1 - s2[i]!) * xv : s2[i]! * xv));
      expect(o).toEqual(want);
      tf.dispose(out as never);
      net.dispose();
    }
    x.dispose();
  });
});

describe('spatial ops', () => {
  it('convCurrent is tfjs’ conv2d plus the bias on flat activations', () => {
    const x = tf.randomUniform([2, 5 * 5 * 3], 0, 1, 'float32', 1);
    const w = tf.randomUniform([3, 3, 3, 4], -1, 1, 'float32', 2);
    const b = tf.tensor1d([0.1, -0.2, 0.3, 0]);
    const got = convCurrent(x, w, b, { inShape: [5, 5, 3], outShape: [3, 3, 4], kernel: [3, 3], stride: [2, 2], padding: 'same' });
    const want = tf.reshape(tf.add(tf.conv2d(tf.reshape(x, [2, 5, 5, 3]) as tf.Tensor4D, w as tf.Tensor4D, 2, 'same'), b), [2, 36]);
    expect(got.shape).toEqual([2, 36]);
    expect(Array.from(got.dataSync())).toEqual(Array.from(want.dataSync()));
  });

  it('max pooling sends each window’s gradient to its first maximum in row-major order (ties of 0/1 spikes included), overlapping windows adding up', () => {
    // One channel, 3×3, windows 2×2 at stride 1: four overlapping windows.
    const x = tf.tensor2d([[0, 1, 1, 1, 1, 0, 0, 0, 0]]);
    const pool = { type: 'maxpool' as const, inShape: [3, 3, 1] as const, outShape: [2, 2, 1] as const, size: [2, 2] as const, stride: [1, 1] as const };
    const dy = tf.tensor2d([[1, 10, 100, 1000]]);
    const g = tf.grad((t: Tensor) => tf.sum(tf.mul(applyPools(t, [pool]), dy)))(x);
    // Windows (row-major): {0,1,3,4} → first max at 1; {1,2,4,5} → 1; {3,4,6,7} → 3; {4,5,7,8} → 4.
    expect(Array.from(g.dataSync())).toEqual([0, 11, 0, 100, 1000, 0, 0, 0, 0]);
    // An all-zero window sends its gradient to its top-left element; stride 2 on a 4×4 input.
    const z = tf.tensor2d([[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 2, 2, 0, 0, 2, 0]]);
    const strided = { ...pool, inShape: [4, 4, 1] as const, stride: [2, 2] as const };
    const gz = tf.grad((t: Tensor) => tf.sum(tf.mul(applyPools(t, [strided]), dy)))(z);
    expect(Array.from(gz.dataSync())).toEqual([1, 0, 0, 0, 0, 0, 0, 10, 100, 0, 1000, 0, 0, 0, 0, 0]);
    expect(Array.from(applyPools(z, [strided]).dataSync())).toEqual([0, 1, 0, 2]);
  });

  it('sum pooling: each window’s sum times its scale, the gradient that scale on every element of the window; the scale parsed and checked', () => {
    const x = tf.tensor2d([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]]);
    const m = resolveModel(
      { inputShape: [4, 4, 1], layers: [{ type: 'sumpool', size: 2, scale: 1.1 }, { type: 'flatten' }, { neuron: 'iaf', size: 2 }], readout: { size: 2 } },
      reg,
    );
    const pool = m.layers[0]!.pools[0]!;
    expect(pool).toEqual({ type: 'sumpool', inShape: [4, 4, 1], outShape: [2, 2, 1], size: [2, 2], stride: [2, 2], scale: 1.1 });
    // Windows {1,2,5,6}, {3,4,7,8}, {9,10,13,14}, {11,12,15,16}.
    Array.from(applyPools(x, [pool]).dataSync()).forEach((v, i) => expect(v).toBeCloseTo([14, 22, 46, 54][i]! * 1.1, 4));
    const dy = tf.tensor2d([[1, 10, 100, 1000]]);
    const g = tf.grad((t: Tensor) => tf.sum(tf.mul(applyPools(t, [pool]), dy)))(x);
    Array.from(g.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(1.1 * [1, 1, 10, 10, 1, 1, 10, 10, 100, 100, 1000, 1000, 100, 100, 1000, 1000][i]!, 3));
    // The default scale is 1; scale belongs to sumpool only.
    const plain = resolveModel(
      {
        inputShape: [4, 4, 1],
        layers: [{ type: 'conv2d', neuron: 'iaf', channels: 1, kernel: 1 }, { type: 'sumpool', size: 2 }, { type: 'flatten' }],
        readout: { size: 2 },
      },
      reg,
    );
    expect(plain.readoutPools[0]!.scale).toBe(1);
    const at = (layers: unknown[]) => errorOf(() => resolveModel({ inputShape: [4, 4, 1], layers, readout: { size: 2 } }, reg));
    expect(at([{ type: 'sumpool', size: 2, scale: 0 }, { type: 'flatten' }, { neuron: 'iaf', size: 2 }]).message).toMatch(
      /model\.layers\[0\]\.scale: must be > 0/,
    );
    expect(at([{ type: 'avgpool', size: 2, scale: 2 }, { type: 'flatten' }, { neuron: 'iaf', size: 2 }]).message).toMatch(
      /model\.layers\[0\]\.scale: unknown key/,
    );
    tf.dispose([x, dy, g]);
  });

  it('max pooling’s gradient equals a first-maximum reference on random spikes: tiling windows (rows and columns left over) and overlapping ones', () => {
    const cases = [
      { H: 7, W: 5, C: 3, size: [2, 2], stride: [2, 2] },
      { H: 6, W: 6, C: 2, size: [3, 2], stride: [3, 2] },
      { H: 6, W: 7, C: 2, size: [3, 3], stride: [2, 1] },
    ] as const;
    for (const { H, W, C, size, stride } of cases) {
      const Ho = Math.floor((H - size[0]) / stride[0]) + 1;
      const Wo = Math.floor((W - size[1]) / stride[1]) + 1;
      const g = { type: 'maxpool' as const, inShape: [H, W, C] as const, outShape: [Ho, Wo, C] as const, size, stride };
      const x = tf.tidy(() => tf.cast(tf.greater(tf.randomUniform([2, H * W * C], 0, 1, 'float32', H + W), 0.6), 'float32'));
      const dy = tf.randomUniform([2, Ho * Wo * C], -1, 1, 'float32', 9);
      const got = tf
        .grad((t: Tensor) => tf.sum(tf.mul(applyPools(t, [g]), dy)))(x)
        .dataSync();
      const xv = x.dataSync();
      const dv = dy.dataSync();
      const want = new Float32Array(xv.length);
      const at = (b: number, r: number, c: number, ch: number) => ((b * H + r) * W + c) * C + ch;
      for (let b = 0; b < 2; b++)
        for (let i = 0; i < Ho; i++)
          for (let j = 0; j < Wo; j++)
            for (let ch = 0; ch < C; ch++) {
              let best = at(b, i * stride[0], j * stride[1], ch);
              for (let p = 0; p < size[0]; p++)
                for (let q = 0; q < size[1]; q++) {
                  const k = at(b, i * stride[0] + p, j * stride[1] + q, ch);
                  if (xv[k]! > xv[best]!) best = k;
                }
              want[best]! += dv[((b * Ho + i) * Wo + j) * C + ch]!;
            }
      const worst = Math.max(...Array.from(got, (v, i) => Math.abs(v - want[i]!)));
      expect(worst, `${H}×${W}, size ${size}, stride ${stride}`).toBeLessThan(1e-6);
    }
  });
});

describe('rules and spatial layers', () => {
  const rule = (denseLayers: boolean): LearningRule => ({
    name: 'dense-only',
    memory: 'O(1)',
    gradient: 'exact',
    requires: { denseLayers },
    init: () => ({}) as never,
    update: (_b, s) => ({ state: s, report: { loss: 0, updates: 0 } }),
  });

  it('a rule that declares denseLayers refuses a conv network, naming the first spatial entry; BPTT-style rules need not', () => {
    const net = buildNetwork(convNet, reg);
    try {
      const e = errorOf(() => checkRequirements(rule(true), net, ceMean));
      expect(e.code).toBe('INCOMPATIBLE');
      expect(e.message).toMatch(/rule 'dense-only' cannot train this run: model\.layers\[0\]\.type: it trains dense layers only, and this is a conv2d layer/);
      expect(() => checkRequirements(rule(false), net, ceMean)).not.toThrow();
    } finally {
      net.dispose();
    }
  });

  /** Readout, spikes, final state and the gradient of Σ y² of `spec` from `x`, through the fused kernels or step by step. */
  function run(spec: object, x: Tensor, fused: boolean, params?: Record<string, Tensor>) {
    const net = buildNetwork(spec, reg, fused ? { kernels: referenceFusedKernels(), seed: 7 } : { seed: 7 });
    if (params) net.setParams(params);
    expect(net.fused).toBe(fused);
    const [T, B] = x.shape as [number, number];
    const names = new Map(Object.entries(net.params).map(([k, v]) => [v.name, k]));
    const { value, grads: byVariable } = tf.variableGrads(() => {
      const p = net.prepare();
      if (fused) {
        const o = net.runWindow(p, net.init(B), x);
        return tf.sum(tf.mul(o.readout, o.readout)) as tf.Scalar;
      }
      let s = net.init(B);
      const ys: Tensor[] = [];
      for (let t = 0; t < T; t++) {
        const o = net.step(p, s, tf.squeeze(tf.slice(x, [t, 0, 0], [1, -1, -1]), [0]));
        ys.push(o.readout);
        s = o.state;
      }
      return tf.sum(tf.mul(tf.stack(ys), tf.stack(ys))) as tf.Scalar;
    }, Object.values(net.params));
    const grads = Object.fromEntries(Object.entries(byVariable).map(([k, g]) => [names.get(k)!, g]));
    const out = forward(net, x, { record: true });
    return { net, value, grads, out };
  }

  const fusedSpecs = {
    'conv2d, overlapping max pooling, flatten, dense': {
      ...convNet,
      layers: convNet.layers.map((l) => ('neuron' in l ? { ...l, neuron: 'iaf-fused' } : l)),
    },
    'a SEW block (IAND) between conv2d and an average-pooled readout': {
      inputShape: [6, 6, 2],
      layers: [
        { type: 'conv2d', neuron: 'iaf-fused', channels: 3, kernel: 3, padding: 'same' },
        { type: 'sew_block', neuron: 'iaf-fused', connect: 'IAND' },
        { type: 'avgpool', size: 2 },
        { type: 'flatten' },
      ],
      readout: { size: 3 },
    },
  };

  it('explicit zero padding ([rows, columns] on both sides, PyTorch’s padding=p): the geometry, and on 3×3 and 5×5 kernels at stride 1 the values and gradients of TensorFlow’s "same" (which pads 1 and 2)', () => {
    const geom = (padding: unknown, kernel: unknown = 3, stride: unknown = 1) =>
      resolveModel(
        { inputShape: [7, 6, 2], layers: [{ type: 'conv2d', neuron: 'iaf', channels: 4, kernel, stride, padding }, { type: 'flatten' }], readout: { size: 2 } },
        reg,
      ).layers[0]!.conv!;
    expect(geom([1, 2]).outShape).toEqual([7, 8, 4]);
    expect(geom(2, 5, 2).outShape).toEqual([4, 3, 4]);
    expect(geom(0).padding).toBe('valid');
    expect(geom(1).padding).toEqual([1, 1]);
    const at = (padding: unknown, kernel = 3) =>
      errorOf(() =>
        resolveModel(
          { inputShape: [3, 3, 1], layers: [{ type: 'conv2d', neuron: 'iaf', channels: 1, kernel, padding }, { type: 'flatten' }], readout: { size: 2 } },
          reg,
        ),
      ).message;
    expect(at(-1)).toMatch(/model\.layers\[0\]\.padding: expected "valid", "same", or zeros on both sides: a non-negative integer or a pair \[rows, columns\]/);
    expect(at('full')).toMatch(/model\.layers\[0\]\.padding: expected "valid", "same"/);
    expect(at(1, 6)).toMatch(/model\.layers\[0\]\.kernel: a 6-wide kernel does not fit the input's 3 rows padded by 1 on each side/);
    for (const k of [3, 5]) {
      const spec = (padding: unknown) => ({
        inputShape: [6, 5, 2],
        layers: [{ type: 'conv2d', neuron: 'iaf-fused', channels: 3, kernel: k, padding }, { type: 'avgpool', size: 2 }, { type: 'flatten' }],
        readout: { size: 3 },
      });
      const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([4, 2, 60], 0, 1, 'float32', 5), 0.5), 'float32'));
      for (const fused of [true, false]) {
        const same = run(spec('same'), x, fused);
        const explicit = run(spec((k - 1) / 2), x, fused, same.net.params);
        try {
          expect(explicit.net.model.layers[0]!.conv!.padding).toEqual([(k - 1) / 2, (k - 1) / 2]);
          expect(Array.from(explicit.out.readout.dataSync())).toEqual(Array.from(same.out.readout.dataSync()));
          expect(same.value.dataSync()[0]).toBeGreaterThan(0);
          for (const [name, g] of Object.entries(same.grads)) {
            const e = explicit.grads[name]!.dataSync();
            g.dataSync().forEach((v, i) => expect(e[i], `${k}×${k} ${fused ? 'fused' : 'stepped'} ${name}[${i}]`).toBeCloseTo(v, 5));
          }
        } finally {
          for (const r of [same, explicit]) {
            disposeTree([r.value, r.grads, r.out]);
            r.net.dispose();
          }
        }
      }
      x.dispose();
    }
  });

  for (const [name, spec] of Object.entries(fusedSpecs)) {
    it(`a network of spatial layers runs fused, each op over the window's T·B images, with the values and gradients of its steps: ${name}`, () => {
      const [H, W, C] = spec.inputShape;
      const x = tf.tidy(() => tf.cast(tf.less(tf.randomUniform([5, 2, H! * W! * C!], 0, 1, 'float32', 3), 0.4), 'float32'));
      const a = run(spec, x, true);
      const b = run(spec, x, false, a.net.params);
      try {
        expect(b.value.dataSync()[0]).toBeGreaterThan(0);
        expect(a.value.dataSync()[0]).toBeCloseTo(b.value.dataSync()[0]!, 4);
        expect(Object.keys(a.grads).sort()).toEqual(Object.keys(b.grads).sort());
        for (const [k, g] of Object.entries(b.grads)) {
          const want = g.dataSync();
          const scale = Math.max(1e-6, ...Array.from(want, Math.abs));
          expect(scale, `${k} has a gradient`).toBeGreaterThan(1e-6);
          a.grads[k]!.dataSync().forEach((v, i) => expect(Math.abs(v - want[i]!) / scale, k).toBeLessThan(1e-5));
        }
        expect(Array.from(a.out.readout.dataSync())).toEqual(Array.from(b.out.readout.dataSync()));
        a.out.spikes!.forEach((s, l) => expect(Array.from(s.dataSync()), `spikes of layer ${l}`).toEqual(Array.from(b.out.spikes![l]!.dataSync())));
        const [sa, sb] = [a.out.state.layers, b.out.state.layers];
        sa.forEach((layer, l) => {
          expect(Object.keys(layer.neuron).sort()).toEqual(Object.keys(sb[l]!.neuron).sort());
          for (const [key, t] of Object.entries(layer.neuron))
            expect(Array.from(t.dataSync()), `${key} of layer ${l}`).toEqual(Array.from(sb[l]!.neuron[key]!.dataSync()));
          expect(Array.from(layer.spikes.dataSync())).toEqual(Array.from(sb[l]!.spikes.dataSync()));
        });
      } finally {
        for (const r of [a, b]) {
          tf.dispose([r.value, ...Object.values(r.grads)]);
          disposeTree(r.out);
          r.net.dispose();
        }
        x.dispose();
      }
    });
  }

  it('inference of a conv network runs in windows short enough for its activations', () => {
    const spec = { ...fusedSpecs['conv2d, overlapping max pooling, flatten, dense'] };
    const net = buildNetwork(spec, reg, { kernels: referenceFusedKernels() });
    try {
      // conv2d: 3·3·4 = 36 neurons, the widest layer: four [k, B, 36] float32 arrays in 512 MiB.
      expect(fusedWindowSteps(net.model, 2, 1024)).toBe(1024);
      expect(fusedWindowSteps(net.model, 1 << 16, 1024)).toBe(Math.floor((512 << 20) / (16 * (1 << 16) * 36)));
      expect(fusedWindowSteps(net.model, 1 << 24, 1024)).toBe(1);
      const dense = buildNetwork({ inputs: 4, layers: [{ neuron: 'iaf-fused', size: 3 }], readout: { size: 2 } }, reg);
      expect(fusedWindowSteps(dense.model, 1 << 24, 1024)).toBe(1024);
      dense.dispose();
    } finally {
      net.dispose();
    }
  });
});

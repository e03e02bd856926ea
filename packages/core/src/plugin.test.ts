import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { tf, type Tensor } from './tf.js';
import { isSpikeflowError, type SpikeflowError } from './errors.js';
import { builtinSurrogates, triangle, type SurrogateEntry } from './surrogates.js';
import { builtinLosses, mseLast, type TemporalLoss } from './losses.js';
import { referenceKernels } from './kernels.js';
import type { Backend } from './backend.js';
import { ruleFromSpec, type RuleEntry } from './rule.js';
import type { DatasetEntry } from './dataset.js';
import {
  Tokens,
  createContainer,
  createRegistry,
  definePlugin,
  loadPlugins,
  checkStoredPlugins,
  registerPlugin,
  resolveRegistry,
  token,
  validatePlugin,
  validatingDatasetEntry,
  validatingRuleEntry,
  type SpikeflowPlugin,
} from './plugin.js';
import { errorOf, iaf, rejection } from './test-support.js';

const meta = (name: string) => ({ name, version: '1.0.0' });
const fastDense = (x: Tensor, w: Tensor) => tf.matMul(x, w);
const rule: RuleEntry = {
  name: 'noop',
  description: 'does nothing (test rule)',
  optionsSchema: {},
  create: () => ({
    name: 'noop',
    memory: 'O(1)',
    gradient: 'exact',
    requires: {},
    init: () => null,
    update: (_b, s) => ({ state: s, report: { loss: 0, updates: 0 } }),
  }),
};
const backend: Backend = {
  name: 'fake',
  description: 'fake backend (test)',
  isAvailable: async () => true,
  activate: async () => {},
  describe: () => ({ tfBackend: 'fakebackend', device: 'none', threads: 1, details: {} }),
  kernels: [{ kernel: 'spikeflow.dense', backend: 'fakebackend', impl: fastDense }],
};

describe('validatePlugin', () => {
  it('refuses a default export that is not a plain object', () => {
    const cases: [unknown, RegExp][] = [
      [undefined, /^plugin 'pkg': the default export is missing, not a plugin object/],
      [42, /the default export is a number, not a plugin object/],
      ['plugin', /the default export is a string, not a plugin object/],
      [() => ({}), /the default export is a function, not a plugin object/],
      [[meta('x')], /not a plugin object/],
      [null, /not a plugin object/],
    ];
    for (const [value, message] of cases) {
      const e = errorOf(() => validatePlugin(value, 'pkg'));
      expect(e.code).toBe('PLUGIN_INVALID');
      expect(e.details['package']).toBe('pkg');
      expect(e.message).toMatch(message);
      expect(e.message).toContain('A plugin default-exports { meta: { name, version }');
    }
  });

  it('refuses a missing or malformed meta', () => {
    for (const value of [{ neurons: [] }, { meta: { name: 'x' } }, { meta: { name: 'x', version: 1 } }, { meta: 'x' }]) {
      const e = errorOf(() => validatePlugin(value, 'pkg'));
      expect(e.code).toBe('PLUGIN_INVALID');
      expect(e.message).toMatch(/^plugin 'pkg': meta must be \{ name: string, version: string \}/);
    }
  });

  it('refuses an unknown key, suggesting the closest', () => {
    const e = errorOf(() => validatePlugin({ meta: meta('p'), nuerons: [] }, 'p'));
    expect(e.code).toBe('PLUGIN_INVALID');
    expect(e.message).toMatch(
      /unknown key 'nuerons' \(did you mean 'neurons'\?\); allowed: meta, neurons, readouts, rules, backends, datasets, surrogates, losses, kernels, exporters/,
    );
    const far = errorOf(() => validatePlugin({ meta: meta('p'), install: () => {} }, 'p'));
    expect(far.message).toMatch(/unknown key 'install'; allowed:/);
  });

  it('refuses a provided list that is not an array, or items without a name', () => {
    expect(errorOf(() => validatePlugin({ meta: meta('p'), neurons: iaf }, 'p')).message).toMatch(/'neurons' must be an array/);
    expect(errorOf(() => validatePlugin({ meta: meta('p'), losses: {} }, 'p')).message).toMatch(/'losses' must be an array/);
    expect(errorOf(() => validatePlugin({ meta: meta('p'), neurons: [iaf, { description: 'x' }] }, 'p')).message).toMatch(
      /neurons\[1\] must be an object with a string 'name'/,
    );
    expect(errorOf(() => validatePlugin({ meta: meta('p'), rules: ['bptt'] }, 'p')).message).toMatch(/rules\[0\] must be an object/);
    // Kernel registrations are named by `kernel`, not `name`.
    expect(() => validatePlugin({ meta: meta('p'), kernels: [{ kernel: 'spikeflow.dense', backend: 'cpu', impl: fastDense }] }, 'p')).not.toThrow();
    expect(errorOf(() => validatePlugin({ meta: meta('p'), kernels: [{ backend: 'cpu' }] }, 'p')).message).toMatch(/kernels\[0\]/);
  });

  it('returns a valid plugin as is', () => {
    const p = definePlugin({ meta: meta('p'), neurons: [iaf], losses: [], surrogates: builtinSurrogates.slice(0, 1) });
    expect(validatePlugin(p, 'p')).toBe(p);
    const minimal = { meta: meta('m') };
    expect(validatePlugin(minimal, 'm')).toBe(minimal);
  });
});

describe('registry', () => {
  it('includes the builtin surrogates and losses, and the plugins’ contents by name', () => {
    const extraSurrogate: SurrogateEntry = { name: 'boxcar', schema: {}, create: () => triangle() };
    const extraLoss: TemporalLoss = { ...mseLast, name: 'mse_final' };
    const p = definePlugin({
      meta: meta('@test/all'),
      neurons: [iaf],
      rules: [rule],
      backends: [backend],
      surrogates: [extraSurrogate],
      losses: [extraLoss],
      kernels: [{ kernel: 'spikeflow.dense', backend: 'other', impl: fastDense }],
    });
    const r = createRegistry([p]);
    expect(r.plugins).toEqual([p]);
    expect([...r.neurons.keys()]).toEqual(['iaf']);
    expect(r.neurons.get('iaf')).toBe(iaf);
    expect(r.rules.get('noop')).toMatchObject({ name: 'noop', description: rule.description, optionsSchema: rule.optionsSchema });
    expect(r.backends.get('fake')).toBe(backend);
    expect([...r.surrogates.keys()]).toEqual([...builtinSurrogates.map((s) => s.name), 'boxcar']);
    expect([...r.losses.keys()]).toEqual([...builtinLosses.map((l) => l.name), 'mse_final']);
    expect(r.datasets.size).toBe(0);
    expect(r.exporters.size).toBe(0);
    // Kernels of plugins and of backends, each for its own tfjs backend.
    expect(r.kernels.get('spikeflow.dense', 'other')).toBe(fastDense);
    expect(r.kernels.get('spikeflow.dense', 'fakebackend')).toBe(fastDense);
    expect(r.kernels.get('spikeflow.dense', 'cpu')).toBe(referenceKernels['spikeflow.dense']);
  });

  it('with no plugins: only the builtins', () => {
    const r = createRegistry([]);
    expect(r.plugins).toEqual([]);
    expect(r.neurons.size).toBe(0);
    expect([...r.surrogates.keys()]).toEqual(['fast_sigmoid', 'sigmoid', 'arctan', 'triangle', 'multi_gaussian']);
    expect([...r.losses.keys()]).toEqual(['ce_mean', 'ce_every_step', 'mse_every_step', 'mse_last', 'ce_mse_every_step']);
  });

  it('two plugins providing one neuron name: PLUGIN_CONFLICT naming both plugins', () => {
    const a = definePlugin({ meta: meta('@test/neuron-a'), neurons: [iaf] });
    const b = definePlugin({ meta: meta('@test/neuron-b'), neurons: [{ ...iaf, description: 'another iaf' }] });
    const e = errorOf(() => createRegistry([a, b]));
    expect(e.code).toBe('PLUGIN_CONFLICT');
    expect(e.details['name']).toBe('iaf');
    expect(e.message).toBe("neuron 'iaf' is provided by both '@test/neuron-a' and '@test/neuron-b'; load only one of them");
  });

  it('a plugin surrogate or loss clashing with a builtin names @spikeflow/core', () => {
    const s = definePlugin({ meta: meta('@test/s'), surrogates: [{ ...builtinSurrogates[1]! }] });
    expect(errorOf(() => createRegistry([s])).message).toBe("surrogate 'sigmoid' is provided by both '@spikeflow/core' and '@test/s'; load only one of them");
    const l = definePlugin({ meta: meta('@test/l'), losses: [{ ...mseLast }] });
    expect(errorOf(() => createRegistry([l])).code).toBe('PLUGIN_CONFLICT');
  });

  it('the same item provided twice is not a conflict', () => {
    const a = definePlugin({ meta: meta('a'), neurons: [iaf] });
    const b = definePlugin({ meta: meta('b'), neurons: [iaf] });
    expect(createRegistry([a, b]).neurons.get('iaf')).toBe(iaf);
  });

  it('validates the plugins it is given', () => {
    const e = errorOf(() => createRegistry([{ meta: meta('bad'), neuron: [iaf] } as unknown as SpikeflowPlugin]));
    expect(e.code).toBe('PLUGIN_INVALID');
    expect(e.message).toMatch(/^plugin 'bad': unknown key 'neuron' \(did you mean 'neurons'\?\)/);
  });

  it('a kernel registration for an unknown kernel is refused', () => {
    const p = { meta: meta('k'), kernels: [{ kernel: 'spikeflow.conv', backend: 'cpu', impl: fastDense }] } as unknown as SpikeflowPlugin;
    const e = errorOf(() => createRegistry([p]));
    expect(e.code).toBe('UNKNOWN_NAME');
    expect(e.message).toMatch(
      /kernel 'spikeflow\.conv' is not a spikeflow kernel \(known: spikeflow\.dense, spikeflow\.eventDense, spikeflow\.eventConv2d, spikeflow\.maxPool, spikeflow\.integrateFireSequence, spikeflow\.leakyScan, spikeflow\.integrateFireLayer, spikeflow\.leakyReadout, spikeflow\.outerSum, spikeflow\.integrateFireEligibility, spikeflow\.decayedSum, spikeflow\.adamMoments, spikeflow\.fpttPull, spikeflow\.fpttAnchor, spikeflow\.fpttAdamStep, spikeflow\.spikeTimingSequence, spikeflow\.ltcStep\)/,
    );
  });
});

describe('registry entries validate their options', () => {
  const made: unknown[] = [];
  const windowed: RuleEntry = {
    name: 'windowed',
    description: 'records its options (test rule)',
    optionsSchema: {
      truncation: { type: 'number', integer: true, min: 1 },
      mode: { type: 'string', oneOf: ['accumulate', 'per-window'], default: 'accumulate' },
    },
    create: (options) => {
      made.push(options);
      return rule.create({});
    },
  };
  const opened: unknown[] = [];
  const data: DatasetEntry = {
    name: 'toy',
    description: 'records its options (test dataset)',
    optionsSchema: { steps: { type: 'number', integer: true, min: 2, default: 10 } },
    open: async (options) => {
      opened.push(options);
      throw new Error('not opened in this test');
    },
    formats: ['toy'],
    detect: async () => 'toy',
  };
  const registry = createRegistry([definePlugin({ meta: meta('@test/validating'), rules: [windowed], datasets: [data] })]);

  it('rules.get(name).create parses: defaults filled, a bad value is CONFIG_INVALID naming rule.<field>', () => {
    const entry = registry.rules.get('windowed')!;
    made.length = 0;
    entry.create({ truncation: 5 });
    expect(made).toEqual([{ truncation: 5, mode: 'accumulate' }]);
    const e = errorOf(() => entry.create({ truncation: 0 }));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.details.path).toBe('rule.truncation');
    expect(e.message).toBe('rule.truncation: must be >= 1, got 0');
    expect(errorOf(() => entry.create({ mode: 'online' })).message).toBe("rule.mode: must be one of 'accumulate', 'per-window', got 'online'");
    expect(errorOf(() => entry.create({ truncaton: 5 })).details.path).toBe('rule.truncaton');
    expect(made).toHaveLength(1); // nothing bad reached the factory
  });

  it('ruleFromSpec still names its own path (the entry parses parsed options again, unchanged)', () => {
    made.length = 0;
    ruleFromSpec({ name: 'windowed', truncation: 3 }, registry.rules, 'rules[1]');
    expect(made).toEqual([{ truncation: 3, mode: 'accumulate' }]);
    expect(errorOf(() => ruleFromSpec({ name: 'windowed', truncation: 1.5 }, registry.rules, 'rules[1]')).details.path).toBe('rules[1].truncation');
  });

  it('datasets.get(name).open parses: a bad value rejects with CONFIG_INVALID naming data.<field>; the rest of the entry is kept', async () => {
    const entry = registry.datasets.get('toy')!;
    opened.length = 0;
    const e = await rejection(entry.open({ steps: 1 }, { cacheDir: '/nonexistent' }));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.details.path).toBe('data.steps');
    expect(e.message).toBe('data.steps: must be >= 2, got 1');
    expect((await rejection(entry.open({ step: 3 }, { cacheDir: '/nonexistent' }))).message).toMatch(/^data\.step: unknown key; did you mean 'steps'\?/);
    expect(opened).toEqual([]);
    await expect(entry.open({}, { cacheDir: '/nonexistent' })).rejects.toThrow('not opened in this test');
    expect(opened).toEqual([{ steps: 10 }]);
    expect(entry.formats).toEqual(['toy']);
    expect(await entry.detect!('x')).toBe('toy');
    expect(entry.description).toBe(data.description);
  });

  it('wraps each entry once: a registry built from another registry’s plugins hands out equivalent entries', () => {
    expect(validatingRuleEntry(registry.rules.get('windowed')!)).toBe(registry.rules.get('windowed'));
    expect(validatingDatasetEntry(registry.datasets.get('toy')!)).toBe(registry.datasets.get('toy'));
    const again = createRegistry(registry.plugins);
    expect(again.rules.get('windowed')!.optionsSchema).toBe(windowed.optionsSchema);
  });
});

describe('container', () => {
  it('token() makes distinct symbols that keep their description', () => {
    const a = token<number>('spikeflow.test');
    const b = token<number>('spikeflow.test');
    expect(typeof a).toBe('symbol');
    expect(a.description).toBe('spikeflow.test');
    expect(a).not.toBe(b);
    expect(Tokens.neurons.description).toBe('spikeflow.neuron');
  });

  it('registerPlugin + resolveRegistry round trip; containers are independent', () => {
    const p = definePlugin({ meta: meta('@test/round-trip'), neurons: [iaf], rules: [rule] });
    const c = createContainer();
    registerPlugin(c, p);
    const r = resolveRegistry(c);
    expect(r.plugins).toEqual([p]);
    expect(r.neurons.get('iaf')).toBe(iaf);
    expect(r.rules.get('noop')).toMatchObject({ name: 'noop', description: rule.description, optionsSchema: rule.optionsSchema });
    expect(c.resolveAll(Tokens.neurons)).toEqual([iaf]);
    const other = createContainer();
    const empty = resolveRegistry(other);
    expect(empty.plugins).toEqual([]);
    expect(empty.neurons.size).toBe(0);
    expect(empty.surrogates.size).toBe(builtinSurrogates.length);
  });

  it('a child container sees its parent’s registrations', () => {
    const parent = createContainer();
    registerPlugin(parent, definePlugin({ meta: meta('parent'), neurons: [iaf] }));
    const child = createContainer(parent);
    expect(resolveRegistry(child).neurons.get('iaf')).toBe(iaf);
    expect(createRegistry([], parent).neurons.get('iaf')).toBe(iaf);
  });
});

describe('loadPlugins', () => {
  let dir = '';
  const pkg = (name: string, files: Record<string, string>, main = 'index.mjs', keywords: string[] = ['spikeflow-plugin']) => {
    const root = join(dir, 'node_modules', name);
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, 'package.json'), JSON.stringify({ name, version: '1.0.0', main, keywords }));
    for (const [f, text] of Object.entries(files)) writeFileSync(join(root, f), text);
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'spikeflow-plugins-'));
    pkg('sf-good', { 'index.mjs': "export default { meta: { name: 'sf-good', version: '1.0.0' }, losses: [] };" });
    pkg('sf-no-default', { 'index.mjs': 'export const x = 1;' });
    pkg('sf-bad-key', { 'index.mjs': "export default { meta: { name: 'sf-bad-key', version: '1' }, neuron: [] };" });
    pkg('sf-unbuilt', {}, 'dist/index.js');
    pkg('@scope/sf-scoped', { 'index.mjs': "export default { meta: { name: '@scope/sf-scoped', version: '1.0.0' } };" });
    pkg('not-a-plugin', { 'index.mjs': "throw new Error('imported!');" }, 'index.mjs', ['utility']);
    pkg('sf-renamed', { 'index.mjs': '' });
    writeFileSync(join(dir, 'node_modules', 'sf-renamed', 'package.json'), JSON.stringify({ name: 'other-name', keywords: ['spikeflow-plugin'] }));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a package that is not installed: PLUGIN_NOT_FOUND naming it and the install command', async () => {
    const e = await rejection(loadPlugins(['@spikeflow/definitely-not-installed']));
    expect(e.code).toBe('PLUGIN_NOT_FOUND');
    expect(e.details['package']).toBe('@spikeflow/definitely-not-installed');
    expect(e.details['install']).toBe('pnpm add @spikeflow/definitely-not-installed');
    expect(e.message).toContain("plugin package '@spikeflow/definitely-not-installed' is not installed");
    expect(e.message).toContain('pnpm add @spikeflow/definitely-not-installed');
    expect(e.message).toContain(`looked from ${process.cwd()}`);
    expect(e.cause).toBeDefined();
  });

  it('an empty or non-string name is CONFIG_INVALID at plugins', async () => {
    const e = await rejection(loadPlugins(['']));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.details.path).toBe('plugins');
    expect((await rejection(loadPlugins([3 as unknown as string]))).code).toBe('CONFIG_INVALID');
  });

  it('loads and validates installed packages, resolved from the given directory or URL', async () => {
    const [p] = await loadPlugins(['sf-good'], { from: dir });
    expect(p!.meta).toEqual({ name: 'sf-good', version: '1.0.0' });
    const [q] = await loadPlugins(['sf-good'], { from: `${dir}/` });
    expect(q!.meta.name).toBe('sf-good');
    const [u] = await loadPlugins(['sf-good'], { from: pathToFileURL(`${dir}/`) });
    expect(u!.meta.name).toBe('sf-good');
    expect(await loadPlugins([], { from: dir })).toEqual([]);
    // Not visible from the working directory.
    expect((await rejection(loadPlugins(['sf-good']))).code).toBe('PLUGIN_NOT_FOUND');
  });

  it('an installed package whose default export is not a plugin is PLUGIN_INVALID naming the package', async () => {
    const none = await rejection(loadPlugins(['sf-no-default'], { from: dir }));
    expect(none.code).toBe('PLUGIN_INVALID');
    expect(none.details['package']).toBe('sf-no-default');
    expect(none.message).toMatch(/^plugin 'sf-no-default': the default export is missing/);
    const badKey = await rejection(loadPlugins(['sf-good', 'sf-bad-key'], { from: dir }));
    expect(badKey.message).toMatch(/^plugin 'sf-bad-key': unknown key 'neuron' \(did you mean 'neurons'\?\)/);
  });

  it('checkStoredPlugins: a file may name plugins only by installed package name; every refusal is named, nothing is resolved or imported', async () => {
    mkdirSync(join(dir, 'sub', 'deeper'), { recursive: true });
    const o = { from: [join(dir, 'sub', 'deeper'), tmpdir()], source: 'checkpoint x.sfck', instead: 'pass --plugins' };
    expect(checkStoredPlugins(['sf-good', '@scope/sf-scoped'], o)).toEqual([
      { name: 'sf-good', from: join(dir, 'sub', 'deeper') },
      { name: '@scope/sf-scoped', from: join(dir, 'sub', 'deeper') },
    ]);
    // Looked for from each base in turn; the one it is found from is returned, to load it from there.
    expect(checkStoredPlugins(['sf-good'], { ...o, from: [tmpdir(), pathToFileURL(join(dir, 'x.json'))] })).toEqual([{ name: 'sf-good', from: dir }]);
    const cases: [unknown, RegExp][] = [
      ['./plugin.mjs', /'\.\/plugin\.mjs' is a path/],
      ['../plugin.mjs', /is a path/],
      ['/abs/plugin.mjs', /is a path/],
      ['~/plugin.mjs', /is a path/],
      ['C:\\plugins\\p.mjs', /is a path/],
      ['C:/plugins/p.mjs', /is a path/],
      ['dir\\p.mjs', /is a path/],
      ['file:///tmp/p.mjs', /is a URL/],
      ['https://example.com/p.mjs', /is a URL/],
      ['data:text/javascript,export default 1', /is a URL/],
      ['node:fs', /is a URL/],
      ['fs', /Node\.js built-in module/],
      ['sf-good/index.mjs', /not a package name \(a plugin is named by its package, with no subpath\)/],
      ['SF-Good', /not a package name/],
      ['', /"" is not a package name/],
      [3, /3 is not a package name/],
      ['sf-missing', /'sf-missing' is not an installed package \(looked from .*sub.deeper, .*\); install it \(pnpm add sf-missing\)/],
      ['not-a-plugin', /installed but is not a spikeflow plugin package \(its package\.json lacks the keyword 'spikeflow-plugin'\)/],
      ['sf-renamed', /installed at .* under another name \("other-name"\)/],
    ];
    for (const [spec, message] of cases) {
      let err: unknown;
      try {
        checkStoredPlugins(['sf-good', spec], o);
      } catch (e) {
        err = e;
      }
      expect(isSpikeflowError(err, 'PLUGIN_REFUSED'), String(spec)).toBe(true);
      expect((err as SpikeflowError).message, String(spec)).toMatch(message);
      expect((err as SpikeflowError).message).toMatch(
        /^checkpoint x\.sfck names plugins that are loaded only by installed package name: .*Nothing was imported\. If you trust this file, pass --plugins\.$/s,
      );
      expect((err as SpikeflowError).details['specifiers']).toEqual([spec]);
    }
    expect(() => checkStoredPlugins('sf-good', o)).toThrow(/its plugin list is "sf-good", not a list of package names/);
    // All refusals at once.
    expect(() => checkStoredPlugins(['./a.mjs', 'sf-missing'], o)).toThrow(/'\.\/a\.mjs' is a path.*; 'sf-missing' is not an installed package/s);
  });

  it('an installed package without its entry point asks whether it is built', async () => {
    const e = await rejection(loadPlugins(['sf-unbuilt'], { from: dir }));
    expect(e.code).toBe('PLUGIN_INVALID');
    expect(e.details['package']).toBe('sf-unbuilt');
    expect(e.message).toMatch(/^plugin package 'sf-unbuilt' is installed \(.*sf-unbuilt[/\\]package\.json\) but its entry point is missing: is it built\?/);
  });
});

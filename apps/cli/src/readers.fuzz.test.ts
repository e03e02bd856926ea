import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import {
  createRegistry,
  disposeTree,
  encodeCheckpoint,
  lossFromSpec,
  optimizerFromSpec,
  parseRunConfig,
  parseRunMeta,
  parseSchema,
  readCheckpointMeta,
  loadCheckpoint,
  resolveModel,
  ruleFromSpec,
  tf,
  type Registry,
} from '@spikeflow/core';
import { fuzzReader, mutate, mutatedBytes, mutatedText, mutation } from '@spikeflow/testing';
import { readConfigFile } from './files.js';
import { installedPluginNames, loadFrom } from './plugins.js';

/**
 * The readers of the files a user hands the CLI: checkpoints (`eval`, `train --resume`) and run
 * configs (JSON and YAML). Mutated, truncated and random inputs; anything but success or a
 * SpikeflowError fails (see @spikeflow/testing's fuzzReader).
 */

const configsDir = fileURLToPath(new URL('../configs/', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'spikeflow-fuzz-'));
let n = 0;
const file = (ext: string, data: Uint8Array | string) => {
  const p = join(dir, `case-${n++ % 64}${ext}`);
  writeFileSync(p, data);
  return p;
};
let registry: Registry;

beforeAll(async () => {
  await tf.setBackend('cpu');
  registry = createRegistry(await loadFrom(installedPluginNames(), process.cwd()));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** What `train` checks of a config before it allocates anything: its shape, then every section against the installed plugins. */
function checkConfig(raw: unknown): void {
  const config = parseRunConfig(raw);
  const entry = registry.datasets.get(config.data.name);
  if (entry) {
    const { name: _n, ...options } = config.data;
    parseSchema(entry.optionsSchema, options, 'data');
  }
  resolveModel(
    { ...config.model, inputs: config.model.inputs ?? 3, readout: { ...config.model.readout, size: config.model.readout.size ?? 2 } },
    { neurons: registry.neurons, surrogates: registry.surrogates.values() },
  );
  ruleFromSpec(config.rule, registry.rules, 'rule');
  if (config.loss !== undefined) lossFromSpec(config.loss, registry.losses, 'loss');
  optimizerFromSpec(config.optimizer, 'optimizer');
}

describe('run configs', () => {
  const json = readdirSync(configsDir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => readFileSync(join(configsDir, f), 'utf8'));
  const yaml = json.map((t) => toYaml(JSON.parse(t)));

  it('JSON: read and checked, or refused with a SpikeflowError', async () => {
    await fuzzReader('run config (JSON)', mutatedText(json), async (text) => checkConfig(await readConfigFile(file('.json', text))));
  });

  it('YAML: read and checked, or refused with a SpikeflowError', async () => {
    await fuzzReader('run config (YAML)', mutatedText(yaml), async (text) => checkConfig(await readConfigFile(file('.yaml', text))));
  });

  it('valid JSON, any value anywhere: checked, or refused with a SpikeflowError', async () => {
    const bases = json.map((t) => JSON.parse(t) as unknown);
    /** Every path to a value in `v` (object keys and array indices). */
    const paths = (v: unknown, at: (string | number)[] = []): (string | number)[][] => [
      at,
      ...(v !== null && typeof v === 'object' ? Object.entries(v).flatMap(([k, x]) => paths(x, [...at, Array.isArray(v) ? Number(k) : k])) : []),
    ];
    /** `v` with the value at `path` replaced (`undefined`: the key removed). */
    const replaced = (v: unknown, path: (string | number)[], value: unknown): unknown => {
      if (path.length === 0) return value;
      const [head, ...rest] = path;
      const copy = (Array.isArray(v) ? [...v] : { ...(v as object) }) as Record<string | number, unknown>;
      const next = replaced(copy[head!], rest, value);
      if (next === undefined && !Array.isArray(v)) delete copy[head!];
      else copy[head!] = next;
      return copy;
    };
    const values = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.constantFrom(undefined, null, -1, 0, 0.5, 1e308, -1e308, 2 ** 53, '', 'lif', 'wasm', 'bptt', [], {}, { name: 'adam' }),
    );
    const edited = fc
      .tuple(fc.nat(bases.length - 1), fc.array(fc.tuple(fc.nat(), values, fc.constantFrom('set', 'extra')), { minLength: 1, maxLength: 4 }))
      .map(([i, edits]) =>
        edits.reduce((cfg, [pick, value, how]) => {
          const all = paths(cfg);
          const path = all[pick % all.length]!;
          return how === 'extra' ? replaced(cfg, [...path, 'unexpected'], value) : replaced(cfg, path, value);
        }, bases[i]),
      );
    await fuzzReader('run config (values)', edited, (cfg) => checkConfig(cfg));
  });
});

describe('checkpoints', () => {
  /** Small run checkpoints as `spikeflow train` writes them: run meta with its config, parameters, Adam's state. */
  const seeds = (() => {
    const config = JSON.parse(readFileSync(join(configsDir, 'add-task.json'), 'utf8')) as unknown;
    const w = tf.tensor2d([
      [0.5, -1, 0.25],
      [2, 3, -0.5],
    ]);
    const b = tf.tensor1d([0.1, 0.2, 0.3]);
    const out = [
      encodeCheckpoint({
        meta: {
          kind: 'spikeflow-run',
          position: { epoch: 1, batch: 2, step: 9 },
          seed: 3,
          rule: 'bptt',
          params: ['w', 'b'],
          optimizerSteps: 9,
          config,
          fingerprint: { backend: 'wasm', simd: true },
        },
        trees: { params: { w, b }, optimizer: [{ count: 9, mu: { w, b }, nu: { w, b } }, { count: 9 }], rule: null },
      }),
      encodeCheckpoint({
        meta: { kind: 'spikeflow-run', position: { epoch: 0, batch: 0, step: 0 }, seed: 0, rule: 'fptt', params: ['w'] },
        trees: { params: { w }, rule: { wbar: { w }, lambda: [b, 2] } },
      }),
    ];
    tf.dispose([w, b]);
    return out.map((bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  })();

  const read = (bytes: Uint8Array) => {
    const path = file('.sfck', bytes);
    parseRunMeta(readCheckpointMeta(path, { warn: () => {} }).meta, path);
    disposeTree(loadCheckpoint(path, { warn: () => {} }).trees as never);
  };

  it('bytes: loaded, or refused with a SpikeflowError', async () => {
    await fuzzReader('checkpoint', mutatedBytes(seeds, { keepPrefix: 8 }), read);
  });

  /** A mutation of the header, signed again: what only the field checks can catch (a tool that rewrites files, or someone who recomputes the digest). */
  const resigned = fc.tuple(fc.nat(seeds.length - 1), fc.array(mutation, { minLength: 1, maxLength: 6 })).map(([i, ms]) => {
    const s = seeds[i]!;
    const h = s.readUInt32LE(8);
    const head = ms.reduce(mutate, new Uint8Array(s.subarray(12, 12 + h)));
    const len = Buffer.alloc(4);
    len.writeUInt32LE(head.length);
    const body = Buffer.concat([s.subarray(0, 8), len, head, s.subarray(12 + h, s.length - 32)]);
    return Buffer.concat([body, createHash('sha256').update(body).digest()]);
  });

  it('re-signed headers: loaded, or refused with a SpikeflowError', async () => {
    await fuzzReader('checkpoint (re-signed header)', resigned, read);
  });
});

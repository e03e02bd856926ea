import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { encodeCheckpoint, loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import { isSpikeflowError } from './errors.js';
import { disposeTree } from './state.js';
import { tf, type Tensor } from './tf.js';
import { useCpuBackend } from './test-support.js';

useCpuBackend();

const dir = mkdtempSync(join(tmpdir(), 'sf-ckpt-'));
let n = 0;
const file = (bytes: Uint8Array) => {
  const p = join(dir, `c${n++}.sfck`);
  writeFileSync(p, bytes);
  return p;
};

/** A small checkpoint: a run-like meta, two float tensors and an int tensor in nested trees. */
function small(): Buffer {
  const w = tf.tensor2d([
    [0.5, -1],
    [2, 3],
  ]);
  const b = tf.tensor1d([0.25]);
  const k = tf.tensor1d([4, 5, 6], 'int32');
  const bytes = encodeCheckpoint({
    meta: { kind: 'spikeflow-run', position: { epoch: 0, batch: 1, step: 1 }, note: 'ä' },
    trees: { params: { w, b }, rule: [k, 3, null] },
  });
  tf.dispose([w, b, k]);
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The error `loadCheckpoint` throws for `bytes` (undefined if it loads; then its tensors are disposed). */
function refusal(bytes: Uint8Array): unknown {
  const before = tf.memory().numTensors;
  try {
    disposeTree(loadCheckpoint(file(bytes), { warn: () => {} }).trees);
    return undefined;
  } catch (e) {
    expect(tf.memory().numTensors, 'nothing is built from a refused file').toBe(before);
    return e;
  }
}

/** `bytes` with its header replaced by `header` and the digest made anew: only the field checks stand between it and a load. */
function resigned(header: unknown, payload: Uint8Array): Buffer {
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(head.byteLength);
  const body = Buffer.concat([Buffer.from('SPKFLOW\x02', 'latin1'), len, head, payload]);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

/** The parsed header and payload of a format-2 file. */
function parts(bytes: Buffer): { header: Record<string, unknown>; payload: Buffer } {
  const h = bytes.readUInt32LE(8);
  return { header: JSON.parse(bytes.subarray(12, 12 + h).toString('utf8')) as Record<string, unknown>, payload: bytes.subarray(12 + h, bytes.length - 32) };
}

describe('checkpoint format 2', () => {
  it('round-trips, and its digest covers every byte before it', () => {
    const bytes = small();
    expect(bytes.subarray(0, 8).toString('latin1')).toBe('SPKFLOW\x02');
    expect(createHash('sha256').update(bytes.subarray(0, -32)).digest().equals(bytes.subarray(-32))).toBe(true);
    const ck = loadCheckpoint<{ note: string }>(file(bytes));
    expect(ck.format).toBe(2);
    expect(ck.meta.note).toBe('ä');
    const t = ck.trees as { params: { w: Tensor; b: Tensor }; rule: [Tensor, number, null] };
    expect(Array.from(t.params.w.dataSync())).toEqual([0.5, -1, 2, 3]);
    expect(t.rule[0].dtype).toBe('int32');
    expect(t.rule.slice(1)).toEqual([3, null]);
    disposeTree(ck.trees);
  });

  it('is refused when any single byte changes: every position of a small checkpoint, two flips each', () => {
    const bytes = small();
    expect(bytes.length).toBeGreaterThan(300);
    let refused = 0;
    for (let i = 0; i < bytes.length; i++) {
      for (const mask of [0x01, 0xff]) {
        const b = Buffer.from(bytes);
        b[i] = b[i]! ^ mask;
        const e = refusal(b);
        expect(isSpikeflowError(e, 'CHECKPOINT_INVALID'), `byte ${i} ^ ${mask}: ${String(e)}`).toBe(true);
        refused++;
      }
    }
    expect(refused).toBe(2 * bytes.length);
  });

  it('is refused truncated at any length, or padded', () => {
    const bytes = small();
    for (let len = 0; len < bytes.length; len++) expect(isSpikeflowError(refusal(bytes.subarray(0, len)), 'CHECKPOINT_INVALID'), `length ${len}`).toBe(true);
    expect(String(refusal(Buffer.concat([bytes, Buffer.from([0])])))).toMatch(/do not match its SHA-256 digest/);
    expect(String(refusal(Buffer.from('PK\x03\x04 a zip file')))).toMatch(/bad magic/);
    expect(String(refusal(Buffer.from('SPKFLOW\x07xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'latin1')))).toMatch(/format 7 is not supported/);
  });

  it('checks every header field even under a valid digest, before allocating anything', () => {
    const { header, payload } = parts(small());
    const tensors = header['tensors'] as Record<string, unknown>[];
    const withTensor = (i: number, patch: Record<string, unknown>) => ({ ...header, tensors: tensors.map((t, j) => (j === i ? { ...t, ...patch } : t)) });
    const cases: [unknown, RegExp][] = [
      [[], /not a JSON object/],
      [{ ...header, format: 1 }, /header says format 1, the magic says 2/],
      [{ ...header, payloadBytes: 1e12 }, /truncated or padded/],
      [{ ...header, tensors: 'none' }, /no tensor list/],
      [withTensor(0, { shape: [1e6, 1e6] }), /tensor 0 .*does not fit the payload/],
      [withTensor(0, { shape: [2, -2] }), /tensor 0 has an invalid shape/],
      [withTensor(0, { shape: [2, 2.5] }), /tensor 0 has an invalid shape/],
      [withTensor(0, { shape: 'big' }), /tensor 0 has an invalid shape/],
      [withTensor(1, { dtype: 'float64' }), /tensor 1 has dtype "float64"/],
      [withTensor(1, { offset: 2 }), /tensor 1 has an invalid offset/],
      [withTensor(1, { offset: payload.length }), /tensor 1 .*does not fit/],
      [withTensor(2, { length: 8 }), /tensor 2 .*does not fit/],
      [{ ...header, tensors: [...tensors, 'x'] }, /tensor 3 is not an object/],
      [{ ...header, trees: null }, /no trees/],
      [{ ...header, trees: { params: { $tensor: 9 } } }, /trees.params names tensor 9, but the file has 3/],
      [{ ...header, trees: { params: { $tensor: 0, extra: 1 } } }, /names tensor 0/],
      [{ ...header, trees: { params: { $tensor: '0' } } }, /names tensor "0"/],
      [{ ...header, trees: { a: JSON.parse(`${'['.repeat(100)}1${']'.repeat(100)}`) } }, /nested more than 64 levels/],
      [{ ...header, meta: JSON.parse(`${'{"a":'.repeat(100)}1${'}'.repeat(100)}`) }, /meta is nested more than 64 levels/],
    ];
    for (const [h, message] of cases) {
      const e = refusal(resigned(h, payload));
      expect(isSpikeflowError(e, 'CHECKPOINT_INVALID'), `${message}: ${String(e)}`).toBe(true);
      expect((e as Error).message).toMatch(message);
    }
  });

  it('keeps a stored key named __proto__ as data', () => {
    const { header, payload } = parts(small());
    const h = JSON.parse(JSON.stringify(header).replace('"params":', '"__proto__":')) as unknown;
    const ck = loadCheckpoint(file(resigned(h, payload)));
    const trees = ck.trees as Record<string, unknown>;
    expect(Object.getPrototypeOf(trees)).toBe(Object.prototype);
    expect(Object.keys(trees)).toContain('__proto__');
    expect(Object.getOwnPropertyDescriptor(trees, '__proto__')?.value).toHaveProperty('w');
    disposeTree(Object.values(trees));
  });

  it('builds only the tensors its trees name', () => {
    const { header, payload } = parts(small());
    const before = tf.memory().numTensors;
    const ck = loadCheckpoint(file(resigned({ ...header, trees: { only: { $tensor: 1 } } }, payload)));
    expect(tf.memory().numTensors).toBe(before + 1);
    disposeTree(ck.trees);
  });
});

describe('checkpoint format 1 (before 2026-12)', () => {
  const old = readFileSync(fileURLToPath(new URL('../test-data/format1.sfck', import.meta.url)));

  it('is read for its weights, with a warning', () => {
    const warnings: string[] = [];
    const ck = loadCheckpoint<{ seed: number }>(file(old), { warn: (m) => warnings.push(m) });
    expect(ck.format).toBe(1);
    expect(ck.meta.seed).toBe(7);
    const t = ck.trees as { params: { w: Tensor }; extra: [Tensor, number, null] };
    expect(Array.from(t.params.w.dataSync())).toEqual([0.5, -1.25, 2, 3.5, 0, -0.75]);
    expect(Array.from(t.extra[0].dataSync())).toEqual([1, 2, 3]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/format 1, whose digest does not cover its header/);
    disposeTree(ck.trees);
  });

  it('is refused with a changed payload byte or a broken header', () => {
    const payload = Buffer.from(old);
    payload[payload.length - 1] = payload[payload.length - 1]! ^ 1;
    expect(String(refusal(payload))).toMatch(/payload does not match its SHA-256 digest/);
    const header = Buffer.from(old);
    header[12] = 0x78;
    expect(String(refusal(header))).toMatch(/header is not valid JSON/);
    expect(String(refusal(old.subarray(0, 30)))).toMatch(/truncated/);
  });
});

describe('saving', () => {
  it('writes atomically and sweeps temporary files of writers that were killed', () => {
    const d = mkdtempSync(join(tmpdir(), 'sf-ckpt-save-'));
    const path = join(d, 'checkpoint.sfck');
    // A writer killed before its rename left its temporary file (pid 2³¹−2: not a live process).
    writeFileSync(`${path}.tmp-2147483646`, 'half a checkpoint');
    // A live process's temporary file is left alone.
    writeFileSync(`${path}.tmp-1`, 'being written');
    const t = tf.ones([3]);
    saveCheckpoint(path, { meta: {}, trees: { t } });
    t.dispose();
    expect(readdirSync(d).sort()).toEqual(['checkpoint.sfck', 'checkpoint.sfck.tmp-1']);
    disposeTree(loadCheckpoint(path).trees);
  });

  it('refuses a tensor of another dtype', () => {
    const t = tf.tensor1d([true, false], 'bool');
    expect(() => encodeCheckpoint({ meta: {}, trees: { t } })).toThrow(/cannot store a bool tensor/);
    t.dispose();
  });
});

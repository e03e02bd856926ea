import { describe, expect, expectTypeOf, it } from 'vitest';
import { SpikeflowError } from './errors.js';
import {
  checkField,
  closest,
  configError,
  describeValue,
  didYouMean,
  editDistance,
  expectObject,
  isPlainObject,
  join,
  parseSchema,
  rejectUnknownKeys,
  type SchemaInput,
  type SchemaValues,
} from './validate.js';
import { errorOf } from './test-support.js';

/** The SpikeflowError `f` throws (fails the test if it throws nothing or something else). */

const layerSchema = {
  size: { type: 'number', integer: true, min: 1, required: true, doc: 'number of neurons' },
  recurrent: { type: 'boolean', default: false },
  gain: { type: 'number', default: 1, min: 0, exclusiveMin: true },
  decay: { type: 'number', min: 0, max: 1 },
  mode: { type: 'string', oneOf: ['fast', 'exact'], default: 'fast' },
  label: { type: 'string' },
} as const;

describe('parseSchema', () => {
  it('fills defaults, keeps given values, omits optional fields without default, returns a fresh object', () => {
    const input = { size: 4 };
    const v = parseSchema(layerSchema, input, 'model.layers[0]');
    expect(v).toEqual({ size: 4, recurrent: false, gain: 1, mode: 'fast' });
    expect(Object.keys(v).sort()).toEqual(['gain', 'mode', 'recurrent', 'size']);
    expect(v).not.toBe(input);
    expect(input).toEqual({ size: 4 });
    const given = parseSchema(layerSchema, { size: 2, recurrent: true, gain: 0.5, decay: 0, mode: 'exact', label: 'h' }, 'l');
    expect(given).toEqual({ size: 2, recurrent: true, gain: 0.5, decay: 0, mode: 'exact', label: 'h' });
    expectTypeOf(given.mode).toEqualTypeOf<'fast' | 'exact'>();
    expectTypeOf(given.size).toEqualTypeOf<number>();
    expectTypeOf(given.decay).toEqualTypeOf<number | undefined>();
  });

  it('SchemaInput: what a caller passes (required fields without default required, the rest optional); parsed, SchemaValues', () => {
    type In = SchemaInput<typeof layerSchema>;
    expectTypeOf<In>().toEqualTypeOf<{
      readonly size: number;
      readonly recurrent?: boolean;
      readonly gain?: number;
      readonly decay?: number;
      readonly mode?: 'fast' | 'exact';
      readonly label?: string;
    }>();
    // A required field with a default need not be given.
    const withDefault = { n: { type: 'number', required: true, default: 3 } } as const;
    expectTypeOf<SchemaInput<typeof withDefault>>().toEqualTypeOf<{ readonly n?: number }>();
    // Parsing an input gives the values, and parsing those again changes nothing.
    const input: In = { size: 4, mode: 'exact' };
    const values: SchemaValues<typeof layerSchema> = parseSchema(layerSchema, input, 'l');
    expect(values).toEqual({ size: 4, recurrent: false, gain: 1, mode: 'exact' });
    const input2: In = values;
    expect(parseSchema(layerSchema, input2, 'l')).toEqual(values);
  });

  it('treats a missing object as empty (defaults only) and refuses non-objects naming the path', () => {
    expect(parseSchema({ a: { type: 'number', default: 2 } }, undefined, 'x')).toEqual({ a: 2 });
    for (const bad of [null, [], 'size', 3, true, new Date(0)]) {
      const e = errorOf(() => parseSchema(layerSchema, bad, 'model.layers[1]'));
      expect(e.code).toBe('CONFIG_INVALID');
      expect(e.details.path).toBe('model.layers[1]');
      expect(e.message).toMatch(/^model\.layers\[1\]: expected an object, got /);
    }
    expect(errorOf(() => parseSchema(layerSchema, null, 'p')).message).toBe('p: expected an object, got null');
  });

  it('refuses an unknown key with a "did you mean" suggestion and the full path', () => {
    const e = errorOf(() => parseSchema(layerSchema, { size: 3, recurent: true }, 'model.layers[0]'));
    expect(e).toBeInstanceOf(SpikeflowError);
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.details.path).toBe('model.layers[0].recurent');
    expect(e.details['key']).toBe('recurent');
    expect(e.details['suggestion']).toBe('recurrent');
    expect(e.message).toBe("model.layers[0].recurent: unknown key; did you mean 'recurrent'? (allowed: size, recurrent, gain, decay, mode, label)");
  });

  it('gives no suggestion when no key is close', () => {
    const e = errorOf(() => parseSchema(layerSchema, { size: 3, zzzzzzzz: 1 }, 'cfg'));
    expect(e.details.path).toBe('cfg.zzzzzzzz');
    expect(e.details['suggestion']).toBeUndefined();
    expect(e.message).not.toMatch(/did you mean/);
    expect(e.message).toMatch(/unknown key \(allowed: size, recurrent/);
  });

  it('checks unknown keys before field values', () => {
    const e = errorOf(() => parseSchema(layerSchema, { size: -1, sise: 3 }, 'l'));
    expect(e.details.path).toBe('l.sise');
  });

  it('names a nested path; an empty root path gives the bare key', () => {
    expect(errorOf(() => parseSchema(layerSchema, { size: 0 }, 'run.model.layers[2].params')).details.path).toBe('run.model.layers[2].params.size');
    const e = errorOf(() => parseSchema(layerSchema, { size: 0 }, ''));
    expect(e.details.path).toBe('size');
    expect(e.message).toBe('size: must be >= 1, got 0');
  });

  it('requires required fields, mentioning type and doc', () => {
    const e = errorOf(() => parseSchema(layerSchema, {}, 'model.layers[0]'));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.details.path).toBe('model.layers[0].size');
    expect(e.message).toBe('model.layers[0].size: is required (number: number of neurons)');
    expect(errorOf(() => checkField({ type: 'string', required: true }, undefined, 'n')).message).toBe('n: is required (string)');
    // A default satisfies `required`.
    expect(checkField({ type: 'number', required: true, default: 7 }, undefined, 'n')).toBe(7);
  });
});

describe('checkField', () => {
  const num = (extra: Record<string, unknown>) => ({ type: 'number', ...extra }) as const;

  it('numbers: finite only, with type errors naming the value', () => {
    for (const [v, shown] of [
      [Number.NaN, 'null'],
      [Infinity, 'null'],
      [-Infinity, 'null'],
      ['3', '"3"'],
      [null, 'null'],
      [true, 'true'],
      [[1], '[1]'],
    ] as const) {
      const e = errorOf(() => checkField(num({}), v, 'a.b'));
      expect(e.code).toBe('CONFIG_INVALID');
      expect(e.details.path).toBe('a.b');
      expect(e.message).toBe(`a.b: expected a finite number, got ${shown}`);
    }
    expect(checkField(num({}), -3.5, 'x')).toBe(-3.5);
  });

  it('numbers: inclusive min, exclusive min, inclusive max', () => {
    expect(checkField(num({ min: 1 }), 1, 'x')).toBe(1);
    expect(errorOf(() => checkField(num({ min: 1 }), 0.999, 'x')).message).toBe('x: must be >= 1, got 0.999');
    expect(errorOf(() => checkField(num({ min: 0, exclusiveMin: true }), 0, 'x')).message).toBe('x: must be > 0, got 0');
    expect(checkField(num({ min: 0, exclusiveMin: true }), 1e-9, 'x')).toBe(1e-9);
    expect(checkField(num({ max: 1 }), 1, 'x')).toBe(1);
    expect(errorOf(() => checkField(num({ max: 1 }), 1.0001, 'x')).message).toBe('x: must be <= 1, got 1.0001');
    expect(checkField(num({ min: -2, max: -1 }), -1.5, 'x')).toBe(-1.5);
    expect(errorOf(() => checkField(num({ min: -2, max: -1 }), -2.5, 'x')).details.path).toBe('x');
  });

  it('numbers: integer check (before the range check)', () => {
    expect(checkField(num({ integer: true }), 3, 'x')).toBe(3);
    expect(checkField(num({ integer: true }), -4, 'x')).toBe(-4);
    expect(errorOf(() => checkField(num({ integer: true }), 2.5, 'x')).message).toBe('x: expected an integer, got 2.5');
    expect(errorOf(() => checkField(num({ integer: true, min: 1 }), 0.5, 'x')).message).toBe('x: expected an integer, got 0.5');
  });

  it('booleans', () => {
    expect(checkField({ type: 'boolean' }, false, 'f')).toBe(false);
    expect(checkField({ type: 'boolean', default: true }, undefined, 'f')).toBe(true);
    expect(errorOf(() => checkField({ type: 'boolean' }, 'true', 'f')).message).toBe('f: expected true or false, got "true"');
    expect(errorOf(() => checkField({ type: 'boolean' }, 0, 'f')).message).toBe('f: expected true or false, got 0');
  });

  it('strings and oneOf (case-sensitive)', () => {
    const s = { type: 'string', oneOf: ['constant', 'cosine'] } as const;
    expect(checkField(s, 'cosine', 's')).toBe('cosine');
    expect(checkField({ type: 'string' }, '', 's')).toBe('');
    const e = errorOf(() => checkField(s, 'linear', 'opt.schedule'));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.details.path).toBe('opt.schedule');
    expect(e.message).toBe("opt.schedule: must be one of 'constant', 'cosine', got 'linear'");
    expect(errorOf(() => checkField(s, 'Cosine', 's')).message).toMatch(/must be one of/);
    expect(errorOf(() => checkField(s, 3, 's')).message).toBe('s: expected a string, got 3');
  });

  it('returns undefined for an absent optional field', () => {
    expect(checkField({ type: 'number' }, undefined, 'x')).toBeUndefined();
  });
});

describe('suggestions', () => {
  it('editDistance is Levenshtein, case-insensitive and symmetric', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('abc', '')).toBe(3);
    expect(editDistance('recurent', 'recurrent')).toBe(1);
    expect(editDistance('IAF', 'iaf')).toBe(0);
    expect(editDistance('flaw', 'lawn')).toBe(2);
    expect(editDistance('lawn', 'flaw')).toBe(2);
  });

  it('closest accepts likely typos only: distance <= max(2, floor(len/3))', () => {
    expect(closest('recurent', ['size', 'recurrent', 'bias'])).toBe('recurrent');
    expect(closest('clipnorm', ['clipNorm', 'clipValue'])).toBe('clipNorm');
    expect(closest('xyz', ['abc'])).toBeUndefined(); // distance 3 > 2
    expect(closest('abcdefghi', ['abcdefXYZ'])).toBe('abcdefXYZ'); // distance 3 <= floor(9/3)
    expect(closest('abcdefghi', ['abcdeWXYZ'])).toBeUndefined(); // distance 4 > 3
    expect(closest('x', [])).toBeUndefined();
  });

  it('didYouMean lists the known names and the guess', () => {
    expect(didYouMean('ifa', ['iaf', 'adex'])).toBe("did you mean 'iaf'? (known: 'iaf', 'adex')");
    expect(didYouMean('izhikevich', ['iaf', 'adex'])).toBe("(known: 'iaf', 'adex')");
    expect(didYouMean('iaf', [])).toBe('(none is known)');
    expect(didYouMean('ifa', new Set(['iaf']).values())).toBe("did you mean 'iaf'? (known: 'iaf')");
  });
});

describe('helpers', () => {
  it('rejectUnknownKeys accepts known keys, refuses the first unknown, and says when nothing is allowed', () => {
    expect(() => rejectUnknownKeys({ a: 1, b: 2 }, ['a', 'b', 'c'], 'p')).not.toThrow();
    const e = errorOf(() => rejectUnknownKeys({ x: 1 }, [], 'p'));
    expect(e.details.path).toBe('p.x');
    expect(e.message).toBe('p.x: unknown key (allowed: none)');
  });

  it('expectObject returns the object itself', () => {
    const o = { a: 1 };
    expect(expectObject(o, 'p')).toBe(o);
    expect(errorOf(() => expectObject(undefined, 'p')).message).toBe('p: expected an object, got nothing');
  });

  it('isPlainObject', () => {
    expect(isPlainObject({})).toBe(true);
    expect(isPlainObject(JSON.parse('{"a":1}'))).toBe(true);
    expect(isPlainObject([])).toBe(false);
    expect(isPlainObject(null)).toBe(false);
    expect(isPlainObject('x')).toBe(false);
    expect(isPlainObject(new Map())).toBe(false);
    class C {}
    expect(isPlainObject(new C())).toBe(false);
  });

  it('join builds dotted and indexed paths', () => {
    expect(join('model', 'layers')).toBe('model.layers');
    expect(join('model.layers', 0)).toBe('model.layers[0]');
    expect(join('', 'size')).toBe('size');
    expect(join(join(join('model', 'layers'), 3), 'size')).toBe('model.layers[3].size');
  });

  it('describeValue quotes strings, says "nothing" for undefined, truncates long values', () => {
    expect(describeValue('a')).toBe('"a"');
    expect(describeValue(undefined)).toBe('nothing');
    expect(describeValue({ a: [1, 2] })).toBe('{"a":[1,2]}');
    const long = describeValue(Array.from({ length: 100 }, (_, i) => i));
    expect(long).toHaveLength(60);
    expect(long.endsWith('...')).toBe(true);
    const circular: Record<string, unknown> = {};
    circular['self'] = circular;
    expect(describeValue(circular)).toBe('[object Object]');
  });

  it('configError makes a CONFIG_INVALID error with the path in message and details', () => {
    const e = configError('model.inputs', 'must be >= 1', { got: 0 });
    expect(e).toBeInstanceOf(SpikeflowError);
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toBe('model.inputs: must be >= 1');
    expect(e.details).toEqual({ path: 'model.inputs', got: 0 });
  });
});

import { SpikeflowError } from './errors.js';

/**
 * A small declarative schema for plain-JSON configs. Every failure names the offending field by
 * its full path (`model.layers[0].size`) and says what was expected, so a user can fix a config
 * file without reading code. Unknown keys are refused with a "did you mean" hint.
 */
export type FieldSpec =
  | { type: 'number'; default?: number; min?: number; max?: number; exclusiveMin?: boolean; exclusiveMax?: boolean; integer?: boolean; doc?: string }
  | { type: 'boolean'; default?: boolean; doc?: string }
  | { type: 'string'; default?: string; oneOf?: readonly string[]; doc?: string };

export type Schema = Readonly<Record<string, FieldSpec & { required?: boolean }>>;

/** The value type of one field (distributes over a union of field specs); `oneOf` strings give their union. */
export type FieldValue<F> = F extends { type: 'number' }
  ? number
  : F extends { type: 'boolean' }
    ? boolean
    : F extends { type: 'string'; oneOf: readonly (infer U extends string)[] }
      ? U
      : F extends { type: 'string' }
        ? string
        : never;

/** Whether a field always has a value after parsing (a default, or required). */
type Always<F> = F extends { default: unknown } ? true : F extends { required: true } ? true : false;

/** The plain values a {@link Schema} describes: fields with a default or `required` are present, others optional. */
export type SchemaValues<S extends Schema> = {
  -readonly [K in keyof S as Always<S[K]> extends true ? K : never]: FieldValue<S[K]>;
} & {
  -readonly [K in keyof S as Always<S[K]> extends true ? never : K]?: FieldValue<S[K]>;
};

/** Whether a caller must give a field: `required` and without a default. */
type Needed<F> = F extends { default: unknown } ? false : F extends { required: true } ? true : false;

/**
 * What a caller may pass for a {@link Schema} (code, or a config's section before parsing):
 * required fields without a default are required, every other field is optional.
 * {@link parseSchema} turns it into {@link SchemaValues} (defaults filled, everything checked).
 */
export type SchemaInput<S extends Schema> = Flat<
  {
    readonly [K in keyof S as Needed<S[K]> extends true ? K : never]: FieldValue<S[K]>;
  } & {
    readonly [K in keyof S as Needed<S[K]> extends true ? never : K]?: FieldValue<S[K]>;
  }
>;

/** One object type from an intersection (for readable hovers and errors). */
type Flat<T> = { [K in keyof T]: T[K] };

export function configError(path: string, message: string, extra: Record<string, unknown> = {}): SpikeflowError {
  return new SpikeflowError('CONFIG_INVALID', `${path}: ${message}`, { path, ...extra });
}

export function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === undefined) return 'nothing';
  try {
    const s = JSON.stringify(v);
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
  } catch {
    return String(v);
  }
}

/** Levenshtein distance, for "did you mean" hints. */
export function editDistance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  let prev = Array.from({ length: n + 1 }, (_, j) => j);
  for (let i = 1; i <= m; i++) {
    const cur = [i];
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1;
      cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost));
    }
    prev = cur;
  }
  return prev[n]!;
}

/** The closest candidate to `name`, if it is close enough to be a likely typo. */
export function closest(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(name, c);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

export function didYouMean(name: string, candidates: Iterable<string>): string {
  const list = [...candidates];
  const guess = closest(name, list);
  const known = list.length ? `known: ${list.map((c) => `'${c}'`).join(', ')}` : 'none is known';
  return guess ? `did you mean '${guess}'? (${known})` : `(${known})`;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
}

export function expectObject(v: unknown, path: string): Record<string, unknown> {
  if (!isPlainObject(v)) throw configError(path, `expected an object, got ${describeValue(v)}`);
  return v;
}

/** Refuses any key of `obj` not in `allowed`, suggesting the closest allowed key. */
export function rejectUnknownKeys(obj: Record<string, unknown>, allowed: Iterable<string>, path: string): void {
  const list = [...allowed];
  for (const key of Object.keys(obj)) {
    if (!list.includes(key)) {
      const guess = closest(key, list);
      throw configError(join(path, key), `unknown key${guess ? `; did you mean '${guess}'?` : ''} (allowed: ${list.join(', ') || 'none'})`, {
        key,
        suggestion: guess,
      });
    }
  }
}

export function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

export function checkField(spec: FieldSpec & { required?: boolean }, value: unknown, path: string): unknown {
  if (value === undefined) {
    if (spec.default !== undefined) return spec.default;
    if (spec.required) throw configError(path, `is required (${spec.type}${spec.doc ? `: ${spec.doc}` : ''})`);
    return undefined;
  }
  switch (spec.type) {
    case 'number': {
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        throw configError(path, `expected a finite number, got ${describeValue(value)}`);
      }
      if (spec.integer && !Number.isInteger(value)) throw configError(path, `expected an integer, got ${value}`);
      if (spec.min !== undefined && (spec.exclusiveMin ? value <= spec.min : value < spec.min)) {
        throw configError(path, `must be ${spec.exclusiveMin ? '>' : '>='} ${spec.min}, got ${value}`);
      }
      if (spec.max !== undefined && (spec.exclusiveMax ? value >= spec.max : value > spec.max)) {
        throw configError(path, `must be ${spec.exclusiveMax ? '<' : '<='} ${spec.max}, got ${value}`);
      }
      return value;
    }
    case 'boolean':
      if (typeof value !== 'boolean') throw configError(path, `expected true or false, got ${describeValue(value)}`);
      return value;
    case 'string':
      if (typeof value !== 'string') throw configError(path, `expected a string, got ${describeValue(value)}`);
      if (spec.oneOf && !spec.oneOf.includes(value)) {
        throw configError(path, `must be one of ${spec.oneOf.map((s) => `'${s}'`).join(', ')}, got '${value}'`);
      }
      return value;
  }
}

/**
 * Validates `value` against `schema` at `path`: unknown keys refused, defaults filled, types and
 * ranges checked. Returns a fresh object holding only schema keys.
 */
export function parseSchema<S extends Schema>(schema: S, value: unknown, path: string): SchemaValues<S> {
  const obj = value === undefined ? {} : expectObject(value, path);
  rejectUnknownKeys(obj, Object.keys(schema), path);
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(schema)) {
    const v = checkField(spec, obj[key], join(path, key));
    if (v !== undefined) out[key] = v;
  }
  return out as SchemaValues<S>;
}

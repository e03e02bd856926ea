import { describe, expect, it } from 'vitest';
import { SpikeflowError, isSpikeflowError } from './errors.js';

describe('SpikeflowError', () => {
  it('is an Error with a stable name, code, details and cause', () => {
    const cause = new Error('root');
    const e = new SpikeflowError('DATA_INVALID', 'bad file', { path: 'data.file', bytes: 3 }, { cause });
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('SpikeflowError');
    expect(e.code).toBe('DATA_INVALID');
    expect(e.message).toBe('bad file');
    expect(e.details).toEqual({ path: 'data.file', bytes: 3 });
    expect(e.cause).toBe(cause);
    expect(new SpikeflowError('NON_FINITE', 'nan').details).toEqual({});
  });

  it('isSpikeflowError recognises instances (and look-alikes from a duplicate install), optionally by code', () => {
    const e = new SpikeflowError('PLUGIN_NOT_FOUND', 'missing');
    expect(isSpikeflowError(e)).toBe(true);
    expect(isSpikeflowError(e, 'PLUGIN_NOT_FOUND')).toBe(true);
    expect(isSpikeflowError(e, 'PLUGIN_INVALID')).toBe(false);
    const foreign = { name: 'SpikeflowError', code: 'SHAPE_MISMATCH', message: 'x', details: {} };
    expect(isSpikeflowError(foreign)).toBe(true);
    expect(isSpikeflowError(foreign, 'SHAPE_MISMATCH')).toBe(true);
    expect(isSpikeflowError(new Error('x'))).toBe(false);
    expect(isSpikeflowError(null)).toBe(false);
    expect(isSpikeflowError('SpikeflowError')).toBe(false);
    expect(isSpikeflowError(undefined, 'CONFIG_INVALID')).toBe(false);
  });
});

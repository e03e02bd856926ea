import { expect, it } from 'vitest';
import { createRegistry, tf } from '@spikeflow/core';
import { describeBackend } from '@spikeflow/testing';
import plugin, { wasm } from './index.js';

describeBackend(wasm);

it('reports SIMD and one thread in Node, and registers its fast dense kernel through the registry', async () => {
  await wasm.activate();
  const info = wasm.describe();
  expect(info.tfBackend).toBe('wasm');
  expect(typeof info.details['simd']).toBe('boolean');
  const reg = createRegistry([plugin]);
  expect(reg.backends.get('wasm')).toBe(wasm);
  expect(reg.kernels.has('spikeflow.dense', 'wasm')).toBe(true);
  expect(reg.kernels.has('spikeflow.dense', 'cpu')).toBe(false);
  expect(tf.getBackend()).toBe('wasm');
});

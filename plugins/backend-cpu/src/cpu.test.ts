import { expect, it } from 'vitest';
import { createRegistry, tf } from '@spikeflow/core';
import { describeBackend } from '@spikeflow/testing';
import { KERNELS_VERSION, activeThreads } from '@spikeflow/kernels';
import plugin, { cpu } from './index.js';

describeBackend(cpu);

it('activates the pure-JS tfjs backend through its plugin', async () => {
  const reg = createRegistry([plugin]);
  await reg.backends.get('cpu')!.activate();
  expect(tf.getBackend()).toBe('cpu');
});

it('describes the fused kernels: their version, SIMD and the threads they run on', () => {
  const { details, threads } = cpu.describe();
  expect(details['kernels']).toBe(KERNELS_VERSION);
  expect(details['kernels']).toMatch(/^\d+\.\d+\.\d+.*\+[0-9a-f]{12}$/);
  expect(details['simd']).toBe(true);
  expect(details['kernelThreads']).toBe(activeThreads());
  expect(threads).toBe(details['kernelThreads']);
});

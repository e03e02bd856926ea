import { expect, it } from 'vitest';
import { createRegistry, tf } from '@spikeflow/core';
import { describeBackend } from '@spikeflow/testing';
import plugin, { cpu } from './index.js';

describeBackend(cpu);

it('activates the pure-JS tfjs backend through its plugin', async () => {
  const reg = createRegistry([plugin]);
  await reg.backends.get('cpu')!.activate();
  expect(tf.getBackend()).toBe('cpu');
});

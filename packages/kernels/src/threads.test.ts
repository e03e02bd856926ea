import { expect, it } from 'vitest';
import { inChild, type ConvResult, type NetworkResult } from './test-support.js';

it("training (BPTT through the fused kernels, an adaptive layer among them, a pass without the temporal path and one with presynaptic traces) and inference give bit-identical weights and outputs on 1 and 2 threads, on inputs that take the event and the dense paths and straddle where a second thread's rows would begin", () => {
  const one = inChild<NetworkResult>('network', { SPIKEFLOW_THREADS: '1' });
  const two = inChild<NetworkResult>('network', { SPIKEFLOW_THREADS: '2' });
  expect([one.threads, two.threads]).toEqual([1, 2]);
  // Both paths ran: the 40% input of the second iteration (above the training limit, 30%) and
  // the 70% input of the second inference pass took dense products; the sparse ones none in
  // inference, and fewer in training (the readout's input gradient is always one).
  expect(one.trainProducts[1]).toBeGreaterThan(one.trainProducts[0]!);
  expect(one.denseProducts[0]).toBe(0);
  expect(one.denseProducts[1]).toBeGreaterThan(0);
  expect(one.spikeRate).toBeGreaterThan(0.01);
  expect(one.spikeRate).toBeLessThan(0.5);
  expect(one.adaptiveRate).toBeGreaterThan(0.01);
  expect(one.adaptiveRate).toBeLessThan(0.5);
  expect({ ...two, threads: 1 }).toEqual(one);
}, 300_000);

it('a conv network (event convolutions, their filter gradients, max pooling both ways) trains and infers to bit-identical weights and outputs on 1 and 2 threads', () => {
  const one = inChild<ConvResult>('conv', { SPIKEFLOW_THREADS: '1' });
  const two = inChild<ConvResult>('conv', { SPIKEFLOW_THREADS: '2' });
  expect([one.threads, two.threads]).toEqual([1, 2]);
  // Both convolutions ran by events (inputs of 10% and of max-pooled spikes below the dense limit).
  expect(one.eventConvs).toBe(2);
  for (const rate of one.spikeRates) {
    expect(rate).toBeGreaterThan(0.005);
    expect(rate).toBeLessThan(0.5);
  }
  expect({ ...two, threads: 1 }).toEqual(one);
}, 300_000);

it('where synchronous compilation of a module over 4 KB is refused (as on browsers’ main threads), prepareKernels() compiles ahead and the kernels give the same results on one thread', () => {
  const refused = inChild<{ hash: string; prepared?: boolean }>('kernels', { SPIKEFLOW_THREADS: '1', SPIKEFLOW_TEST_REFUSE_SYNC: '1' });
  const plain = inChild<{ hash: string }>('kernels', { SPIKEFLOW_THREADS: '1' });
  expect(refused.prepared).toBe(true);
  expect(refused.threads).toBe(1);
  expect(refused.hash).toBe(plain.hash);
}, 300_000);

/**
 * The one place spikeflow imports TensorFlow.js. Importing the `@tensorflow/tfjs` union package
 * once registers every op's gradient and the chained tensor methods (`tfjs-core` alone registers
 * none). Plugins use this `tf` so the whole process shares one engine.
 */
import * as tf from '@tensorflow/tfjs';

export { tf };
export type Tensor = tf.Tensor;
export type Scalar = tf.Scalar;
export type Variable = tf.Variable;
export type NamedTensorMap = Record<string, tf.Tensor>;

/** tfjs backends whose tensors live in CPU memory, where a synchronous read is a view or a copy, not a wait for a device. */
const HOST_MEMORY: ReadonlySet<string> = new Set(['wasm', 'cpu', 'tensorflow']);

/**
 * Whether the active tfjs backend keeps tensors in CPU memory (wasm, cpu, tfjs-node), so that a
 * synchronous read costs a copy at most; a GPU backend (webgl, webgpu) would wait for the device,
 * and tfjs-webgpu in Node cannot read synchronously at all.
 */
export function hostMemoryBackend(): boolean {
  return HOST_MEMORY.has(tf.getBackend());
}

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

"""Batch normalisation whose training step is TensorFlow's fused kernel.

Ioffe & Szegedy 2015. Keras 3's `BatchNormalization` computes the batch
statistics with separate mean / squared-difference / multiply ops; on a CPU that
costs about as much as the convolutions of HA-CNN (TF profiler, one training step
at batch 32: ~1.7 s of BN ops vs ~1.8 s of convolutions). `FusedBatchNormV3`
(oneDNN on x86) does the same maths in one op forward and one backward.
"""

import keras
import tensorflow as tf
from tensorflow.python.ops import gen_nn_ops


@keras.saving.register_keras_serializable(package="keras_hpnet")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with a fused training path.

    Same variables, arguments, inference maths and moving-statistics update as the
    Keras layer (the moving variance uses the biased batch variance, like Keras),
    so weights and `.keras` files are interchangeable. The fused path is taken in
    training mode for channels-last 2-D or 4-D float inputs without a mask,
    renorm or synchronisation; everything else (inference, export) runs the Keras
    code unchanged.
    """

    def _fusable(self, inputs, mask):
        axis = self.axis if isinstance(self.axis, int) else (
            self.axis[0] if len(self.axis) == 1 else None)
        rank = len(inputs.shape)
        return (mask is None and not self.renorm and not self.synchronized
                and self.center and self.scale and rank in (2, 4)
                and axis in (-1, rank - 1) and inputs.shape[-1] is not None
                and keras.backend.backend() == "tensorflow"
                and keras.backend.standardize_dtype(inputs.dtype) in ("float32", "bfloat16", "float16"))

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        x = tf.convert_to_tensor(inputs)
        channels = x.shape[-1]
        flat = len(x.shape) == 2
        if flat:
            x = tf.reshape(x, (-1, 1, 1, channels))
        gamma = tf.cast(self.gamma, tf.float32)
        beta = tf.cast(self.beta, tf.float32)
        empty = tf.constant([], tf.float32)
        y, mean, variance, _, _, _ = gen_nn_ops.fused_batch_norm_v3(
            x, gamma, beta, empty, empty, epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
        # The kernel returns the unbiased (n / (n - 1)) batch variance; Keras keeps
        # the biased one in its moving average. A static shape gives the factor as
        # a constant (one op per call instead of eight: fewer launches and trace).
        if x.shape[:-1].is_fully_defined():
            count = float(x.shape[:-1].num_elements())
            unbias = max(count - 1.0, 0.0) / max(count, 1.0)
        else:
            count = tf.cast(tf.size(x, tf.int64) // channels, tf.float32)
            unbias = tf.maximum(count - 1.0, 0.0) / tf.maximum(count, 1.0)
        # moving <- moving * momentum + batch * (1 - momentum), as Keras
        rate = 1.0 - self.momentum
        self.moving_mean.assign_sub((tf.cast(self.moving_mean, tf.float32) - mean) * rate)
        self.moving_variance.assign_sub((tf.cast(self.moving_variance, tf.float32) - variance * unbias) * rate)
        if flat:
            y = tf.reshape(y, (-1, channels))
        return tf.cast(y, self.compute_dtype)

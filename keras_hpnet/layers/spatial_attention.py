"""Spatial attention of the Harmonious Attention block (Li et al. 2018, Sec. 3.1, Fig. 3b)."""

import keras

from keras_hpnet.layers.conv_block import ConvBlock


@keras.saving.register_keras_serializable(package="keras_hpnet")
class SpatialAttention(keras.layers.Layer):
    """One-channel spatial saliency map `[N, H, W, 1]` shared by all channels.

    Cross-channel mean -> 3x3 conv stride 2 (1 channel) -> bilinear upsampling
    back to `H x W` -> 1x1 conv (1 channel). Each conv is Conv-BN-ReLU.
    """

    _takes_training = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.reduce_conv = ConvBlock(1, 3, strides=2, name="conv3x3s2", dtype=self.dtype_policy)
        self.scale_conv = ConvBlock(1, 1, name="conv1x1", dtype=self.dtype_policy)

    def build(self, input_shape):
        shape = tuple(input_shape[:-1]) + (1,)
        self.reduce_conv.build(shape)
        self.scale_conv.build(shape)
        self.built = True

    def call(self, x, training=None):
        height, width = x.shape[1], x.shape[2]
        y = keras.ops.mean(x, axis=-1, keepdims=True)
        y = self.reduce_conv(y, training=training)
        # Bilinear x2 (back to the input size, also for odd sizes); inside call, not
        # keras.layers.Resizing (that breaks BatchNorm in exports).
        y = keras.ops.image.resize(y, (height, width), interpolation="bilinear")
        return self.scale_conv(y, training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (1,)

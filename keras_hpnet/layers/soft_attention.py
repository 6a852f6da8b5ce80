"""Soft (spatial-channel) attention of HA-CNN (Li et al. 2018, Sec. 3.1, Fig. 3a)."""

import keras

from keras_hpnet.layers.channel_attention import ChannelAttention
from keras_hpnet.layers.conv_block import ConvBlock
from keras_hpnet.layers.spatial_attention import SpatialAttention


@keras.saving.register_keras_serializable(package="keras_hpnet")
class SoftAttention(keras.layers.Layer):
    """Pixel- and channel-wise mask in (0, 1), same shape as the input.

    `sigmoid(conv1x1(spatial * channel))`: the spatial map `[N,H,W,1]` and the
    channel weights `[N,1,1,C]` are multiplied (broadcast), fused by a 1x1
    Conv-BN-ReLU (C -> C) and squashed by a sigmoid.
    """

    _takes_training = True

    def __init__(self, channels, reduction=16, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.reduction = int(reduction)
        self.spatial = SpatialAttention(name="spatial", dtype=self.dtype_policy)
        self.channel = ChannelAttention(self.channels, self.reduction, name="channel", dtype=self.dtype_policy)
        self.fuse = ConvBlock(self.channels, 1, name="fuse", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.spatial.build(input_shape)
        self.channel.build(input_shape)
        self.fuse.build(input_shape)
        self.built = True

    def call(self, x, training=None):
        y = self.spatial(x, training=training) * self.channel(x, training=training)
        return keras.ops.sigmoid(self.fuse(y, training=training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, reduction=self.reduction)
        return config

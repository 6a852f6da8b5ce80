"""Inception-A block of HA-CNN (Li et al. 2018, Fig. 2 / Sec. 3.1)."""

import keras

from keras_hpnet.layers._util import build_chain, run_chain
from keras_hpnet.layers.conv_block import ConvBlock


@keras.saving.register_keras_serializable(package="keras_hpnet")
class InceptionA(keras.layers.Layer):
    """Four parallel streams of `filters // 4` channels, concatenated, stride 1.

    Streams: three of 1x1 -> 3x3 conv, and one 3x3 average pool -> 1x1 conv.

    Args:
        filters: output channels (divisible by 4).
    """

    _takes_training = True

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        if int(filters) % 4:
            raise ValueError(f"InceptionA: filters must be divisible by 4, got {filters}")
        self.filters = int(filters)
        mid = self.filters // 4
        self.streams = [
            [ConvBlock(mid, 1, name=f"s{i}_1x1", dtype=self.dtype_policy), ConvBlock(mid, 3, name=f"s{i}_3x3", dtype=self.dtype_policy)]
            for i in range(1, 4)
        ]
        self.streams.append([
            keras.layers.AveragePooling2D(3, strides=1, padding="same", name="s4_pool", dtype=self.dtype_policy),
            ConvBlock(mid, 1, name="s4_1x1", dtype=self.dtype_policy),
        ])

    def build(self, input_shape):
        for stream in self.streams:
            build_chain(stream, input_shape)
        self.built = True

    def call(self, x, training=None):
        return keras.ops.concatenate([run_chain(s, x, training) for s in self.streams], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters)
        return config

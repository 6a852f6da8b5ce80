"""Inception-A block of HA-CNN (Li et al. 2018, Fig. 2 / Sec. 3.1)."""

import keras

from keras_hpnet.layers._util import ParallelStreams
from keras_hpnet.layers.conv_block import ConvBlock


@keras.saving.register_keras_serializable(package="keras_hpnet")
class InceptionA(ParallelStreams):
    """Four parallel streams of `filters // 4` channels, concatenated, stride 1.

    Streams: three of 1x1 -> 3x3 conv, and one 3x3 average pool -> 1x1 conv.

    Args:
        filters: output channels (divisible by 4).
    """

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

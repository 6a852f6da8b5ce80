"""Inception-B (stride-2 reduction) block of HA-CNN (Li et al. 2018, Fig. 2 / Sec. 3.1)."""

import keras

from keras_hpnet.layers._util import ParallelStreams
from keras_hpnet.layers.conv_block import ConvBlock


@keras.saving.register_keras_serializable(package="keras_hpnet")
class InceptionB(ParallelStreams):
    """Three streams that halve the resolution, concatenated to `filters` channels.

    Streams: 1x1 -> 3x3/2 (filters/4); 1x1 -> 3x3 -> 3x3/2 (filters/4);
    3x3/2 max pool -> 1x1 (filters/2).

    Args:
        filters: output channels (divisible by 4).
    """

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        if int(filters) % 4:
            raise ValueError(f"InceptionB: filters must be divisible by 4, got {filters}")
        self.filters = int(filters)
        mid = self.filters // 4
        self.streams = [
            [ConvBlock(mid, 1, name="s1_1x1", dtype=self.dtype_policy), ConvBlock(mid, 3, strides=2, name="s1_3x3s2", dtype=self.dtype_policy)],
            [ConvBlock(mid, 1, name="s2_1x1", dtype=self.dtype_policy), ConvBlock(mid, 3, name="s2_3x3", dtype=self.dtype_policy),
             ConvBlock(mid, 3, strides=2, name="s2_3x3s2", dtype=self.dtype_policy)],
            [keras.layers.MaxPooling2D(3, strides=2, padding="same", name="s3_pool", dtype=self.dtype_policy),
             ConvBlock(2 * mid, 1, name="s3_1x1", dtype=self.dtype_policy)],
        ]

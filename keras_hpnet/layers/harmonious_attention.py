"""Harmonious Attention (HA) block (Li et al. 2018, Sec. 3.1, Fig. 3)."""

import keras

from keras_hpnet.layers.hard_attention import HardAttention
from keras_hpnet.layers.soft_attention import SoftAttention


@keras.saving.register_keras_serializable(package="keras_hpnet")
class HarmoniousAttention(keras.layers.Layer):
    """Jointly learned soft (pixel/channel) and hard (regional) attention.

    Returns `(soft_mask, translations)`: the soft mask `[N, H, W, C]` in (0, 1)
    multiplies the global-branch features; the translations `[N, R, 2]` place
    the R local regions (see `AffineRegionSampler`).
    """

    _takes_training = True

    def __init__(self, channels, num_regions=4, reduction=16, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.num_regions = int(num_regions)
        self.reduction = int(reduction)
        self.soft = SoftAttention(self.channels, self.reduction, name="soft", dtype=self.dtype_policy)
        self.hard = HardAttention(self.num_regions, name="hard", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.soft.build(input_shape)
        self.hard.build(input_shape)
        self.built = True

    def call(self, x, training=None):
        return self.soft(x, training=training), self.hard(x)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape), (input_shape[0], self.num_regions, 2)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, num_regions=self.num_regions,
                      reduction=self.reduction)
        return config

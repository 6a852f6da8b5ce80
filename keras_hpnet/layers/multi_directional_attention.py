"""Multi-directional attention (MDA) module of HydraPlus-Net (Liu et al. 2017, Sec. 3.2, Fig. 3)."""

import copy

import keras

from keras_hpnet.layers._util import build_chain, run_chain
from keras_hpnet.layers.conv_block import ConvBlock
from keras_hpnet.layers.inception_v2 import InceptionV2Block


@keras.saving.register_keras_serializable(package="keras_hpnet")
class MultiDirectionalAttention(keras.layers.Layer):
    """One attention source applied to several feature levels ("multi-directional").

    `call([source, level_1, ..., level_L])`:
      1. attention `a = ReLU(BN(conv1x1(source)))` with `num_maps` channels (8 in
         the paper), the "attention generation" link;
      2. for each level l, `a` is bilinearly resized to the level's size and each
         map k multiplies the level's features (channel broadcast): attentive
         feature `a_k * F_l`;
      3. each attentive feature passes through the blocks that follow level l in
         the main net (`tails[l]`, a copy with its own weights, shared by the
         `num_maps` maps: the maps are folded into the batch);
      4. the results are concatenated (maps x levels) and global-average pooled
         (pooling commutes with the concatenation; HP-Net pools right after it).

    Returns `(features [N, sum_l num_maps * C_l], attention [N, h, w, num_maps])`.

    Args:
        num_maps: attention channels (8 in the paper).
        tails: one list per level of `InceptionV2Block` keyword dicts (may be empty).
    """

    _takes_training = True

    def __init__(self, tails, num_maps=8, **kwargs):
        super().__init__(**kwargs)
        self.num_maps = int(num_maps)
        self.tails = [[dict(b) for b in tail] for tail in tails]
        self.attention_conv = ConvBlock(self.num_maps, 1, name="attention", dtype=self.dtype_policy)
        self.tail_blocks = [
            [InceptionV2Block(**copy.deepcopy(cfg), name=f"level{l + 1}_block{i + 1}", dtype=self.dtype_policy)
             for i, cfg in enumerate(tail)]
            for l, tail in enumerate(self.tails)
        ]

    def build(self, input_shape):
        source_shape, level_shapes = input_shape[0], input_shape[1:]
        if len(level_shapes) != len(self.tails):
            raise ValueError(f"{self.name}: got {len(level_shapes)} feature levels, "
                             f"configured for {len(self.tails)}")
        self.attention_conv.build(source_shape)
        self._out_channels = 0
        for blocks, shape in zip(self.tail_blocks, level_shapes):
            self._out_channels += self.num_maps * build_chain(blocks, shape)[-1]
        self.built = True

    def call(self, inputs, training=None):
        source, levels = inputs[0], inputs[1:]
        attention = self.attention_conv(source, training=training)
        maps_first = keras.ops.transpose(attention, (0, 3, 1, 2))  # [N, K, h, w]
        pooled = []
        for blocks, feats in zip(self.tail_blocks, levels):
            height, width, channels = feats.shape[1], feats.shape[2], feats.shape[3]
            a = maps_first
            if (a.shape[2], a.shape[3]) != (height, width):
                a = keras.ops.transpose(
                    keras.ops.image.resize(attention, (height, width), interpolation="bilinear"),
                    (0, 3, 1, 2))
            a = keras.ops.reshape(a, (-1, self.num_maps, height * width, 1))
            f = keras.ops.reshape(feats, (-1, 1, height * width, channels))
            x = keras.ops.reshape(a * f, (-1, height, width, channels))  # [N*K, h, w, C]
            x = run_chain(blocks, x, training)
            x = keras.ops.mean(x, axis=(1, 2))  # [N*K, C']
            pooled.append(keras.ops.reshape(x, (-1, self.num_maps * x.shape[-1])))
        return keras.ops.concatenate(pooled, axis=-1), attention

    @property
    def output_channels(self):
        """Width of the pooled attentive features (known once built)."""
        return self._out_channels

    def compute_output_shape(self, input_shape):
        source_shape = input_shape[0]
        return ((source_shape[0], self._out_channels),
                tuple(source_shape[:-1]) + (self.num_maps,))

    def get_config(self):
        config = super().get_config()
        config.update(tails=self.tails, num_maps=self.num_maps)
        return config

"""Channel attention of the Harmonious Attention block (Li et al. 2018, Sec. 3.1, Fig. 3c)."""

import keras

from keras_hpnet.layers.conv_block import ConvBlock


@keras.saving.register_keras_serializable(package="keras_hpnet")
class ChannelAttention(keras.layers.Layer):
    """Squeeze-and-excitation style channel weights `[N, 1, 1, C]`.

    Global average pooling -> 1x1 conv C -> C/r -> 1x1 conv C/r -> C
    (Conv-BN-ReLU each; r = `reduction`, 16 in the paper).
    """

    _takes_training = True

    def __init__(self, channels, reduction=16, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.reduction = int(reduction)
        self.squeeze = ConvBlock(max(1, self.channels // self.reduction), 1, name="squeeze", dtype=self.dtype_policy)
        self.excite = ConvBlock(self.channels, 1, name="excite", dtype=self.dtype_policy)

    def build(self, input_shape):
        if input_shape[-1] != self.channels:
            raise ValueError(f"{self.name}: expected {self.channels} channels, got {input_shape[-1]}")
        self.squeeze.build((input_shape[0], 1, 1, self.channels))
        self.excite.build((input_shape[0], 1, 1, self.squeeze.filters))
        self.built = True

    def call(self, x, training=None):
        y = keras.ops.mean(x, axis=(1, 2), keepdims=True)
        return self.excite(self.squeeze(y, training=training), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, 1, self.channels)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, reduction=self.reduction)
        return config

"""Conv -> BatchNorm -> ReLU, the unit every HA-CNN / BN-Inception convolution uses."""

import keras

from keras_hpnet.layers._util import build_chain
from keras_hpnet.layers.fused_batch_norm import FusedBatchNormalization


@keras.saving.register_keras_serializable(package="keras_hpnet")
class ConvBlock(keras.layers.Layer):
    """Convolution (with bias) followed by batch normalisation and ReLU.

    HA-CNN (Li et al. 2018, Sec. 3.1): "every conv is Conv -> BN -> ReLU";
    BN-Inception (Ioffe & Szegedy 2015) uses the same unit.

    Args:
        filters: output channels.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw).
        activation: bool, apply the ReLU (default True).
    """

    _takes_training = True

    def __init__(self, filters, kernel_size=1, strides=1, activation=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = kernel_size
        self.strides = strides
        self.activation = bool(activation)
        self.conv = keras.layers.Conv2D(
            self.filters, kernel_size, strides=strides, padding="same", use_bias=True,
            kernel_initializer="he_normal", name="conv", dtype=self.dtype_policy)
        # PyTorch-style BN statistics (momentum 0.1 there == 0.9 here, eps 1e-5).
        self.bn = FusedBatchNormalization(momentum=0.9, epsilon=1e-5, name="bn", dtype=self.dtype_policy)

    def build(self, input_shape):
        build_chain([self.conv, self.bn], input_shape)
        self.built = True

    def call(self, x, training=None):
        x = self.bn(self.conv(x), training=training)
        return keras.ops.relu(x) if self.activation else x

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size,
                      strides=self.strides, activation=self.activation)
        return config

"""M-net: the main net of HydraPlus-Net, a half-width BN-Inception (Liu et al. 2017, Sec. 3.1)."""

import keras

from keras_hpnet.layers import (ConvBlock, FusedBatchNormalization, ImageNormalization,
                                InceptionV2Block)
from keras_hpnet.model_catalog import MNET as MNET_SPEC
from keras_hpnet.models.base import PedestrianModel, check_counts, check_input_shape

MNET_INPUT_SHAPE = MNET_SPEC.default_input_shape  # 256x128, why: keras_hpnet.model_catalog


def _module(b1, r3, b3, rd, bd, proj, pool="avg", strides=1):
    return dict(branch_1x1=b1, reduce_3x3=r3, branch_3x3=b3, reduce_double=rd,
                branch_double=bd, pool_proj=proj, pool=pool, strides=strides)


# The authors' half-width BN-Inception: 3a 128, 3b 256 (stride 2, /16),
# 4a 288, 4b 502 (stride 2, /32), 5a/5b 512. Reduction modules (3b, 4b) pass the
# max-pooled input through: 128 + 80 + 48 = 256, 288 + 96 + 118 = 502.
MNET_BLOCKS = (
    (_module(32, 32, 32, 32, 48, 16), _module(0, 64, 80, 32, 48, 0, "max", 2)),          # 3a, 3b
    (_module(112, 32, 48, 48, 64, 64), _module(0, 64, 96, 96, 118, 0, "max", 2)),        # 4a, 4b
    (_module(176, 96, 160, 80, 112, 64), _module(176, 96, 160, 96, 112, 64, "max")),     # 5a, 5b
)
BLOCK_NAMES = (("3a", "3b"), ("4a", "4b"), ("5a", "5b"))


@keras.saving.register_keras_serializable(package="keras_hpnet")
class MNet(PedestrianModel):
    """M-net alone: HydraPlus-Net's ablation baseline (Liu et al. 2017, Sec. 4).

    Stem: conv 7x7/2 (32) -> max-pool 3x3/2 -> conv 1x1 (32) -> conv 3x3 (96) ->
    max-pool 3x3/2 (/8), then three inception blocks (3a-3b, 4a-4b, 5a-5b) to /32.
    Head: GAP -> FC `num_attributes` (attribute logits) and GAP -> dense
    `embedding_dim` + BN + ReLU (the embedding, fed to the identity classifier).

    Args:
        num_classes: identities (0 = no classifier).
        num_attributes: attributes (0 = no attribute head).
        input_shape: (H, W[, 3]); default 256x128; H and W multiples of 32 advised.
        width: channel multiplier of the whole net (1.0 = the released half-width
            BN-Inception; smaller values for fast tests).
        embedding_dim: size of the embedding (512).
    """

    model_name = "mnet"

    def __init__(self, num_classes, num_attributes=0, input_shape=None, width=1.0,
                 embedding_dim=512, **kwargs):
        num_classes, num_attributes = check_counts(self.model_name, num_classes, num_attributes)
        input_shape = check_input_shape(self.model_name, input_shape, MNET_INPUT_SHAPE)
        if input_shape[0] < 32 or input_shape[1] < 32:
            raise ValueError(f"{self.model_name}: input_shape must be at least 32x32 "
                             f"(the net reduces by 32), got {input_shape!r}")
        super().__init__(num_classes, num_attributes, input_shape, **kwargs)
        self.width = float(width)
        if not self.width > 0:
            raise ValueError(f"{self.model_name}: width must be > 0, got {width!r}")
        self._embedding_dim = int(embedding_dim)

        def w(c):
            return max(1, int(round(c * self.width)))

        self.normalize = ImageNormalization(name="normalize")
        self.stem = [
            ConvBlock(w(32), 7, strides=2, name="conv1"),
            keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1"),
            ConvBlock(w(32), 1, name="conv2_reduce"),
            ConvBlock(w(96), 3, name="conv2"),
            keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool2"),
        ]
        self.blocks = [
            [InceptionV2Block(**cfg, width=self.width, name=f"inception_{n}")
             for cfg, n in zip(block, names)]
            for block, names in zip(MNET_BLOCKS, BLOCK_NAMES)
        ]
        self.fusion_fc = keras.layers.Dense(self._embedding_dim, name="fusion_fc")
        self.fusion_bn = FusedBatchNormalization(momentum=0.9, epsilon=1e-5, name="fusion_bn")
        if self._num_attributes:
            self.attribute_fc = keras.layers.Dense(self._num_attributes, name="attribute_fc")
        if self._num_classes:
            self.classifier = keras.layers.Dense(self._num_classes, name="classifier")

    @property
    def embedding_dim(self):
        return self._embedding_dim

    @property
    def main_net_layers(self):
        """M-net: normalisation, stem and blocks 3-5 (Sec. 3.1)."""
        return [self.normalize, *self.stem, *(m for block in self.blocks for m in block)]

    @property
    def fusion_layers(self):
        """The layers after the pooled features (HP-Net: M-net ++ AF-net): the
        fused FC with its BN (the embedding) and the task heads."""
        return [layer for layer in (self.fusion_fc, self.fusion_bn, getattr(self, "attribute_fc", None),
                                    getattr(self, "classifier", None)) if layer is not None]

    def _main_net(self, x, training):
        """Normalise, stem and the three blocks; returns the three block outputs."""
        x = self.normalize(x)
        for layer in self.stem:
            x = layer(x, training=training) if isinstance(layer, ConvBlock) else layer(x)
        levels = []
        for block in self.blocks:
            for module in block:
                x = module(x, training=training)
            levels.append(x)
        return levels

    def _fused_features(self, levels, training):
        """The pooled features the heads see, and the attention dict."""
        return keras.ops.mean(levels[-1], axis=(1, 2)), {}

    def _forward(self, x, training=False):
        levels = self._main_net(x, training)
        pooled, attention = self._fused_features(levels, training)
        embedding = keras.ops.relu(self.fusion_bn(self.fusion_fc(pooled), training=training))
        out = {"embedding": embedding, "features": [embedding]}
        if self._num_attributes:
            out["attribute_logits"] = self.attribute_fc(pooled)
        if self._num_classes:
            out["identity_logits"] = [self.classifier(embedding)]
        return out, attention

    def get_config(self):
        config = super().get_config()
        config.update(width=self.width, embedding_dim=self._embedding_dim)
        return config

"""HA-CNN: Harmonious Attention CNN (Li, Zhu, Gong, CVPR 2018)."""

import keras

from keras_hpnet.layers import (AffineRegionSampler, ConvBlock, FusedBatchNormalization,
                                HarmoniousAttention, ImageNormalization, InceptionA, InceptionB,
                                region_boxes)
from keras_hpnet.model_catalog import HACNN as HACNN_SPEC
from keras_hpnet.models.base import (PedestrianModel, check_counts, check_input_shape,
                                     l2_normalize)

HACNN_INPUT_SHAPE = HACNN_SPEC.default_input_shape  # (160, 64, 3), the paper's fixed size
# Local-branch sampling sizes per level (Sec. 3.1, torchreid): from the stem output,
# then from the previous level's attended global output.
LOCAL_SIZES = ((24, 28), (12, 14), (6, 7))
# Region theta = [[1, 0, tx], [0, 0.25, ty]]: full width, a quarter of the height.
REGION_SCALE = (1.0, 0.25)
NUM_REGIONS = 4


@keras.saving.register_keras_serializable(package="keras_hpnet")
class HACNN(PedestrianModel):
    """Harmonious Attention CNN for person re-identification (Li et al. 2018, Sec. 3).

    Global branch: stem 3x3/2 -> 3 levels of Inception-A + Inception-B, each
    followed by a Harmonious Attention block whose soft mask multiplies the level
    output. Local branch: per level, the 4 hard-attention regions are sampled
    (level 1 from the stem output, levels 2-3 from the previous attended global
    output), the previous local feature is added (cross-attention interaction)
    and an Inception-B shared by the 4 regions is applied. Heads: global GAP ->
    512 (dense-BN-ReLU), local 4 x GAP -> concat -> 512; one identity classifier
    each. Ranking feature: L2(global) ++ L2(local), 1024-d.

    Args:
        num_classes: identities (0 = no classifiers).
        num_attributes: must be 0 (use `HATCNN` for attributes).
        input_shape: must be (160, 64[, 3]) (the paper's fixed size) or None.
        channels: channels of the three levels, (128, 256, 384) in the paper.
        feature_dim: size of each head's feature, 512 in the paper.
    """

    model_name = "hacnn"

    def __init__(self, num_classes, num_attributes=0, input_shape=None,
                 channels=(128, 256, 384), feature_dim=512, **kwargs):
        num_classes, num_attributes = check_counts(self.model_name, num_classes, num_attributes)
        self._check_attributes(num_attributes)
        input_shape = check_input_shape(self.model_name, input_shape, HACNN_INPUT_SHAPE)
        if input_shape != HACNN_INPUT_SHAPE:
            raise ValueError(f"{self.model_name}: HA-CNN takes a fixed 160x64 input "
                             f"(Li et al. 2018); got input_shape={input_shape!r}")
        super().__init__(num_classes, num_attributes, input_shape, **kwargs)
        self.channels = tuple(int(c) for c in channels)
        if len(self.channels) != 3:
            raise ValueError(f"{self.model_name}: channels needs 3 values, got {channels!r}")
        self.feature_dim = int(feature_dim)

        self.normalize = ImageNormalization(name="normalize")
        self.stem = ConvBlock(32, 3, strides=2, name="stem")
        self.levels, self.ha_blocks, self.samplers, self.local_convs = [], [], [], []
        for i, (c, size) in enumerate(zip(self.channels, LOCAL_SIZES), start=1):
            self.levels.append([InceptionA(c, name=f"inception{i}a"),
                                InceptionB(c, name=f"inception{i}b")])
            self.ha_blocks.append(HarmoniousAttention(c, NUM_REGIONS, name=f"ha{i}"))
            self.samplers.append(AffineRegionSampler(size, REGION_SCALE, name=f"sampler{i}"))
            self.local_convs.append(InceptionB(c, name=f"local_inception{i}"))
        self.global_fc = keras.layers.Dense(self.feature_dim, name="global_fc")
        self.global_bn = FusedBatchNormalization(momentum=0.9, epsilon=1e-5, name="global_bn")
        self.local_fc = keras.layers.Dense(self.feature_dim, name="local_fc")
        self.local_bn = FusedBatchNormalization(momentum=0.9, epsilon=1e-5, name="local_bn")
        if self._num_classes:
            self.global_classifier = keras.layers.Dense(self._num_classes, name="global_classifier")
            self.local_classifier = keras.layers.Dense(self._num_classes, name="local_classifier")

    def _check_attributes(self, num_attributes):
        if num_attributes:
            raise ValueError(f"{self.model_name}: HA-CNN has no attribute head "
                             f"(num_attributes={num_attributes}); use 'hatcnn' for attributes")

    @property
    def embedding_dim(self):
        return 2 * self.feature_dim

    def _backbone(self, x, training):
        """Global and local branches; returns (global_feat, local_feat, attention dict)."""
        x = self.stem(self.normalize(x), training=training)
        source, local, attention = x, None, {}
        g = x
        for i in range(3):
            g = self.levels[i][0](g, training=training)
            g = self.levels[i][1](g, training=training)
            mask, translations = self.ha_blocks[i](g, training=training)
            g = g * mask
            regions = self.samplers[i]([source, translations])  # [N*4, h, w, C]
            if local is not None:
                regions = regions + local  # cross-attention interaction
            local = self.local_convs[i](regions, training=training)
            source = g
            attention[f"soft_level{i + 1}"] = keras.ops.mean(mask, axis=-1)
            attention[f"translations_level{i + 1}"] = translations
        global_feat = keras.ops.relu(self.global_bn(
            self.global_fc(keras.ops.mean(g, axis=(1, 2))), training=training))
        local_pooled = keras.ops.mean(local, axis=(1, 2))  # [N*4, C]
        local_pooled = keras.ops.reshape(local_pooled, (-1, NUM_REGIONS * local_pooled.shape[-1]))
        local_feat = keras.ops.relu(self.local_bn(self.local_fc(local_pooled), training=training))
        return global_feat, local_feat, attention

    def _forward(self, x, training=False):
        global_feat, local_feat, attention = self._backbone(x, training)
        out = {
            "embedding": keras.ops.concatenate(
                [l2_normalize(global_feat), l2_normalize(local_feat)], axis=-1),
            "features": [global_feat, local_feat],
        }
        if self._num_classes:
            out["identity_logits"] = [self.global_classifier(global_feat),
                                      self.local_classifier(local_feat)]
        return out, attention

    def attention_maps(self, x):
        """Soft maps per level (`soft_level{1,2,3}`, channel mean of the mask, [N, h, w])
        and hard-attention regions (`boxes_level{1,2,3}`, [N, 4, 4] as (y1, x1, y2, x2)
        fractions of the image, unclipped; `translations_level*` the raw (tx, ty))."""
        maps = super().attention_maps(x)
        for i in range(1, 4):
            maps[f"boxes_level{i}"] = region_boxes(maps[f"translations_level{i}"], REGION_SCALE)
        return maps

    def get_config(self):
        config = super().get_config()
        config.update(channels=list(self.channels), feature_dim=self.feature_dim)
        return config

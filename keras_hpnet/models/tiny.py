"""TinyNet: a seconds-to-train stand-in following the model contract (design.md "Models").

Not a paper network: `python -m training.fit --model tiny` uses it for smoke
tests of a data, distribution or training-loop set-up, and the export,
serving and edge tests use it as a fast model with the parts that matter
there (normalisation inside, conv + BatchNorm, dict outputs, sigmoid
attributes). Registered like the others (`build_model("tiny", ...)`).
"""

import keras
from keras import layers, ops

from keras_hpnet.metadata import IMAGENET_MEAN, IMAGENET_STD
from keras_hpnet.model_catalog import TINY as TINY_SPEC
from keras_hpnet.models.base import PedestrianModel, check_counts, check_input_shape


@keras.saving.register_keras_serializable(package="keras_hpnet")
class TinyNet(PedestrianModel):
    """`depth` (default 3) stride-2 Conv(w * 2^i) + BatchNorm + ReLU blocks, GAP, a dense
    feature, identity and attribute heads. Built on construction.

    Inference `embedding`: the feature (`feature_dim`) followed by
    the attribute probabilities (like HAT-CNN's ranking feature), so
    `embedding_dim = feature_dim + num_attributes`.
    """

    model_name = "tiny"

    def __init__(self, num_classes=0, num_attributes=0, input_shape=None, width=16, feature_dim=32, depth=3,
                 **kwargs):
        if "input_size" in kwargs:  # model.keras files saved before TinyNet took input_shape
            input_shape = kwargs.pop("input_size")
        num_classes, num_attributes = check_counts(self.model_name, num_classes, num_attributes)
        input_shape = check_input_shape(self.model_name, input_shape, TINY_SPEC.default_input_shape)
        super().__init__(num_classes, num_attributes, input_shape, **kwargs)
        self.width = int(width)
        self.feature_dim = int(feature_dim)
        self.depth = int(depth)
        if min(self.width, self.feature_dim, self.depth) < 1:
            raise ValueError(f"{self.model_name}: width/feature_dim/depth must be >= 1, "
                             f"got {width}, {feature_dim}, {depth}")
        self.convs = [layers.Conv2D(self.width * 2**i, 3, strides=2, padding="same", use_bias=False)
                      for i in range(self.depth)]
        self.norms = [layers.BatchNormalization() for _ in range(self.depth)]
        self.pool = layers.GlobalAveragePooling2D()
        self.feature = layers.Dense(self.feature_dim)
        self.classifier = layers.Dense(self._num_classes) if self._num_classes else None
        self.attribute_head = layers.Dense(self._num_attributes) if self._num_attributes else None
        self.build((None, *self.input_size, 3))

    @property
    def embedding_dim(self):
        return self.feature_dim + self._num_attributes

    def build(self, input_shape):
        x = (None, *self.input_size, 3)
        for conv, norm in zip(self.convs, self.norms):
            conv.build(x)
            x = conv.compute_output_shape(x)
            norm.build(x)
        self.feature.build((None, x[-1]))
        if self.classifier:
            self.classifier.build((None, self.feature_dim))
        if self.attribute_head:
            self.attribute_head.build((None, x[-1]))
        self.built = True

    def _forward(self, images, training=False):
        x = (ops.cast(images, "float32") - ops.array(IMAGENET_MEAN, "float32")) / ops.array(IMAGENET_STD, "float32")
        for conv, norm in zip(self.convs, self.norms):
            x = ops.relu(norm(conv(x), training=training))
        pooled = self.pool(x)
        feature = self.feature(pooled)
        out = {"features": [feature], "embedding": feature}
        if self.attribute_head is not None:
            out["attribute_logits"] = self.attribute_head(pooled)
            out["embedding"] = ops.concatenate([feature, ops.sigmoid(out["attribute_logits"])], axis=-1)
        if self.classifier is not None:
            out["identity_logits"] = [self.classifier(feature)]
        return out, {}

    def get_config(self):
        config = super().get_config()
        config.update(width=self.width, feature_dim=self.feature_dim, depth=self.depth)
        return config

"""TinyNet: a seconds-to-train stand-in following the model contract (design.md "Models").

Not a paper network: `python -m training.fit --model tiny` uses it for smoke
tests of a data, distribution or training-loop set-up, and the export,
serving and edge tests use it as a fast model with the parts that matter
there (normalisation inside, conv + BatchNorm, dict outputs, sigmoid
attributes). Built directly (`TinyNet(...)`), not through `build_model`.
"""

import keras
from keras import layers, ops

from keras_hpnet.metadata import IMAGENET_MEAN, IMAGENET_STD


@keras.saving.register_keras_serializable(package="keras_hpnet")
class TinyNet(keras.Model):
    """`depth` (default 3) stride-2 Conv(w * 2^i) + BatchNorm + ReLU blocks, GAP, a dense
    feature, identity and attribute heads.

    Inference `embedding`: the feature (`feature_dim`) followed by
    the attribute probabilities (like HAT-CNN's ranking feature), so
    `embedding_dim = feature_dim + num_attributes`.
    """

    def __init__(self, num_classes=0, num_attributes=0, input_size=(32, 16), width=16, feature_dim=32, depth=3, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.num_attributes = int(num_attributes)
        self.input_size = tuple(int(v) for v in input_size)
        self.width = int(width)
        self.feature_dim = int(feature_dim)
        self.depth = int(depth)
        if min(self.num_classes, self.num_attributes) < 0 or min(self.width, self.feature_dim, self.depth) < 1:
            raise ValueError(f"TinyNet: num_classes/num_attributes must be >= 0 and width/feature_dim/depth >= 1, "
                             f"got {num_classes}, {num_attributes}, {width}, {feature_dim}, {depth}")
        self.convs = [layers.Conv2D(self.width * 2**i, 3, strides=2, padding="same", use_bias=False)
                      for i in range(self.depth)]
        self.norms = [layers.BatchNormalization() for _ in range(self.depth)]
        self.pool = layers.GlobalAveragePooling2D()
        self.feature = layers.Dense(self.feature_dim)
        self.embedding_dim = self.feature_dim + self.num_attributes
        self.classifier = layers.Dense(self.num_classes) if self.num_classes else None
        self.attribute_head = layers.Dense(self.num_attributes) if self.num_attributes else None
        self.build((None, *self.input_size, 3))

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

    def call(self, images, training=False):
        x = (ops.cast(images, "float32") - ops.array(IMAGENET_MEAN, "float32")) / ops.array(IMAGENET_STD, "float32")
        for conv, norm in zip(self.convs, self.norms):
            x = ops.relu(norm(conv(x), training=training))
        pooled = self.pool(x)
        feature = self.feature(pooled)
        out = {}
        embedding = [feature]
        if self.attribute_head is not None:
            logits = self.attribute_head(pooled)
            out["attribute_logits" if training else "attributes"] = logits if training else ops.sigmoid(logits)
            embedding.append(ops.sigmoid(logits))
        out["embedding"] = ops.concatenate(embedding, axis=-1) if len(embedding) > 1 else embedding[0]
        if training:
            out["features"] = [feature]
            if self.classifier is not None:
                out["identity_logits"] = [self.classifier(feature)]
        return out

    def attention_maps(self, images):
        return {}

    def get_config(self):
        return {"num_classes": self.num_classes, "num_attributes": self.num_attributes,
                "input_size": list(self.input_size), "width": self.width, "feature_dim": self.feature_dim,
                "depth": self.depth,
                "name": self.name}

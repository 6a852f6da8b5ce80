"""`--model tiny`: a 3-conv network following the model contract.

Not a paper model: a seconds-to-train network for smoke tests of a data set-up,
a distribution set-up or the training loop itself (the test suite uses it).
Same contract as `keras_hpnet.build_model` models (design.md "Models").
"""

import keras
from keras import layers, ops

MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@keras.saving.register_keras_serializable(package="keras_hpnet")
class TinyNet(keras.Model):
    """Conv(16)-Conv(32)-Conv(64), GAP, dense feature, identity and attribute heads."""

    def __init__(self, num_classes=0, num_attributes=0, input_size=(32, 16), width=16, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.num_attributes = int(num_attributes)
        self.input_size = tuple(int(v) for v in input_size)
        self.width = int(width)
        self.convs = [layers.Conv2D(width * 2**i, 3, strides=2, padding="same", use_bias=False) for i in range(3)]
        self.norms = [layers.BatchNormalization() for _ in range(3)]
        self.pool = layers.GlobalAveragePooling2D()
        self.feature = layers.Dense(32)
        self.embedding_dim = 32 + (self.num_attributes > 0) * self.num_attributes
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
            self.classifier.build((None, 32))
        if self.attribute_head:
            self.attribute_head.build((None, x[-1]))
        self.built = True

    def call(self, images, training=False):
        x = (ops.cast(images, "float32") - ops.array(MEAN)) / ops.array(STD)
        for conv, norm in zip(self.convs, self.norms):
            x = ops.relu(norm(conv(x), training=training))
        pooled = self.pool(x)
        feature = self.feature(pooled)
        out = {}
        embedding = [feature / (ops.norm(feature, axis=-1, keepdims=True) + 1e-12)]
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
                "input_size": list(self.input_size), "width": self.width, "name": self.name}

"""HAT-CNN: HA-CNN with a separate attribute network (seed hat-cnn.md)."""

import keras

from keras_hpnet.layers import (ConvBlock, FusedBatchNormalization, ImageNormalization,
                                InceptionA, InceptionB)
from keras_hpnet.layers._util import build_chain, run_chain
from keras_hpnet.model_catalog import POOLINGS
from keras_hpnet.models.base import l2_normalize
from keras_hpnet.models.hacnn import HACNN


def _check_pooling(pooling, argument):
    if pooling not in POOLINGS:
        raise ValueError(f"{argument} must be one of {POOLINGS}, got {pooling!r}")
    return pooling


@keras.saving.register_keras_serializable(package="keras_hpnet")
class AttributeNetwork(keras.layers.Layer):
    """HAT-CNN's attribute branch on the raw image (seed hat-cnn.md, Sec. "Method").

    Stem 3x3/2 (32) -> Inception-A(128) -> Inception-B(128) -> Inception-A(384)
    -> Inception-B(384) -> pooling -> dense 100 + BN + ReLU -> dense
    `num_attributes` (logits). About 0.8M parameters.

    `pooling` of the last 20x8 map: "avg", the released network's global
    average (default); "max", global max; "avgmax", their sum. A bag, a hat or
    a bare forearm covers a few cells of the map: the average dilutes it, the
    max keeps it (docs/models.md has the measured difference). The weights are
    the same for all three.
    """

    _takes_training = True
    POOLINGS = POOLINGS

    def __init__(self, num_attributes, hidden=100, pooling="avg", **kwargs):
        super().__init__(**kwargs)
        self.num_attributes = int(num_attributes)
        self.hidden = int(hidden)
        self.pooling = _check_pooling(pooling, "AttributeNetwork: pooling")
        self.blocks = [ConvBlock(32, 3, strides=2, name="stem"),
                       InceptionA(128, name="inception1a"), InceptionB(128, name="inception1b"),
                       InceptionA(384, name="inception2a"), InceptionB(384, name="inception2b")]
        self.fc = keras.layers.Dense(self.hidden, name="fc")
        self.bn = FusedBatchNormalization(momentum=0.9, epsilon=1e-5, name="bn")
        self.classifier = keras.layers.Dense(self.num_attributes, name="classifier")

    def build(self, input_shape):
        shape = build_chain(self.blocks, input_shape)
        self.fc.build((shape[0], shape[-1]))
        self.bn.build((shape[0], self.hidden))
        self.classifier.build((shape[0], self.hidden))
        self.built = True

    def call(self, x, training=None):
        x = run_chain(self.blocks, x, training)
        if self.pooling == "avg":
            pooled = keras.ops.mean(x, axis=(1, 2))
        elif self.pooling == "max":
            pooled = keras.ops.max(x, axis=(1, 2))
        else:
            pooled = keras.ops.mean(x, axis=(1, 2)) + keras.ops.max(x, axis=(1, 2))
        x = keras.ops.relu(self.bn(self.fc(pooled), training=training))
        return self.classifier(x)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_attributes)

    def get_config(self):
        config = super().get_config()
        config.update(num_attributes=self.num_attributes, hidden=self.hidden, pooling=self.pooling)
        return config


@keras.saving.register_keras_serializable(package="keras_hpnet")
class HATCNN(HACNN):
    """HA-CNN plus a separate attribute network (HAT-CNN, seed hat-cnn.md).

    The HA-CNN part is unchanged. Ranking feature:
    concat(L2(global 512), L2(local 512), L2(attribute logits A)), e.g. 1050-d for
    26 Market-1501 attributes, compared with Euclidean distance.

    Args: as `HACNN`, with `num_attributes` > 0 required, plus
        attribute_pooling: the attribute network's pooling, "avg" (the released
            network, default), "max" or "avgmax"; see `AttributeNetwork`.
    """

    model_name = "hatcnn"
    # Stage switches (training.stages; the attribute warm-up, docs/training.md): with
    # identity_net_enabled False a training call runs the attribute network alone
    # (no identity logits), on images average-pooled by attribute_input_pool.
    # Inference always runs everything at full resolution.
    STAGE_SWITCHES = {"identity_net_enabled": True, "attribute_input_pool": 1}

    def __init__(self, num_classes, num_attributes=0, input_shape=None, attribute_pooling="avg", **kwargs):
        super().__init__(num_classes, num_attributes, input_shape, **kwargs)
        _check_pooling(attribute_pooling, f"{self.model_name}: attribute_pooling")
        self.attribute_net = AttributeNetwork(self._num_attributes, pooling=attribute_pooling,
                                              name="attribute_net")

    @property
    def identity_net_layers(self):
        """HA-CNN: every layer but the attribute network (a stage part, training.stages)."""
        return [layer for layer in self._flatten_layers(include_self=False, recursive=False)
                if layer is not self.attribute_net]

    @property
    def attribute_net_layers(self):
        return [self.attribute_net]

    @property
    def attribute_pooling(self):
        return self.attribute_net.pooling

    def _check_attributes(self, num_attributes):
        if num_attributes <= 0:
            raise ValueError(f"{self.model_name}: HAT-CNN needs num_attributes > 0 "
                             f"(got {num_attributes}); use 'hacnn' for identities only")

    @property
    def embedding_dim(self):
        return 2 * self.feature_dim + self._num_attributes

    def _attribute_logits(self, x, training):
        x = self.normalize(x)
        if training and self.attribute_input_pool > 1:
            x = keras.ops.average_pool(x, self.attribute_input_pool, self.attribute_input_pool)
        return self.attribute_net(x, training=training)

    def _forward(self, x, training=False):
        if training and not self.identity_net_enabled:
            return {"attribute_logits": self._attribute_logits(x, training)}, {}
        out, attention = super()._forward(x, training)
        logits = self._attribute_logits(x, training)
        out["attribute_logits"] = logits
        out["embedding"] = keras.ops.concatenate([out["embedding"], l2_normalize(logits)], axis=-1)
        return out, attention

    def get_config(self):
        config = super().get_config()
        config.update(attribute_pooling=self.attribute_pooling)
        return config

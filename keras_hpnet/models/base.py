"""Shared behaviour of the keras_hpnet models (the model contract of docs/design.md)."""

import keras
import numpy as np


def float32(x):
    """`x` as float32 (a no-op under the default policy; mixed precision computes in 16 bits)."""
    return keras.ops.cast(x, "float32")


def l2_normalize(x, axis=-1, epsilon=1e-12):
    x = float32(x)
    return x * keras.ops.rsqrt(keras.ops.maximum(keras.ops.sum(x * x, axis=axis, keepdims=True), epsilon))


def check_counts(model_name, num_classes, num_attributes):
    for field, value in (("num_classes", num_classes), ("num_attributes", num_attributes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{model_name}: {field} must be an integer >= 0, got {value!r}")
    return int(num_classes), int(num_attributes)


def check_input_shape(model_name, input_shape, default):
    if input_shape is None:
        return tuple(default)
    shape = tuple(input_shape)
    if len(shape) == 2:
        shape = shape + (3,)
    if len(shape) != 3 or shape[2] != 3 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape):
        raise ValueError(f"{model_name}: input_shape must be (height, width) or (height, width, 3) "
                         f"with positive integers, got {input_shape!r}")
    return tuple(int(s) for s in shape)


def check_rgb_input(who, x, input_size, layout="[N, H, W, 3]", what="images"):
    """ValueError naming `who` unless `x` has the rank of `layout`, 3 channels and, where
    known, frames of `input_size` (H, W)."""
    shape = tuple(x.shape)
    if len(shape) != layout.count(",") + 1 or shape[-1] != 3:
        raise ValueError(f"{who}: expected RGB {what} {layout}, got shape {shape}")
    h, w = shape[-3], shape[-2]
    if h is not None and w is not None and (h, w) != tuple(input_size):
        raise ValueError(f"{who}: expected {'images' if what == 'images' else 'frames'} of {input_size[0]}x"
                         f"{input_size[1]} (HxW), got {h}x{w}")


class PedestrianModel(keras.Model):
    """Base class: properties and input checks common to all keras_hpnet models.

    Subclasses implement `_forward(x, training) -> (features_dict, attention_dict)`
    where `features_dict` holds `embedding`, optional `identity_logits` (list),
    `attribute_logits` and `features` (list).
    """

    model_name = "base"  # the registry name; its spec (keras_hpnet.model_spec) describes the class

    # Attributes a training stage may set (training.stages), with their defaults:
    # the model's behaviour outside stages. Subclasses with stages declare theirs.
    STAGE_SWITCHES = {}

    def __init__(self, num_classes, num_attributes, input_shape, attribute_names=None, **kwargs):
        super().__init__(**kwargs)
        self._num_classes = int(num_classes)
        self._num_attributes = int(num_attributes)
        self.input_shape = tuple(int(s) for s in input_shape)
        names = [str(a) for a in attribute_names] if attribute_names else []
        if names and len(names) != self._num_attributes:
            raise ValueError(f"{self.model_name}: {len(names)} attribute_names for "
                             f"num_attributes={self._num_attributes}")
        self._attribute_names = names
        for name, default in self.STAGE_SWITCHES.items():  # the training stages' switches (training.stages)
            setattr(self, name, default)

    @property
    def spec(self):
        """The registered `keras_hpnet.model_spec.ModelSpec` of this class
        (AttributeError for a class that is not registered)."""
        from keras_hpnet.model_spec import available_models, spec

        if self.model_name not in available_models():
            raise AttributeError(f"{type(self).__name__}: model_name {self.model_name!r} is not registered "
                                 f"(keras_hpnet.model_spec.register)")
        return spec(self.model_name)

    @property
    def attribute_names(self):
        """Names of the `attributes` outputs, saved in model.keras ([] when not given)."""
        return list(self._attribute_names)

    @property
    def embedding_includes_attributes(self):
        """True when the embedding's last `num_attributes` dims are the attribute
        part (the spec's `embedding_ends_with_attributes`, HAT-CNN)."""
        spec = getattr(self, "spec", None)
        return bool(self._num_attributes) and bool(spec and spec.embedding_ends_with_attributes)

    @property
    def input_size(self):
        """(height, width) of the input the model expects."""
        return self.input_shape[:2]

    @property
    def num_classes(self):
        return self._num_classes

    @property
    def num_attributes(self):
        return self._num_attributes

    @property
    def embedding_dim(self):
        raise NotImplementedError

    def _check_input(self, x):
        check_rgb_input(self.model_name, x, self.input_size)

    def call(self, inputs, training=None):
        self._check_input(inputs)
        out, _ = self._forward(inputs, training=bool(training))
        out = keras.tree.map_structure(float32, out)  # float32 outputs under any policy
        if training:
            return out
        result = {"embedding": out["embedding"]}
        if self._num_attributes:
            result["attributes"] = keras.ops.sigmoid(out["attribute_logits"])
        return result

    def attention_maps(self, x):
        """Attention for images `x` ([N, H, W, 3], 0..255) as a dict of numpy arrays."""
        x = keras.ops.convert_to_tensor(np.asarray(x))
        if len(x.shape) == 3:
            x = x[None]
        self._check_input(x)
        _, attention = self._forward(x, training=False)
        return {k: np.asarray(keras.ops.convert_to_numpy(float32(v))) for k, v in attention.items()}

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable,
                  "num_classes": self._num_classes, "num_attributes": self._num_attributes,
                  "input_shape": list(self.input_shape)}
        if self._attribute_names:
            config["attribute_names"] = list(self._attribute_names)
        return config

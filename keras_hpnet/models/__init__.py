"""keras_hpnet.models: one network per file and the `build_model` registry.

Which networks exist and what they need is in their specs
(`keras_hpnet.model_spec`, registered in `keras_hpnet.model_catalog`);
importing this package defines (and registers with Keras) the classes.
"""

import numpy as np

from keras_hpnet.model_spec import ModelSpec, available_models, register, spec
from keras_hpnet.models.base import PedestrianModel
from keras_hpnet.models.hacnn import HACNN
from keras_hpnet.models.hatcnn import HATCNN
from keras_hpnet.models.hpnet import HPNet
from keras_hpnet.models.mnet import MNet
from keras_hpnet.models.tiny import TinyNet
from keras_hpnet.models.video import VideoModel, build_video_model


def build_model(name, *, num_classes, num_attributes=0, input_shape=None, attribute_names=None, **options):
    """Build (and initialise the weights of) a registered keras_hpnet model.

    Args:
        name: one of `available_models()` ("hacnn", "hatcnn", "hpnet", "mnet", "tiny").
        num_classes: training identities (0 = no identity classifier).
        num_attributes: attributes (0 = none; "hatcnn" needs > 0).
        input_shape: (H, W) or (H, W, 3); None = the spec's default.
        attribute_names: names of the attribute outputs (saved with the model);
            their number must be `num_attributes`.
        **options: model-specific keyword options (the spec's, see docs/models.md).

    Returns:
        A built `keras.Model` following the model contract of docs/design.md.
    """
    model_spec = spec(name)
    model_spec.options_with_defaults(**options)  # unknown options and values not allowed
    cls = model_spec.model_class()
    extra = {"attribute_names": list(attribute_names)} if attribute_names is not None else {}
    model = cls(num_classes=num_classes, num_attributes=num_attributes,
                input_shape=model_spec.default_input_shape if input_shape is None else input_shape,
                **extra, **options)
    height, width = model.input_size
    model(np.zeros((1, height, width, 3), "float32"), training=False)
    return model


def build_like(model):
    """A fresh, built model with `model`'s architecture and options (its
    get_config), under the current dtype policy; the weights are new (a
    `VideoModel`: the same temporal head around a fresh image model)."""
    if isinstance(model, VideoModel):
        return build_video_model(model.model_name, seq_len=model.seq_len, pooling=model.pooling,
                                 attention_units=model.temporal_pooling.units, **_options(model.image_model))
    return build_model(model.model_name, **_options(model))


def _options(model):
    return {k: v for k, v in model.get_config().items() if k not in ("name", "trainable")}


__all__ = ["available_models", "build_like", "build_model", "build_video_model", "register", "spec", "ModelSpec",
           "PedestrianModel", "HACNN", "HATCNN", "HPNet", "MNet", "TinyNet", "VideoModel"]

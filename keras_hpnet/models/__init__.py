"""keras_hpnet.models: one network per file and the `build_model` registry."""

import inspect

import numpy as np

from keras_hpnet.models.base import PedestrianModel
from keras_hpnet.models.hacnn import HACNN
from keras_hpnet.models.hatcnn import HATCNN
from keras_hpnet.models.hpnet import HPNet
from keras_hpnet.models.mnet import MNet

_REGISTRY = {"hacnn": HACNN, "hatcnn": HATCNN, "hpnet": HPNet, "mnet": MNet}


def available_models():
    """Names accepted by `build_model`, sorted."""
    return sorted(_REGISTRY)


def _options(cls):
    """Model-specific keyword options of `cls` (its and its bases' __init__ arguments)."""
    names = set()
    for klass in cls.__mro__:
        if (klass.__module__.startswith("keras_hpnet.models.") and klass is not PedestrianModel
                and "__init__" in vars(klass)):
            names |= {p.name for p in inspect.signature(klass.__init__).parameters.values()
                      if p.kind is p.POSITIONAL_OR_KEYWORD}
    return names - {"self", "num_classes", "num_attributes", "input_shape"}


def build_model(name, *, num_classes, num_attributes=0, input_shape=None, **options):
    """Build (and initialise the weights of) a keras_hpnet model.

    Args:
        name: one of `available_models()` ("hacnn", "hatcnn", "hpnet", "mnet").
        num_classes: training identities (0 = no identity classifier).
        num_attributes: attributes (0 = none; "hatcnn" needs > 0).
        input_shape: (H, W) or (H, W, 3); None = the model's default.
        **options: model-specific keyword options (see docs/models.md).

    Returns:
        A built `keras.Model` following the model contract of docs/design.md.
    """
    key = str(name).lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    cls = _REGISTRY[key]
    accepted = _options(cls)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"{key}: unknown option(s) {', '.join(unknown)}; "
                         f"accepted: {', '.join(sorted(accepted)) or 'none'}")
    model = cls(num_classes=num_classes, num_attributes=num_attributes,
                input_shape=input_shape, **options)
    height, width = model.input_size
    model(np.zeros((1, height, width, 3), "float32"), training=False)
    return model


__all__ = ["available_models", "build_model", "PedestrianModel", *(c.__name__ for c in _REGISTRY.values())]

"""keras_hpnet.models: one network per file and the `build_model` registry."""

import numpy as np

from keras_hpnet.models.base import PedestrianModel
from keras_hpnet.models.hacnn import HACNN

_REGISTRY = {"hacnn": HACNN}

try:  # the other networks register themselves when their module exists
    from keras_hpnet.models.hatcnn import HATCNN
    _REGISTRY["hatcnn"] = HATCNN
except ImportError:  # pragma: no cover
    pass
try:
    from keras_hpnet.models.mnet import MNet
    _REGISTRY["mnet"] = MNet
except ImportError:  # pragma: no cover
    pass
try:
    from keras_hpnet.models.hpnet import HPNet
    _REGISTRY["hpnet"] = HPNet
except ImportError:  # pragma: no cover
    pass


def available_models():
    """Names accepted by `build_model`, sorted."""
    return sorted(_REGISTRY)


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
    try:
        model = _REGISTRY[key](num_classes=num_classes, num_attributes=num_attributes,
                               input_shape=input_shape, **options)
    except TypeError as e:
        raise ValueError(f"{key}: bad option ({e})") from None
    height, width = model.input_size
    model(np.zeros((1, height, width, 3), "float32"), training=False)
    return model


__all__ = ["available_models", "build_model", "PedestrianModel", *(c.__name__ for c in _REGISTRY.values())]

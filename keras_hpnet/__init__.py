"""keras-hpnet: pedestrian re-identification and attribute recognition.

Networks (HA-CNN, HAT-CNN, HydraPlus-Net, M-net) are built with
:func:`keras_hpnet.build_model`. Sub-packages that need no TensorFlow
(`keras_hpnet.metrics`, `keras_hpnet.metadata`, `keras_hpnet.datasets`)
import without it: this module loads TensorFlow/Keras only when a
model-related name is first used. After `import keras_hpnet`,
`keras.saving.load_model` reads keras_hpnet models (`_keras_hook`).
"""

import importlib

from keras_hpnet import _keras_hook

__version__ = "0.1.0"

_keras_hook.install()

_LAZY = {
    "build_model": ("keras_hpnet.models", "build_model"),
    "build_video_model": ("keras_hpnet.models", "build_video_model"),
    "available_models": ("keras_hpnet.model_spec", "available_models"),  # no TensorFlow
    "spec": ("keras_hpnet.model_spec", "spec"),  # no TensorFlow
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name == "models":  # `keras_hpnet.models.X` without importing it first (loads TensorFlow)
        return importlib.import_module("keras_hpnet.models")
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'keras_hpnet' has no attribute {name!r}")

"""Register the keras_hpnet classes with Keras as soon as Keras is imported.

`keras.saving.load_model("model.keras")` finds custom classes only in Keras'
registry of registered names ("keras_hpnet>HATCNN"); it imports the saved
module path itself only for keras/keras_hub/keras_cv/keras_nlp
(keras/src/saving/serialization_lib.py, `_retrieve_class_or_fn`). So that
`import keras_hpnet` is enough, as with `import keras_hub`, without importing
TensorFlow where it is not needed: if Keras is already imported, the classes
are registered now; otherwise a one-shot import hook registers them right
after Keras' own import (Keras imports TensorFlow then anyway). When a
keras_hpnet module itself imports Keras first (`import keras_hpnet.models`),
the packages it does not need are registered then, and it registers its own
classes as it runs.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import pkgutil
import sys
import warnings

# Packages whose modules define @keras.saving.register_keras_serializable
# classes, dependencies first (models use layers).
REGISTERING_PACKAGES = ("keras_hpnet.layers", "keras_hpnet.losses", "keras_hpnet.models")


def _initializing(prefix: str) -> bool:
    """True while a module named `prefix` or under it is being executed."""
    return any((name == prefix or name.startswith(prefix + "."))
               and getattr(getattr(module, "__spec__", None), "_initializing", False)
               for name, module in list(sys.modules.items()))


def register_all() -> None:
    """Import every module of REGISTERING_PACKAGES (their decorators register the classes).

    When a keras_hpnet module imported Keras, the packages being executed (and
    those that need them) are left to register themselves as they finish.
    """
    busy = any(_initializing(name) for name in REGISTERING_PACKAGES)
    for name in REGISTERING_PACKAGES:
        if _initializing(name):
            continue
        try:
            package = importlib.import_module(name)
            for info in pkgutil.iter_modules(package.__path__, prefix=f"{name}."):
                importlib.import_module(info.name)
        except ImportError:
            if not busy:
                raise  # a half-executed dependency explains it only when busy


def _register_quietly() -> None:
    try:
        register_all()
    except Exception as e:  # noqa: BLE001 - never break `import keras`; load_model will name the class
        warnings.warn(f"keras_hpnet: could not register its Keras classes ({type(e).__name__}: {e}); "
                      "import keras_hpnet.models before keras.saving.load_model", stacklevel=2)


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """Finds `keras` with the other finders and runs `register_all` after it executes."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        uninstall()
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_keras = spec.loader.exec_module  # this spec's own loader object: nothing global changes

        def exec_and_register(module):
            exec_keras(module)
            _register_quietly()

        spec.loader.exec_module = exec_and_register
        return spec


_HOOK = _AfterKerasImport()


def uninstall() -> None:
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


def install() -> None:
    """Register now if Keras is imported, else after its import."""
    if "keras" in sys.modules:
        _register_quietly()
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)

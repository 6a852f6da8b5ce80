"""Reading a training run directory (docs/design.md "A training run directory").

One implementation for every reader (`training.evaluate`, `export.run` for
the SavedModel and TFLite exporters)::

    config = read_run_config(run_dir)        # checked dict from config.json
    model = load_run_model(run_dir)          # model.keras, keras_hpnet classes registered
    ds = load_run_dataset(config)            # exactly the run's dataset and split

Bad input raises :class:`RunError` (a ValueError) naming the file and the
problem. Importing this module does not import TensorFlow or Keras.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import zipfile

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
# Every reader needs these; callers may require more (training.evaluate: "dataset").
REQUIRED_CONFIG_KEYS = ("model", "input_height", "input_width")
# Datasets made on first use by keras_hpnet.datasets (`load` puts them in a sub-folder of root).
GENERATED_PREFIX = "synthetic"


class RunError(ValueError):
    """A run directory that cannot be read (the message names the file and the problem)."""


def read_run_config(run_dir: str, required=()) -> dict:
    """`run_dir/config.json` as a dict, checked, and `run_dir/model.keras` present.

    `required`: config keys needed besides REQUIRED_CONFIG_KEYS.
    """
    if not run_dir:
        raise RunError("no run directory given")
    if not os.path.isdir(run_dir):
        raise RunError(f"run directory {run_dir!r}: no such directory (it does not exist or is not a directory)")
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise RunError(f"{path}: missing (not a training run directory? training.fit writes "
                       f"{CONFIG_FILE} and {MODEL_FILE})")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise RunError(f"{path}: cannot read ({e.strerror})") from None
    if not isinstance(config, dict):
        raise RunError(f"{path}: expected a JSON object, got {type(config).__name__}")
    keys = list(REQUIRED_CONFIG_KEYS) + [k for k in required if k not in REQUIRED_CONFIG_KEYS]
    missing = [k for k in keys if k not in config]
    if missing:
        raise RunError(f"{path}: missing field(s) {', '.join(missing)}")
    for k in ("input_height", "input_width"):
        v = config[k]
        # 0 is accepted ("the model's default"): model.input_size decides then.
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise RunError(f"{path}: {k!r} must be a positive integer (or 0 for the model default), got {v!r}")
    names = config.get("attribute_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(a, str) for a in names)):
        raise RunError(f"{path}: field 'attribute_names' must be a list of strings")
    options = config.get("dataset_options")
    if options is not None and not (isinstance(options, dict) and all(isinstance(k, str) for k in options)):
        raise RunError(f"{path}: field 'dataset_options' must be an object (keras_hpnet.datasets.load options)")
    model_path = os.path.join(run_dir, MODEL_FILE)
    if not os.path.isfile(model_path):
        raise RunError(f"{model_path}: missing (training did not finish, or the run directory is incomplete)")
    return config


def _register_custom_objects(path: str) -> None:
    """Import the modules that define the classes a `.keras` file refers to.

    keras_hpnet's layers and models (the paper networks and the tiny
    stand-in) always, plus any other keras_hpnet module named in the
    archive's config, so a fresh process can load it. No module outside
    keras_hpnet is imported.
    """
    modules = {"keras_hpnet.layers", "keras_hpnet.models", "keras_hpnet.models.tiny"}
    try:
        with zipfile.ZipFile(path) as zf:
            text = zf.read("config.json").decode("utf-8")
        modules.update(m for m in re.findall(r'"module":\s*"([A-Za-z0-9_.]+)"', text)
                       if m.split(".")[0] == "keras_hpnet")
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError):
        pass  # keras.saving.load_model reports the problem
    for name in sorted(modules):
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise RunError(f"{path}: the model needs module {name!r}, which cannot be imported ({e})") from None


def load_run_model(run_dir: str):
    """`run_dir/model.keras` as a keras.Model (inference contract of docs/design.md "Models")."""
    path = os.path.join(run_dir, MODEL_FILE)
    if not os.path.isfile(path):
        raise RunError(f"{path}: missing (training did not finish, or the run directory is incomplete)")
    _register_custom_objects(path)
    import keras

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:  # noqa: BLE001  (keras raises many types for a corrupt/unknown file)
        raise RunError(f"{path}: cannot load the model ({type(e).__name__}: {e})") from None


def run_dataset_args(config: dict, dataset: str | None = None, data_dir: str | None = None):
    """(name, root, options) for `keras_hpnet.datasets.load` of the run's dataset.

    `dataset`/`data_dir` override the run's; the run's `dataset_options` (the
    exact `load` options training.fit used) apply only to the run's own dataset.
    A generated dataset's `data_dir` may be the folder it was generated in
    (training.fit records that, `PedestrianDataset.root`): `load` takes that
    folder's parent, where it finds the same folder again.
    """
    run_dataset = str(config.get("dataset") or "")
    name = dataset or run_dataset
    if not name:
        raise RunError(f"{CONFIG_FILE} has no 'dataset' and none was given")
    same = name == run_dataset
    root = data_dir if data_dir else (config.get("data_dir") if same else None)
    options = dict(config.get("dataset_options") or {}) if same else {}
    if root and name.startswith(GENERATED_PREFIX):
        from keras_hpnet.datasets.synthetic import MARKER

        if os.path.isfile(os.path.join(root, MARKER)):  # the generated folder itself
            root = os.path.dirname(os.path.abspath(root))
    return name, root, options


def load_run_dataset(config: dict, dataset: str | None = None, data_dir: str | None = None):
    """The run's dataset (or `dataset` in `data_dir`) as a PedestrianDataset.

    Errors of the dataset readers (ValueError, OSError) pass through for the
    caller to name its flag or file.
    """
    from keras_hpnet import datasets

    name, root, options = run_dataset_args(config, dataset, data_dir)
    return datasets.load(name, root, **options)

"""Load a training run directory (docs/design.md "A training run directory").

Shared by the SavedModel exporter (`export.saved_model`) and the TFLite
exporter (`export.tflite`)::

    run = load_run("runs/hacnn")
    run.model        # keras.Model, inference contract of docs/design.md "Models"
    run.config       # dict from config.json
    run.metadata     # keras_hpnet.metadata.ModelMetadata
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import zipfile

from keras_hpnet.metadata import ModelMetadata

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
REQUIRED_CONFIG_KEYS = ("model", "input_height", "input_width")


class RunError(ValueError):
    """A run directory that cannot be exported (names the file and the problem)."""


@dataclasses.dataclass
class Run:
    model: object  # keras.Model
    config: dict
    metadata: ModelMetadata
    run_dir: str


def read_config(run_dir: str) -> dict:
    """Read and check `run_dir/config.json`."""
    if not run_dir or not os.path.isdir(run_dir):
        raise RunError(f"run directory {run_dir!r} does not exist or is not a directory")
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise RunError(f"{path}: missing (not a training run directory? expected {CONFIG_FILE} and {MODEL_FILE})")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except json.JSONDecodeError as e:
        raise RunError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise RunError(f"{path}: cannot read ({e.strerror})") from None
    if not isinstance(config, dict):
        raise RunError(f"{path}: expected a JSON object, got {type(config).__name__}")
    missing = [k for k in REQUIRED_CONFIG_KEYS if k not in config]
    if missing:
        raise RunError(f"{path}: missing key(s) {', '.join(missing)}")
    for k in ("input_height", "input_width"):
        v = config[k]
        # 0 is accepted ("the model's default"): model.input_size decides then.
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise RunError(f"{path}: {k!r} must be a positive integer (or 0 for the model default), got {v!r}")
    names = config.get("attribute_names") or []
    if not isinstance(names, list) or not all(isinstance(a, str) for a in names):
        raise RunError(f"{path}: 'attribute_names' must be a list of strings")
    return config


_PROJECT_PACKAGES = ("keras_hpnet", "export", "training")


def _register_custom_objects(path: str) -> None:
    """Import the modules that define the classes a `.keras` file refers to.

    keras_hpnet's layers and models always; plus any project module named in
    the archive's config (e.g. a test/contract model defined in `training` or
    `export`), so a fresh process can load it. Other modules are not imported.
    """
    modules = {"keras_hpnet.layers", "keras_hpnet.models"}
    try:
        with zipfile.ZipFile(path) as zf:
            text = zf.read("config.json").decode("utf-8")
        modules.update(
            m for m in re.findall(r'"module":\s*"([A-Za-z0-9_.]+)"', text)
            if m.split(".")[0] in _PROJECT_PACKAGES
        )
    except (OSError, KeyError, zipfile.BadZipFile, UnicodeDecodeError):
        pass  # keras.saving.load_model reports the problem
    for name in sorted(modules):
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise RunError(f"{path}: the model needs module {name!r}, which cannot be imported ({e})") from None


def load_model(path: str):
    """Load a `.keras` file with keras_hpnet's classes registered; clear errors."""
    if not os.path.isfile(path):
        raise RunError(f"{path}: missing model file")
    _register_custom_objects(path)
    import keras

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:  # keras raises many types for a corrupt/unknown file
        raise RunError(f"{path}: cannot load the Keras model ({type(e).__name__}: {e})") from None


def metadata_from(model, config: dict, *, version: int = 1) -> ModelMetadata:
    """Build the metadata record from a run config and its model.

    The model's own attributes win over the config where both exist (the model
    is what gets exported); attribute names come from the config.
    """
    h, w = int(config["input_height"]), int(config["input_width"])
    input_size = getattr(model, "input_size", None)
    if input_size is not None:
        h, w = int(input_size[0]), int(input_size[1])
    if h <= 0 or w <= 0:
        raise RunError("cannot tell the input size: config input_height/input_width are 0 and the model has no input_size")
    emb = getattr(model, "embedding_dim", None) or config.get("embedding_dim")
    if emb is None:
        raise RunError("cannot tell the embedding size: neither model.embedding_dim nor config 'embedding_dim'")
    names = list(config.get("attribute_names") or [])
    num_attr = getattr(model, "num_attributes", None)
    if num_attr is not None and int(num_attr) != len(names):
        if names:
            raise RunError(
                f"config lists {len(names)} attribute_names but the model has {num_attr} attribute outputs"
            )
        names = [f"attribute_{i}" for i in range(int(num_attr))]
    extra = {k: config[k] for k in ("dataset", "num_classes", "seed") if k in config}
    return ModelMetadata(
        model_name=str(config["model"]),
        input_height=h,
        input_width=w,
        embedding_size=int(emb),
        attribute_names=names,
        version=int(version),
        extra=extra,
    )


def load_run(run_dir: str) -> Run:
    """Load `run_dir` (config.json + model.keras) into a :class:`Run`.

    Raises RunError (a ValueError) naming the file for a missing or invalid
    run directory, config.json or model.keras.
    """
    config = read_config(run_dir)
    model = load_model(os.path.join(run_dir, MODEL_FILE))
    return Run(model=model, config=config, metadata=metadata_from(model, config), run_dir=run_dir)

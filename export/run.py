"""Load a training run directory (docs/design.md "A training run directory")
for export: keras_hpnet.runs reads and checks it, this adds the metadata.

Shared by the SavedModel exporter (`export.saved_model`) and the TFLite
exporter (`export.tflite`)::

    run = load_run("runs/hacnn")
    run.model        # keras.Model, inference contract of docs/design.md "Models"
    run.config       # dict from config.json
    run.metadata     # keras_hpnet.metadata.ModelMetadata
"""

from __future__ import annotations

import dataclasses

from keras_hpnet.metadata import ModelMetadata
from keras_hpnet.runs import RunError, load_run_model, read_run_config

__all__ = ["Run", "RunError", "load_run", "metadata_from"]


@dataclasses.dataclass
class Run:
    model: object  # keras.Model
    config: dict
    metadata: ModelMetadata
    run_dir: str


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
    config = read_run_config(run_dir)
    model = load_run_model(run_dir)
    return Run(model=model, config=config, metadata=metadata_from(model, config), run_dir=run_dir)

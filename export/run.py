"""Load a training run directory (docs/design.md "A training run directory")
for export: keras_hpnet.runs reads and checks it, this adds the metadata.

Shared by the SavedModel exporter (`export.saved_model`) and the TFLite
exporter (`export.tflite`)::

    run = load_run("runs/hacnn")
    run.model        # keras.Model, inference contract of docs/design.md "Models"
    run.config       # dict from config.json
    run.plan         # the same file as a keras_hpnet.runs.RunPlan
    run.metadata     # keras_hpnet.metadata.ModelMetadata, built from the plan and the model
"""

from __future__ import annotations

import dataclasses

from keras_hpnet.metadata import ModelMetadata
from keras_hpnet.retrieval.calibration import apply_calibration
from keras_hpnet.runs import RunError, RunPlan, load_run_model, read_run_record, run_attribute_names

__all__ = ["Run", "RunError", "load_run", "metadata_from"]


@dataclasses.dataclass
class Run:
    model: object  # keras.Model
    config: dict
    metadata: ModelMetadata
    run_dir: str
    plan: RunPlan | None = None


def metadata_from(model, config, *, version: int = 1) -> ModelMetadata:
    """The metadata record of `model` trained by the run `config` (a RunPlan,
    or a config.json dict read as one).

    The model's own input size and embedding size win over the record where
    both exist (the model is what gets exported); attribute names are
    `keras_hpnet.runs.run_attribute_names` (placeholders `attribute_<i>`
    when neither the model nor the record names them).
    """
    plan = config if isinstance(config, RunPlan) else RunPlan.from_dict(config, source="config")
    h, w = plan.input_size
    input_size = getattr(model, "input_size", None)
    if input_size is not None:
        h, w = int(input_size[0]), int(input_size[1])
    if h <= 0 or w <= 0:
        raise RunError("cannot tell the input size: config input_height/input_width are 0 and the model has no input_size")
    emb = getattr(model, "embedding_dim", None) or plan.embedding_dim
    if not emb:
        raise RunError("cannot tell the embedding size: neither model.embedding_dim nor config 'embedding_dim'")
    names = run_attribute_names(plan, model)
    if not names:
        names = [f"attribute_{i}" for i in range(int(getattr(model, "num_attributes", 0) or 0))]
    extra = {"dataset": plan.dataset, "num_classes": plan.num_classes, "seed": plan.seed}
    return ModelMetadata(model_name=plan.model, input_height=h, input_width=w, embedding_size=int(emb),
                         attribute_names=names, version=int(version), extra=extra)


def load_run(run_dir: str) -> Run:
    """Load `run_dir` (config.json + model.keras) into a :class:`Run`.

    Raises RunError (a ValueError) naming the file for a missing or invalid
    run directory, config.json or model.keras.
    """
    config, plan = read_run_record(run_dir)
    model = load_run_model(run_dir)
    try:  # the open-set threshold of `python -m training.calibrate`, when the run has one
        metadata = apply_calibration(metadata_from(model, plan), run_dir)
    except ValueError as e:
        raise RunError(str(e)) from None
    return Run(model=model, config=config, metadata=metadata, run_dir=run_dir, plan=plan)

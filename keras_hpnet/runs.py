"""The record of a training run and reading a run directory
(docs/design.md "A training run directory").

`training.fit` resolves a run once into a :class:`RunPlan` (model spec name
and options, dataset and load options, attribute names, input size,
precision, schedule, seed) before training starts and writes it once as
`config.json`; every reader (`training.evaluate`, `keras_hpnet.runs.load_run` for the
SavedModel and TFLite exporters) reads it back with one function::

    plan = read_run_plan(run_dir)            # the RunPlan of config.json
    config = read_run_config(run_dir)        # the same file as a checked dict
    model = load_run_model(run_dir)          # model.keras, keras_hpnet classes registered
    names = run_attribute_names(plan, model) # the attribute outputs' names
    ds = load_run_dataset(config)            # exactly the run's dataset and split

Bad input raises :class:`RunError` (a ValueError) naming the file and the
field. Importing this module does not import TensorFlow or Keras.
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
# Every reader needs these; callers may require more (training.evaluate: "dataset").
REQUIRED_CONFIG_KEYS = ("model", "input_height", "input_width")
# Datasets made on first use by keras_hpnet.datasets (`load` puts them in a sub-folder of root).
GENERATED_PREFIX = "synthetic"
# config.json layout: 2 = written from a RunPlan (model_options, schema_version);
# files without schema_version (1) read as well, their missing fields empty.
SCHEMA_VERSION = 2

# The training.fit settings of config.json by what they decide. SCHEDULE and
# OBJECTIVE change the trained weights (with the model, data, input size,
# precision and seed: RunPlan.resume_fields); SETTINGS do not (where to
# write, how often to checkpoint, when to stop, what to run afterwards).
SCHEDULE_KEYS = ("epochs", "batch_size", "steps_per_epoch", "lr", "optimizer", "momentum", "weight_decay",
                 "lr_schedule", "lr_milestones", "lr_decay", "warmup_epochs", "stagewise", "attribute_warmup", "stage_epochs",
                 "strategy_replicas")
# Fields added to config.json after schema 2, with the value a run written
# before them trained with: a resume of such a run compares against these.
ADDED_FIELD_DEFAULTS = {"lr_schedule": "multistep", "attribute_warmup": 0.0}
OBJECTIVE_KEYS = ("label_smoothing", "triplet_weight", "triplet_margin", "pk", "attribute_weight",
                  "attribute_weighting",
                  "seq_len", "temporal_pooling")  # video runs only (training.fit leaves them out of image runs)


class RunError(ValueError):
    """A run directory that cannot be read (the message names the file and the problem)."""


def _frozen(value):
    """JSON-like value -> an immutable equivalent (lists -> tuples, dicts kept as sorted item tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    return value


def _thawed(value):
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)
                                                   for v in value):
        return {k: _thawed(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thawed(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What one training run was resolved to, frozen (config.json).

    `model_options`, `dataset_options`, `schedule`, `objective` and
    `settings` hold (name, value) pairs (see `options`, `get`); `input_size`
    is (H, W). Build one with :meth:`make`, read one with :func:`read_run_plan`.
    """

    model: str
    input_size: tuple
    model_options: tuple = ()
    num_classes: int = 0
    attribute_names: tuple = ()
    embedding_dim: int = 0
    dataset: str = ""
    data_dir: str | None = None
    dataset_options: tuple = ()
    precision: str = "float32"
    seed: int = 0
    schedule: tuple = ()
    objective: tuple = ()
    settings: tuple = ()
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def make(cls, *, model_options=None, dataset_options=None, schedule=None, objective=None, settings=None,
             attribute_names=(), input_size, **fields) -> "RunPlan":
        """A plan from plain values (dicts for the option groups)."""
        return cls(model_options=_frozen(dict(model_options or {})),
                   dataset_options=_frozen(dict(dataset_options or {})),
                   schedule=_frozen(dict(schedule or {})), objective=_frozen(dict(objective or {})),
                   settings=_frozen(dict(settings or {})), attribute_names=tuple(str(a) for a in attribute_names),
                   input_size=tuple(int(v) for v in input_size), **fields)

    def options(self, group: str) -> dict:
        """`group` ("model_options", "dataset_options", "schedule", "objective", "settings") as a dict."""
        return _thawed(getattr(self, group)) if getattr(self, group) else {}

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_names)

    def to_dict(self) -> dict:
        """The config.json object: flat, the keys of docs/design.md "A training run directory"."""
        d = {**self.options("settings"), **self.options("objective"), **self.options("schedule")}
        d.update(schema_version=self.schema_version, model=self.model, model_options=self.options("model_options"),
                 input_height=self.input_size[0], input_width=self.input_size[1], num_classes=self.num_classes,
                 attribute_names=list(self.attribute_names), embedding_dim=self.embedding_dim,
                 dataset=self.dataset, data_dir=self.data_dir, dataset_options=self.options("dataset_options"),
                 precision=self.precision, seed=self.seed)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d, source: str = CONFIG_FILE) -> "RunPlan":
        """Parse a config.json object; RunError naming `source` and the field."""
        if not isinstance(d, dict):
            raise RunError(f"{source}: expected a JSON object, got {type(d).__name__}")
        version = d.get("schema_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RunError(f"{source}: field 'schema_version' must be an integer >= 1, got {version!r}")
        if version > SCHEMA_VERSION:
            raise RunError(f"{source}: schema_version {version} is newer than this keras-hpnet reads "
                           f"({SCHEMA_VERSION}); upgrade keras-hpnet")
        missing = [k for k in REQUIRED_CONFIG_KEYS if k not in d]
        if missing:
            raise RunError(f"{source}: missing field(s) {', '.join(missing)}")
        for k in ("input_height", "input_width"):
            v = d[k]
            # 0 is accepted ("the model's default"): model.input_size decides then.
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise RunError(f"{source}: {k!r} must be a positive integer (or 0 for the model default), got {v!r}")
        names = d.get("attribute_names")
        if names is not None and not (isinstance(names, list) and all(isinstance(a, str) for a in names)):
            raise RunError(f"{source}: field 'attribute_names' must be a list of strings")
        for k in ("dataset_options", "model_options"):
            options = d.get(k)
            if options is not None and not (isinstance(options, dict) and all(isinstance(o, str) for o in options)):
                raise RunError(f"{source}: field {k!r} must be an object"
                               + (" (keras_hpnet.datasets.load options)" if k == "dataset_options" else ""))
        for k in ("num_classes", "embedding_dim", "seed"):
            v = d.get(k) or 0
            if isinstance(v, bool) or not isinstance(v, int):
                raise RunError(f"{source}: field {k!r} must be an integer, got {v!r}")
        known = {"schema_version", "model", "model_options", "input_height", "input_width", "num_classes",
                 "attribute_names", "embedding_dim", "dataset", "data_dir", "dataset_options", "precision", "seed"}
        return cls.make(
            model=str(d["model"]), model_options=d.get("model_options"),
            input_size=(d["input_height"], d["input_width"]), num_classes=int(d.get("num_classes") or 0),
            attribute_names=names or (), embedding_dim=int(d.get("embedding_dim") or 0),
            dataset=str(d.get("dataset") or ""), data_dir=d.get("data_dir"),
            dataset_options=d.get("dataset_options"), precision=str(d.get("precision") or "float32"),
            seed=int(d.get("seed") or 0),
            schedule={k: d[k] for k in SCHEDULE_KEYS if k in d},
            objective={k: d[k] for k in OBJECTIVE_KEYS if k in d},
            settings={k: v for k, v in d.items()
                      if k not in known and k not in SCHEDULE_KEYS and k not in OBJECTIVE_KEYS},
            schema_version=version)

    def resume_fields(self) -> dict:
        """Every field that changes the trained weights, flat: a run resumes
        only into a directory whose recorded plan has the same values."""
        fields = {"model": self.model, "input_size": list(self.input_size), "num_classes": self.num_classes,
                  "attribute_names": list(self.attribute_names), "dataset": self.dataset,
                  "data_dir": os.path.realpath(self.data_dir) if self.data_dir else None,
                  "precision": self.precision, "seed": self.seed}
        fields.update({f"model_options.{k}": v for k, v in self.options("model_options").items()})
        fields.update({f"dataset_options.{k}": v for k, v in self.options("dataset_options").items()})
        fields.update(self.options("schedule"))
        fields.update(self.options("objective"))
        return fields

    def differences(self, recorded: "RunPlan") -> list:
        """(field, recorded value, this value) for each resume field that differs.

        A field `recorded` does not have (a config.json of an older
        keras-hpnet) is not compared, or compared with the value it trained
        with (`ADDED_FIELD_DEFAULTS`); option groups are compared whole.
        """
        mine, theirs = self.resume_fields(), recorded.resume_fields()
        theirs = {**{k: v for k, v in ADDED_FIELD_DEFAULTS.items() if k in mine}, **theirs}
        old = recorded.schema_version < SCHEMA_VERSION
        diffs = []
        for key in sorted(set(mine) | set(theirs)):
            if old and key not in theirs:
                continue
            if mine.get(key) != theirs.get(key):
                diffs.append((key, theirs.get(key), mine.get(key)))
        return diffs


def _read_config_file(run_dir: str):
    """(dict, RunPlan) of `run_dir/config.json`: the one parser of the file."""
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
    return config, RunPlan.from_dict(config, source=path)


def read_run_record(run_dir: str) -> tuple:
    """(config.json as a dict, its RunPlan) of a finished run (model.keras present)."""
    record = _read_config_file(run_dir)
    _check_model_file(run_dir)
    return record


def read_run_plan(run_dir: str, *, need_model: bool = True) -> RunPlan:
    """The :class:`RunPlan` of `run_dir/config.json` (and `run_dir/model.keras`
    present, unless `need_model` is False: a run still training)."""
    _, plan = _read_config_file(run_dir)
    if need_model:
        _check_model_file(run_dir)
    return plan


def read_run_config(run_dir: str, required=()) -> dict:
    """`run_dir/config.json` as a dict, checked (as a RunPlan), and `run_dir/model.keras` present.

    `required`: config keys needed besides REQUIRED_CONFIG_KEYS.
    """
    config, _ = _read_config_file(run_dir)
    missing = [k for k in required if k not in config]
    if missing:
        raise RunError(f"{os.path.join(run_dir, CONFIG_FILE)}: missing field(s) {', '.join(missing)}")
    _check_model_file(run_dir)
    return config


def _check_model_file(run_dir: str) -> None:
    model_path = os.path.join(run_dir, MODEL_FILE)
    if not os.path.isfile(model_path):
        raise RunError(f"{model_path}: missing (training did not finish, or the run directory is incomplete)")


def run_attribute_names(plan: RunPlan, model) -> list:
    """The names of `model`'s attribute outputs: the ones saved in model.keras,
    else config.json's; RunError when they disagree with each other or with
    the model's attribute count. [] when neither names them, or the model has
    no attribute outputs."""
    num = int(getattr(model, "num_attributes", 0) or 0)
    if not num:
        return []
    saved = list(getattr(model, "attribute_names", None) or [])
    recorded = list(plan.attribute_names)
    if saved and recorded and saved != recorded:
        raise RunError(f"{CONFIG_FILE} lists attribute_names {recorded} but {MODEL_FILE} was saved with {saved}")
    names = saved or recorded
    if names and len(names) != num:
        raise RunError(f"{CONFIG_FILE} lists {len(names)} attribute_names but the model has {num} attribute outputs")
    return names


def _register_custom_objects(path: str) -> None:
    """Import the modules that define the classes a `.keras` file refers to.

    keras_hpnet's layers and models (the paper networks and the tiny
    stand-in) always, plus any other keras_hpnet module named in the
    archive's config, so a fresh process can load it. No module outside
    keras_hpnet is imported.
    """
    modules = {"keras_hpnet.layers", "keras_hpnet.models"}
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
    Several datasets (`a+b`, keras_hpnet.datasets.combine): a root per part
    ("A,B") and options `{part: options, "test_dataset": part}`.
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
    from keras_hpnet.datasets.combine import ROOT_SEPARATOR, is_combined, split_roots

    if not is_combined(name):
        return name, _generated_parent(name, root), options
    # several datasets (keras_hpnet.datasets.combine): a root per part, {part: options}
    try:
        roots = [_generated_parent(part, r) or "" for part, r in split_roots(name, root)]
    except ValueError as e:
        raise RunError(f"{CONFIG_FILE}: {e}") from None
    return name, ROOT_SEPARATOR.join(roots), options


def _generated_parent(name: str, root):
    """The root `load` takes for `name`: for generated data recorded as its own
    folder, that folder's parent (where `load` finds it again)."""
    if root and name.startswith(GENERATED_PREFIX):
        from keras_hpnet.datasets.synthetic import MARKER

        if os.path.isfile(os.path.join(root, MARKER)):  # the generated folder itself
            return os.path.dirname(os.path.abspath(root))
    return root


def load_run_dataset(config: dict, dataset: str | None = None, data_dir: str | None = None):
    """The run's dataset (or `dataset` in `data_dir`) as a PedestrianDataset.

    Errors of the dataset readers (ValueError, OSError) pass through for the
    caller to name its flag or file.
    """
    from keras_hpnet import datasets

    name, root, options = run_dataset_args(config, dataset, data_dir)
    return datasets.load(name, root, **options)


# -- a run loaded for export (SavedModel, TFLite, benchmarks) ----------------------

@dataclasses.dataclass
class Run:
    model: object  # keras.Model
    config: dict
    metadata: ModelMetadata
    run_dir: str
    plan: RunPlan | None = None


def metadata_from(model, config, *, version: int = 1) -> ModelMetadata:
    """The export metadata record of `model` trained by the run `config` (a RunPlan,
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
    if hasattr(model, "temporal_pooling_params"):  # a video model: how the edge pools a tracklet (docs/edge.md)
        extra["temporal_pooling"] = model.temporal_pooling_params()
    return ModelMetadata(model_name=plan.model, input_height=h, input_width=w, embedding_size=int(emb),
                         attribute_names=names, version=int(version), extra=extra)


def load_run(run_dir: str) -> Run:
    """Load `run_dir` (config.json + model.keras) into a :class:`Run`.

    Raises RunError (a ValueError) naming the file for a missing or invalid
    run directory, config.json or model.keras.
    """
    config, plan = read_run_record(run_dir)
    model = load_run_model(run_dir)
    from keras_hpnet.retrieval.calibration import apply_calibration

    try:  # the open-set threshold of `python -m training.calibrate`, when the run has one
        metadata = apply_calibration(metadata_from(model, plan), run_dir)
    except ValueError as e:
        raise RunError(str(e)) from None
    return Run(model=model, config=config, metadata=metadata, run_dir=run_dir, plan=plan)

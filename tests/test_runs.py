"""keras_hpnet.runs: the run's dataset as training.fit loaded it, for every reader."""

import json
import os
import subprocess
import sys

import pytest

from keras_hpnet import runs
from keras_hpnet.datasets.synthetic import MARKER


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# training.config.TrainConfig.synthetic_sizes of --synthetic_ids=6 --synthetic_cameras=3 --synthetic_max_images=2
SIZES = dict(num_train_ids=6, num_test_ids=6, max_images=2, min_images=2, num_cameras=3, max_cameras=3, min_cameras=2)


def _records(ds):
    return {name: [(r.path, r.pid, r.camid) for r in split] for name, split in ds.splits.items()}


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory):
    """`python -m training.fit --model tiny`, one step on a small generated dataset in the cache directory."""
    from keras_hpnet import datasets

    root = tmp_path_factory.mktemp("runs")
    cache = str(root / "cache")
    env = dict(os.environ, PYTHONPATH=REPO, KERAS_HPNET_CACHE=cache, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "training.fit", "--model=tiny", "--dataset=synthetic", f"--out_dir={root / 'run'}",
         "--epochs=1", "--max_steps=1", "--batch_size=8", "--synthetic_ids=6", "--synthetic_cameras=3",
         "--synthetic_max_images=2", "--input_height=32", "--input_width=16", "--noevaluate"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    generated = os.listdir(cache)
    assert len(generated) == 1
    # The dataset fit trained on (reused from the cache, not made again).
    ds = datasets.load("synthetic", cache, **SIZES)
    assert os.listdir(cache) == generated
    return str(root / "run"), ds, cache


def test_fit_records_the_exact_load_options(fit_run):
    run_dir, ds, cache = fit_run
    config = runs.read_run_config(run_dir)
    assert config["dataset_options"] == SIZES
    # data_dir is the generated folder itself (not the cache root it was made under).
    assert config["data_dir"] == ds.root and os.path.isfile(os.path.join(ds.root, MARKER))
    assert os.path.dirname(ds.root) == cache


def test_evaluate_and_tflite_get_exactly_the_runs_split(fit_run, tmp_path, monkeypatch):
    from export import tflite
    from training import evaluate as evaluate_cli

    run_dir, ds, cache = fit_run
    monkeypatch.setenv("KERAS_HPNET_CACHE", str(tmp_path / "elsewhere"))  # must not matter: data_dir is recorded
    before = sorted(os.listdir(cache))
    config = runs.read_run_config(run_dir)
    want = _records(ds)
    assert _records(runs.load_run_dataset(config)) == want
    assert _records(tflite.run_dataset(config)) == want
    name, root, options = evaluate_cli.resolve_dataset(config, None, None)
    assert (name, root, options) == runs.run_dataset_args(config)
    ev = tflite.evaluation_dataset(config)
    assert (len(ev.query), len(ev.gallery)) == (len(ds.query), len(ds.gallery))
    metrics = evaluate_cli.run(run_dir, pictures=False, verbose=False, batch_size=16)
    details = json.load(open(os.path.join(run_dir, "eval", "evaluation.json")))
    assert (details["num_query"], details["num_gallery"]) == (len(ds.query), len(ds.gallery))
    assert 0.0 <= metrics["rank1"] <= 1.0
    # Nothing was generated again, here or in the other cache.
    assert sorted(os.listdir(cache)) == before and not os.path.exists(tmp_path / "elsewhere")


def test_run_dataset_args(tmp_path):
    gen = tmp_path / "synthetic_market_abc"
    gen.mkdir()
    (gen / MARKER).write_text("{}")
    opts = {"num_train_ids": 4}
    config = {"dataset": "synthetic", "data_dir": str(gen), "dataset_options": opts}
    # The generated folder -> its parent, where load finds it again; the run's options.
    assert runs.run_dataset_args(config) == ("synthetic", str(tmp_path), opts)
    # A root (older runs, or --data_dir) stays as it is.
    assert runs.run_dataset_args(dict(config, data_dir=str(tmp_path))) == ("synthetic", str(tmp_path), opts)
    assert runs.run_dataset_args(dict(config, data_dir=None)) == ("synthetic", None, opts)
    # Another dataset: none of the run's data_dir or options.
    assert runs.run_dataset_args(config, "market1501", "/data/m") == ("market1501", "/data/m", {})
    assert runs.run_dataset_args(config, "custom") == ("custom", None, {})
    # A real reader on the generated folder (Market layout) takes it as it is.
    market = dict(config, dataset="market1501")
    assert runs.run_dataset_args(market) == ("market1501", str(gen), opts)
    with pytest.raises(runs.RunError, match="no 'dataset'"):
        runs.run_dataset_args({"data_dir": None})


@pytest.mark.parametrize("options", ['"num_train_ids=4"', "[1]", '{"num_train_ids": 4, "x": 1}'])
def test_dataset_options_must_be_an_object(tmp_path, options):
    (tmp_path / "model.keras").write_bytes(b"")
    cfg = '{"model": "tiny", "input_height": 32, "input_width": 16, "dataset_options": %s}' % options
    (tmp_path / "config.json").write_text(cfg)
    if options.startswith("{"):
        assert runs.read_run_config(str(tmp_path))["dataset_options"]["x"] == 1
    else:
        with pytest.raises(runs.RunError, match="config.json: field 'dataset_options' must be an object"):
            runs.read_run_config(str(tmp_path))


# -- the RunPlan: written once by training.fit, read by one function ------------------------------

def _plan(**change):
    fields = dict(model="tiny", model_options={"width": 16, "feature_dim": 32, "depth": 3}, input_size=(32, 16),
                  num_classes=6, attribute_names=["hat", "bag"], embedding_dim=34, dataset="synthetic",
                  data_dir="/data/gen", dataset_options={"num_train_ids": 6}, precision="float32", seed=3,
                  schedule={"epochs": 4, "batch_size": 16, "lr": 0.05, "lr_milestones": [0.5, 0.75],
                            "stagewise": False, "stage_epochs": []},
                  objective={"label_smoothing": 0.1}, settings={"out_dir": "/runs/a", "max_steps": 0})
    fields.update(change)
    return runs.RunPlan.make(**fields)


def test_fit_writes_the_plan(fit_run):
    run_dir, ds, _ = fit_run
    config = runs.read_run_config(run_dir)
    plan = runs.read_run_plan(run_dir)
    assert config["schema_version"] == runs.SCHEMA_VERSION == plan.schema_version
    assert plan.model == "tiny" and plan.input_size == (32, 16) and plan.num_classes == ds.num_train_pids
    assert plan.options("model_options") == {"width": 16, "feature_dim": 32, "depth": 3}
    assert list(plan.attribute_names) == list(ds.attribute_names) == config["attribute_names"]
    assert plan.options("schedule")["batch_size"] == 8 and plan.options("settings")["max_steps"] == 1
    assert runs.RunPlan.from_dict(plan.to_dict()) == plan
    # The model saved its attribute names too: one rule reads them.
    model = runs.load_run_model(run_dir)
    assert model.attribute_names == list(ds.attribute_names) == runs.run_attribute_names(plan, model)


def test_plan_round_trip_and_old_files():
    plan = _plan()
    d = json.loads(plan.to_json())
    for key in ("model", "dataset", "data_dir", "input_height", "input_width", "num_classes", "attribute_names",
                "embedding_dim", "seed", "dataset_options", "lr", "out_dir", "schema_version", "model_options"):
        assert key in d, key
    assert (d["input_height"], d["input_width"], d["lr"]) == (32, 16, 0.05)
    assert runs.RunPlan.from_dict(d) == plan
    # A config.json of an older keras-hpnet (no schema_version, no model_options) reads as version 1.
    old = {k: v for k, v in d.items() if k not in ("schema_version", "model_options")}
    read = runs.RunPlan.from_dict(old)
    assert read.schema_version == 1 and read.options("model_options") == {} and read.seed == 3
    # ... and a resume compares only what it recorded.
    assert plan.differences(read) == []
    assert [k for k, *_ in _plan(seed=4).differences(read)] == ["seed"]


def test_resume_of_a_run_written_before_lr_schedule():
    """A schema-2 config.json without lr_schedule trained with the multi-step schedule."""
    schedule = {"epochs": 4, "batch_size": 16, "lr": 0.05, "lr_milestones": [0.5, 0.75]}
    before = runs.RunPlan.from_dict(json.loads(_plan(schedule=schedule).to_json()))
    assert "lr_schedule" not in before.options("schedule")
    assert _plan(schedule=dict(schedule, lr_schedule="multistep")).differences(before) == []
    assert _plan(schedule=dict(schedule, lr_schedule="cosine")).differences(before) == [
        ("lr_schedule", "multistep", "cosine")]


@pytest.mark.parametrize("change, match", [
    ({"schema_version": 99}, "schema_version 99 is newer"),
    ({"schema_version": "2"}, "field 'schema_version' must be an integer"),
    ({"model_options": [1]}, "field 'model_options' must be an object"),
    ({"num_classes": "6"}, "field 'num_classes' must be an integer"),
    ({"input_height": 1.5}, "'input_height' must be a positive integer"),
])
def test_bad_plan_fields_are_named(tmp_path, change, match):
    (tmp_path / "model.keras").write_bytes(b"")
    (tmp_path / "config.json").write_text(json.dumps(dict(_plan().to_dict(), **change)))
    with pytest.raises(runs.RunError, match=match) as e:
        runs.read_run_plan(str(tmp_path))
    assert str(tmp_path / "config.json") in str(e.value)


def test_attribute_names_one_rule():
    class Model:
        num_attributes, attribute_names = 2, []

    plan = _plan()
    assert runs.run_attribute_names(plan, Model()) == ["hat", "bag"]  # model.keras without names: the record's
    Model.attribute_names = ["hat", "bag"]
    assert runs.run_attribute_names(_plan(attribute_names=[]), Model()) == ["hat", "bag"]  # the model's
    Model.attribute_names = ["bag", "hat"]
    with pytest.raises(runs.RunError, match="model.keras was saved with"):
        runs.run_attribute_names(plan, Model())
    Model.attribute_names, Model.num_attributes = [], 3
    with pytest.raises(runs.RunError, match="2 attribute_names but the model has 3"):
        runs.run_attribute_names(plan, Model())
    assert runs.run_attribute_names(_plan(attribute_names=[]), Model()) == []
    Model.num_attributes = 0  # nothing to name (a re-id-only model)
    assert runs.run_attribute_names(plan, Model()) == []


@pytest.mark.parametrize("change, fields", [
    ({"model": "mnet", "model_options": {"width": 1.0, "embedding_dim": 512}},  # model and its options
     ["model", "model_options.depth", "model_options.embedding_dim", "model_options.feature_dim",
      "model_options.width"]),
    ({"model_options": {"width": 8, "feature_dim": 32, "depth": 3}}, ["model_options.width"]),
    ({"dataset": "custom", "data_dir": "/data/csv"}, ["data_dir", "dataset"]),
    ({"dataset_options": {"num_train_ids": 8}}, ["dataset_options.num_train_ids"]),
    ({"attribute_names": ["hat"], "num_classes": 5}, ["attribute_names", "num_classes"]),
    ({"input_size": (64, 32)}, ["input_size"]),
    ({"precision": "mixed_bfloat16"}, ["precision"]),
    ({"seed": 4}, ["seed"]),
    ({"schedule": {"epochs": 4, "batch_size": 32, "lr": 0.01, "lr_milestones": [0.5, 0.75], "stagewise": False,
                   "stage_epochs": []}}, ["batch_size", "lr"]),
    ({"schedule": {"epochs": 4, "batch_size": 16, "lr": 0.05, "lr_milestones": [0.5, 0.75], "stagewise": True,
                   "stage_epochs": [2, 1, 1]}}, ["stage_epochs", "stagewise"]),
    ({"objective": {"label_smoothing": 0.0}}, ["label_smoothing"]),
])
def test_plan_differences_name_every_field(change, fields):
    recorded, new = _plan(), _plan(**change)
    diffs = new.differences(recorded)
    assert [k for k, *_ in diffs] == fields
    assert all(old != now for _, old, now in diffs)
    assert _plan().differences(recorded) == []
    # Where to write, when to stop, how often to checkpoint: not the trained weights.
    assert _plan(settings={"out_dir": "/elsewhere", "max_steps": 9}).differences(recorded) == []

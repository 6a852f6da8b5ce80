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

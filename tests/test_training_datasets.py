"""training.fit on every reader's format-exact fake: the registry is the list
of --dataset names, and a release's quirks (a BMP TF rejects, a listed image
that is absent, label-file quirks) are counted in data_report.json, never fatal."""

import json
import os
import subprocess
import sys

import pytest

from test_datasets_cuhk03 import make_cuhk03, make_pre_extracted
from test_datasets_msmt17 import make_msmt
from test_datasets_peta import make_peta
from test_datasets_rap import make_rap_v1
from test_training_cli import REPO, _env
from training import config


def test_every_registered_dataset_is_a_fit_choice_with_a_preset():
    from keras_hpnet.datasets import available_datasets

    assert set(config.DATASETS) == set(available_datasets()) >= {"msmt17", "peta", "rap"}
    for attribute_only in ("peta", "rap"):  # mA is the metric: the weighting whose 0.5 threshold optimises it
        assert config.resolve_config({"dataset": attribute_only}).attribute_weighting == "balanced"
    assert config.resolve_config({"dataset": "msmt17"}).epochs == config.PAPER["epochs"]


def _fit(dataset, data_dir, out_dir, *extra):
    return subprocess.run(
        [sys.executable, "-m", "training.fit", "--model=tiny", f"--dataset={dataset}", f"--data_dir={data_dir}",
         f"--out_dir={out_dir}", "--batch_size=4", "--epochs=1", "--input_height=32", "--input_width=16",
         "--precision=float32", *extra],
        env=_env(), cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("dataset", ["peta", "msmt17", "rap"])
def test_fit_on_the_release_layout(dataset, tmp_path):
    root = str(tmp_path / "data")
    os.makedirs(root)
    if dataset == "peta":
        make_peta(root)
    elif dataset == "rap":  # without uncertain labels: their masking in the loss is not on this branch
        make_rap_v1(os.path.join(root, "RAP"), uncertain=False)
    else:
        make_msmt(root)
    extra = ("--dataset_option=partition=2",) if dataset == "rap" else ()
    res = _fit(dataset, root, tmp_path / "run", *extra)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["dataset"] == dataset and cfg["data_dir"].startswith(root)  # the release folder found under it
    if dataset == "peta":  # attribute-only: the DeepMAR 35 by default, mA over the test split
        assert len(cfg["attribute_names"]) == 35 and "mA" in metrics and "rank1" not in metrics
        assert cfg["attribute_weighting"] == "balanced"  # the preset
    elif dataset == "rap":  # the release one level down, the 51 attributes of the v1 protocol
        assert cfg["data_dir"] == os.path.join(root, "RAP") and len(cfg["attribute_names"]) == 51
        assert cfg["dataset_options"] == {"partition": 2}
        assert "mA" in metrics and "rank1" not in metrics and cfg["attribute_weighting"] == "balanced"
    else:
        assert "rank1" in metrics and "mAP" in metrics
    # The BMP TensorFlow's decoder rejects was read with Pillow and counted.
    assert report["totals"]["decoded_with_pillow"] >= 1
    if dataset in ("msmt17", "rap"):
        assert report["totals"]["skipped"] >= 1  # the image listed but absent


def test_dataset_option_reaches_the_reader_and_the_run_record(tmp_path):
    """--dataset_option key=value (repeatable, JSON values) is passed to the reader,
    recorded in config.json's dataset_options, and an unknown key is exit 2 naming it."""
    root = str(tmp_path / "data")
    os.makedirs(root)
    make_peta(root)
    res = _fit("peta", root, tmp_path / "run", "--dataset_option=split=identity", "--dataset_option=seed=2")
    assert res.returncode == 0, res.stderr[-3000:]
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["dataset_options"] == {"split": "identity", "seed": 2}
    from keras_hpnet import datasets

    want = datasets.load("peta", root, split="identity", seed=2)
    from keras_hpnet.runs import load_run_dataset

    got = load_run_dataset(cfg)  # what training.evaluate / export read back: the same split
    assert [r.path for r in got.splits["test"]] == [r.path for r in want.splits["test"]]
    bad = _fit("peta", root, tmp_path / "bad", "--dataset_option=splitt=identity")
    assert bad.returncode == 2 and "--dataset_option splitt" in bad.stderr and "split" in bad.stderr
    bad = _fit("peta", root, tmp_path / "bad2", "--dataset_option=identity")
    assert bad.returncode == 2 and "expected key=value" in bad.stderr


@pytest.mark.parametrize("layout", ["pre_extracted", "cuhk03_mat"])
def test_fit_on_cuhk03(layout, tmp_path):
    """training.fit --dataset cuhk03: torchreid's pre-extracted images_labeled/ (with a BMP TF
    rejects among the PNGs), or cuhk-03.mat extracted into --dataset_option cache_dir=..."""
    root = str(tmp_path / "data")
    extra = []
    if layout == "pre_extracted":
        make_pre_extracted(root)
    else:
        make_cuhk03(root)
        extra = [f"--dataset_option=cache_dir={tmp_path / 'cache'}", "--dataset_option=variant=detected"]
    res = _fit("cuhk03", root, tmp_path / "run", *extra)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["dataset"] == "cuhk03" and cfg["data_dir"].endswith("cuhk03")
    assert 0.0 <= metrics["rank1"] <= 1.0 and 0.0 <= metrics["mAP"] <= 1.0
    assert report["totals"]["skipped"] == 1  # the gallery image listed but absent
    assert report["images"]["query"]["num_records"] == 8
    if layout == "pre_extracted":
        assert report["totals"]["decoded_with_pillow"] == 1
    else:
        assert cfg["dataset_options"] == {"cache_dir": str(tmp_path / "cache"), "variant": "detected"}
        assert len(os.listdir(tmp_path / "cache" / "images_detected")) == 44 + 1  # the images and the marker


def test_multi_dataset_fit_records_both_datasets_and_reads_them_back(tmp_path):
    """--dataset synthetic+synthetic_pa100k: one training set (disjoint identity labels, attributes joined
    by name, unknown where a dataset lacks one), tested on the first; config.json records both datasets,
    data dirs and options, and keras_hpnet.runs.load_run_dataset reads the same data back."""
    data = str(tmp_path / "data")
    res = subprocess.run(
        [sys.executable, "-m", "training.fit", "--model=tiny", "--dataset=synthetic+synthetic_pa100k",
         f"--data_dir={data},{data}", f"--out_dir={tmp_path / 'run'}", "--batch_size=8", "--epochs=1",
         "--input_height=32", "--input_width=16", "--precision=float32", "--synthetic_ids=4",
         "--synthetic_max_images=2"], env=_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert cfg["dataset"] == "synthetic+synthetic_pa100k"
    roots = cfg["data_dir"].split(",")
    assert len(roots) == 2 and all(r.startswith(data) for r in roots)
    assert cfg["dataset_options"]["test_dataset"] == "synthetic"
    assert cfg["dataset_options"]["synthetic_pa100k"] == {"num_train": 4, "num_val": 1, "num_test": 1}
    from keras_hpnet import datasets
    from keras_hpnet.runs import load_run_dataset

    ds = load_run_dataset(cfg)
    market = datasets.load("synthetic", data, **cfg["dataset_options"]["synthetic"])
    assert cfg["num_classes"] == ds.num_train_pids == market.num_train_pids
    assert len(ds.train) == len(market.train) + 4 and len(cfg["attribute_names"]) == 52  # 26 + 26, none shared
    assert cfg["attribute_names"] == ds.attribute_names
    assert [r.path for r in ds.query] == [r.path for r in market.query]  # tested on the first dataset
    assert {"rank1", "mAP", "mA", "raw_pixel_rank1"} <= set(metrics)
    print("multi-dataset run metrics:", {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})


def test_multi_dataset_flags_are_checked_before_training(tmp_path):
    from training import fit

    def cfg_of(**given):
        cfg = config.resolve_config({"model": "tiny", "out_dir": str(tmp_path / "o"), **given})
        config.validate_config(cfg)
        return cfg

    cfg = cfg_of(dataset="synthetic+synthetic_pa100k", synthetic_ids=4, test_dataset="synthetic_pa100k")
    assert cfg.epochs == config.PRESETS["synthetic"]["epochs"]  # the first dataset's preset
    options = fit.dataset_options(cfg)
    assert options["test_dataset"] == "synthetic_pa100k"
    assert options["synthetic"]["num_train_ids"] == 4 and options["synthetic_pa100k"]["num_train"] == 4
    cfg = cfg_of(dataset="synthetic+synthetic_pa100k", dataset_option=("synthetic.age=onehot",))
    assert fit.dataset_options(cfg) == {"synthetic": {"age": "onehot"}, "test_dataset": "synthetic"}
    for given, message in [
        (dict(dataset="synthetic+nosuch"), "--dataset='nosuch': must be one of"),
        (dict(dataset="synthetic+synthetic_pa100k", test_dataset="peta"), "--test_dataset=peta: not one of"),
        (dict(dataset="synthetic", test_dataset="peta"), "needs several datasets"),
        (dict(dataset="synthetic+market1501", data_dir=f"{tmp_path},"), "--data_dir is required for --dataset=market1501"),
        (dict(dataset="synthetic+market1501", data_dir=f",{tmp_path / 'no'}"), r"no\)?: no such directory|no such"),
        (dict(dataset="synthetic+synthetic_pa100k", data_dir="a,b,c"), "2 datasets but 3 data dirs"),
        (dict(dataset="synthetic+synthetic_pa100k", dataset_option=("split=identity",)),
         "--dataset_option option split: no reader of synthetic, synthetic_pa100k has it"),
    ]:
        with pytest.raises(config.ConfigError, match=message):
            cfg_of(**given)

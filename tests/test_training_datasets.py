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

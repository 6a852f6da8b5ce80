"""keras_hpnet.runs.load_run: reading a training run directory."""

import json
import os

import numpy as np
import pytest

from support import make_tiny_model, write_tiny_run
from keras_hpnet.runs import Run, RunError, load_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_tiny_run(str(tmp_path_factory.mktemp("run") / "r"))


def test_load_run_reads_model_config_metadata(run_dir):
    run = load_run(run_dir)
    assert isinstance(run, Run)
    assert run.run_dir == run_dir
    assert run.config["model"] == "tiny"
    md = run.metadata
    assert (md.model_name, md.input_height, md.input_width, md.embedding_size) == ("tiny", 32, 16, 8)
    assert md.attribute_names == ["attr0", "attr1", "attr2"]
    # The loaded model computes what the saved one did.
    ref = make_tiny_model()
    x = np.random.default_rng(1).integers(0, 256, (2, 32, 16, 3)).astype("uint8")
    got = run.model(x, training=False)
    want = ref(x, training=False)
    np.testing.assert_allclose(np.asarray(got["embedding"]), np.asarray(want["embedding"]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(got["attributes"]), np.asarray(want["attributes"]), atol=1e-6)


def test_missing_run_dir(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        load_run(str(tmp_path / "nope"))


def test_missing_config(tmp_path):
    with pytest.raises(RunError, match="config.json: missing"):
        load_run(str(tmp_path))


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"model": "x", "input_height": 8}', "missing field.*input_width"),
        ('{"model": "x", "input_height": 8, "input_width": -1}', "input_width.*positive integer"),
        ('{"model": "x", "input_height": 8, "input_width": 4, "attribute_names": "a"}', "attribute_names"),
    ],
)
def test_invalid_config(tmp_path, text, match):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(RunError, match=match) as e:
        load_run(str(tmp_path))
    assert "config.json" in str(e.value)


def test_missing_or_corrupt_model(tmp_path):
    cfg = {"model": "tiny", "input_height": 32, "input_width": 16, "embedding_dim": 8}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="model.keras: missing"):
        load_run(str(tmp_path))
    (tmp_path / "model.keras").write_bytes(b"not a zip file")
    with pytest.raises(RunError, match="model.keras: cannot load"):
        load_run(str(tmp_path))


def test_attribute_count_mismatch(tmp_path):
    d = write_tiny_run(str(tmp_path / "r"), attribute_names=["a", "b"])
    with pytest.raises(RunError, match="2 attribute_names but the model has 3"):
        load_run(d)
    assert os.path.isfile(os.path.join(d, "model.keras"))


def test_calibrated_threshold_travels_into_the_export_metadata(tmp_path):
    """training.calibrate's calibration.json is what the exports carry; a run
    never calibrated has no threshold; a broken file is a RunError naming it."""
    d = write_tiny_run(str(tmp_path / "r"))
    assert load_run(d).metadata.match_threshold is None
    with open(os.path.join(d, "calibration.json"), "w") as f:
        json.dump({"threshold": 0.75, "distance": "euclidean", "target_fpr": 0.001, "auc": 0.9}, f)
    md = load_run(d).metadata
    assert md.match_threshold == 0.75 and md.match_distance == "euclidean"
    assert md.extra["calibration"]["auc"] == 0.9
    with open(os.path.join(d, "calibration.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(RunError, match="calibration.json"):
        load_run(d)

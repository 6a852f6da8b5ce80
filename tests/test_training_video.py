"""Video re-id through the CLIs: training.fit on a tiny synthetic video set
(tracklet batches, the image model in a VideoModel, --seq_len,
--temporal_pooling) and training.evaluate of its run directory (tracklet
query vs tracklet gallery, the frame_* single-frame figures); the video flags
are refused for image datasets."""

import json
import os
import subprocess
import sys

import pytest

from training.config import ConfigError, resolve_config, validate_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300
VIDEO_KEYS = ("rank1", "mAP", "mINP", "mAP_trapezoid", "frame_rank1", "frame_mAP")


def _run(args, timeout=TIMEOUT):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    env.pop("TF_CONFIG", None)
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_fit_and_evaluate_on_tracklets(tmp_path):
    out = str(tmp_path / "run")
    proc = _run(["training.fit", "--model=tiny", "--dataset=synthetic_mars", f"--data_dir={tmp_path / 'data'}",
                 f"--out_dir={out}", "--synthetic_ids=4", "--synthetic_cameras=3", "--epochs=2", "--batch_size=4",
                 "--pk=2", "--seq_len=3", "--temporal_pooling=attention", "--precision=float32",
                 "--input_height=64", "--input_width=32"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(video) loaded" in proc.stdout and "# tracklets" in proc.stdout
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["seq_len"] == 3 and config["temporal_pooling"] == "attention" and config["num_classes"] == 4
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    for k in VIDEO_KEYS:
        assert 0.0 <= metrics[k] <= 1.0, k
    assert metrics["steps"] > 0

    from keras_hpnet import runs
    from training import evaluate

    model = runs.load_run_model(out)
    assert type(model).__name__ == "VideoModel" and model.seq_len == 3 and model.pooling == "attention"
    again = evaluate.run(out, num_queries=2, num_attention=1, verbose=False)  # in-process: one TF start-up
    for k in VIDEO_KEYS:  # the same artifact, the same data, the same protocol: the same figures
        assert again[k] == pytest.approx(metrics[k], abs=1e-6), k
    assert any(f.startswith("ranked_lists_") for f in os.listdir(os.path.join(out, "eval")))


@pytest.mark.parametrize("flag, value, message", [
    ("seq_len", 8, "--seq_len=8: only for video datasets"),
    ("temporal_pooling", "attention", "--temporal_pooling=attention: only for video datasets"),
])
def test_video_flags_need_a_video_dataset(flag, value, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(resolve_config({"model": "tiny", "dataset": "synthetic", flag: value}))


def test_video_flag_values():
    with pytest.raises(ConfigError, match="--seq_len=0: must be >= 1"):
        validate_config(resolve_config({"model": "tiny", "dataset": "synthetic_mars", "seq_len": 0}))
    with pytest.raises(ConfigError, match="--temporal_pooling='max': must be one of avg, attention"):
        validate_config(resolve_config({"model": "tiny", "dataset": "synthetic_mars", "temporal_pooling": "max"}))
    cfg = resolve_config({"model": "tiny", "dataset": "synthetic_mars", "synthetic_ids": 7, "synthetic_cameras": 3,
                          "synthetic_max_images": 3})
    validate_config(cfg)
    assert cfg.synthetic_sizes == dict(num_train_ids=7, num_test_ids=7, max_tracklets=3, min_tracklets=1,
                                       num_cameras=3, max_cameras=3, min_cameras=2)


def test_mars_needs_data_dir():
    with pytest.raises(ConfigError, match="--data_dir is required for --dataset=mars"):
        validate_config(resolve_config({"model": "hacnn", "dataset": "mars"}))


def test_stagewise_refused_for_video():
    with pytest.raises(ConfigError, match="--stagewise: training in stages is not offered for video datasets"):
        validate_config(resolve_config({"model": "hpnet", "dataset": "synthetic_mars", "stagewise": True}))
    with pytest.raises(ConfigError, match="--attribute_warmup=0.5: training in stages is not offered for video"):
        validate_config(resolve_config({"model": "hatcnn", "dataset": "synthetic_mars", "attribute_warmup": 0.5}))
    assert resolve_config({"model": "hatcnn", "dataset": "synthetic_mars"}).attribute_warmup == 0  # not preset

"""training.fit on data with files TF rejects and files nobody reads: it trains,
evaluates (also with --nocache_images) and writes what it skipped to
data_report.json (issue 12, section 2). Subprocesses, `--model tiny`, seconds."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """CSV manifests: 6 identities x 2 cameras x 2 images (train), 4 test
    identities; one BMP 2 bytes longer than its header says in train and in the
    gallery (Pillow reads it, tf.io.decode_image rejects it) and one gallery
    file that is not an image."""
    root = tmp_path_factory.mktemp("skipdata")
    rng = np.random.default_rng(0)

    def person(key, cam):
        img = np.full((64, 32, 3), 80.0) + rng.normal(0, 10, (64, 32, 3))
        img[8:34, 6:26] = np.random.default_rng(key).integers(0, 256, 3)
        img *= (0.8 + 0.2 * cam, 1.0, 1.0)
        return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))

    def split(name, keys, per, odd=()):
        lines = ["path,pid,camid"]
        (root / name).mkdir()
        for key in keys:
            for cam in (0, 1):
                for k in range(per):
                    ext = "bmp" if (key, cam, k) in odd else "png"
                    rel = f"{name}/{key}_{cam}_{k}.{ext}"
                    person(key, cam).save(root / rel)
                    if ext == "bmp":
                        with open(root / rel, "ab") as f:
                            f.write(b"\0\0")
                    lines.append(f"{rel},{key},{cam}")
        if name == "gallery":
            (root / name / "broken.png").write_bytes(b"not a png at all")
            lines.append(f"{name}/broken.png,{keys[0]},1")
        (root / f"{name}.csv").write_text("\n".join(lines) + "\n")

    split("train", list(range(1, 7)), 2, odd={(2, 1, 0)})
    split("query", list(range(10, 14)), 1)
    split("gallery", list(range(10, 14)), 2, odd={(11, 1, 1)})
    return str(root)


@pytest.mark.parametrize("cache", ["--cache_images", "--nocache_images"])
def test_fit_trains_evaluates_and_reports_skips(data_dir, tmp_path, cache):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    proc = subprocess.run(
        [sys.executable, "-m", "training.fit", "--model=tiny", "--dataset=custom", f"--data_dir={data_dir}",
         f"--out_dir={out}", "--batch_size=8", "--epochs=1", "--input_height=32", "--input_width=16", cache],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    # main: --cache_images crashed at the first batch (InvalidArgumentError), --nocache_images
    # in the raw-pixel baseline (PIL.UnidentifiedImageError): no metrics.json either way
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["rank1"] <= 1.0 and "raw_pixel_rank1" in metrics
    report = json.loads((out / "data_report.json").read_text())
    assert report["images"]["train"]["num_records"] == 24 == report["images"]["train"]["num_readable"]
    gallery = report["images"]["gallery"]
    assert gallery["num_records"] == 17 and gallery["num_readable"] == 16
    assert gallery["skipped"]["not an image"]["count"] == 1
    assert "broken.png" in gallery["skipped"]["not an image"]["examples"][0]
    for split in ("train", "gallery"):
        assert report["images"][split]["decoded_with_pillow"]["BMP that TF's decoder rejects"]["count"] == 1
    assert report["totals"] == {"skipped": 1, "decoded_with_pillow": 2}

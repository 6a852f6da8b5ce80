"""One image rule (docs/design.md, "Image preprocessing"; issue 11, section 2):
the tf.data pipeline, the numpy form (edge, calibration images, pictures,
raw-pixel baseline) and the TF form used by the exported graph give the same
pixels within 1 grey level, on crops of real sizes, up- and down-scaled."""

import collections

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_hpnet.data import make_dataset
from keras_hpnet.data.resize import resize_uint8
from keras_hpnet.datasets.baseline import load_pixels
from keras_hpnet.preprocessing import load_rgb, prepare
from keras_hpnet.viz import _draw
from support import person_crop

Rec = collections.namedtuple("Rec", "path pid camid attributes")
CROPS = [(128, 48), (300, 120), (64, 32), (500, 200)]  # (H, W) as detectors give them
TARGETS = [(160, 64), (256, 128)]  # HA-CNN/HAT-CNN and HP-Net-like inputs


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    root = tmp_path_factory.mktemp("rule")
    rng = np.random.default_rng(0)
    paths = []
    for h, w in CROPS:
        image = Image.fromarray(person_crop(rng, rng.uniform(0, 255, (3, 3)), h, w))
        for ext, kw in (("jpg", {"quality": 90}), ("png", {}), ("bmp", {})):
            path = str(root / f"{h}x{w}.{ext}")
            image.save(path, **kw)
            paths.append(path)
    return paths


@pytest.mark.parametrize("target", TARGETS)
def test_every_path_gives_the_same_pixels(crops, target):
    h, w = target
    records = [Rec(p, i, 0, None) for i, p in enumerate(crops)]
    numpy_rule = np.stack([prepare(load_rgb(p), h, w) for p in crops])  # edge, calibration images
    graph_rule = np.stack([resize_uint8(tf.constant(load_rgb(p)), h, w).numpy() for p in crops])  # SavedModel
    viz = np.stack([_draw.resize(load_rgb(p), (h, w)) for p in crops])  # pictures
    baseline, kept = load_pixels(records, (h, w))  # raw-pixel baseline
    assert list(kept) == list(range(len(crops)))
    worst = {}
    for cache in (False, True):
        pipeline = np.concatenate([x.numpy() for x, _ in make_dataset(
            records, input_size=target, batch_size=4, training=False, cache=cache)])  # training, evaluation
        worst[f"pipeline cache={cache}"] = np.abs(pipeline.astype(int) - numpy_rule).max(axis=(1, 2, 3))
    worst["graph"] = np.abs(graph_rule.astype(int) - numpy_rule).max(axis=(1, 2, 3))
    worst["viz"] = np.abs(viz.astype(int) - numpy_rule).max(axis=(1, 2, 3))
    worst["baseline"] = np.abs(np.rint(baseline.reshape(-1, h, w, 3) * 255).astype(int) - numpy_rule).max(axis=(1, 2, 3))
    for path_name, per_file in worst.items():
        assert per_file.max() <= 1, (path_name, dict(zip(crops, per_file)))
    # PNG and BMP decode to identical pixels everywhere: the resize itself agrees exactly or within rounding
    lossless = [i for i, p in enumerate(crops) if not p.endswith(".jpg")]
    assert worst["pipeline cache=False"][lossless].max() <= 1 and worst["viz"].max() == 0

"""keras_hpnet.datasets.raw_pixel_attribute_baseline: the balanced-ridge raw-pixel floor of attribute datasets."""

import numpy as np
import pytest
from PIL import Image

from keras_hpnet.datasets import UNKNOWN_ATTRIBUTE, PedestrianDataset, Record, raw_pixel_attribute_baseline


def _dataset(root, learnable, n=(120, 40, 60), seed=0):
    """Images whose upper half is red where attribute 0 is present and whose
    lower half is bright where attribute 1 is (rare: ~15%), on noise; or, with
    learnable=False, labels drawn independently of the pixels."""
    rng = np.random.default_rng(seed)
    splits = {}
    for name, count in zip(("train", "val", "test"), n):
        records = []
        for i in range(count):
            attrs = np.array([rng.random() < 0.5, rng.random() < 0.15], np.uint8)
            img = rng.normal(100, 30, (32, 16, 3))
            if learnable:
                img[:16, :, 0] += 80 * attrs[0]
                img[16:] += 70 * attrs[1]
            else:
                attrs = np.array([rng.random() < 0.5, rng.random() < 0.15], np.uint8)
            path = root / f"{name}_{i}.png"
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
            records.append(Record(str(path), -1, -1, attrs))
        splits[name] = records
    return PedestrianDataset("fake", splits, kind="attribute", attribute_names=["red_top", "bright_legs"])


def test_floor_learns_linear_attributes_and_is_chance_on_noise(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    learnable = raw_pixel_attribute_baseline(_dataset(tmp_path / "a", True), input_size=(16, 8))
    assert learnable["mA"] > 0.9 and learnable["chosen_on"] == "val" and learnable["num_skipped"] == 0
    noise = raw_pixel_attribute_baseline(_dataset(tmp_path / "b", False), input_size=(16, 8))
    assert 0.3 < noise["mA"] < 0.65  # chance is 0.5 for balanced predictions, whatever the positive ratio


def test_floor_balances_a_rare_attribute_and_skips_unknown_entries(tmp_path):
    ds = _dataset(tmp_path, True)
    ds.splits["train"] = [r._replace(attributes=np.array([UNKNOWN_ATTRIBUTE, r.attributes[1]], np.uint8))
                          if i % 4 == 0 else r for i, r in enumerate(ds.splits["train"])]
    ds.splits["test"][0] = ds.splits["test"][0]._replace(attributes=np.array([1, UNKNOWN_ATTRIBUTE], np.uint8))
    m = raw_pixel_attribute_baseline(ds, input_size=(16, 8))
    assert m["num_unknown"] == 1 and m["mA"] > 0.9
    with pytest.raises(ValueError, match="no readable labelled test image"):
        ds.splits["test"] = []
        raw_pixel_attribute_baseline(ds, input_size=(16, 8))

"""PRID-2011 multi-shot reader on a format-exact fake (multi_shot/cam_a|cam_b/person_XXXX/NNNN.png)."""

import os

import numpy as np
import pytest
from PIL import Image

from keras_hpnet import datasets
from keras_hpnet.datasets import DatasetError, DatasetWarning
from keras_hpnet.datasets.prid2011 import split_ids

# person -> (frames in cam_a, frames in cam_b); 0 = absent from that camera
PEOPLE = {1: (3, 4), 2: (5, 2), 3: (2, 2), 4: (4, 3), 5: (3, 0), 6: (0, 6), 7: (1, 3)}


def make_prid(root):
    base = os.path.join(root, "prid_2011", "multi_shot")
    for p, counts in PEOPLE.items():
        for cam, n in zip(("cam_a", "cam_b"), counts):
            for f in range(n):
                path = os.path.join(base, cam, f"person_{p:04d}", f"{f + 1:04d}.png")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                Image.fromarray(np.full((16, 8, 3), 10 * p + f, np.uint8)).save(path)
    return base


def test_protocol_split_and_layout(tmp_path):
    base = make_prid(str(tmp_path))
    ds = datasets.load("prid2011", str(tmp_path), min_frames=2)
    assert ds.kind == "video" and ds.root == base and ds.num_cameras == 2
    # both cameras with >= 2 frames: persons 1, 2, 3, 4 (5, 6 one camera; 7 has 1 frame in cam_a)
    assert ds.info["num_eligible"] == 4 and ds.info["num_in_both_cameras"] == 5
    assert ds.info["protocol"] == "derived" and "not the papers' split files" in ds.info["protocol_note"]
    train_ids, test_ids = split_ids([1, 2, 3, 4], 0)
    assert len(train_ids) == 2 and sorted(train_ids + test_ids) == [1, 2, 3, 4]
    assert [(t.pid, t.camid) for t in ds.train] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [t.pid for t in ds.query] == test_ids and {t.camid for t in ds.query} == {0}
    assert [t.pid for t in ds.gallery] == test_ids and {t.camid for t in ds.gallery} == {1}
    q = ds.query[0]
    assert [os.path.basename(f) for f in q.frames] == [f"{f + 1:04d}.png" for f in range(PEOPLE[q.pid][0])]
    assert "prid_2011" in q.frames[0] and "cam_a" in q.frames[0]
    halves = [split_ids(range(1, 21), s) for s in range(10)]  # ten different halvings, each a partition
    assert len({tuple(train) for train, _ in halves}) == 10
    assert all(len(a) == 10 and sorted(a + b) == list(range(1, 21)) for a, b in halves)
    assert split_ids(range(1, 21), 3) == halves[3]  # deterministic
    assert ds.info["num_eligible"] == datasets.load("prid2011", base, min_frames=2, split=9).info["num_eligible"]


def test_default_min_frames_and_bad_input(tmp_path):
    base = make_prid(str(tmp_path))
    with pytest.raises(DatasetError, match=r"0 person\(s\) seen by both cameras with >= 21 frames"):
        datasets.load("prid2011", base)
    with pytest.raises(ValueError, match="split must be in 0..9"):
        datasets.load("prid2011", base, split=10)
    with pytest.raises(DatasetError, match="cam_a/ and cam_b/ not found"):
        datasets.load("prid2011", str(tmp_path / "prid_2011" / "multi_shot" / "cam_a"))
    os.makedirs(os.path.join(base, "cam_a", "person_0099"))  # empty
    open(os.path.join(base, "cam_b", "readme.txt"), "w").write("x")
    with pytest.warns(DatasetWarning) as caught:
        ds = datasets.load("prid2011", base, min_frames=2)
    messages = " ".join(str(w.message) for w in caught)
    assert "person folder without frames" in messages and "not a person_XXXX folder" in messages
    assert ds.info["skipped"] == {"person folder without frames": 1, "entry that is not a person_XXXX folder": 1}

"""The synthetic video set (`synthetic_mars`): MARS layout and official info/
files read by the real reader, tracklets of one person with small changes
across frames, determinism by seed and worker count, pinned bytes."""

import hashlib
import os
import re

import numpy as np
import pytest
import scipy.io

from keras_hpnet import datasets
from keras_hpnet.datasets.synthetic.mars import VideoConfig, generate_mars, mars_plan
from keras_hpnet.datasets.synthetic.tracklet import render_tracklet

SMALL = dict(num_train_ids=4, num_test_ids=3, num_cameras=4, max_cameras=3, min_frames=1, max_frames=5,
             num_distractors=2, num_junk=2)
NAME = re.compile(r"^(00-1|\d{4})C([1-9])T(\d{4})F(\d{3})\.jpg$")


def _tree_sha256(folder):
    """sha256 over "relative path file-sha256" of every file (.mat without its 116-byte dated header)."""
    lines = []
    for dirpath, _, files in os.walk(folder):
        for f in files:
            data = open(os.path.join(dirpath, f), "rb").read()
            rel = os.path.relpath(os.path.join(dirpath, f), folder).replace(os.sep, "/")
            lines.append(f"{rel} {hashlib.sha256(data[116:] if f.endswith('.mat') else data).hexdigest()}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return datasets.load("synthetic_mars", str(tmp_path_factory.mktemp("synmars")), workers=1, **SMALL)


def test_layout_and_official_info_files(small):
    ds = small
    root = ds.root
    assert ds.kind == "video" and ds.name == "synthetic_mars" and ds.num_cameras == 4
    assert ds.info["protocol"] == "official"  # info/ is there: the official-protocol code path
    names = {s: open(os.path.join(root, "info", f"{s}_name.txt")).read().splitlines() for s in ("train", "test")}
    for split, listed in names.items():
        assert listed == sorted(listed)  # name lists in file-name order, as MARS
        on_disk = sorted(f for d in os.listdir(os.path.join(root, f"bbox_{split}"))
                         for f in os.listdir(os.path.join(root, f"bbox_{split}", d)))
        assert listed == on_disk
        for n in listed:
            m = NAME.match(n)
            assert m and os.path.isfile(os.path.join(root, f"bbox_{split}", m.group(1), n))
    rows = scipy.io.loadmat(os.path.join(root, "info", "tracks_test_info.mat"))["track_test_info"]
    assert rows.dtype == np.float64 and rows.shape[1] == 4
    assert rows[0, 0] == 1 and rows[-1, 1] == len(names["test"]) and (rows[1:, 0] == rows[:-1, 1] + 1).all()
    assert {"00-1", "0000"} <= {n[:4] for n in names["test"]}
    query_idx = scipy.io.loadmat(os.path.join(root, "info", "query_IDX.mat"))["query_IDX"]
    assert query_idx.shape[0] == 1 and len(ds.query) == query_idx.shape[1]
    # every test identity is seen by >= 2 cameras and has one query per camera
    test_ids = {t.pid for t in ds.query}
    assert len(test_ids) == 3 and ds.num_train_pids == 4
    for pid in test_ids:
        cams = {t.camid for t in ds.gallery if t.pid == pid}
        assert len(cams) >= 2 and sorted(t.camid for t in ds.query if t.pid == pid) == sorted(cams)
    assert sum(t.pid == 0 for t in ds.gallery) == 2 and all(t.pid != -1 for t in ds.gallery)
    assert ds.info["dropped"] == {"gallery junk tracklets": 2}
    lengths = [len(t.frames) for s in ds.splits.values() for t in s]
    assert min(lengths) >= 1 and max(lengths) <= 5


def _blocks(frames):
    """16x16-pixel block means of [T, 128, 64, 3] frames: appearance without the pixel jitter."""
    return np.asarray(frames, np.float32).reshape(len(frames), 8, 16, 4, 16, 3).mean(axis=(2, 4))


def test_tracklet_frames_change_a_little():
    """Consecutive frames of a tracklet mostly differ far less than two people in the same camera;
    some frames are bad crops (hard frames) and differ a lot."""
    frames = render_tracklet(0, 3, 1, 10, 8)
    assert len(frames) == 8 and frames[0].shape == (128, 64, 3) and frames[0].dtype == np.uint8
    for k1, k2 in ((3, 4), (5, 9), (12, 13)):
        a = _blocks(render_tracklet(0, k1, 1, 10 + k1, 8))
        b = _blocks(render_tracklet(0, k2, 1, 11 + k2, 8))
        steps = np.abs(np.diff(a, axis=0)).mean(axis=(1, 2, 3))
        across = np.abs(a - b).mean()
        assert 1.0 < np.median(steps) < across / 2.5  # frames change (motion, noise, light); people differ more
    assert steps.max() > 3 * np.median(steps)  # a hard frame
    assert all(np.array_equal(x, y) for x, y in zip(frames, render_tracklet(0, 3, 1, 10, 8)))
    assert all(np.array_equal(x, y) for x, y in zip(frames, render_tracklet(0, 3, 1, 10, 3)))  # a prefix
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        render_tracklet(0, 3, 1, 10, 0)


def test_deterministic_by_seed_and_worker_count_pinned(tmp_path, small):
    two = generate_mars(str(tmp_path / "a"), workers=2, **SMALL)
    assert _tree_sha256(two) == _tree_sha256(small.root)  # the fixture used 1 process
    other = generate_mars(str(tmp_path / "b"), workers=1, **{**SMALL, "seed": 1})
    assert _tree_sha256(other) != _tree_sha256(two)
    # pinned: a change of the tracklet renderer must bump tracklet.VERSION (a new cache key) and this pin
    assert os.path.basename(small.root) == "synthetic_mars_a91ab17daf"
    assert VideoConfig().key("mars-tracklet2") == "f7e067a4a0"
    h = hashlib.sha256()
    for frame in render_tracklet(0, 7, 2, 3, 4) + render_tracklet(0, 30001, 0, 5, 2, junk=True):
        h.update(frame.tobytes())
    assert h.hexdigest() == "e1a156ae4a7693c5e8d4657552c3481fdf9505d447ca1ac53e32b1b7c9ab4f09"


def test_plan_checks():
    with pytest.raises(ValueError, match="min_frames <= max_frames <= 999"):
        mars_plan(VideoConfig(min_frames=3, max_frames=2))
    with pytest.raises(ValueError, match="num_cameras must be in 2..9"):
        mars_plan(VideoConfig(num_cameras=12, max_cameras=3))

"""PRID-2011 multi-shot reader on format-exact fakes: torchreid's `prid2011/`
with the release's `prid_2011/multi_shot/cam_a|cam_b/person_XXXX/NNNN.png`
frames and `splits_prid2011.json` (a list of {"train": [...], "test": [...]})."""

import json
import os
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from keras_hpnet import datasets
from keras_hpnet.datasets import DatasetError, DatasetWarning, Tracklet
from keras_hpnet.datasets.multishot import DERIVED_NOTE, derived_split, frame_order

# person number -> frames in cam_a, cam_b (0 = not seen by that camera).
PERSONS = {1: (3, 2), 2: (2, 4), 3: (1, 3), 4: (4, 2), 5: (2, 2), 6: (3, 1), 7: (2, 0), 9: (0, 3)}
ODD, EVEN = ["person_0001", "person_0003", "person_0005"], ["person_0002", "person_0004", "person_0006"]
SPLITS = [{"train": ODD, "test": EVEN}, {"train": EVEN, "test": ODD}]


def value(pid, cam, frame):
    """The grey level of a frame: person, camera and frame number recoverable."""
    return 100 * cam + 10 * pid + frame


def png(path, level):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((16, 8, 3), level, np.uint8)).save(path)


def make_prid(root, splits=SPLITS):
    """`root` = torchreid's prid2011/ folder."""
    ms = os.path.join(root, "prid_2011", "multi_shot")
    for pid, counts in PERSONS.items():
        for cam, n in enumerate(counts):
            for f in range(1, n + 1):
                png(os.path.join(ms, ("cam_a", "cam_b")[cam], f"person_{pid:04d}", f"{f:04d}.png"), value(pid, cam, f))
    if splits is not None:
        with open(os.path.join(root, "splits_prid2011.json"), "w") as f:
            json.dump(splits, f)
    return root


@pytest.fixture
def prid(tmp_path):
    return make_prid(str(tmp_path / "prid2011"))


def multi_shot(root):
    return os.path.join(root, "prid_2011", "multi_shot")


def frame_names(t):
    return [os.path.relpath(p, os.path.dirname(os.path.dirname(os.path.dirname(p)))) for p in t.frames]


def test_official_split_from_torchreid_json(prid):
    ds = datasets.load("prid2011", os.path.dirname(prid))  # torchreid's root, holding prid2011/
    assert ds.kind == "video" and ds.name == "prid2011" and ds.num_cameras == 2 and ds.root == multi_shot(prid)
    assert all(isinstance(t, Tracklet) for s in ds.splits.values() for t in s)
    assert ds.info["protocol"] == "official" and ds.info["protocol_note"] == ""
    assert ds.info["split"] == 0 and ds.info["num_splits"] == 2
    assert ds.info["split_file"] == os.path.join(prid, "splits_prid2011.json")
    assert ds.info["persons"] == {"cam_a": 7, "cam_b": 7, "both": 6} and ds.info["unused_persons"] == 2
    # train: both cameras of persons 1, 3, 5, pids relabelled 0..2 in order of the original ids
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.train] == [
        (0, 0, 3), (1, 0, 1), (2, 0, 2), (0, 1, 2), (1, 1, 3), (2, 1, 2)]
    assert ds.num_train_pids == 3
    # query = cam_a, gallery = cam_b of the test persons; original person numbers
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.query] == [(2, 0, 2), (4, 0, 4), (6, 0, 3)]
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.gallery] == [(2, 1, 4), (4, 1, 2), (6, 1, 1)]
    assert frame_names(ds.query[1]) == [f"cam_a/person_0004/{f:04d}.png" for f in (1, 2, 3, 4)]
    assert frame_names(ds.gallery[0]) == [f"cam_b/person_0002/{f:04d}.png" for f in (1, 2, 3, 4)]
    assert "subset" in ds.summary() and "protocol: official" in ds.summary()


def test_other_split_and_split_index_checked(prid):
    ds = datasets.load("prid2011", prid, split=1)
    assert sorted({t.pid for t in ds.query}) == [1, 3, 5] and ds.info["split"] == 1
    for bad in (2, -1, "0", True):
        with pytest.raises(DatasetError, match=r"splits_prid2011\.json: split=.*expected an integer 0\.\.1"):
            datasets.load("prid2011", prid, split=bad)


@pytest.mark.parametrize("where", ["prid_2011", "prid_2011/multi_shot"])
def test_release_folders_as_root_find_the_split_file(prid, where):
    ds = datasets.load("prid-2011", os.path.join(prid, where))  # alias with a dash
    assert ds.info["protocol"] == "official" and ds.root == multi_shot(prid)
    assert [t.pid for t in ds.query] == [2, 4, 6]


def test_explicit_split_file(prid, tmp_path):
    other = str(tmp_path / "mine.json")
    json.dump([SPLITS[1]], open(other, "w"))
    ds = datasets.load("prid2011", prid, split_file=other)
    assert ds.info["split_file"] == other and ds.info["num_splits"] == 1 and [t.pid for t in ds.query] == [1, 3, 5]
    with pytest.raises(DatasetError, match=r"nothere\.json: split file not found"):
        datasets.load("prid2011", prid, split_file=str(tmp_path / "nothere.json"))


def test_derived_split_without_the_json_is_flagged(tmp_path):
    root = make_prid(str(tmp_path / "prid2011"), splits=None)
    with pytest.warns(DatasetWarning, match="NOT the official splits"):
        ds = datasets.load("prid2011", root, min_frames=1)
    assert ds.info["protocol"] == "derived" and ds.info["protocol_note"] == DERIVED_NOTE
    assert ds.info["split_file"] is None and ds.info["num_splits"] == 10 and ds.info["min_frames"] == 1
    assert DERIVED_NOTE in ds.summary()
    test = sorted(t.pid for t in ds.query)
    assert test == sorted(t.pid for t in ds.gallery) and len(test) == 3
    assert len(ds.train) == 6 and ds.num_train_pids == 3  # the other 3 persons seen by both cameras
    assert ds.info["unused_persons"] == 2  # person 7 (cam_a only) and 9 (cam_b only) are never used
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        draws = [tuple(sorted(t.pid for t in datasets.load("prid2011", root, split=k, min_frames=1).query))
                 for k in range(10)]
        assert draws[0] == tuple(test)  # deterministic
        assert len(set(draws)) > 1 and all(set(d) <= {1, 2, 3, 4, 5, 6} for d in draws)  # the 10 splits differ
        with pytest.raises(DatasetError, match=r"derived splits.*split=10; expected an integer 0\.\.9"):
            datasets.load("prid2011", root, split=10)


def test_derived_splits_keep_persons_with_min_frames_in_both_cameras(tmp_path):
    root = make_prid(str(tmp_path / "prid2011"), splits=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        ds = datasets.load("prid2011", root, min_frames=2)  # >= 2 in both: 1, 2, 4, 5 (3, 6 have a 1-frame side)
        assert ds.info["num_split_persons"] == 4 and ds.info["persons"]["both"] == 6
        train_persons = {int(os.path.basename(os.path.dirname(t.frames[0]))[-4:]) for t in ds.train}
        assert len(ds.query) == 2 and train_persons | {t.pid for t in ds.query} == {1, 2, 4, 5}
        with pytest.raises(DatasetError, match=r"0 person\(s\) seen by both cameras with >= 21 frames each "
                                               r"\(6 in both cameras\)"):
            datasets.load("prid2011", root)  # the default threshold, 21, on a fake of short sequences
        for bad in (0, "2", True):
            with pytest.raises(DatasetError, match=r"min_frames=.*expected an integer >= 1"):
                datasets.load("prid2011", root, min_frames=bad)


def test_derived_halvings_are_ten_different_partitions():
    names = [f"person_{i:04d}" for i in range(1, 21)]
    halves = [derived_split(names, k, seed=0) for k in range(10)]
    assert len({tuple(train) for train, _ in halves}) == 10
    assert all(len(a) == len(b) == 10 and sorted(a + b) == names for a, b in halves)
    assert derived_split(reversed(names), 3, seed=0) == halves[3]  # deterministic, whatever the input order
    assert derived_split(names, 3, seed=1) != halves[3]


def test_missing_camera_folder(prid):
    shutil.rmtree(os.path.join(multi_shot(prid), "cam_b"))
    with pytest.raises(DatasetError, match=r"camera cam_b: folder not found: .*multi_shot/cam_b"):
        datasets.load("prid2011", prid)


def test_no_layout(tmp_path):
    with pytest.raises(DatasetError, match="no PRID-2011 multi-shot layout under"):
        datasets.load("prid2011", str(tmp_path))
    with pytest.raises(ValueError, match="needs root="):
        datasets.load("prid2011")


def test_non_images_and_stray_entries_are_counted(prid):
    ms = multi_shot(prid)
    open(os.path.join(ms, "cam_a", "person_0001", "Thumbs.db"), "w").write("x")
    open(os.path.join(ms, "cam_b", "readme.txt"), "w").write("x")
    os.makedirs(os.path.join(ms, "cam_b", "misc"))
    with pytest.warns(DatasetWarning, match="skipped"):
        ds = datasets.load("prid2011", prid)
    skipped = {reason.split(" (")[0]: n for reason, n in ds.info["skipped"].items()}
    assert skipped == {"file without an image extension": 1, "entry that is not a person_<n> folder": 2}
    assert len(ds.train[0].frames) == 3  # person 1 keeps its 3 frames
    assert ds.report.totals()["skipped"] == 3


def test_person_folder_without_frames(prid):
    ms = multi_shot(prid)
    for p in os.listdir(os.path.join(ms, "cam_b", "person_0004")):
        os.remove(os.path.join(ms, "cam_b", "person_0004", p))
    with pytest.warns(DatasetWarning, match="person folder without frames"):
        with pytest.raises(DatasetError, match=r"splits_prid2011\.json split 0: names 1 person\(s\) not found "
                                               r"\(or without frames\) in .*cam_b, e\.g\. \['person_0004'\]"):
            datasets.load("prid2011", prid)
    os.remove(os.path.join(prid, "splits_prid2011.json"))
    with pytest.warns(DatasetWarning):
        ds = datasets.load("prid2011", prid, min_frames=1)  # derived: person 4 is no longer seen by both cameras
    assert ds.info["persons"]["both"] == 5 and 4 not in {t.pid for s in ("query", "gallery") for t in ds.splits[s]}
    assert ds.info["skipped"] == {"person folder without frames": 1}


@pytest.mark.parametrize("splits, match", [
    ([{"train": ["person_0001"], "test": ["person_0042"]}], r"names 1 person\(s\) not found .*cam_a.*person_0042"),
    ([{"train": ["person_0001", "person_0002"], "test": ["person_0002"]}], r"1 person\(s\) in both train and test"),
    ([{"train": ["person_0001", "person_0003", "person_0001"], "test": ["person_0002"]}],
     r"train names 1 person\(s\) more than once, e\.g\. \['person_0001'\]"),
    ([{"train": ["person_0001"]}], r"split 0 is not \{'train'"),
    ([{"train": "person_0001", "test": ["person_0002"]}], r"split 0 is not \{'train'"),
    ({"train": [], "test": []}, "expected a non-empty JSON list"),
    ([], "expected a non-empty JSON list"),
    ([{"train": [], "test": ["person_0002"]}], r"split 0 has 0 train and 1 test persons"),
])
def test_bad_split_files(prid, splits, match):
    json.dump(splits, open(os.path.join(prid, "splits_prid2011.json"), "w"))
    with pytest.raises(DatasetError, match=r"splits_prid2011\.json.*" + match):
        datasets.load("prid2011", prid)


def test_unparsable_split_file(prid):
    open(os.path.join(prid, "splits_prid2011.json"), "w").write("[{'train': ")
    with pytest.raises(DatasetError, match=r"splits_prid2011\.json: unreadable split file \(JSONDecodeError"):
        datasets.load("prid2011", prid)


def test_frame_order_is_numeric():
    names = ["10.png", "2.png", "1.png", "cam1_person001_00317.png", "cam1_person001_01002.png"]
    assert sorted(names, key=frame_order) == ["1.png", "2.png", "10.png", "cam1_person001_00317.png",
                                              "cam1_person001_01002.png"]


def test_unreadable_frame_is_counted_in_the_report(prid, tmp_path):
    open(os.path.join(multi_shot(prid), "cam_b", "person_0006", "0001.png"), "wb").write(b"not a png")
    ds = datasets.load("prid2011", prid)
    assert len(ds.gallery[-1].frames) == 1  # the reader keeps names; the image check skips
    data = ds.write_report(str(tmp_path / "report.json"))
    assert data["images"]["gallery"]["num_records"] == 7 and data["images"]["gallery"]["num_readable"] == 6
    assert data["images"]["query"]["num_readable"] == 9


def test_tracklets_feed_the_tracklet_pipeline(prid):
    from keras_hpnet.data.tracklets import tracklet_dataset

    ds = datasets.load("prid2011", prid)
    data = tracklet_dataset(ds.query, input_size=(16, 8), seq_len=2, batch_size=3, training=False,
                            sampling="evenly")
    (frames, labels), = list(data.as_numpy_iterator())
    assert frames.shape == (3, 2, 16, 8, 3) and frames.dtype == np.uint8
    assert labels["pid"].tolist() == [2, 4, 6] and labels["camid"].tolist() == [0, 0, 0]
    number = frames[:, :, 8, 4, 0].astype(int) - 10 * labels["pid"][:, None]  # grey level - 10 * pid (cam_a)
    assert number.tolist() == [[1, 2], [1, 3], [1, 2]]  # evenly spaced over 2, 4, 3 frames, in temporal order

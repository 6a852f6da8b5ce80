"""MARS reader on format-exact fakes: bbox_train/, bbox_test/ with
<pid>C<c>T<tttt>F<fff>.jpg frames and info/ (name lists, tracks_*_info.mat,
query_IDX.mat written with scipy.io.savemat under the official variable names)."""

import json
import os
import shutil
import warnings

import numpy as np
import pytest
import scipy.io
from PIL import Image

from keras_hpnet import datasets
from keras_hpnet.datasets import DatasetError, DatasetWarning, Tracklet
from keras_hpnet.datasets.mars import DERIVED_PROTOCOL, derived_queries, parse_frame_name

# (split, pid text, camera, tracklet number, frames): name-list order.
TRACKS = [
    ("train", "0002", 1, 1, 3),
    ("train", "0002", 3, 1, 2),
    ("train", "0007", 2, 1, 1),  # a one-frame tracklet
    ("train", "0007", 2, 2, 4),
    ("test", "00-1", 4, 1, 2),  # junk
    ("test", "0000", 5, 1, 2),  # distractor
    ("test", "0003", 1, 1, 2),  # query (row 3)
    ("test", "0003", 1, 2, 3),
    ("test", "0003", 4, 1, 2),  # query (row 5)
    ("test", "0005", 2, 1, 2),  # query (row 6)
    ("test", "0005", 6, 1, 3),
]
QUERY_IDX = [3, 5, 6]  # 1-based rows of the test tracks


def frame_names(text, cam, t, n):
    return [f"{text}C{cam}T{t:04d}F{f:03d}.jpg" for f in range(1, n + 1)]


def jpeg(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.full((16, 8, 3), value % 256, np.uint8)).save(path)


def make_mars(root, info=True):
    names = {"train": [], "test": []}
    rows = {"train": [], "test": []}
    for k, (split, text, cam, t, n) in enumerate(TRACKS):
        fr = frame_names(text, cam, t, n)
        pid = -1 if text == "00-1" else int(text)
        rows[split].append([len(names[split]) + 1, len(names[split]) + n, pid, cam])
        names[split].extend(fr)
        for i, name in enumerate(fr):
            jpeg(os.path.join(root, f"bbox_{split}", text, name), 10 * k + i)
    if info:
        os.makedirs(os.path.join(root, "info"))
        for split in ("train", "test"):
            with open(os.path.join(root, "info", f"{split}_name.txt"), "w") as f:
                f.write("\n".join(names[split]) + "\n")
            scipy.io.savemat(os.path.join(root, "info", f"tracks_{split}_info.mat"),
                             {f"track_{split}_info": np.asarray(rows[split], np.float64)})
        scipy.io.savemat(os.path.join(root, "info", "query_IDX.mat"),
                         {"query_IDX": np.asarray(QUERY_IDX, np.float64).reshape(1, -1)})
    return root


@pytest.fixture
def mars(tmp_path):
    return make_mars(str(tmp_path / "MARS"))


def frames_of(t):
    return [os.path.basename(p) for p in t.frames]


def test_official_layout(mars):
    ds = datasets.load("mars", os.path.dirname(mars))  # the parent holding MARS/ works too
    assert ds.kind == "video" and ds.name == "mars" and ds.num_cameras == 6 and ds.root == mars
    assert ds.info["protocol"] == "official" and ds.info["protocol_note"] == ""
    assert all(isinstance(t, Tracklet) for s in ds.splits.values() for t in s)
    # train: 4 tracklets, pids 2, 7 relabelled to 0, 1; cameras 0-based; frames in name order
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.train] == [(0, 0, 3), (0, 2, 2), (1, 1, 1), (1, 1, 4)]
    assert ds.num_train_pids == 2
    assert frames_of(ds.train[0]) == frame_names("0002", 1, 1, 3)
    assert ds.train[0].frames[0] == os.path.join(mars, "bbox_train", "0002", "0002C1T0001F001.jpg")
    # query: rows 3, 5, 6 (1-based), original pids
    assert [(t.pid, t.camid, frames_of(t)[0]) for t in ds.query] == [
        (3, 0, "0003C1T0001F001.jpg"), (3, 3, "0003C4T0001F001.jpg"), (5, 1, "0005C2T0001F001.jpg")]
    # gallery: the whole test set but junk (queries included, as evaluation_mars.m); distractor 0 kept
    assert [(t.pid, t.camid) for t in ds.gallery] == [(0, 4), (3, 0), (3, 0), (3, 3), (5, 1), (5, 5)]
    assert ds.info["dropped"] == {"gallery junk tracklets": 1}
    text = ds.summary()
    assert "# tracklets" in text and "# frames" in text and "protocol: official" in text
    assert "train    |     2 |           4 |       10 |" in text


def test_gallery_without_queries(mars):
    ds = datasets.load("mars", mars, gallery="exclude_query")
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.gallery] == [(0, 4, 2), (3, 0, 3), (5, 5, 3)]
    with pytest.raises(ValueError, match="gallery must be one of"):
        datasets.load("mars", mars, gallery="some")
    assert datasets.reader_options("mars") == {"gallery": "all"}


def test_needs_root_and_registry():
    assert "mars" in datasets.available_datasets() and "synthetic_mars" in datasets.available_datasets()
    with pytest.raises(ValueError, match="needs root"):
        datasets.load("mars")


def test_missing_info_derives_queries_and_says_so(tmp_path):
    root = make_mars(str(tmp_path / "m"), info=False)
    with pytest.warns(DatasetWarning, match="NOT the official MARS protocol"):
        ds = datasets.load("mars", root)
    assert ds.info["protocol"] == "derived" and ds.info["protocol_note"] == DERIVED_PROTOCOL
    assert "NOT the official MARS protocol" in ds.summary()
    # rebuilt tracklets: same as the info/ files say
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.train] == [(0, 0, 3), (0, 2, 2), (1, 1, 1), (1, 1, 4)]
    # per identity >= 1 with >= 2 cameras, the lowest T number per camera: 0003 C1 T1, 0003 C4 T1, 0005 C2, 0005 C6
    assert [(t.pid, t.camid, frames_of(t)[0]) for t in ds.query] == [
        (3, 0, "0003C1T0001F001.jpg"), (3, 3, "0003C4T0001F001.jpg"), (5, 1, "0005C2T0001F001.jpg"),
        (5, 5, "0005C6T0001F001.jpg")]
    assert [(t.pid, t.camid) for t in ds.gallery] == [(0, 4), (3, 0), (3, 0), (3, 3), (5, 1), (5, 5)]


def test_derived_rule_hand_computed():
    t = [Tracklet((), 4, 0), Tracklet((), 4, 0), Tracklet((), 4, 2), Tracklet((), 8, 1),  # 8: one camera only
         Tracklet((), 0, 1), Tracklet((), -1, 3), Tracklet((), 9, 5), Tracklet((), 9, 1)]
    assert derived_queries(t) == [0, 2, 6, 7]
    assert derived_queries(t, keys=[5, 2, 1, 1, 1, 1, 1, 1]) == [1, 2, 6, 7]  # lowest key wins


def test_frame_names_parse():
    assert parse_frame_name("0003C4T0003F001.jpg", "x")[:4] == (3, 4, 3, 1)
    assert parse_frame_name("00-1C2T0010F120.jpg", "x")[:4] == (-1, 2, 10, 120)
    with pytest.raises(DatasetError, match="where.txt.*not a MARS frame name"):
        parse_frame_name("0003_c4s1_000123_01.jpg", "where.txt")


def _rewrite(path, var, value):
    scipy.io.savemat(path, {var: value})


def test_bad_name_in_name_list(mars):
    path = os.path.join(mars, "info", "test_name.txt")
    lines = open(path).read().splitlines()
    lines[3] = "0000_c5s1_000001_00.jpg"
    open(path, "w").write("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"tracks_test_info\.mat row 2 \(name 4\).*not a MARS frame name"):
        datasets.load("mars", mars)


def test_indices_past_the_name_list(mars):
    path = os.path.join(mars, "info", "tracks_test_info.mat")
    rows = scipy.io.loadmat(path)["track_test_info"]
    rows[-1, 1] = 999
    _rewrite(path, "track_test_info", rows)
    with pytest.raises(DatasetError, match=r"tracks_test_info\.mat: track_test_info row 7 \(start 14, end 999\) "
                                           r"runs outside the 16 names of .*test_name\.txt"):
        datasets.load("mars", mars)


def test_mat_of_another_kind(mars):
    path = os.path.join(mars, "info", "tracks_train_info.mat")
    _rewrite(path, "market_attribute", np.zeros((2, 4)))
    with pytest.raises(DatasetError, match=r"tracks_train_info\.mat: no variable 'track_train_info' "
                                           r"\(found \['market_attribute'\]\)"):
        datasets.load("mars", mars)
    _rewrite(path, "track_train_info", np.zeros((2, 3)))
    with pytest.raises(DatasetError, match=r"tracks_train_info\.mat: track_train_info has shape \(2, 3\)"):
        datasets.load("mars", mars)
    _rewrite(path, "track_train_info", np.array([[1, 2.5, 2, 1]]))
    with pytest.raises(DatasetError, match="not whole numbers"):
        datasets.load("mars", mars)
    open(path, "wb").write(b"not a mat file at all")
    with pytest.raises(DatasetError, match=r"tracks_train_info\.mat: unreadable \.mat"):
        datasets.load("mars", mars)


def test_row_disagrees_with_its_frames(mars):
    path = os.path.join(mars, "info", "tracks_train_info.mat")
    rows = scipy.io.loadmat(path)["track_train_info"]
    rows[1, 2] = 7  # says pid 7, the frames are 0002
    _rewrite(path, "track_train_info", rows)
    with pytest.raises(DatasetError, match="row 2 says pid 7 camera 3, its frame '0002C3T0001F001.jpg'"):
        datasets.load("mars", mars)
    rows[1, 2], rows[1, 3] = 2, 8
    _rewrite(path, "track_train_info", rows)
    with pytest.raises(DatasetError, match="row 2 has camera 8, outside 1..6"):
        datasets.load("mars", mars)


def test_query_idx_outside_and_missing(mars):
    path = os.path.join(mars, "info", "query_IDX.mat")
    _rewrite(path, "query_IDX", np.array([[3, 8]], np.float64))
    with pytest.raises(DatasetError, match=r"query_IDX\.mat: query_IDX holds 8, outside the 7 rows"):
        datasets.load("mars", mars)
    os.remove(path)
    with pytest.raises(DatasetError, match=r"query_IDX\.mat: file not found"):
        datasets.load("mars", mars)  # info/ present: no silent fallback to a derived protocol
    os.remove(os.path.join(mars, "info", "train_name.txt"))
    with pytest.raises(DatasetError, match=r"train_name\.txt: file not found"):
        datasets.load("mars", mars)


def test_empty_line_inside_a_name_list(mars):
    path = os.path.join(mars, "info", "train_name.txt")
    lines = open(path).read().splitlines()
    open(path, "w").write("\n".join(lines[:2] + [""] + lines[2:]) + "\n\n")
    with pytest.raises(DatasetError, match=r"train_name\.txt: line 3 is empty"):
        datasets.load("mars", mars)


def test_scan_bad_names_and_folders(tmp_path):
    root = make_mars(str(tmp_path / "m"), info=False)
    odd = os.path.join(root, "bbox_test", "0003", "0003_c1s1_000001_00.jpg")
    jpeg(odd, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        with pytest.raises(DatasetError, match="0003_c1s1_000001_00.jpg.*not a MARS frame name"):
            datasets.load("mars", root)
        os.remove(odd)
        shutil.move(os.path.join(root, "bbox_test", "0005", "0005C2T0001F001.jpg"),
                    os.path.join(root, "bbox_test", "0003", "0005C2T0001F001.jpg"))
        with pytest.raises(DatasetError, match="pid 0005 in the folder of pid 0003"):
            datasets.load("mars", root)


def test_unreadable_frames_are_counted_in_the_report(mars, tmp_path):
    bad = os.path.join(mars, "bbox_test", "0005", "0005C6T0001F002.jpg")
    open(bad, "wb").write(b"")  # empty file
    os.remove(os.path.join(mars, "bbox_train", "0007", "0007C2T0002F004.jpg"))  # listed, absent
    ds = datasets.load("mars", mars)
    assert len(ds.gallery[-1].frames) == 3  # the reader keeps names; the image check skips
    data = ds.write_report(str(tmp_path / "report.json"))
    assert data["images"]["gallery"]["num_records"] == 14 and data["images"]["gallery"]["num_readable"] == 13
    assert data["images"]["train"]["num_records"] == 10 and data["images"]["train"]["num_readable"] == 9
    assert data["totals"]["skipped"] == 2
    assert json.load(open(tmp_path / "report.json"))["dataset"] == "mars"

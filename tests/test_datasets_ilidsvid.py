"""iLIDS-VID reader on format-exact fakes: torchreid's `ilids-vid/` with the
release's `i-LIDS-VID/sequences/cam1|cam2/personNNN/camK_personNNN_XXXXX.png`
and `train-test people splits/train_test_splits_ilidsvid.mat` (`ls_set`,
10 x persons, 1-based, written with scipy.io.savemat as MATLAB doubles)."""

import os
import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

from keras_hpnet import datasets
from keras_hpnet.datasets import DatasetError, DatasetWarning

PERSONS = [1, 2, 3, 5, 7, 10]  # folder numbers (sorted positions 1..6 in ls_set)
FRAMES = {1: (317, 318, 1002), 2: (5, 6), 3: (40,), 5: (8, 9, 10), 7: (1, 2), 10: (77, 78)}
LS_SET = np.array([[3, 1, 6, 2, 4, 5]] + [list(np.random.default_rng(r).permutation(6) + 1) for r in range(9)],
                  np.float64)


def make_ilids(root, ls_set=LS_SET):
    """`root` = torchreid's ilids-vid/ folder."""
    seq = os.path.join(root, "i-LIDS-VID", "sequences")
    for cam in (1, 2):
        for pid in PERSONS:
            for f in FRAMES[pid]:
                path = os.path.join(seq, f"cam{cam}", f"person{pid:03d}", f"cam{cam}_person{pid:03d}_{f:05d}.png")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                Image.fromarray(np.full((16, 8, 3), 10 * pid + cam, np.uint8)).save(path)
    if ls_set is not None:
        os.makedirs(os.path.join(root, "train-test people splits"))
        scipy.io.savemat(split_mat(root), {"ls_set": ls_set})
    return root


def split_mat(root):
    return os.path.join(root, "train-test people splits", "train_test_splits_ilidsvid.mat")


@pytest.fixture
def ilids(tmp_path):
    return make_ilids(str(tmp_path / "ilids-vid"))


def test_official_split_from_ls_set(ilids):
    ds = datasets.load("ilids-vid", ilids)
    assert ds.kind == "video" and ds.name == "ilidsvid" and ds.num_cameras == 2
    assert ds.root == os.path.join(ilids, "i-LIDS-VID", "sequences")
    assert ds.info["protocol"] == "official" and ds.info["num_splits"] == 10
    assert ds.info["split_file"] == split_mat(ilids)
    # row 1 = [3, 1, 6 | 2, 4, 5]: positions 3, 1, 6 of the sorted folders are the test persons
    assert [(t.pid, t.camid) for t in ds.query] == [(1, 0), (3, 0), (10, 0)]
    assert [(t.pid, t.camid) for t in ds.gallery] == [(1, 1), (3, 1), (10, 1)]
    assert [(t.pid, t.camid, len(t.frames)) for t in ds.train] == [
        (0, 0, 2), (1, 0, 3), (2, 0, 2), (0, 1, 2), (1, 1, 3), (2, 1, 2)]  # persons 2, 5, 7 relabelled
    assert [os.path.basename(p) for p in ds.query[0].frames] == [
        "cam1_person001_00317.png", "cam1_person001_00318.png", "cam1_person001_01002.png"]


def test_every_split_is_half_and_half_and_the_index_is_checked(ilids):
    for k in range(10):
        ds = datasets.load("ilidsvid", os.path.join(ilids, "i-LIDS-VID"), split=k)  # the release folder as root
        expected = sorted(PERSONS[int(i) - 1] for i in LS_SET[k, :3])
        assert [t.pid for t in ds.query] == expected and len(ds.train) == 6
    with pytest.raises(DatasetError, match=r"train_test_splits_ilidsvid\.mat: split=10; expected an integer 0\.\.9"):
        datasets.load("ilidsvid", ilids, split=10)


def test_one_row_mat(tmp_path):
    root = make_ilids(str(tmp_path / "ilids-vid"), ls_set=LS_SET[:1])  # savemat/loadmat squeeze it to 1-D
    ds = datasets.load("ilidsvid", root)
    assert ds.info["num_splits"] == 1 and [t.pid for t in ds.query] == [1, 3, 10]


def test_derived_split_without_the_mat(tmp_path):
    root = make_ilids(str(tmp_path / "ilids-vid"), ls_set=None)
    with pytest.warns(DatasetWarning, match=r"no train-test people splits/train_test_splits_ilidsvid\.mat.*NOT"):
        ds = datasets.load("ilidsvid", root, split=3, seed=5)
    assert ds.info["protocol"] == "derived" and ds.info["split"] == 3
    test = {t.pid for t in ds.query}
    assert len(test) == 3 and test == {t.pid for t in ds.gallery} and test <= set(PERSONS)


@pytest.mark.parametrize("ls_set, match", [
    ({"other": np.ones((10, 6))}, r"no variable 'ls_set' \(found \['other'\]\)"),
    ({"ls_set": np.ones((10, 5))}, r"ls_set has shape \(10, 5\).*expected \(splits, 6\)"),
    ({"ls_set": np.tile([1, 1, 2, 3, 4, 5], (10, 1)).astype(float)}, r"ls_set row 1 is not a permutation of 1\.\.6"),
    ({"ls_set": np.tile(np.arange(6), (10, 1)).astype(float)}, r"ls_set row 1 is not a permutation of 1\.\.6"),
])
def test_bad_split_mat(ilids, ls_set, match):
    scipy.io.savemat(split_mat(ilids), ls_set)
    with pytest.raises(DatasetError, match=r"train_test_splits_ilidsvid\.mat: " + match):
        datasets.load("ilidsvid", ilids)


def test_unreadable_split_mat(ilids):
    open(split_mat(ilids), "wb").write(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(DatasetError, match=r"train_test_splits_ilidsvid\.mat: unreadable \.mat"):
        datasets.load("ilidsvid", ilids)


def test_missing_camera_and_missing_person(ilids):
    seq = os.path.join(ilids, "i-LIDS-VID", "sequences")
    shutil.rmtree(os.path.join(seq, "cam2", "person003"))  # still indexed (cam1 has it), gone from cam2
    with pytest.raises(DatasetError, match=r"split 0: names 1 person\(s\) not found .*cam2, e\.g\. \['person003'\]"):
        datasets.load("ilidsvid", ilids)
    shutil.rmtree(os.path.join(seq, "cam2"))
    with pytest.raises(DatasetError, match=r"iLIDS-VID camera cam2: folder not found"):
        datasets.load("ilidsvid", ilids)
    shutil.rmtree(os.path.join(seq, "cam1"))
    with pytest.raises(DatasetError, match="no iLIDS-VID layout under"):
        datasets.load("ilidsvid", ilids)

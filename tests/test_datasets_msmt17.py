"""MSMT17 reader on format-exact fakes (MSMT17_V1/_V2 folders and list files)."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from keras_hpnet import datasets
from support import bad_size_bmp
from keras_hpnet.datasets import DatasetError, DatasetWarning

H, W = 32, 16


def jpeg(path, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 2, 3), dtype=np.uint8)
    Image.fromarray(small).resize((W, H), Image.BILINEAR).save(path)


def make_msmt(root, version="MSMT17_V1", train_dir="train", test_dir="test"):
    """Train ids 0..2 (val holds a 4th image of id 1 and id 3), test ids 5, 7, 9;
    one gallery image listed but absent; one train image a BMP TF rejects."""
    base = os.path.join(root, version)
    lines = {"train": [], "val": [], "query": [], "gallery": []}

    def add(split, folder, pid, cam, k, fmt="jpg", write=True):
        rel = f"{pid:04d}/{pid:04d}_{k:03d}_{cam:02d}_0303morning_{k:04d}_0.{fmt}"
        path = os.path.join(base, folder, rel)
        if write and fmt == "bmp":
            bad_size_bmp(path, np.full((H, W, 3), 90, np.uint8))
        elif write:
            jpeg(path, pid * 100 + k)
        lines[split].append(f"{rel} {pid}")

    for pid in range(3):
        for k, cam in enumerate((1, 7, 15)):
            add("train", train_dir, pid, cam, k, fmt="bmp" if (pid, k) == (2, 1) else "jpg")
    add("val", train_dir, 1, 3, 9)
    add("val", train_dir, 3, 4, 0)
    for pid in (5, 7, 9):
        add("query", test_dir, pid, 2, 0)
        add("gallery", test_dir, pid, 11, 1)
        add("gallery", test_dir, pid, 14, 2)
    add("gallery", test_dir, 9, 14, 3, write=False)
    for split, rows in lines.items():
        with open(os.path.join(base, f"list_{split}.txt"), "w") as f:
            f.write("\n".join(rows) + "\n")
    return base


def load(root, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = datasets.load("msmt17", root, **kw)
    return ds, caught


def test_v1_splits_cameras_relabel_and_counted_skip(tmp_path):
    base = make_msmt(str(tmp_path))
    ds, caught = load(str(tmp_path))
    assert ds.root == base and ds.kind == "reid" and ds.num_cameras == 15
    assert len(ds.train) == 11 and ds.num_train_pids == 4  # train + val
    assert sorted({r.pid for r in ds.train}) == [0, 1, 2, 3]
    assert sorted({r.camid for r in ds.train}) == [0, 2, 3, 6, 14]
    assert len(ds.query) == 3 and {r.pid for r in ds.query} == {5, 7, 9} and {r.camid for r in ds.query} == {1}
    assert len(ds.gallery) == 6 and {r.camid for r in ds.gallery} == {10, 13}
    assert all(os.path.isfile(r.path) for recs in ds.splits.values() for r in recs)
    skipped = ds.report.to_dict()["readers"]
    (entry,) = skipped.values()
    assert entry["image listed but not on disk"]["count"] == 1
    assert "0009_003_14" in entry["image listed but not on disk"]["examples"][0]
    assert any(issubclass(w.category, DatasetWarning) for w in caught)
    only_train, _ = load(str(tmp_path), merge_val=False)
    assert len(only_train.train) == 9 and only_train.num_train_pids == 3
    assert only_train.info["num_val"] == 2


def test_v2_folder_names_and_root_itself(tmp_path):
    base = make_msmt(str(tmp_path), "MSMT17_V2", "mask_train_v2", "mask_test_v2")
    ds, _ = load(base)
    assert ds.info["version"] == "MSMT17_V2" and len(ds.train) == 11 and len(ds.gallery) == 6


def test_bad_input_is_named(tmp_path):
    base = make_msmt(str(tmp_path))
    with pytest.raises(DatasetError, match="list_train.txt not found"):
        datasets.load("msmt17", str(tmp_path / "MSMT17_V1" / "train"))
    os.remove(os.path.join(base, "list_gallery.txt"))
    with pytest.raises(DatasetError, match=r"list_gallery\.txt: list file not found"):
        datasets.load("msmt17", str(tmp_path))
    make_msmt(str(tmp_path))
    with open(os.path.join(base, "list_query.txt"), "a") as f:
        f.write("0005/0005_009_02_0303morning_0009_0.jpg five\n")
    with pytest.raises(DatasetError, match=r"list_query\.txt:4: expected"):
        datasets.load("msmt17", str(tmp_path))
    make_msmt(str(tmp_path))
    with open(os.path.join(base, "list_val.txt"), "a") as f:
        f.write("0001/0001_009_16_0303morning_0009_0.jpg 1\n")
    with pytest.raises(DatasetError, match=r"list_val\.txt:3: camera 16 outside 1\.\.15"):
        datasets.load("msmt17", str(tmp_path))


def test_records_flow_through_make_dataset_with_the_tf_rejected_bmp(tmp_path):
    from keras_hpnet.data import clear_check_cache, make_dataset

    clear_check_cache()
    make_msmt(str(tmp_path))
    ds, _ = load(str(tmp_path))
    tf_ds = make_dataset(ds.train, input_size=(H, W), batch_size=4, training=False)
    images = np.concatenate([x.numpy() for x, _ in tf_ds])
    assert images.shape == (11, H, W, 3)
    bmp_index = [i for i, r in enumerate(ds.train) if r.path.endswith(".bmp")]
    assert len(bmp_index) == 1
    np.testing.assert_array_equal(images[bmp_index[0]], np.full((H, W, 3), 90, np.uint8))
    pillow = tf_ds.report.counts()["decoded_with_pillow"]
    assert pillow["BMP that TF's decoder rejects"]["count"] == 1
    ds.report.check_images(ds)
    totals = ds.report.totals()
    assert totals == {"skipped": 1, "decoded_with_pillow": 1}

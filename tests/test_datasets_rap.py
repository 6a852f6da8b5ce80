"""RAP v1/v2 reader on format-exact fakes of `RAP_annotation.mat` (MATLAB v5
struct `RAP_annotation`, cell arrays of names, 1-based indices) and `RAP_dataset/`."""

import os
import warnings

import numpy as np
import pytest
import scipy.io
from PIL import Image

from keras_hpnet import datasets
from keras_hpnet.datasets import UNKNOWN_ATTRIBUTE, DatasetError, DatasetWarning
from support import bad_size_bmp

H, W = 32, 16
N_IMAGES = 20
V1_NAMES = ["Femal", "AgeLess16", "Age17-30", "Age31-45", "BodyFat", "BodyNormal", "BodyThin", "Customer", "Clerk",
            "hs-BaldHead", "hs-LongHair", "hs-BlackHair", "hs-Hat", "hs-Glasses", "hs-Muffler"]
V1_ATTRIBUTES = V1_NAMES + [f"v1extra{k}" for k in range(92 - len(V1_NAMES))]
V2_ATTRIBUTES = ["Femal", "AgeLess16", "Age17-30", "Age31-45", "Age46-60", "AgeBiger60"] + \
    [f"v2extra{k}" for k in range(152 - 6)]
V2_SELECTED = [1, 2, 3, 4, 5, 6] + list(range(10, 58))  # 54, 1-based, not the first 54 columns
ABSENT = 5  # 0-based index of the image listed but not written
BAD_BMP = 2  # 0-based index of the BMP TensorFlow's decoder rejects (a train image in every partition)


def cell(strings, shape=None):
    """A MATLAB cell array of char arrays (N x 1, as in the release)."""
    out = np.empty(shape or (len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        out.flat[i] = s
    return out


def row(indices):
    return np.asarray(indices, dtype=np.float64).reshape(1, -1)  # MATLAB double row vector


def image_name(version, i):
    ext = "bmp" if i == BAD_BMP else ("jpg" if i % 3 == 0 else "png")
    cam = 1 + i % 4
    if version == "v1":
        return f"CAM{cam:02d}_2014-02-15_20140215161032-20140215162620_tarid{i}_frame{100 + i}_line1.{ext}"
    return f"CAM{cam:02d}-2014-02-15-20140215161032-20140215162620-tarid{i}-frame{100 + i}-line1.{ext}"


def write_images(folder, names):
    os.makedirs(folder)
    for i, name in enumerate(names):
        if i == ABSENT:
            continue
        rng = np.random.default_rng(i)
        pixels = np.asarray(Image.fromarray(rng.integers(0, 256, (4, 2, 3), dtype=np.uint8)).resize((W, H)))
        path = os.path.join(folder, name)
        if i == BAD_BMP:
            bad_size_bmp(path, pixels)
        else:
            Image.fromarray(pixels).save(path, format="JPEG" if name.endswith(".jpg") else "PNG")


def partitions(n, splits, seed):
    """Per partition: {split: 1-based indices}, BAD_BMP always in train, ABSENT always in test."""
    rest = [i for i in range(n) if i not in (BAD_BMP, ABSENT)]
    out = []
    for k in range(5):
        order = list(np.random.default_rng(seed + k).permutation(rest))
        sizes = {"train": 13, "val": 3} if len(splits) == 3 else {"train": 13}
        part, start = {}, 0
        for split in splits[:-1]:
            part[split] = order[start:start + sizes[split]]
            start += sizes[split]
        part[splits[-1]] = order[start:]
        part["train"] = sorted(part["train"] + [BAD_BMP])
        part[splits[-1]] = sorted(part[splits[-1]] + [ABSENT])
        out.append({s: [i + 1 for i in sorted(v)] for s, v in part.items()})
    return out


def v1_labels(uncertain):
    labels = (np.random.default_rng(7).random((N_IMAGES, 92)) < 0.4).astype(np.float64)
    if uncertain:
        labels[0, 0] = labels[4, 10] = labels[9, 50] = 2  # uncertain in the standard 51
        labels[1, 60] = 2  # outside the standard 51: not counted by default
        labels[ABSENT, 3] = 2  # on an image not on disk: skipped, not counted
    return labels


def make_rap_v1(root, uncertain=True, selected=None):
    """A RAP v1 release: RAP_annotation/RAP_annotation.mat and RAP_dataset/ (20 images)."""
    names = [image_name("v1", i) for i in range(N_IMAGES)]
    write_images(os.path.join(root, "RAP_dataset"), names)
    parts = np.empty((5, 1), dtype=object)
    for k, p in enumerate(partitions(N_IMAGES, ("train", "test"), 0)):
        parts[k, 0] = {"train_index": row(p["train"]), "test_index": row(p["test"])}
    ann = {"partion": parts, "label": v1_labels(uncertain),
           "attribute_chinese": cell([f"zh{k}" for k in range(92)]), "attribute_eng": cell(V1_ATTRIBUTES),
           "position": np.zeros((N_IMAGES, 16), np.int32), "imagesname": cell(names),
           "attribute_exp": cell([n.split("-")[-1] for n in V1_ATTRIBUTES[:51]])}
    if selected is not None:
        ann["selected_attribute"] = row(selected)
    os.makedirs(os.path.join(root, "RAP_annotation"))
    scipy.io.savemat(os.path.join(root, "RAP_annotation", "RAP_annotation.mat"), {"RAP_annotation": ann})
    return ann


def v2_identities():
    ids = np.array([1 + i // 3 for i in range(N_IMAGES)], np.float64)
    ids[[7, 8]] = -1  # images without an identity
    return ids.reshape(-1, 1)


def make_rap_v2(root):
    """A RAP v2 release (20 images, 152 attributes, 54 selected, train/val/test, re-id fields)."""
    names = [image_name("v2", i) for i in range(N_IMAGES)]
    write_images(os.path.join(root, "RAP_dataset"), names)
    data = (np.random.default_rng(8).random((N_IMAGES, 152)) < 0.4).astype(np.float64)
    data[3, 0] = 2  # uncertain, in a selected column
    parts = np.empty((1, 5), dtype=object)
    for k, p in enumerate(partitions(N_IMAGES, ("train", "val", "test"), 10)):
        parts[0, k] = {"train_index": row(p["train"]), "val_index": row(p["val"]), "test_index": row(p["test"])}
    ann = {"name": cell(names), "data": data, "attribute": cell(V2_ATTRIBUTES), "selected_attribute": row(V2_SELECTED),
           "partition_attribute": parts, "person_identity": v2_identities(),
           "partition_reid": {"train_identity": row([1, 2, 3]), "test_identity": row([4, 5, 6, 7])}}
    os.makedirs(os.path.join(root, "RAP_annotation"))
    scipy.io.savemat(os.path.join(root, "RAP_annotation", "RAP_annotation.mat"), {"RAP_annotation": ann})
    return ann


def load(root, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = datasets.load("rap", root, **kw)
    assert any(issubclass(w.category, DatasetWarning) for w in caught)  # at least the absent image
    return ds


def indices(ds):
    """{split: 0-based image indices} from the records' file names (tarid<i>)."""
    return {s: [int(os.path.basename(r.path).split("tarid")[1].split("_")[0].split("-")[0]) for r in recs]
            for s, recs in ds.splits.items()}


@pytest.fixture(scope="module")
def v1_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("rap1"))
    return root, make_rap_v1(root)


@pytest.fixture(scope="module")
def v2_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("rap2"))
    return root, make_rap_v2(root)


def test_v1_standard_protocol_partition_labels_and_unknowns(v1_root):
    root, ann = v1_root
    ds = load(root)
    assert ds.kind == "attribute" and ds.info["version"] == "v1" and ds.root == root
    assert ds.attribute_names == V1_ATTRIBUTES[:51]  # attribute_exp has 51 names: the first 51 columns
    want = partitions(N_IMAGES, ("train", "test"), 0)[0]
    got = indices(ds)
    assert got["train"] == [i - 1 for i in want["train"]]
    assert got["test"] == [i - 1 for i in want["test"] if i - 1 != ABSENT]  # the absent image skipped
    assert ds.splits["val"] == []  # v1 has no validation split
    for split, idx in got.items():
        for r, i in zip(ds.splits[split], idx):
            expect = ann["label"][i, :51].copy()
            expect[expect == 2] = UNKNOWN_ATTRIBUTE
            np.testing.assert_array_equal(r.attributes, expect.astype(np.uint8))
            assert r.pid == -1 and r.camid == i % 4  # CAM01..CAM04 -> 0..3
    assert ds.num_cameras == 4
    used = set(got["train"]) | set(got["test"])
    n_unknown = int(sum((ann["label"][i, :51] == 2).sum() for i in used))
    assert n_unknown == 3 and ds.info["unknown_attribute_entries"] == n_unknown
    reasons = ds.report.to_dict()["readers"]
    (reader,) = reasons.values()
    assert reader["label 2 (uncertain) read as unknown (255)"]["count"] == n_unknown
    assert reader["image listed but not on disk"]["count"] == 1


def test_v1_options_partition_all_and_names(v1_root):
    root, ann = v1_root
    ds = load(root, partition=3)
    want = partitions(N_IMAGES, ("train", "test"), 0)[3]
    assert indices(ds)["train"] == [i - 1 for i in want["train"]] and ds.info["partition"] == 3
    full = load(root, attributes="all")
    assert full.attribute_names == V1_ATTRIBUTES
    assert full.info["unknown_attribute_entries"] == 4  # the 2 in column 61 counts now
    located = {i: r for split, idx in indices(full).items() for i, r in zip(idx, full.splits[split])}
    assert located[1].attributes[60] == UNKNOWN_ATTRIBUTE
    picked = load(root, attributes=["hs-LongHair", "Femal"])
    i = indices(picked)["train"][0]
    expect = ann["label"][i, [10, 0]]
    np.testing.assert_array_equal(picked.splits["train"][0].attributes, np.where(expect == 2, UNKNOWN_ATTRIBUTE, expect))
    assert i == 0 and picked.splits["train"][0].attributes[1] == UNKNOWN_ATTRIBUTE  # image 0's uncertain Femal
    with pytest.raises(DatasetError, match=r"partion holds 5 partition\(s\), 0..4"):
        datasets.load("rap", root, partition=5)
    with pytest.raises(ValueError, match="unknown or repeated names.*Female"):
        datasets.load("rap", root, attributes=["Female"])
    assert datasets.reader_options("rap") == {"version": "auto", "partition": 0, "attributes": "standard",
                                              "merge_val": False}


def test_v1_selected_attribute_when_present(tmp_path):
    make_rap_v1(str(tmp_path), selected=[2, 1, 11])
    ds = load(str(tmp_path))
    assert ds.attribute_names == ["AgeLess16", "Femal", "hs-LongHair"]


def test_v2_selected_attributes_splits_and_identities(v2_root):
    root, ann = v2_root
    ds = load(root)
    assert ds.info["version"] == "v2" and len(ds.attribute_names) == 54
    assert ds.attribute_names == [V2_ATTRIBUTES[i - 1] for i in V2_SELECTED]
    want = partitions(N_IMAGES, ("train", "val", "test"), 10)[0]
    got = indices(ds)
    assert got["train"] == [i - 1 for i in want["train"]] and got["val"] == [i - 1 for i in want["val"]]
    assert got["test"] == [i - 1 for i in want["test"] if i - 1 != ABSENT]
    ids = v2_identities().ravel()
    cols = [i - 1 for i in V2_SELECTED]
    for split, idx in got.items():
        for r, i in zip(ds.splits[split], idx):
            assert r.pid == (int(ids[i]) if ids[i] >= 0 else -1)
            expect = ann["data"][i, cols]
            expect[expect == 2] = UNKNOWN_ATTRIBUTE
            np.testing.assert_array_equal(r.attributes, expect.astype(np.uint8))
    assert -1 in {r.pid for recs in ds.splits.values() for r in recs}
    assert ds.info["unknown_attribute_entries"] == 1
    assert ds.info["num_identities"] == len(set(ids[ids >= 0]))
    assert ds.info["reid_partition"] == {"train_identity": 3, "test_identity": 4}
    with pytest.raises(DatasetError, match=r"RAP_annotation lacks the RAP v1 fields \[.imagesname"):
        datasets.load("rap", root, version="v1")  # v2 file read as v1: lacks v1 fields
    merged = load(root, merge_val=True)  # train + val, as many PAR papers train
    assert [r.path for r in merged.train] == [r.path for r in ds.train + ds.val] and merged.val == []
    assert [r.path for r in merged.test] == [r.path for r in ds.test] and merged.info["merge_val"]


def test_release_folder_found_one_level_down_and_from_the_annotation_folder(tmp_path):
    make_rap_v2(str(tmp_path / "RAP2"))
    ds = load(str(tmp_path))
    assert ds.root == str(tmp_path / "RAP2") and len(ds.splits["val"]) == 3
    inner = load(str(tmp_path / "RAP2" / "RAP_annotation"))
    assert [r.path for r in inner.splits["test"]] == [r.path for r in ds.splits["test"]]


def test_bad_input_names_the_file_and_field(tmp_path):
    with pytest.raises(DatasetError, match="no RAP_annotation.mat under"):
        datasets.load("rap", str(tmp_path))
    # PA-100K's annotation.mat in RAP's place.
    os.makedirs(tmp_path / "pa" / "RAP_annotation")
    pa = str(tmp_path / "pa" / "RAP_annotation" / "RAP_annotation.mat")
    scipy.io.savemat(pa, {"attributes": cell(["Female"]), "train_images_name": cell(["000001.jpg"]),
                          "train_label": np.zeros((1, 1))})
    with pytest.raises(DatasetError, match=r"RAP_annotation\.mat: not a RAP annotation file.*train_label"):
        datasets.load("rap", str(tmp_path / "pa"))
    # An index past the name list.
    root = str(tmp_path / "v1")
    ann = make_rap_v1(root)
    ann["partion"][1, 0]["test_index"] = row([1, N_IMAGES + 1])
    scipy.io.savemat(os.path.join(root, "RAP_annotation", "RAP_annotation.mat"), {"RAP_annotation": ann})
    with pytest.raises(DatasetError, match=r"partion\[1\]\.test_index holds index 21 outside 1..20"):
        datasets.load("rap", root, partition=1)
    ann["partion"][1, 0]["test_index"] = row([0, 3])
    scipy.io.savemat(os.path.join(root, "RAP_annotation", "RAP_annotation.mat"), {"RAP_annotation": ann})
    with pytest.raises(DatasetError, match=r"partion\[1\]\.test_index holds index 0 outside"):
        datasets.load("rap", root, partition=1)  # 1-based: 0 is no image
    os.rename(os.path.join(root, "RAP_dataset"), os.path.join(root, "images"))
    with pytest.raises(DatasetError, match=r"RAP_annotation\.mat: image folder RAP_dataset/ not found"):
        datasets.load("rap", root)
    ann["label"] = ann["label"][:, :90]
    scipy.io.savemat(os.path.join(root, "RAP_annotation", "RAP_annotation.mat"), {"RAP_annotation": ann})
    with pytest.raises(DatasetError, match=r"label has shape \(20, 90\), expected \(20, 92\)"):
        datasets.load("rap", root)


def test_mixed_image_formats_and_the_bad_bmp_in_the_report(tmp_path, v1_root):
    root, _ = v1_root
    ds = load(root)
    assert {os.path.splitext(r.path)[1] for r in ds.splits["train"]} == {".png", ".jpg", ".bmp"}
    report = ds.write_report(str(tmp_path / "data_report.json"))
    assert report["totals"]["decoded_with_pillow"] == 1  # the BMP tf.io.decode_image rejects
    assert report["totals"]["skipped"] == 1 + 3  # the absent image + the 3 uncertain entries

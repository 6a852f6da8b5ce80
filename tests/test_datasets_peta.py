"""PETA reader on a format-exact fake of the release, with its quirks."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from keras_hpnet import datasets
from keras_hpnet.datasets import DatasetError, DatasetWarning
from keras_hpnet.datasets.peta import ALL_ATTRIBUTES, DEEPMAR35, split_sizes

H, W = 32, 16


def image(path, seed, fmt):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 2, 3), dtype=np.uint8)
    Image.fromarray(small).resize((W, H), Image.BILINEAR).save(path, format=fmt)


def make_peta(root):
    """VIPeR (BMP, 10 ids x 2 views + a label line without image, one BMP TF
    rejects), CUHK (PNG, each image its own ID), 3DPeS (JPEG, IDs written
    without leading zeros, one image without a label line): 40 labelled images."""
    base = os.path.join(root, "PETA dataset")
    subsets = {"VIPeR": [], "CUHK": [], "3DPeS": []}
    for name in subsets:
        os.makedirs(os.path.join(base, name, "archive"))
    viper = os.path.join(base, "VIPeR", "archive")
    for i in range(10):
        for k, angle in enumerate((45, 90)):
            image(os.path.join(viper, f"{i:03d}_{angle}_{k + 1}.bmp"), i * 10 + k, "BMP")
        subsets["VIPeR"].append(f"{i:03d} personalLess30 hairLong" + (" personalMale" if i % 2 else ""))
    with open(os.path.join(viper, "003_90_2.bmp"), "ab") as f:
        f.write(b"\0\0")  # the BMP tf.io.decode_image rejects ("differ by 2")
    subsets["VIPeR"][0] = ("000 personalMale footwearSneakers upperBodyBlack personalMale accessoryFaceMask "
                           "fooBar carryingNothing carryingBackpack")
    subsets["VIPeR"].append("010 personalMale")  # ID without images
    subsets["VIPeR"].append("001 upperBodyLogo")  # a second line for an ID
    cuhk = os.path.join(base, "CUHK", "archive")
    for i in range(1, 11):
        image(os.path.join(cuhk, f"{i:04d}.png"), 200 + i, "PNG")
        subsets["CUHK"].append(f"{i:04d} personalLarger60" + (" lowerBodyJeans" if i <= 3 else ""))
    peds = os.path.join(base, "3DPeS", "archive")
    for i in range(1, 6):
        for k in (1, 2):
            image(os.path.join(peds, f"{i:03d}_{k}_FRAME_{k * 13}_RGB.jpg"), 300 + i * 3 + k, "JPEG")
        subsets["3DPeS"].append(f"{i} carryingOther")
    image(os.path.join(peds, "099_1_FRAME_1_RGB.jpg"), 399, "JPEG")  # no label line
    for name, lines in subsets.items():
        with open(os.path.join(base, name, "archive", "Label.txt"), "w") as f:
            f.write("\r\n".join(lines) + "\r\n")
    return base


@pytest.fixture(scope="module")
def peta_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("peta"))
    make_peta(root)
    return root


def load(root, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = datasets.load("peta", root, **kw)
    assert any(issubclass(w.category, DatasetWarning) for w in caught)
    return ds


def by_path(ds):
    return {os.path.relpath(r.path, ds.root): r.attributes for recs in ds.splits.values() for r in recs}


def identity(ds, path):
    rel = os.path.relpath(path, ds.root)
    subset, stem = rel.split(os.sep)[0], os.path.splitext(os.path.basename(rel))[0]
    return subset, (stem if subset == "CUHK" else str(int(stem.split("_")[0])))


def test_layout_labels_and_default_random_split(peta_root):
    ds = load(peta_root)
    assert ds.kind == "attribute" and ds.attribute_names == list(DEEPMAR35) and len(DEEPMAR35) == 35
    assert ds.root == os.path.join(peta_root, "PETA dataset")
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [20, 4, 16] == list(split_sizes(40))
    labels = by_path(ds)
    assert len(labels) == 40
    col = {n: i for i, n in enumerate(DEEPMAR35)}
    v0 = labels[os.path.join("VIPeR", "archive", "000_45_1.bmp")]
    assert v0[col["personalMale"]] == v0[col["footwearSneaker"]] == v0[col["carryingBackpack"]] == 1
    assert v0.sum() == 4  # + carryingNothing; Black/FaceMask/fooBar are not in the 35
    v1 = labels[os.path.join("VIPeR", "archive", "001_90_2.bmp")]
    assert v1[col["upperBodyLogo"]] == v1[col["personalMale"]] == v1[col["hairLong"]] == 1  # lines merged
    assert labels[os.path.join("CUHK", "archive", "0002.png")][col["lowerBodyJeans"]] == 1
    assert labels[os.path.join("CUHK", "archive", "0007.png")][col["lowerBodyJeans"]] == 0
    assert labels[os.path.join("3DPeS", "archive", "005_2_FRAME_26_RGB.jpg")][col["carryingOther"]] == 1
    assert ds.info["num_identities"] == 25
    same = load(os.path.join(peta_root, "PETA dataset"))  # data_dir = the release folder itself
    assert [r.path for r in same.train] == [r.path for r in ds.train]
    other = load(peta_root, seed=1)
    assert [r.path for r in other.train] != [r.path for r in ds.train]


def test_quirks_are_counted_in_the_report(peta_root):
    ds = load(peta_root)
    (reasons,) = ds.report.to_dict()["readers"].values()
    counts = {k: v["count"] for k, v in reasons.items()}
    assert counts["tag spelled 'footwearSneakers', read as 'footwearSneaker'"] == 1
    assert counts["repeated tag on a line (counted once)"] == 1
    assert counts["repeated ID line (tags merged)"] == 1
    assert counts["tag the readme lists as discarded (ignored)"] == 1
    assert counts["unknown tag (ignored)"] == 1
    assert counts["carryingNothing with a carried object (kept as written)"] == 1
    assert counts["label line without an image"] == 1
    assert counts["image without a label line"] == 1
    assert counts["subset folder missing"] == 7
    assert "ID 010" in reasons["label line without an image"]["examples"][0]


def test_all_attributes_and_identity_split(peta_root):
    ds = load(peta_root, attributes="all", split="identity", seed=3)
    assert len(ALL_ATTRIBUTES) == 105 == ds.num_attributes
    black = ds.attribute_names.index("upperBodyBlack")
    assert by_path(ds)[os.path.join("VIPeR", "archive", "000_90_2.bmp")][black] == 1
    owners = {}
    for split, recs in ds.splits.items():
        for r in recs:
            owners.setdefault(identity(ds, r.path), set()).add(split)
    assert len(owners) == 25 and all(len(s) == 1 for s in owners.values())  # identity-disjoint
    sizes = [len(ds.splits[s]) for s in ("train", "val", "test")]
    assert sum(sizes) == 40 and 20 <= sizes[0] <= 21 and 4 <= sizes[1] <= 5
    picked = load(peta_root, attributes=["hairLong", "personalMale"])
    assert picked.attribute_names == ["hairLong", "personalMale"]


def test_bad_input_is_named(peta_root, tmp_path):
    with pytest.raises(DatasetError, match="no PETA release"):
        datasets.load("peta", str(tmp_path))
    with pytest.raises(ValueError, match="split must be one of"):
        datasets.load("peta", peta_root, split="zeroshot")
    with pytest.raises(ValueError, match="unknown or repeated names"):
        datasets.load("peta", peta_root, attributes=["hairlong"])
    os.makedirs(tmp_path / "PETA dataset" / "GRID" / "archive")
    with pytest.raises(DatasetError, match=r"GRID.archive.Label\.txt: label file not found"):
        datasets.load("peta", str(tmp_path))
    assert split_sizes(19000) == (9500, 1900, 7600) and split_sizes(1000) == (500, 100, 400)


def test_mixed_formats_flow_through_make_dataset(peta_root):
    from keras_hpnet.data import clear_check_cache, make_dataset

    clear_check_cache()
    ds = load(peta_root, split="random", seed=0)
    records = ds.train + ds.val + ds.test
    tf_ds = make_dataset(records, input_size=(H, W), batch_size=8, training=False)
    n = sum(int(x.shape[0]) for x, _ in tf_ds)
    assert n == 40
    pillow = tf_ds.report.counts()["decoded_with_pillow"]
    assert pillow["BMP that TF's decoder rejects"]["count"] == 1
    assert "003_90_2.bmp" in pillow["BMP that TF's decoder rejects"]["examples"][0]

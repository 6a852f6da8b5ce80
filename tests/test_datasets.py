"""Dataset readers on tiny fake copies of each official format (written in tmp_path)."""

import json
import os
import warnings

import numpy as np
import pytest
import scipy.io
from PIL import Image

from keras_hpnet import datasets
from keras_hpnet.datasets import DatasetError, DatasetWarning

MARKET_ORDER = ["age", "backpack", "bag", "handbag", "downblack", "downblue", "downbrown", "downgray", "downgreen",
                "downpink", "downpurple", "downwhite", "downyellow", "upblack", "upblue", "upgreen", "upgray",
                "uppurple", "upred", "upwhite", "upyellow", "clothes", "down", "up", "hair", "hat", "gender"]


def _jpg(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (4, 8), (10, 20, 30)).save(path)


def _market_tree(root, cams=6, extra=()):
    files = {
        "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s1_000101_01.jpg",
                               "0007_c6s2_000101_02.jpg", "0010_c1s1_001101_01.jpg", "-1_c1s1_000001_00.jpg"],
        "query": ["0001_c1s1_001051_00.jpg", "0003_c4s2_000201_00.jpg"],
        "bounding_box_test": ["0001_c2s1_000301_01.jpg", "0001_c5s1_000301_02.jpg", "0003_c1s1_000021_01.jpg",
                              "0000_c3s1_000999_01.jpg", "-1_c2s1_000777_01.jpg", "0003_c%ds1_000022_01.jpg" % cams],
    }
    for folder, names in files.items():
        for n in list(names) + [e for f, e in extra if f == folder]:
            _jpg(os.path.join(root, folder, n))
    return root


def _identity_struct(ids, rng, fields=MARKET_ORDER):
    n = len(ids)
    out = {}
    for f in fields:
        out[f] = (rng.integers(1, 5, n) if f == "age" else rng.integers(1, 3, n)).astype(np.float64).reshape(1, n)
    idx = np.empty((1, n), dtype=object)
    for i, p in enumerate(ids):
        idx[0, i] = f"{p:04d}"
    out["image_index"] = idx
    return out


def _market_mat(path, train_ids=(2, 7, 10), test_ids=(1, 3), seed=0, struct="market_attribute", test_fields=None):
    rng = np.random.default_rng(seed)
    train = _identity_struct(train_ids, rng)
    test = _identity_struct(test_ids, rng, test_fields or MARKET_ORDER)
    scipy.io.savemat(path, {struct: {"train": train, "test": test}})
    return train, test


def test_market1501_layout_ids_cameras_and_attributes(tmp_path):
    root = _market_tree(str(tmp_path))
    train_mat, test_mat = _market_mat(os.path.join(root, "market_attribute.mat"))
    ds = datasets.load("market1501", root)
    assert ds.kind == "reid" and ds.num_cameras == 6
    # junk (-1) dropped everywhere; ids relabelled in sorted order; cameras 0-based
    assert [(os.path.basename(r.path), r.pid, r.camid) for r in ds.train] == [
        ("0002_c1s1_000451_03.jpg", 0, 0), ("0002_c2s1_000551_01.jpg", 0, 1), ("0007_c3s1_000101_01.jpg", 1, 2),
        ("0007_c6s2_000101_02.jpg", 1, 5), ("0010_c1s1_001101_01.jpg", 2, 0)]
    assert ds.num_train_pids == 3
    assert sorted((r.pid, r.camid) for r in ds.query) == [(1, 0), (3, 3)]
    assert sorted(r.pid for r in ds.gallery) == [0, 1, 1, 3, 3]  # distractor kept in the gallery only
    # 26 binary attributes (age dropped), file order, 1/2 -> 0/1, per identity
    assert ds.attribute_names == MARKET_ORDER[1:]
    j = ds.attribute_names.index("upred")
    assert ds.train[3].attributes[j] == train_mat["upred"][0, 1] - 1  # identity 0007 is the 2nd train identity
    g = [r for r in ds.gallery if r.pid == 3][0]
    np.testing.assert_array_equal(g.attributes, np.array([test_mat[f][0, 1] - 1 for f in MARKET_ORDER[1:]]))
    assert g.attributes.dtype == np.uint8
    assert [r.attributes for r in ds.gallery if r.pid == 0] == [None]
    assert "train" in ds.summary() and " 3 |" in ds.summary()


def test_market1501_age_onehot_and_no_attributes(tmp_path):
    root = _market_tree(str(tmp_path))
    train_mat, _ = _market_mat(os.path.join(root, "market_attribute.mat"))
    ds = datasets.load("market1501", root, age="onehot")
    assert ds.attribute_names[:4] == ["age_young", "age_teenager", "age_adult", "age_old"]
    assert len(ds.attribute_names) == 30
    for r, age in zip([ds.train[0], ds.train[2], ds.train[4]], train_mat["age"][0]):
        np.testing.assert_array_equal(r.attributes[:4], np.eye(4, dtype=np.uint8)[int(age) - 1])
    plain = datasets.load("market1501", root, attributes=False)
    assert plain.attribute_names == [] and plain.train[0].attributes is None


def test_market1501_subfolder_and_errors(tmp_path):
    base = tmp_path / "Market-1501-v15.09.15"
    _market_tree(str(base))
    assert len(datasets.load("market", str(tmp_path)).query) == 2  # official archive folder accepted
    with pytest.raises(DatasetError, match="bounding_box_train"):
        datasets.load("market1501", str(base / "query"))  # exists, but holds no Market layout
    # identity in the images but not in the .mat
    mat = str(tmp_path / "market_attribute.mat")
    _market_mat(mat, train_ids=(2, 7))
    with pytest.raises(DatasetError, match=r"identity 0010 .* not in the \.mat"):
        datasets.load("market1501", str(tmp_path))
    # unreadable .mat
    with open(mat, "wb") as f:
        f.write(b"this is not a mat file")
    with pytest.raises(DatasetError, match="market_attribute.mat: unreadable"):
        datasets.load("market1501", str(tmp_path))
    # wrong struct name / wrong coding
    scipy.io.savemat(mat, {"something": np.zeros(3)})
    with pytest.raises(DatasetError, match="no struct 'market_attribute'"):
        datasets.load("market1501", str(tmp_path))
    train, test = _market_mat(mat)
    train["hat"][0, 0] = 7  # outside the coding (0 is "not labelled": test_dukemtmc_unlabelled_entries...)
    scipy.io.savemat(mat, {"market_attribute": {"train": train, "test": test}})
    with pytest.raises(DatasetError, match=r"train\.hat has values \[7\]; expected the 1\.\.2 coding"):
        datasets.load("market1501", str(tmp_path))
    train["hat"][0, 0], train["age"][0, 1] = 1, 5
    scipy.io.savemat(mat, {"market_attribute": {"train": train, "test": test}})
    with pytest.raises(DatasetError, match=r"train\.age has values \[5\]; expected the 1\.\.4 coding"):
        datasets.load("market1501", str(tmp_path), age="onehot")


def test_market1501_missing_and_empty_split(tmp_path):
    root = _market_tree(str(tmp_path))
    for f in os.listdir(os.path.join(root, "query")):
        os.remove(os.path.join(root, "query", f))
    with pytest.raises(DatasetError, match="query.*empty query split"):
        datasets.load("market1501", root)
    os.rmdir(os.path.join(root, "query"))
    with pytest.raises(DatasetError, match="folder not found: .*query"):
        datasets.load("market1501", root)
    with pytest.raises(DatasetError, match="folder not found"):
        datasets.load("market1501", str(tmp_path / "missing"))


def test_market1501_bad_names_counted_and_camera_range(tmp_path):
    root = _market_tree(str(tmp_path), extra=[("bounding_box_train", "Thumbs_x.jpg"),
                                              ("bounding_box_train", "bad.jpg")])
    with pytest.warns(DatasetWarning, match="skipped 2 item"):
        ds = datasets.load("market1501", root)
    assert len(ds.train) == 5
    _jpg(os.path.join(root, "query", "0001_c7s1_000001_00.jpg"))
    with pytest.raises(DatasetError, match=r"0001_c7s1_000001_00\.jpg: camera 7 outside 1\.\.6"):
        datasets.load("market1501", root)


DUKE_FIELDS = ["backpack", "bag", "handbag", "boots", "gender", "hat", "shoes", "top", "downblack", "downwhite",
               "downred", "downgray", "downblue", "downgreen", "downbrown", "upblack", "upwhite", "upred", "uppurple",
               "upgray", "upblue", "upgreen", "upbrown"]  # duke_attribute.mat's field order


def test_dukemtmc_eight_cameras_and_reordered_test_fields(tmp_path):
    root = _market_tree(str(tmp_path), cams=8)
    duke_fields = DUKE_FIELDS
    rng = np.random.default_rng(1)
    train = _identity_struct((2, 7, 10), rng, duke_fields)
    test = _identity_struct((1, 3), rng, duke_fields[::-1])  # test fields in another order
    scipy.io.savemat(os.path.join(root, "duke_attribute.mat"), {"duke_attribute": {"train": train, "test": test}})
    ds = datasets.load("dukemtmc", root)
    assert ds.num_cameras == 8 and ds.attribute_names == duke_fields
    assert any(r.camid == 7 for r in ds.gallery)
    g = [r for r in ds.gallery if r.pid == 1][0]
    np.testing.assert_array_equal(g.attributes, [test[f][0, 0] - 1 for f in duke_fields])
    with pytest.raises(DatasetError, match="camera 8 outside 1..6"):
        datasets.load("market1501", root, attributes=False)


def test_dukemtmc_unlabelled_entries_are_unknown_and_reported(tmp_path):
    """The official duke_attribute.mat has top = 0 for two training identities: those entries become
    UNKNOWN_ATTRIBUTE, counted and named in the report; the rest of the file is kept."""
    from keras_hpnet.datasets import UNKNOWN_ATTRIBUTE

    root = _market_tree(str(tmp_path), cams=8)
    rng = np.random.default_rng(2)
    train = _identity_struct((2, 7, 10), rng, DUKE_FIELDS)
    test = _identity_struct((1, 3), rng, DUKE_FIELDS)
    train["top"][0, :2] = 0  # identities 0002 and 0007
    mat = os.path.join(root, "duke_attribute.mat")
    scipy.io.savemat(mat, {"duke_attribute": {"train": train, "test": test}})
    with pytest.warns(DatasetWarning, match=r"skipped 2 item.*duke_attribute\.train\.top = 0.*identity 0002"):
        ds = datasets.load("dukemtmc", root)
    top = DUKE_FIELDS.index("top")
    by_pid = {r.path.split(os.sep)[-1][:4]: r.attributes for r in ds.train}
    assert by_pid["0002"][top] == UNKNOWN_ATTRIBUTE and by_pid["0007"][top] == UNKNOWN_ATTRIBUTE
    assert by_pid["0010"][top] == train["top"][0, 2] - 1
    hat = DUKE_FIELDS.index("hat")
    assert by_pid["0002"][hat] == train["hat"][0, 0] - 1  # the identity's other fields are kept
    entry = ds.report.to_dict()["readers"][f"dukemtmc attributes {mat}"]["duke_attribute.train.top = 0 (not labelled): entry unknown"]
    assert entry == {"count": 2, "examples": ["identity 0002", "identity 0007"]}
    assert ds.info["unknown_attributes"] == {"duke_attribute.train.top = 0 (not labelled): entry unknown": 2}
    train["top"][0, 0] = 7  # any other value outside the coding is still an error naming the field
    scipy.io.savemat(mat, {"duke_attribute": {"train": train, "test": test}})
    with pytest.raises(DatasetError, match=r"duke_attribute\.train\.top has values \[7\]"):
        datasets.load("dukemtmc", root)


PA_NAMES = ["Female", "AgeOver60", "Age18-60", "AgeLess18", "Front", "Side", "Back", "Hat", "Glasses", "HandBag",
            "ShoulderBag", "Backpack", "HoldObjectsInFront", "ShortSleeve", "LongSleeve", "UpperStride",
            "UpperLogo", "UpperPlaid", "UpperSplice", "LowerStripe", "LowerPattern", "LongCoat", "Trousers",
            "Shorts", "Skirt&Dress", "boots"]


def _cell(items):
    arr = np.empty((len(items), 1), dtype=object)
    for i, x in enumerate(items):
        arr[i, 0] = x
    return arr


def _pa100k(root, counts=(4, 2, 2), image_sub="data", names=None, labels=None):
    rng = np.random.default_rng(0)
    splits, k = {}, 1
    for s, n in zip(("train", "val", "test"), counts):
        splits[s] = [f"{k + i:06d}.jpg" for i in range(n)]
        k += n
        for f in splits[s]:
            _jpg(os.path.join(root, image_sub, f))
    mat = {"attributes": _cell(PA_NAMES)}
    for s in splits:
        mat[f"{s}_images_name"] = _cell((names or {}).get(s, splits[s]))
        mat[f"{s}_label"] = (labels or {}).get(s, rng.integers(0, 2, (len(splits[s]), 26)).astype(np.float64))
    scipy.io.savemat(os.path.join(root, "annotation.mat"), mat)
    return mat


def test_pa100k_reads_splits_names_and_labels(tmp_path):
    mat = _pa100k(str(tmp_path))
    ds = datasets.load("pa100k", str(tmp_path))
    assert ds.kind == "attribute" and ds.attribute_names == PA_NAMES
    assert [len(ds.train), len(ds.val), len(ds.test)] == [4, 2, 2]
    assert ds.val[1].path == os.path.join(str(tmp_path), "data", "000006.jpg")
    np.testing.assert_array_equal(ds.val[1].attributes, mat["val_label"][1])
    assert (ds.val[1].pid, ds.val[1].camid) == (-1, -1)
    # images beside the .mat also work
    other = tmp_path / "beside"
    _pa100k(str(other), image_sub=".")
    assert len(datasets.load("pa100k", str(other)).train) == 4


def test_pa100k_trimmed_copy_counted_and_errors(tmp_path):
    root = str(tmp_path)
    lab = np.random.default_rng(3).integers(0, 2, (3, 26)).astype(np.float64)  # 4 names, 3 label rows
    _pa100k(root, names={"train": ["000001.jpg", np.zeros((0,), dtype="<U1"), "000003.jpg", "000004.jpg"]},
            labels={"train": lab})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = datasets.load("pa100k", root)
    msgs = " ".join(str(x.message) for x in w if issubclass(x.category, DatasetWarning))
    assert "skipped 1 item(s): empty image name" in msgs and "skipped 1 item(s): image name without a label" in msgs
    assert [os.path.basename(r.path) for r in ds.train] == ["000001.jpg", "000003.jpg"]
    np.testing.assert_array_equal(ds.train[1].attributes, lab[2])
    # no images at all: says which folders it tried
    empty = tmp_path / "noimg"
    empty.mkdir()
    mat = {k: v for k, v in scipy.io.loadmat(os.path.join(root, "annotation.mat")).items() if not k.startswith("__")}
    scipy.io.savemat(str(empty / "annotation.mat"), mat)
    with pytest.raises(DatasetError, match=r"none of the listed images found; tried folders .*noimg/data"):
        datasets.load("pa100k", str(empty))
    # malformed: missing key
    scipy.io.savemat(str(empty / "annotation.mat"), {"attributes": _cell(PA_NAMES)})
    with pytest.raises(DatasetError, match=r"annotation\.mat: malformed annotation file, missing keys \['train_images_name'"):
        datasets.load("pa100k", str(empty))


def _csv(path, rows):
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")


def test_custom_csv_reid_and_attribute_manifests(tmp_path):
    for n in ("a.jpg", "b.jpg", "c.jpg", "sub/d.png"):
        _jpg(str(tmp_path / "imgs" / n))
    header = "path,pid,camid,male,hat"
    _csv(tmp_path / "train.csv", [header, "imgs/a.jpg,17,0,1,0", "imgs/b.jpg,5,1,0,1", "imgs/c.jpg,17,2,1,0"])
    _csv(tmp_path / "query.csv", [header, "imgs/a.jpg,3,0,1,1"])
    _csv(tmp_path / "gallery.csv", [header, "imgs/sub/d.png,3,1,1,1", f"{tmp_path}/imgs/b.jpg,4,0,0,0"])
    ds = datasets.load("custom", str(tmp_path))
    assert ds.kind == "reid" and ds.attribute_names == ["male", "hat"] and ds.num_cameras == 3
    assert [(r.pid, r.camid, r.attributes.tolist()) for r in ds.train] == [(1, 0, [1, 0]), (0, 1, [0, 1]), (1, 2, [1, 0])]
    assert ds.gallery[0].path == str(tmp_path / "imgs" / "sub" / "d.png")
    # errors name the file and line
    _csv(tmp_path / "gallery.csv", [header, "imgs/sub/d.png,3,1,1,2"])
    with pytest.raises(DatasetError, match=r"gallery\.csv:2: attribute values must be 0 or 1"):
        datasets.load("custom", str(tmp_path))
    _csv(tmp_path / "gallery.csv", [header, "imgs/missing.jpg,3,1,1,0"])
    with pytest.raises(DatasetError, match=r"gallery\.csv:2: image not found"):
        datasets.load("custom", str(tmp_path))
    _csv(tmp_path / "gallery.csv", ["file,id,cam", "imgs/a.jpg,3,1"])
    with pytest.raises(DatasetError, match=r"gallery\.csv: header must start with path,pid,camid"):
        datasets.load("custom", str(tmp_path))
    # attribute-only manifests (pid -1 allowed)
    att = tmp_path / "att"
    att.mkdir()
    for s in ("train", "val", "test"):
        # images outside the CSV's folder: absolute paths (a relative path may not leave it)
        _csv(att / f"{s}.csv", ["path,pid,camid,female", f"{tmp_path}/imgs/a.jpg,-1,-1,1",
                                f"{tmp_path}/imgs/b.jpg,-1,-1,0"])
    ds = datasets.load("custom", str(att))
    assert ds.kind == "attribute" and set(ds.splits) == {"train", "val", "test"} and ds.val[1].attributes.tolist() == [0]


def test_custom_market_layout_any_camera_count_and_errors(tmp_path):
    root = _market_tree(str(tmp_path), cams=3)
    ds = datasets.load("custom", root)
    assert ds.num_cameras == 6 and ds.num_train_pids == 3  # cameras as found in the names
    with pytest.raises(DatasetError, match="no custom dataset found"):
        datasets.load("custom", str(tmp_path / "query"))


def test_registry_errors():
    assert {"market1501", "dukemtmc", "pa100k", "custom", "synthetic", "synthetic_pa100k"} <= set(
        datasets.available_datasets())
    with pytest.raises(ValueError, match="unknown dataset 'viper'"):
        datasets.load("viper", "/tmp")
    with pytest.raises(ValueError, match="needs root="):
        datasets.load("market1501")


def test_custom_csv_bad_numbers_escaping_paths_and_duplicates(tmp_path):
    for n in ("a.jpg", "b.jpg", "c.jpg"):
        _jpg(str(tmp_path / "imgs" / n))
    header = "path,pid,camid"
    _csv(tmp_path / "train.csv", [header, "imgs/a.jpg,1,0", "imgs/b.jpg,2,1", "imgs/a.jpg,1,0", "imgs/a.jpg,1,0"])
    _csv(tmp_path / "query.csv", [header, "imgs/c.jpg,3,0"])
    _csv(tmp_path / "gallery.csv", [header, "imgs/b.jpg,3,1"])
    with pytest.warns(DatasetWarning, match=r"skipped 2 item\(s\): duplicated manifest row"):
        ds = datasets.load("custom", str(tmp_path))  # main: the repeated rows were silently kept
    assert [os.path.basename(r.path) for r in ds.train] == ["a.jpg", "b.jpg"]
    dup = ds.report.readers[f"custom at {tmp_path}"]["duplicated manifest row (kept the first)"]
    assert dup["count"] == 2 and dup["examples"][0].endswith("train.csv:4 (= line 2)")
    _csv(tmp_path / "train.csv", [header, "imgs/a.jpg,1,0", "imgs/a.jpg,2,0"])
    with pytest.raises(DatasetError, match=r"train\.csv:3: image .*a\.jpg is also line 2 with other labels"):
        datasets.load("custom", str(tmp_path))
    _csv(tmp_path / "train.csv", [header, "imgs/a.jpg,1,0"])
    for row, message in (("imgs/c.jpg,3,1000000000000", r"query\.csv:2: camid 1000000000000 outside -1\.\.2147483647"),
                         ("imgs/c.jpg,3,1e12", r"query\.csv:2: camid must be an integer, got '1e12'"),
                         ("imgs/c.jpg,-7,0", r"query\.csv:2: pid -7 outside -1\.\."),
                         ("../../etc/passwd,3,0", r"query\.csv:2: path '\.\./\.\./etc/passwd' leaves the dataset folder"),
                         ("imgs/../../x.jpg,3,0", r"query\.csv:2: path .* leaves the dataset folder")):
        _csv(tmp_path / "query.csv", [header, row])
        with pytest.raises(DatasetError, match=message):  # main: OverflowError later / accepted
            datasets.load("custom", str(tmp_path))


def test_market_layout_reads_other_formats_and_counts_other_files(tmp_path):
    root = _market_tree(str(tmp_path))
    extra = {"0002_c3s1_000001_01.gif": "GIF", "0007_c4s1_000001_01.webp": "WEBP", "0010_c5s1_000001_01.tiff": "TIFF"}
    for name, fmt in extra.items():
        Image.new("RGB", (4, 8), (200, 20, 30)).save(os.path.join(root, "bounding_box_train", name), format=fmt)
    (tmp_path / "bounding_box_train" / "notes.txt").write_text("not an image\n")
    (tmp_path / "bounding_box_train" / "Thumbs.db").write_bytes(b"\0" * 8)
    with pytest.warns(DatasetWarning, match=r"skipped 2 item\(s\): file without an image extension"):
        ds = datasets.load("market1501", root)  # main: the 3 crops and 2 files vanished uncounted
    names = {os.path.basename(r.path) for r in ds.train}
    assert set(extra) <= names and len(ds.train) == 8
    report = ds.write_report(str(tmp_path / "data_report.json"))
    with open(tmp_path / "data_report.json") as f:
        assert json.load(f) == report
    reader = report["readers"][f"market1501 at {root}"]
    assert reader["file without an image extension (.jpg, .jpeg, .png, .bmp, .gif, .webp, .tif, .tiff)"]["count"] == 2
    pillow = report["images"]["train"]["decoded_with_pillow"]
    assert sum(e["count"] for e in pillow.values()) == 3 and "GIF P: not read the same by TF" in pillow
    assert report["images"]["train"] == {**report["images"]["train"], "num_records": 8, "num_readable": 8}
    assert report["totals"] == {"skipped": 2, "decoded_with_pillow": 3}


def test_raw_pixel_baseline_skips_unreadable_images_and_follows_the_image_rule(tmp_path):
    from keras_hpnet.datasets.baseline import load_pixels
    from keras_hpnet.preprocessing import load_rgb, prepare

    root = _market_tree(str(tmp_path))
    bad = os.path.join(root, "bounding_box_test", "0003_c2s1_000555_01.jpg")
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8 not really a jpeg")
    ds = datasets.load("market1501", root)
    with pytest.warns(DatasetWarning, match=r"raw_pixel_baseline on market1501: skipped 1 item\(s\): unreadable image"):
        metrics = datasets.raw_pixel_baseline(ds, input_size=(16, 8))  # main: PIL.UnidentifiedImageError
    assert metrics["num_skipped"] == 1 and 0.0 <= metrics["rank1"] <= 1.0
    assert ds.report.readers["raw_pixel_baseline on market1501"]["unreadable image"]["count"] == 1
    pixels, kept = load_pixels(ds.gallery, (16, 8))
    assert len(kept) == len(ds.gallery) - 1 and bad not in [ds.gallery[i].path for i in kept]
    first = ds.gallery[kept[0]].path
    want = prepare(load_rgb(first), 16, 8).astype(np.float32) / 255.0
    np.testing.assert_array_equal(pixels[0], want.ravel())

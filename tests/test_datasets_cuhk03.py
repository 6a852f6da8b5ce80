"""CUHK03 new-protocol reader on format-exact fakes: the protocol .mat as
scipy writes MATLAB v5 cells and column vectors, and a MATLAB v7.3 (HDF5)
`cuhk-03.mat` laid out as the release (512-byte MATLAB header, `#refs#`,
5x1 cells of references to (identities x 10) cells of transposed uint8
images, empty cells as MATLAB_empty 2-element arrays)."""

import os

import h5py
import numpy as np
import pytest
import scipy.io

from keras_hpnet import datasets
from keras_hpnet.datasets import DatasetError, DatasetWarning
from keras_hpnet.datasets import cuhk03
from keras_hpnet.preprocessing import load_rgb
from support import bad_size_bmp

IDS_PER_PAIR = (3, 2, 2, 2, 1)  # 10 identities, labels 1..10 in pair order
TRAIN_LABELS = range(1, 7)  # 6 train ids (pairs 1, 2 and the first of 3); 7..10 are test ids
MISSING = "5_001_2_10.png"  # listed in the gallery, an empty cell in cuhk-03.mat


def columns(label):
    """The filled columns (0-based) of an identity: view 1 = 0..4, view 2 = 5..9."""
    return (0, 1, 5, 6, 7) if label % 3 else (0, 5, 6)


def pixels(variant, pair, i, col):
    """A deterministic (H, W, 3) uint8 image, non-square and of varying size as in the release."""
    rng = np.random.default_rng([VARIANT_SEED[variant], pair, i, col])
    return rng.integers(0, 256, (24 + pair + col % 3, 10 + i, 3), dtype=np.uint8)


VARIANT_SEED = {"labeled": 1, "detected": 2}


def identities():
    """(pair, index within the pair, global label) in the release's order."""
    label = 0
    for pair, n in enumerate(IDS_PER_PAIR, 1):
        for i in range(1, n + 1):
            label += 1
            yield pair, i, label


def write_raw_mat(path, variants=("labeled", "detected"), skip_detected=()):
    """cuhk-03.mat (v7.3): each variant a (1, 5) ref dataset -> (10, n_ids) ref datasets -> (3, W, H) uint8."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    count = [0]

    def refname():
        n, name = count[0], ""
        count[0] += 1
        while True:
            name = chr(ord("a") + n % 26) + name
            n = n // 26 - 1
            if n < 0:
                return name

    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")

        def put(data, matlab_class, empty=False):
            ds = refs.create_dataset(refname(), data=data)
            ds.attrs["MATLAB_class"] = np.bytes_(matlab_class)
            if empty:
                ds.attrs["MATLAB_empty"] = np.uint8(1)
            return ds.ref

        for variant in variants:
            pair_refs = []
            for pair, n in enumerate(IDS_PER_PAIR, 1):
                grid = np.empty((10, n), dtype=h5py.ref_dtype)
                for i in range(1, n + 1):
                    label = sum(IDS_PER_PAIR[:pair - 1]) + i
                    for col in range(10):
                        if col in columns(label) and not (variant == "detected" and (pair, i, col) in skip_detected):
                            grid[col, i - 1] = put(np.ascontiguousarray(pixels(variant, pair, i, col).T), "uint8")
                        else:
                            grid[col, i - 1] = put(np.zeros(2, np.uint64), "double", empty=True)
                pair_refs.append(put(grid, "cell"))
            top = f.create_dataset(variant, data=np.array([pair_refs], dtype=h5py.ref_dtype))
            top.attrs["MATLAB_class"] = np.bytes_("cell")
        tests = f.create_dataset("testsets", data=np.array([[put(np.ones((2, 3)), "double")]], dtype=h5py.ref_dtype))
        tests.attrs["MATLAB_class"] = np.bytes_("cell")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Jan  7 10:00:00 2014 HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM")
    return path


def protocol_entries():
    """filelist rows (name, label, camId) and the 1-based train/query/gallery indices."""
    rows, split = [], {"train": [], "query": [], "gallery": []}
    for pair, i, label in identities():
        seen_views = set()
        for col in columns(label):
            view = 1 if col < 5 else 2
            rows.append((f"{pair}_{i:03d}_{view}_{col + 1:02d}.png", label, view))
            if label in TRAIN_LABELS:
                split["train"].append(len(rows))
            elif view not in seen_views:  # one query per view, the rest in the gallery
                split["query"].append(len(rows))
                seen_views.add(view)
            else:
                split["gallery"].append(len(rows))
    rows.append((MISSING, 10, 2))
    split["gallery"].append(len(rows))
    return rows, split


def write_protocol(path, rows=None, split=None, **override):
    """cuhk03_new_protocol_config_<variant>.mat as MATLAB saves it: cells and column vectors."""
    if rows is None:
        rows, split = protocol_entries()
    filelist = np.empty((len(rows), 1), dtype=object)
    for k, (name, _, _) in enumerate(rows):
        filelist[k, 0] = name
    fields = {"filelist": filelist,
              "labels": np.array([[r[1]] for r in rows], np.float64),
              "camId": np.array([[r[2]] for r in rows], np.float64),
              **{f"{s}_idx": np.array(idx, np.float64).reshape(-1, 1) for s, idx in split.items()}}
    fields.update(override)
    scipy.io.savemat(path, {k: v for k, v in fields.items() if v is not None})
    return path


def make_cuhk03(root, raw=True, variants=("labeled", "detected"), **raw_kw):
    """torchreid's layout: root/cuhk03/{cuhk03_release/cuhk-03.mat, cuhk03_new_protocol_config_*.mat}."""
    base = os.path.join(root, "cuhk03")
    os.makedirs(base, exist_ok=True)
    for variant in variants:
        write_protocol(os.path.join(base, cuhk03.protocol_file(variant)))
    if raw:
        write_raw_mat(os.path.join(base, "cuhk03_release", "cuhk-03.mat"), **raw_kw)
    return base


def make_pre_extracted(root, variant="labeled", bmp=MISSING.replace("5_001_2_10", "4_002_1_01")):
    """images_<variant>/ as torchreid extracts them, one image a BMP (TF rejects it) in place of its .png."""
    base = make_cuhk03(root, raw=False, variants=(variant,))
    from PIL import Image

    folder = os.path.join(base, f"images_{variant}")
    os.makedirs(folder)
    for pair, i, label in identities():
        for col in columns(label):
            name = f"{pair}_{i:03d}_{1 if col < 5 else 2}_{col + 1:02d}.png"
            if name == bmp:
                bad_size_bmp(os.path.join(folder, name[:-4] + ".bmp"), pixels(variant, pair, i, col))
            else:
                Image.fromarray(pixels(variant, pair, i, col)).save(os.path.join(folder, name))
    return base


def load(root, **kw):
    """datasets.load("cuhk03", ...) and the DatasetWarnings it gave."""
    with pytest.warns() as caught:
        ds = datasets.load("cuhk03", root, **kw)
    return ds, [w for w in caught if issubclass(w.category, DatasetWarning)]


def expected_pixels(variant, path):
    pair, i, _, col = (int(x) for x in os.path.splitext(os.path.basename(path))[0].split("_"))
    return pixels(variant, pair, i, col - 1)


@pytest.mark.parametrize("variant", ["labeled", "detected"])
def test_extraction_from_cuhk03_mat_equals_the_source_pixels(tmp_path, variant):
    base = make_cuhk03(str(tmp_path))
    ds, caught = load(str(tmp_path), variant=variant, cache_dir=str(tmp_path / "cache"))
    assert ds.root == base and ds.kind == "reid" and ds.num_cameras == 10 and ds.name == "cuhk03"
    # 6 train ids (4 ids with 5 images, 2 with 3), 4 test ids: 8 queries, the rest (and the absent one) gallery
    assert len(ds.train) == 26 and ds.num_train_pids == 6
    assert sorted({r.pid for r in ds.train}) == list(range(6))
    assert len(ds.query) == 8 and {r.pid for r in ds.query} == {7, 8, 9, 10}
    assert len(ds.gallery) == 10 and {r.pid for r in ds.gallery} == {7, 8, 9, 10}
    # camera = 2 * (pair - 1) + view - 1: pair 4 -> cameras 6/7, pair 5 -> 8/9, pair 1 -> 0/1
    assert {r.camid for r in ds.query} == {4, 5, 6, 7, 8, 9}
    assert {r.camid for r in ds.train} == {0, 1, 2, 3, 4, 5}
    for r in ds.query:
        pair, _, view, _ = os.path.basename(r.path).split("_")
        assert r.camid == 2 * (int(pair) - 1) + int(view) - 1
    for r in ds.train + ds.query + ds.gallery:
        np.testing.assert_array_equal(load_rgb(r.path), expected_pixels(variant, r.path))
    folder = str(tmp_path / "cache" / f"images_{variant}")
    assert ds.info["image_folder"] == folder and ds.info["images_from"].endswith("cuhk-03.mat")
    assert ds.info["extraction"]["images"] == 44 and ds.info["extraction"]["empty_cells"] == 10 * 10 - 44
    assert len([n for n in os.listdir(folder) if n.endswith(".png")]) == 44
    entry = ds.report.to_dict()["readers"][f"cuhk03 {variant} at {base}"]
    assert entry["image listed but not on disk"]["count"] == 1
    assert entry["image listed but not on disk"]["examples"][0].endswith(MISSING)
    assert len(caught) == 1 and "skipped 1 item(s): image listed but not on disk" in str(caught[0].message)


def test_cache_is_made_once_atomically_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HPNET_CACHE", str(tmp_path / "home_cache"))
    make_cuhk03(str(tmp_path / "data"))
    first, _ = load(str(tmp_path / "data"))
    folder = first.info["image_folder"]
    assert folder.startswith(str(tmp_path / "home_cache" / "cuhk03")) and folder.endswith("images_labeled")
    assert sorted(os.listdir(os.path.dirname(folder))) == ["images_labeled"]  # no temporary folder left
    stamp = os.stat(os.path.join(folder, cuhk03.MARKER)).st_mtime_ns

    def no_second_extraction(*a, **k):
        raise AssertionError("extracted again")

    monkeypatch.setattr(cuhk03, "extract_images", no_second_extraction)
    second, _ = load(str(tmp_path / "data"))
    assert [r.path for r in second.train] == [r.path for r in first.train]
    assert second.info["extraction"] == first.info["extraction"]
    assert os.stat(os.path.join(folder, cuhk03.MARKER)).st_mtime_ns == stamp
    # Detected has its own folder beside labeled; a failed extraction leaves nothing behind.
    monkeypatch.setattr(cuhk03, "extract_images", lambda *a: (_ for _ in ()).throw(DatasetError("boom")))
    with pytest.raises(DatasetError, match="boom"):
        datasets.load("cuhk03", str(tmp_path / "data"), variant="detected")
    assert sorted(os.listdir(os.path.dirname(folder))) == ["images_labeled"]


def test_labeled_and_detected_are_different_images_and_protocols(tmp_path):
    base = make_cuhk03(str(tmp_path), skip_detected={(4, 1, 5)})  # a detected box missing: listed, not on disk
    lab, _ = load(str(tmp_path), cache_dir=str(tmp_path / "c"))
    det, _ = load(str(tmp_path), variant="detected", cache_dir=str(tmp_path / "c"))
    assert lab.info["variant"] == "labeled" and det.info["variant"] == "detected"
    assert lab.info["protocol_file"].endswith("config_labeled.mat")
    assert det.info["protocol_file"].endswith("config_detected.mat")
    assert det.info["extraction"]["images"] == 43 and det.info["skipped"] == {"image listed but not on disk": 2}
    a, b = load_rgb(lab.train[0].path), load_rgb(det.train[0].path)
    assert a.shape == b.shape and not np.array_equal(a, b)
    assert os.path.basename(lab.train[0].path) == os.path.basename(det.train[0].path)
    assert len(os.listdir(tmp_path / "c")) == 2 and os.path.isdir(os.path.join(base, "cuhk03_release"))


def test_pre_extracted_images_and_the_bmp_png_mix(tmp_path):
    base = make_pre_extracted(str(tmp_path))
    ds, _ = load(base, cache_dir=str(tmp_path / "unused"))
    assert ds.info["images_from"] == "pre-extracted" and not os.path.exists(tmp_path / "unused")
    assert ds.info["image_folder"] == os.path.join(base, "images_labeled")
    assert ds.info["other_extension"] == 1
    bmps = [r for r in ds.query + ds.gallery if r.path.endswith(".bmp")]
    assert len(bmps) == 1 and os.path.basename(bmps[0].path) == "4_002_1_01.bmp"
    assert len(ds.train) == 26 and len(ds.query) == 8 and len(ds.gallery) == 10


def test_records_flow_through_make_dataset_with_the_tf_rejected_bmp(tmp_path):
    from keras_hpnet.data import clear_check_cache, make_dataset

    clear_check_cache()
    ds, _ = load(make_pre_extracted(str(tmp_path)))
    records = ds.query
    tf_ds = make_dataset(records, input_size=(24, 12), batch_size=4, training=False)
    images = np.concatenate([x.numpy() for x, _ in tf_ds])
    assert images.shape == (len(records), 24, 12, 3)
    pillow = tf_ds.report.counts()["decoded_with_pillow"]
    assert pillow["BMP that TF's decoder rejects"]["count"] == 1
    ds.report.check_images(ds)
    assert ds.report.totals() == {"skipped": 1, "decoded_with_pillow": 1}


def test_missing_or_foreign_protocol_file_is_named(tmp_path):
    with pytest.raises(DatasetError, match=r"cuhk03_new_protocol_config_labeled\.mat not found"):
        datasets.load("cuhk03", str(tmp_path))
    base = make_cuhk03(str(tmp_path), variants=("labeled",))
    with pytest.raises(DatasetError, match=r"cuhk03_new_protocol_config_detected\.mat not found"):
        datasets.load("cuhk03", str(tmp_path), variant="detected")
    with pytest.raises(ValueError, match="variant must be one of"):
        datasets.load("cuhk03", str(tmp_path), variant="hand")
    protocol = os.path.join(base, cuhk03.protocol_file("labeled"))
    scipy.io.savemat(protocol, {"market_attribute": np.zeros((2, 2))})  # a .mat of another dataset
    with pytest.raises(DatasetError, match=r"config_labeled\.mat: not a CUHK03 new-protocol file: no field\(s\) "
                                           r"\['filelist', 'labels', 'camId'"):
        datasets.load("cuhk03", str(tmp_path))
    with open(protocol, "wb") as f:
        f.write(b"not a mat file at all")
    with pytest.raises(DatasetError, match=r"config_labeled\.mat: unreadable \.mat file"):
        datasets.load("cuhk03", str(tmp_path))


def test_bad_protocol_fields_are_named(tmp_path):
    base = make_cuhk03(str(tmp_path), variants=("labeled",))
    protocol = os.path.join(base, cuhk03.protocol_file("labeled"))
    rows, split = protocol_entries()
    n = len(rows)
    write_protocol(protocol, rows, dict(split, query=split["query"] + [n + 1]))
    with pytest.raises(DatasetError, match=rf"field 'query_idx' holds \[{n + 1}\] outside 1\.\.{n} "):
        datasets.load("cuhk03", str(tmp_path))
    write_protocol(protocol, rows, dict(split, train=[0] + split["train"]))  # 0: a 0-based index
    with pytest.raises(DatasetError, match=r"field 'train_idx' holds \[0\] outside .*1-based"):
        datasets.load("cuhk03", str(tmp_path))
    write_protocol(protocol, rows, split, labels=np.ones((n - 1, 1)))
    with pytest.raises(DatasetError, match=rf"field 'labels' has {n - 1} entries for {n} in 'filelist'"):
        datasets.load("cuhk03", str(tmp_path))
    write_protocol(protocol, rows, split, gallery_idx=np.array([[1.5]]))
    with pytest.raises(DatasetError, match=r"field 'gallery_idx' is not a vector of integers"):
        datasets.load("cuhk03", str(tmp_path))
    bad_cam = [(name, label, 3 - cam if k == 0 else cam) for k, (name, label, cam) in enumerate(rows)]
    write_protocol(protocol, bad_cam, split)
    with pytest.raises(DatasetError, match=r"camId\[1\] = 2 but filelist\[1\] = '1_001_1_01.png' is view 1"):
        datasets.load("cuhk03", str(tmp_path), cache_dir=str(tmp_path / "c"))
    odd = [("readme.txt", *rows[0][1:]), *rows[1:]]
    write_protocol(protocol, odd, split)
    ds, _ = load(str(tmp_path), cache_dir=str(tmp_path / "c"))
    assert ds.info["skipped"] == {"filelist name not in the P_III_V_KK scheme": 1, "image listed but not on disk": 1}
    assert len(ds.train) == 25


def test_truncated_or_foreign_cuhk03_mat_is_named(tmp_path):
    base = make_cuhk03(str(tmp_path), variants=("labeled",))
    raw = os.path.join(base, "cuhk03_release", "cuhk-03.mat")
    with open(raw, "rb") as f:
        data = f.read()
    with open(raw, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"cuhk-03\.mat: unreadable MATLAB v7\.3 \(HDF5\) file, truncated"):
        datasets.load("cuhk03", str(tmp_path), cache_dir=str(tmp_path / "c"))
    assert not os.path.exists(tmp_path / "c" / "images_labeled")
    write_raw_mat(raw, variants=("detected",))  # another file: no 'labeled' cell
    with pytest.raises(DatasetError, match=r"cuhk-03\.mat: no 'labeled' cell array .*not CUHK03's cuhk-03\.mat"):
        datasets.load("cuhk03", str(tmp_path), cache_dir=str(tmp_path / "c"))
    with h5py.File(raw, "w") as f:
        f.create_dataset("labeled", data=np.zeros((1, 5)))
    with pytest.raises(DatasetError, match=r"cuhk-03\.mat: labeled is not a MATLAB cell array"):
        datasets.load("cuhk03", str(tmp_path), cache_dir=str(tmp_path / "c"))
    os.remove(raw)
    with pytest.raises(DatasetError, match=r"no CUHK03 labeled images \(tried .*images_labeled, .*cuhk-03\.mat"):
        datasets.load("cuhk03", str(tmp_path))


def test_reader_options_are_the_cli_options():
    assert datasets.reader_options("cuhk03") == {"variant": "labeled", "cache_dir": None}
    with pytest.raises(ValueError, match="needs root="):
        datasets.load("cuhk03")

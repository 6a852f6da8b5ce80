"""The embedded synthetic dataset: layout, names, .mat round trip, determinism,
pinned bytes and cache keys, atomic generation, raw-pixel difficulty, and the
PA-100K-style variant."""

import hashlib
import os
import re

import numpy as np
import pytest
from PIL import Image

from keras_hpnet import datasets
from keras_hpnet.datasets import synthetic

SMALL = dict(num_train_ids=6, num_test_ids=5, num_cameras=4, max_cameras=3, max_images=3, num_distractors=3,
             num_junk=2)
SMALL_PA100K = dict(num_train=12, num_val=4, num_test=4)
NAME = re.compile(r"^(-1|\d{4})_c([1-9])s([1-6])_(\d{6})_(\d{2})\.jpg$")


def _tree_sha256(folder):
    """sha256 of the sorted "relative path file-sha256" lines of every file under `folder`;
    a .mat file is hashed without its 116-byte text header (it holds scipy's "Created on" time)."""
    lines = []
    for dirpath, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                data = fh.read()
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            lines.append(f"{rel} {hashlib.sha256(data[116:] if f.endswith('.mat') else data).hexdigest()}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("syn"))
    return datasets.load("synthetic", root, **SMALL), root


@pytest.fixture(scope="module")
def small_pa100k(tmp_path_factory):
    return datasets.load("synthetic_pa100k", str(tmp_path_factory.mktemp("syn100k")), **SMALL_PA100K)


def test_layout_names_junk_distractors(small):
    ds, root = small
    folder = ds.root
    assert os.path.dirname(folder) == root and os.path.isfile(os.path.join(folder, "market_attribute.mat"))
    names = {d: os.listdir(os.path.join(folder, d)) for d in ("bounding_box_train", "query", "bounding_box_test")}
    for d, files in names.items():
        assert files and all(NAME.match(f) for f in files), d
    assert sum(f.startswith("-1_") for f in names["bounding_box_test"]) == 2
    assert sum(f.startswith("0000_") for f in names["bounding_box_test"]) == 3
    assert not any(f.startswith(("-1_", "0000_")) for f in names["bounding_box_train"] + names["query"])
    with Image.open(os.path.join(folder, "query", names["query"][0])) as im:
        assert (im.format, im.size, im.mode) == ("JPEG", (64, 128), "RGB")
    # the real Market reader: junk dropped, distractors in the gallery, 6 ids relabelled
    assert ds.num_train_pids == 6 and ds.num_cameras == 4 and len(ds.attribute_names) == 26
    assert sum(r.pid == 0 for r in ds.gallery) == 3
    assert len(ds.gallery) == len(names["bounding_box_test"]) - 2
    # every query has a cross-camera match in the gallery
    for q in ds.query:
        assert any(g.pid == q.pid and g.camid != q.camid for g in ds.gallery)


def test_attribute_mat_round_trip_matches_rendered_identities(small):
    ds, _ = small
    jpg = re.compile(r"(\d{4})_c")
    names = ds.attribute_names
    for r in ds.gallery + ds.query:
        if r.pid == 0:
            continue
        p = synthetic.make_person(0, r.pid)
        a = dict(zip(names, r.attributes.tolist()))
        assert a["up" + p.up] == 1 and sum(a[n] for n in names if n.startswith("up") and n != "up") == 1
        assert a["down" + p.down] == 1 and sum(a[n] for n in names if n.startswith("down") and n != "down") == 1
        assert (a["gender"], a["hair"], a["up"], a["down"], a["clothes"]) == (
            p.female, p.long_hair, p.short_sleeve, p.short_lower, 1 - p.dress)
        assert (a["hat"], a["backpack"], a["bag"], a["handbag"]) == (p.hat, p.backpack, p.bag, p.handbag)
        assert int(jpg.match(os.path.basename(r.path)).group(1)) == r.pid
    onehot = datasets.load("synthetic", os.path.dirname(ds.root), age="onehot", **SMALL)
    r = onehot.query[0]
    assert onehot.attribute_names[:4] == ["age_young", "age_teenager", "age_adult", "age_old"]
    assert r.attributes[:4].tolist() == np.eye(4, dtype=int)[synthetic.make_person(0, r.pid).age].tolist()


def test_deterministic_by_seed_and_worker_count(tmp_path, small):
    ds, _ = small
    a = synthetic.generate_market(str(tmp_path / "a"), workers=2, **SMALL)  # 2 processes
    assert _tree_sha256(a) == _tree_sha256(ds.root)  # the fixture used 1 process
    b = synthetic.generate_market(str(tmp_path / "b"), workers=1, seed=1, **SMALL)
    assert _tree_sha256(b) != _tree_sha256(a)
    img1, v1 = synthetic.render_image(3, 17, 2, 99)
    img2, v2 = synthetic.render_image(3, 17, 2, 99)
    assert v1 == v2 and np.array_equal(img1, img2) and img1.shape == (128, 64, 3)


def test_pinned_bytes_and_cache_keys(small, small_pa100k):
    """The renderer's output is pinned: every file of the two small datasets
    (JPEGs, marker json, .mat content) and the pixels of five rendered images
    (both views forced and sampled, junk, the PA-100K key range) hash to the
    values the renderer v5 gave when these pins were written (before it became
    a package); the cache keys of the default and the small sizes are those it
    gave, so datasets cached under ~/.cache/keras_hpnet stay valid. A
    deliberate renderer change updates the pins here and bumps
    `render.VERSION` (which changes every cache key, so stale caches are
    regenerated); a change of the pixel pin means the renderer changed, a
    change of the file pins alone means the JPEG encoder (Pillow) or scipy's
    .mat writer did."""
    ds, _ = small
    assert _tree_sha256(ds.root) == "67f9f5ea3c557b4143c30984fc744915f0c8971bf219d4e37711c18b06be493d"
    assert _tree_sha256(small_pa100k.root) == "b42fcc24388e6a9ac28cdc820272363fc770a33131c8e20c1279fdbe414dda4d"
    h = hashlib.sha256()
    for seed, person, cam, image, junk, view in [(0, 3, 0, 1, False, None), (0, 7, 2, 5, False, "side"),
                                                 (0, 11, 4, 9, True, None), (2, 40001, 1, 100001, False, "back"),
                                                 (0, 5, 3, 12, False, "front")]:
        img, view = synthetic.render_image(seed, person, cam, image, junk=junk, view=view)
        h.update(view.encode())
        h.update(img.tobytes())
    assert h.hexdigest() == "8c8f8b316d852d64ec8561dfe2ccdfbc3865f0b432d5c658d169dad40e7b799a"
    assert os.path.basename(ds.root) == "synthetic_market_790cdd8c9e"
    assert os.path.basename(small_pa100k.root) == "synthetic_pa100k_be1f427029"
    assert synthetic.Config().key("market") == "49b88cafad"
    assert synthetic.Config100k().key("pa100k") == "3f207190bf"


def test_reuse_and_atomic_generation(tmp_path, monkeypatch):
    root = str(tmp_path)
    calls = []

    def boom(*args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt("killed mid-generation")

    monkeypatch.setattr(synthetic.market, "run_jobs", boom)
    with pytest.raises(KeyboardInterrupt):
        datasets.load("synthetic", root, **SMALL)
    assert os.listdir(root) == []  # no half dataset, no temp folder left behind
    monkeypatch.undo()
    first = datasets.load("synthetic", root, **SMALL)
    marker = os.path.join(first.root, synthetic.MARKER)
    mtime = os.path.getmtime(marker)
    monkeypatch.setattr(synthetic.market, "run_jobs", boom)
    again = datasets.load("synthetic", root, **SMALL)  # reused, not regenerated
    assert calls == [1] and os.path.getmtime(marker) == mtime and len(again.train) == len(first.train)
    # a folder with the right name but no marker is never trusted
    other = dict(SMALL, seed=5)
    fake = os.path.join(root, f"synthetic_market_{synthetic.Config(**other).key('market')}")
    os.makedirs(os.path.join(fake, "bounding_box_train"))
    with pytest.raises(FileExistsError, match="not a finished synthetic dataset"):
        datasets.load("synthetic", root, **other)
    with pytest.raises(ValueError, match="num_cameras must be in 2..9"):
        datasets.load("synthetic", root, num_cameras=12)


def test_raw_pixel_rank1_is_low(tmp_path):
    """Raw-pixel NN rank-1 <= 0.40. Default seed, cameras and per-identity
    sampling, but 1 train identity and 50 (instead of 150) test identities:
    a smaller gallery can only make nearest-neighbour matching easier, so this
    is a stricter check than the default split (benchmarks/bench_synthetic.py
    measures the default itself)."""
    ds = datasets.load("synthetic", str(tmp_path), num_train_ids=1, num_test_ids=50)
    assert len(ds.query) > 100
    m = datasets.raw_pixel_baseline(ds)
    assert m["num_valid_queries"] == len(ds.query)
    assert 0.0 <= m["rank1"] <= 0.40 and m["mAP"] <= 0.40


def test_pa100k_variant_through_real_reader(small_pa100k):
    ds = small_pa100k
    assert ds.kind == "attribute" and ds.attribute_names == list(synthetic.PA100K_ATTRIBUTES)
    assert [len(ds.train), len(ds.val), len(ds.test)] == [12, 4, 4]
    assert os.path.basename(ds.val[0].path) == "000013.jpg" and os.path.basename(os.path.dirname(ds.val[0].path)) == "data"
    labels = np.stack([r.attributes for r in ds.train + ds.val + ds.test])
    names = ds.attribute_names
    views = labels[:, [names.index("Front"), names.index("Side"), names.index("Back")]]
    assert (views.sum(1) == 1).all()  # exactly one view per image
    assert (labels[:, names.index("ShortSleeve")] + labels[:, names.index("LongSleeve")] == 1).all()
    ages = labels[:, [names.index(n) for n in ("AgeOver60", "Age18-60", "AgeLess18")]]
    assert (ages.sum(1) == 1).all()
    jobs = synthetic.pa100k_plan(synthetic.Config100k(**SMALL_PA100K))
    exp = synthetic.pa100k_labels(synthetic.make_person(0, jobs[13][1]), jobs[13][5])
    np.testing.assert_array_equal(ds.val[1].attributes, exp)


def test_training_split_many_identities_few_images():
    """The default plan: 1,000 training identities, each in 2 cameras with one
    image per camera (attribute diversity), 150 test identities with >= 2 images
    per camera (a query plus gallery); train_* = 0 falls back to the test sampling."""
    from collections import Counter

    def per_id_cam(cfg):
        jobs, train_ids, test_ids = synthetic.market_plan(cfg)
        train = Counter((key, cam) for rel, key, cam, _, _ in jobs if rel.startswith("bounding_box_train/"))
        test = Counter((key, cam) for rel, key, cam, _, _ in jobs
                       if rel.startswith(("query/", "bounding_box_test/")) and key < 20000)
        return train, test, train_ids, test_ids

    cfg = synthetic.Config()
    train, test, train_ids, test_ids = per_id_cam(cfg)
    assert (len(train_ids), len(test_ids)) == (1000, 150) and not set(train_ids) & set(test_ids)
    assert set(train.values()) == {1} and set(test.values()) == {2, 3, 4}
    cams = Counter(k for k, _ in train)
    assert set(cams.values()) == {2} and set(cams) == set(train_ids)
    assert sum(train.values()) == 2000
    assert set(Counter(k for k, _ in test).values()) <= {2, 3, 4, 5}
    same, _, _, _ = per_id_cam(synthetic.Config(num_train_ids=40, train_max_cameras=0, train_min_images=0,
                                                train_max_images=0))
    assert max(same.values()) == 4 and max(Counter(k for k, _ in same).values()) == 5
    with pytest.raises(ValueError, match="train_max_cameras"):
        synthetic.market_plan(synthetic.Config(train_max_images=-1))

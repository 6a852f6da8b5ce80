"""keras_hpnet.datasets.combine: several datasets as one (offsets, attribute union, unknown filling)."""

import numpy as np
import pytest

from keras_hpnet import datasets
from keras_hpnet.datasets import UNKNOWN_ATTRIBUTE as U
from keras_hpnet.datasets import PedestrianDataset, Record, SkipCounter, combine
from keras_hpnet.datasets.combine import route_options, split_roots
from keras_hpnet.datasets.report import DataReport


def _reid(name, train, query, gallery, names, cams, skipped=None):
    def recs(rows):
        return [Record(f"/{name}/{i}.jpg", pid, cam, None if a is None else np.array(a, np.uint8))
                for i, (pid, cam, a) in enumerate(rows)]

    counter = SkipCounter(f"{name} at /{name}")
    if skipped:
        counter.add(skipped, f"/{name}/odd.txt")
    return PedestrianDataset(name, {"train": recs(train), "query": recs(query), "gallery": recs(gallery)},
                             kind="reid", attribute_names=names, num_cameras=cams, root=f"/{name}",
                             report=DataReport([counter]))


@pytest.fixture
def parts():
    a = _reid("a", [(0, 0, (1, 0)), (1, 2, (0, 1)), (1, 1, (1, 1))], [(5, 0, (1, 0))],
              [(5, 1, (0, 0)), (0, 2, None)], ["hat", "bag"], cams=3, skipped="odd name")
    b = _reid("b", [(0, 0, (1, 0, 1)), (1, 1, (0, 0, 1)), (2, 0, (1, 1, 0))], [(9, 1, (1, 1, 1))],
              [(9, 0, (0, 1, 0))], ["bag", "boots", "female"], cams=2, skipped="not an image")
    c = _reid("c", [(0, 3, None), (1, 0, None)], [(4, 0, None)], [(4, 1, None)], [], cams=4)
    attr = PedestrianDataset("p", {"train": [Record("/p/0.jpg", -1, -1, np.array([1, 0], np.uint8))],
                                   "val": [], "test": [Record("/p/1.jpg", -1, -1, np.array([0, 1], np.uint8))]},
                             kind="attribute", attribute_names=["female", "coat"])
    return a, b, c, attr


def test_identity_and_camera_offsets_and_attribute_union(parts):
    a, b, c, _ = parts
    ds = combine([a, b, c], test="b")
    assert ds.name == "a+b+c" and ds.kind == "reid"
    assert ds.attribute_names == ["hat", "bag", "boots", "female"]  # union, order of first appearance
    assert [r.pid for r in ds.train] == [0, 1, 1, 2, 3, 4, 5, 6]  # a: 2 ids, b: +2, c: +5
    assert [r.camid for r in ds.train] == [0, 2, 1, 3, 4, 3, 8, 5]  # a: 3 cameras, b: +3, c: +5
    assert ds.num_train_pids == 7 and ds.num_cameras == 9
    got = np.stack([r.attributes for r in ds.train])
    np.testing.assert_array_equal(got, [[1, 0, U, U], [0, 1, U, U], [1, 1, U, U],  # a lacks boots, female
                                        [U, 1, 0, 1], [U, 0, 0, 1], [U, 1, 1, 0],  # b lacks hat
                                        [U, U, U, U], [U, U, U, U]])  # c (re-id only): all unknown
    # evaluation splits: b's, original identities, cameras shifted, attributes in the union's columns
    assert [r.pid for r in ds.query] == [9] and [r.camid for r in ds.gallery] == [3]
    np.testing.assert_array_equal(ds.query[0].attributes, [U, 1, 1, 1])
    assert "val" not in ds.splits and ds.info["test_dataset"] == "b"
    offsets = [(p["name"], p["pid_offset"], p["camera_offset"], p["num_train"]) for p in ds.info["parts"]]
    assert offsets == [("a", 0, 0, 3), ("b", 2, 3, 3), ("c", 5, 5, 2)]
    assert ds.root == "/a,/b,/c"
    # the combined report holds every reader's skips
    assert set(ds.report.readers) == {"a at /a", "b at /b"}
    assert ds.report.totals()["skipped"] == 2


def test_test_part_default_unlabelled_rows_and_attribute_only_parts(parts):
    a, _, c, attr = parts
    ds = combine([a, attr])
    assert ds.info["test_dataset"] == "a" and ds.kind == "reid"
    assert ds.gallery[1].attributes is None  # a's distractor stays unlabelled (masked as a row)
    assert [r.pid for r in ds.train][-1] == -1  # attribute-only images keep "no identity"
    np.testing.assert_array_equal(ds.train[-1].attributes, [U, U, 1, 0])
    on_attr = combine([a, attr], test="p")
    assert set(on_attr.splits) == {"train", "val", "test"}
    np.testing.assert_array_equal(on_attr.test[0].attributes, [U, U, 0, 1])
    only_reid = combine([c, _reid("d", [(0, 0, None)], [(1, 0, None)], [(1, 1, None)], [], cams=1)])
    assert only_reid.attribute_names == [] and only_reid.train[0].attributes is None
    with pytest.raises(ValueError, match="test dataset 'x' is not one of a, p"):
        combine([a, attr], test="x")
    with pytest.raises(ValueError, match="named twice"):
        combine([a, a])


def test_roots_and_options_routing():
    assert split_roots("a+b", "A,B") == [("a", "A"), ("b", "B")]
    assert split_roots("a+b", None) == [("a", None), ("b", None)]
    assert split_roots("a+b", ",B") == [("a", None), ("b", "B")]
    assert split_roots("a", "X,Y") == [("a", "X,Y")]  # one dataset: the root as given
    with pytest.raises(ValueError, match="2 datasets but 3 data dirs"):
        split_roots("a+b", "A,B,C")
    with pytest.raises(ValueError, match="empty name"):
        split_roots("a++b", None)
    known = {"a": {"age", "attribute_file"}, "b": {"attribute_file"}}.get
    assert route_options("a+b", {"b.attribute_file": "x.mat", "age": "onehot"}, known) == {
        "a": {"age": "onehot"}, "b": {"attribute_file": "x.mat"}}
    assert route_options("a+b", {"attribute_file": "y"}, known) == {"a": {"attribute_file": "y"},
                                                                     "b": {"attribute_file": "y"}}
    with pytest.raises(ValueError, match="option split: no reader of a, b has it"):
        route_options("a+b", {"split": "identity"}, known)
    with pytest.raises(ValueError, match="option b.age: the b reader has no option 'age'"):
        route_options("a+b", {"b.age": 1}, known)
    with pytest.raises(ValueError, match="'c' is not one of the datasets a, b"):
        route_options("a+b", {"c.age": 1}, known)


def test_load_combined_synthetic_parts(tmp_path):
    sizes = {"synthetic": {"num_train_ids": 3, "num_test_ids": 3, "max_images": 2},
             "synthetic_pa100k": {"num_train": 6, "num_val": 2, "num_test": 2}}
    ds = datasets.load("synthetic+synthetic_pa100k", f"{tmp_path},{tmp_path}", **sizes)
    market = datasets.load("synthetic", str(tmp_path), **sizes["synthetic"])
    pa = datasets.load("synthetic_pa100k", str(tmp_path), **sizes["synthetic_pa100k"])
    assert len(ds.train) == len(market.train) + len(pa.train)
    assert ds.attribute_names == market.attribute_names + [n for n in pa.attribute_names
                                                           if n not in market.attribute_names]
    assert ds.num_train_pids == market.num_train_pids and ds.info["test_dataset"] == "synthetic"
    assert len(ds.query) == len(market.query)
    tail = np.stack([r.attributes for r in ds.train[len(market.train):]])
    assert (tail[:, :len(market.attribute_names)] == U).all()
    on_pa = datasets.load("synthetic+synthetic_pa100k", None, test_dataset="synthetic_pa100k", **sizes)
    assert set(on_pa.splits) == {"train", "val", "test"} and len(on_pa.test) == 2
    with pytest.raises(ValueError, match="test_dataset='peta' is not one of"):
        datasets.load("synthetic+synthetic_pa100k", None, test_dataset="peta", **sizes)
    with pytest.raises(ValueError, match="per-dataset option groups"):
        datasets.load("synthetic+synthetic_pa100k", None, age="drop")

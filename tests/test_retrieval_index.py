"""keras_hpnet.retrieval.index: exact and approximate search, metadata filters, add/remove,
persistence and bad input. Ground truth is an argsort of full distance matrices."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from keras_hpnet.metrics import cosine_distance, euclidean_distance
from keras_hpnet.retrieval import index as index_mod
from keras_hpnet.retrieval.index import GalleryIndex, IndexFormatError

faiss = pytest.importorskip("faiss")
D = 32
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = [("flat", "numpy"), ("flat", "faiss"), ("hnsw", "faiss"), ("ivf_sq8", "faiss"), ("ivf_sq6", "faiss"), ("ivf_pq", "faiss")]


def clustered(n, dim=D, clusters=50, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    return (centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, dim))).astype(np.float32)


def build(kind, backend, x, **kw):
    ix = GalleryIndex(D, kind, backend=backend, attribute_names=["hat", "backpack"], pq_m=8, **kw)
    n = len(x)
    rng = np.random.default_rng(1)
    ix.add(x, [f"id{i % 40}" for i in range(n)], cameras=np.arange(n) % 4, timestamps=np.arange(n, dtype=float),
           paths=[f"img{i}.jpg" for i in range(n)], attributes=rng.random((n, 2)))
    return ix


def recall_at(ix, q, truth, k):
    got = [[h.slot for h in row] for row in ix.search(q, k)]
    return np.mean([len(set(g) & set(t[:k])) / k for g, t in zip(got, truth)])


@pytest.mark.parametrize("kind, backend", BACKENDS)
def test_recall_against_exact_search(kind, backend):
    x = clustered(3000)
    q = clustered(50, seed=7)
    truth = np.argsort(euclidean_distance(q, x), axis=1, kind="stable")
    ix = build(kind, backend, x)
    assert len(ix) == 3000
    r10 = recall_at(ix, q, truth, 10)
    floor = {"flat": 1.0, "hnsw": 0.95, "ivf_sq8": 0.9, "ivf_sq6": 0.9, "ivf_pq": 0.5}[kind]
    assert r10 >= floor, (kind, r10)
    if kind == "flat":
        hits = ix.search(q[0], 5)[0]
        exact = np.sort(euclidean_distance(q[:1], x)[0])[:5]
        assert [h.distance for h in hits] == pytest.approx(exact.tolist(), abs=1e-3)
        assert hits[0].path == f"img{hits[0].slot}.jpg" and hits[0].identity == f"id{hits[0].slot % 40}"


def test_cosine_metric_distances():
    x = clustered(500)
    q = clustered(3, seed=3)
    for backend in ("numpy", "faiss"):
        ix = GalleryIndex(D, "flat", metric="cosine", backend=backend)
        ix.add(x, range(500))
        hits = ix.search(q, 4)
        exact = np.sort(cosine_distance(q, x), axis=1)[:, :4]
        assert np.array([[h.distance for h in row] for row in hits]) == pytest.approx(exact, abs=1e-4)


@pytest.mark.parametrize("kind, backend", BACKENDS)
def test_filters_and_removal(kind, backend):
    x = clustered(1000)
    ix = build(kind, backend, x)
    hits = ix.search(x[:5], 10, cameras=[2])
    assert all(h.camera == 2 for row in hits for h in row) and all(len(row) == 10 for row in hits)
    hits = ix.search(x[:2], 10, time_window=(100, 199))[0]
    assert all(100 <= h.timestamp <= 199 for h in hits) and len(hits) == 10
    hits = ix.search(x[:2], 10, attributes="hat & !backpack", min_score=0.4)[0]
    expected = ix.attributes[:, 0] * (1 - ix.attributes[:, 1])
    assert hits and all(h.score == pytest.approx(expected[h.slot]) and h.score >= 0.4 for h in hits)
    # removal by identity and by slot; removed vectors never come back
    near = [h.slot for h in ix.search(x[0], 5)[0]]
    assert near[0] == 0
    assert ix.remove(identity="id0") == 25 and len(ix) == 975
    assert ix.remove(slots=[1, 1, 2]) == 2 and ix.remove(slots=[1]) == 0
    slots = [h.slot for row in ix.search(x[:20], 10) for h in row]
    assert not {0, 1, 2} & set(slots) and all(s % 40 != 0 for s in slots)
    new = ix.add(x[:1], ["again"])
    assert new.tolist() == [1000] and ix.search(x[0], 1)[0][0].identity == "again"


def test_search_attributes_only():
    ix = build("flat", "numpy", clustered(200))
    hits = ix.search_attributes("hat | backpack", top_k=5, cameras=[1])
    p = ix.attributes
    s = 1 - (1 - p[:, 0]) * (1 - p[:, 1])
    s[ix.cameras != 1] = -1
    assert [h.slot for h in hits] == np.argsort(-s, kind="stable")[:5].tolist()
    with pytest.raises(ValueError, match="unknown attribute 'hta'.*hat"):
        ix.search_attributes("hta")


@pytest.mark.parametrize("kind, backend", BACKENDS)
def test_persistence_round_trip(tmp_path, kind, backend):
    x = clustered(1000)
    ix = build(kind, backend, x)
    ix.remove(identity="id3")
    path = ix.save(str(tmp_path / "g.npz"))
    assert GalleryIndex.is_index_file(path) and not GalleryIndex.is_index_file(str(tmp_path / "nope.npz"))
    back = GalleryIndex.load(path, backend=backend)
    assert (back.kind, back.metric, back.dim, len(back)) == (kind, "euclidean", D, len(ix))
    a = [[(h.slot, round(h.distance, 4)) for h in row] for row in ix.search(x[:10], 5)]
    b = [[(h.slot, round(h.distance, 4)) for h in row] for row in back.search(x[:10], 5)]
    assert a == b
    assert back.paths.tolist() == ix.paths.tolist() and np.array_equal(back.attributes, ix.attributes)
    if kind == "flat":  # raw vectors in the file: readable by the other backend too
        other = GalleryIndex.load(path, backend="faiss" if backend == "numpy" else "numpy")
        c = [[(h.slot, round(h.distance, 2)) for h in row] for row in other.search(x[:10], 5)]
        assert c == [[(s, round(d, 2)) for s, d in row] for row in a]


def _rewrite(path, **changes):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays["header"]))
    header.update(changes.pop("header", {}))
    arrays.update(changes)
    arrays["header"] = np.array(json.dumps(header))
    np.savez(path, **arrays)


def test_bad_files_give_clear_errors(tmp_path):
    ix = build("hnsw", "faiss", clustered(300))
    good = ix.save(str(tmp_path / "g.npz"))
    data = open(good, "rb").read()
    cases = {}
    cases["truncated"] = data[: len(data) // 2]
    cases["garbage"] = b"not an index at all" * 10
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF  # inside the faiss bytes
    cases["flipped"] = bytes(flipped)
    for name, content in cases.items():
        p = tmp_path / f"{name}.npz"
        p.write_bytes(content)
        with pytest.raises(IndexFormatError, match=str(p)):
            GalleryIndex.load(str(p))
    old = tmp_path / "old.npz"
    old.write_bytes(data)
    _rewrite(str(old), header={"format_version": 0})
    with pytest.raises(IndexFormatError, match="format version 0, this keras-hpnet reads version 1"):
        GalleryIndex.load(str(old))
    tampered = tmp_path / "tampered.npz"
    tampered.write_bytes(data)
    with np.load(good) as z:
        junk = np.frombuffer(np.random.default_rng(0).bytes(len(z["index"])), np.uint8)
    _rewrite(str(tampered), index=junk)  # random bytes where the faiss index was: stopped by the checksum
    with pytest.raises(IndexFormatError, match="checksum"):
        GalleryIndex.load(str(tampered))
    short = tmp_path / "short.npz"
    short.write_bytes(data)
    _rewrite(str(short), alive=np.ones(3, bool))
    with pytest.raises(IndexFormatError, match="alive has shape"):
        GalleryIndex.load(str(short))
    with pytest.raises(FileNotFoundError, match="no such file"):
        GalleryIndex.load(str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="holds 32-d embeddings, the model makes 64-d"):
        GalleryIndex.load(good, dim=64)
    ix.model_name = "hacnn"
    ix.save(good)
    with pytest.raises(ValueError, match="made with model 'hacnn', not 'hpnet'"):
        GalleryIndex.load(good, model_name="hpnet")
    with zipfile.ZipFile(good) as zf:
        assert "header.npy" in zf.namelist()


def test_bad_input():
    ix = GalleryIndex(D, "flat", backend="numpy")
    with pytest.raises(ValueError, match="empty"):
        ix.search(np.zeros(D), 3)
    with pytest.raises(ValueError, match="wrong dimension 5, the index holds 32-d"):
        ix.add(np.zeros((2, 5)), ["a", "b"])
    bad = np.zeros((3, D))
    bad[1, 4] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf in row\(s\) \[1\]"):
        ix.add(bad, ["a", "b", "c"])
    ix.add(np.zeros((2, D)), ["a", "b"])
    with pytest.raises(ValueError, match="wrong dimension"):
        ix.search(np.zeros(7), 3)
    with pytest.raises(ValueError, match="identities: 1 for 2"):
        ix.add(np.zeros((2, D)), ["a"])
    with pytest.raises(ValueError, match="no attribute predictions"):
        ix.search_attributes("hat")
    with pytest.raises(ValueError, match="ivf_pq: needs at least 256"):
        GalleryIndex(D, "ivf_pq", backend="faiss", pq_m=8).add(clustered(100), range(100))
    with pytest.raises(ValueError, match="kind must be"):
        GalleryIndex(D, "lsh")
    assert ix.search(np.zeros(D), 10, cameras=[5]) == [[]]


def test_numpy_fallback_without_faiss(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    assert not index_mod.faiss_available()
    ix = GalleryIndex(D, "flat")
    assert ix.backend == "numpy"
    x = clustered(100)
    ix.add(x, range(100))
    assert ix.search(x[7], 1)[0][0].slot == 7
    with pytest.raises(ValueError, match="needs faiss-cpu"):
        GalleryIndex(D, "hnsw")
    path = ix.save(str(tmp_path / "g.npz"))
    assert GalleryIndex.load(path).search(x[7], 1)[0][0].slot == 7


def test_edge_search_cli(tmp_path, capsys):
    from edge.cli import main
    from edge.gallery import Gallery

    attrs = np.array([[0.9, 0.9], [0.2, 0.9], [0.95, 0.6], [0.1, 0.1]], np.float32)
    g = Gallery(embeddings=np.eye(4, 3, dtype=np.float32), identities=["a", "b", "c", "d"],
                paths=[f"p{i}.jpg" for i in range(4)], camids=[0, 1, 0, 1], attributes=attrs,
                attribute_names=["Female", "Backpack"], model_name="tiny")
    g.save(str(tmp_path / "gallery"))
    assert main(["search", "--gallery", str(tmp_path / "gallery"), "--attributes", "female & backpack",
                 "--top_k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["identity"] for r in out["results"]] == ["a", "c", "b"]
    assert out["results"][0] == {"identity": "a", "path": "p0.jpg", "score": pytest.approx(0.81), "camera": 0}
    # the same gallery as an index file, with a camera filter
    index_path = g.to_index().save(str(tmp_path / "g.index.npz"))
    assert main(["search", "--gallery", index_path, "--attributes", "backpack", "--camera", "1", "--json"]) == 0
    assert [r["identity"] for r in json.loads(capsys.readouterr().out)["results"]] == ["b", "d"]
    assert main(["search", "--gallery", index_path, "--attributes", "bakpack"]) == 2
    assert "close names: Backpack" in capsys.readouterr().err
    # edge never imports TensorFlow
    code = ("import sys; from edge.cli import main; "
            f"rc = main(['search', '--gallery', {index_path!r}, '--attributes', 'female']); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": REPO})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split()[1] == "c"


def test_attribute_search_picture(tmp_path, capsys):
    from PIL import Image

    from edge.cli import main
    from edge.gallery import Gallery
    from keras_hpnet.retrieval.picture import attribute_search_picture
    from keras_hpnet.retrieval.query import parse_query

    q = parse_query("hat & !backpack", ["hat", "backpack"])
    crops = [np.full((32, 16, 3), v, np.uint8) for v in (50, 100, 150)]
    probs = np.array([[0.9, 0.1], [0.8, 0.3], [0.2, 0.9]])
    img = attribute_search_picture(q, crops, probs, q.score(probs), relevant=[True, True, False], tile_hw=(64, 32))
    assert img.dtype == np.uint8 and img.ndim == 3
    assert np.all(img == (0, 200, 0), -1).sum() > np.all(img == (230, 0, 0), -1).sum() > 0  # 2 green, 1 red
    with pytest.raises(ValueError, match="3 images but 2 scores"):
        attribute_search_picture(q, crops, probs, [0.1, 0.2])
    # from the edge CLI, crops read from the gallery's paths
    paths = []
    for i, v in enumerate((40, 120)):
        paths.append(str(tmp_path / f"c{i}.png"))
        Image.fromarray(np.full((40, 20, 3), v, np.uint8)).save(paths[-1])
    g = Gallery(embeddings=np.eye(2, dtype=np.float32), identities=["a", "b"], paths=paths, camids=[0, 1],
                attributes=np.array([[0.9, 0.1], [0.3, 0.2]], np.float32), attribute_names=["hat", "backpack"])
    g.save(str(tmp_path / "g"))
    out = str(tmp_path / "search.png")
    assert main(["search", "--gallery", str(tmp_path / "g"), "--attributes", "hat", "--picture", out]) == 0
    assert Image.open(out).size[0] > 100 and "picture:" in capsys.readouterr().err


# -- exact re-ranking from an on-disk vectors file ("refine") -----------------------------------------------------
def build_refined(tmp_path, kind, x, name="g.f32", **kw):
    return build(kind, "faiss", x, vectors_path=str(tmp_path / name), **kw)


@pytest.mark.parametrize("kind", ["ivf_sq6", "ivf_pq"])
def test_refine_recall_and_equality_with_exact_search(tmp_path, kind):
    x = clustered(3000)
    q = clustered(50, seed=7)
    dist = euclidean_distance(q, x)
    truth = np.argsort(dist, axis=1, kind="stable")
    ix = build_refined(tmp_path, kind, x)
    assert ix.vectors_nbytes() == 3000 * D * 4 and os.path.getsize(tmp_path / "g.f32") == 3000 * D * 4
    plain = recall_at(ix, q, truth, 10)
    ix.params["refine_factor"] = 8
    refined = recall_at(ix, q, truth, 10)
    assert refined >= plain and refined > 0.95, (kind, plain, refined)
    # every cell searched: where the 80 candidates by the codes hold the true top-10, refine IS exact search
    ix.params.update(nprobe=ix.params["nlist"], refine_factor=0)
    candidates = [{h.slot for h in row} for row in ix.search(q, 80)]
    covered = [i for i, c in enumerate(candidates) if set(truth[i, :10]) <= c]
    assert len(covered) >= (50 if kind == "ivf_sq6" else 35), len(covered)
    ix.params["refine_factor"] = 8
    hits = ix.search(q, 10)
    for i in covered:
        assert [h.slot for h in hits[i]] == truth[i, :10].tolist()
        assert [h.distance for h in hits[i]] == pytest.approx(dist[i, truth[i, :10]].tolist(), abs=1e-4)
    # inside a filter: exact search over camera 2 only
    cam = np.flatnonzero(ix.cameras == 2)
    hits = ix.search(q[:5], 10, cameras=[2])
    for i, row in enumerate(hits):
        assert [h.slot for h in row] == cam[np.argsort(dist[i, cam], kind="stable")[:10]].tolist()


def test_refine_cosine_distances(tmp_path):
    x = clustered(2000)
    q = clustered(5, seed=3)
    ix = GalleryIndex(D, "ivf_sq6", metric="cosine", vectors_path=str(tmp_path / "v.f32"), refine_factor=8)
    ix.add(x, range(2000))
    ix.params["nprobe"] = ix.params["nlist"]
    got = np.array([[h.distance for h in row] for row in ix.search(q, 5)])
    assert got == pytest.approx(np.sort(cosine_distance(q, x), axis=1)[:, :5], abs=1e-5)


def test_refine_persistence_and_add_remove_after_reload(tmp_path):
    x = clustered(1200)
    ix = build_refined(tmp_path, "ivf_sq6", x[:1000], refine_factor=4)
    ix.remove(identity="id3")
    path = ix.save(str(tmp_path / "g.npz"))
    with np.load(path) as z:
        record = json.loads(str(z["header"]))["vectors"]
    assert record["file"] == "g.f32" and (record["rows"], record["dim"], record["dtype"]) == (1000, D, "float32")
    back = GalleryIndex.load(path)
    assert back.params["refine_factor"] == 4 and back.vectors_path == str(tmp_path / "g.f32")
    # RAM: codes + ids (32-d: 24 + 8 bytes a vector) and the quantizer; the float32 vectors are on disk
    assert back.nbytes() == ix.nbytes() and back.nbytes() * 3 < back.vectors_nbytes()
    a = [[(h.slot, round(h.distance, 5)) for h in row] for row in ix.search(x[:10], 5)]
    assert [[(h.slot, round(h.distance, 5)) for h in row] for row in back.search(x[:10], 5)] == a
    assert all(h.identity != "id3" for row in back.search(x[:200], 10) for h in row)
    # add and remove after the reload: the vectors file grows in step with the slots
    slots = back.add(x[1000:], [f"new{i}" for i in range(200)])
    assert slots.tolist() == list(range(1000, 1200)) and os.path.getsize(tmp_path / "g.f32") == 1200 * D * 4
    hits = back.search(x[1000:1010], 1)
    assert [(row[0].slot, row[0].distance) for row in hits] == [(1000 + i, 0.0) for i in range(10)]
    back.remove(slots=[1000])
    assert back.search(x[1000], 1)[0][0].slot != 1000
    # the first file still loads (it checks its own 1000 rows), and adding to it overwrites the rows after them
    old = GalleryIndex.load(path)
    assert old.num_slots == 1000 and old.search(x[:10], 5) == ix.search(x[:10], 5)
    again = back.save(str(tmp_path / "g2.npz"))
    old.add(x[1100:], [f"other{i}" for i in range(100)])
    assert os.path.getsize(tmp_path / "g.f32") == 1100 * D * 4 and old.search(x[1100], 1)[0][0].slot == 1000
    with pytest.raises(IndexFormatError, match="truncated"):
        GalleryIndex.load(again)  # g2.npz named 1200 rows; the shared file now has 1100
    # moved together: the recorded name is relative to the index file; vectors_path= finds a moved file
    moved = tmp_path / "moved"
    moved.mkdir()
    os.replace(path, moved / "g.npz")
    os.replace(tmp_path / "g.f32", moved / "g.f32")
    assert GalleryIndex.load(str(moved / "g.npz")).search(x[:10], 5) == ix.search(x[:10], 5)
    os.replace(moved / "g.f32", tmp_path / "elsewhere.f32")
    back = GalleryIndex.load(str(moved / "g.npz"), vectors_path=str(tmp_path / "elsewhere.f32"))
    assert back.search(x[:10], 5) == ix.search(x[:10], 5)


def test_refine_vectors_file_errors(tmp_path):
    x = clustered(600)
    ix = build_refined(tmp_path, "ivf_sq8", x, refine_factor=4)
    path = ix.save(str(tmp_path / "g.npz"))
    vec = tmp_path / "g.f32"
    data = vec.read_bytes()
    vec.unlink()
    with pytest.raises(FileNotFoundError, match=r"vectors file .*g\.f32 .*is missing"):
        GalleryIndex.load(path)
    vec.write_bytes(data[: len(data) - 4 * D])
    with pytest.raises(IndexFormatError, match=r"g\.f32 has \d+ bytes, needs \d+ .*truncated"):
        GalleryIndex.load(path)
    vec.write_bytes(clustered(600, seed=5).tobytes())  # same size, another gallery's vectors
    with pytest.raises(IndexFormatError, match="does not match the index"):
        GalleryIndex.load(path)
    vec.write_bytes(data)
    _rewrite(path, header={"vectors": {"file": "g.f32", "rows": 600, "dim": 64, "dtype": "float32",
                                       "fingerprint": ""}})
    with pytest.raises(IndexFormatError, match="vectors record says 600 x 64 float32"):
        GalleryIndex.load(path)
    with pytest.raises(ValueError, match="refine_factor needs vectors_path"):
        GalleryIndex(D, "ivf_sq6", refine_factor=4)
    with pytest.raises(ValueError, match="only the ivf kinds, not 'hnsw'"):
        GalleryIndex(D, "hnsw", vectors_path=str(tmp_path / "h.f32"))
    plain = build("ivf_sq6", "faiss", x)
    plain.params["refine_factor"] = 4
    with pytest.raises(ValueError, match="keeps no float32 vectors"):
        plain.search(x[0], 3)

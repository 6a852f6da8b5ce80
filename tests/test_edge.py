"""edge: the LiteRT-only runtime (preprocessing, model, gallery, query, stream, CLI)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edge import preprocess
from edge.gallery import Gallery, build_gallery, parse_identity
from edge.runtime import EdgeModel, ModelError
from edge.stream import IdentityAssigner, process_images, watch_folder
from support import person_crop as _person

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_IDS = 5


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """gallery/<id>/k.png (3 per id), query/<id>_c2s1_..._00.jpg (2 per id, Market names)."""
    root = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(0)
    palette = rng.uniform(0, 255, (NUM_IDS, 3, 3))
    for i in range(NUM_IDS):
        d = root / "gallery" / f"person{i}"
        d.mkdir(parents=True)
        for k in range(3):
            Image.fromarray(_person(rng, palette[i])).save(d / f"{k}.png")
    (root / "query").mkdir()
    for i in range(NUM_IDS):
        for k in range(2):
            Image.fromarray(_person(rng, palette[i])).save(root / "query" / f"{i:04d}_c2s1_{k:06d}_00.jpg", quality=95)
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny contract model exported as float32 and int8 (uint8 input) with sidecars."""
    from export import tflite
    from keras_hpnet.evaluation import keras_predictor
    from support import make_tiny_model
    from keras_hpnet.metadata import ModelMetadata

    d = tmp_path_factory.mktemp("models")
    model = make_tiny_model(embedding_dim=16)
    md = ModelMetadata("tiny", 32, 16, 16, ["a0", "a1", "a2"])
    rng = np.random.default_rng(1)
    calib = rng.integers(0, 256, (16, 32, 16, 3)).astype(np.uint8)
    paths = {}
    for q, io in (("float32", "float32"), ("int8", "uint8")):
        e = tflite.export_model(model, md, q, str(d / f"tiny_{q}.tflite"), io_type=io,
                                representative_images=calib, verbose=False)
        paths[q] = e.path
    probe = rng.integers(0, 256, (4, 32, 16, 3)).astype(np.uint8)
    ref = keras_predictor(model)(probe)
    return paths, probe, ref


def test_resize_matches_tf_bilinear():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for (h, w), (oh, ow) in [((128, 64), (160, 64)), ((37, 23), (16, 8)), ((10, 10), (10, 10)), ((5, 7), (19, 3))]:
        img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        want = tf.image.resize(img, (oh, ow), method="bilinear").numpy()
        got = preprocess.resize_bilinear(img, oh, ow)
        np.testing.assert_allclose(got, want, atol=2e-3)  # float32 rounding
        assert preprocess.prepare(img, oh, ow).dtype == np.uint8


def test_parse_identity(tmp_path):
    assert parse_identity(str(tmp_path / "alice" / "1.jpg"), str(tmp_path)) == ("alice", -1)
    assert parse_identity(str(tmp_path / "0002_c3s1_000451_03.jpg"), str(tmp_path)) == ("2", 2)
    assert parse_identity("x/-1_c1s1_000001_00.jpg") == ("-1", 0)
    with pytest.raises(ValueError, match="no identity"):
        parse_identity(str(tmp_path / "holiday.jpg"), str(tmp_path))


@pytest.mark.parametrize("q", ["float32", "int8"])
def test_edge_model_matches_keras(models, q):
    paths, probe, ref = models
    m = EdgeModel(paths[q], num_threads=1)
    assert m.input_dtype == (np.uint8 if q == "int8" else np.float32)
    out = m.run(probe)
    assert out["embedding"].shape == (4, 16) and out["attributes"].shape == (4, 3)
    a, b = out["embedding"], ref["embedding"]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > (0.9999 if q == "float32" else 0.99), cos
    np.testing.assert_allclose(out["attributes"], ref["attributes"], atol=1e-5 if q == "float32" else 0.03)
    # The reference kernels (no XNNPACK) compute the same thing.
    plain = EdgeModel(paths[q], num_threads=1, delegate="none").run(probe)
    np.testing.assert_allclose(plain["embedding"], a, atol=1e-3 if q == "float32" else 0.05)


def test_gallery_query_round_trip(models, crops, tmp_path):
    paths, _, _ = models
    model = EdgeModel(paths["int8"])
    (crops / "gallery" / "person0" / "broken.png").write_bytes(b"not an image")
    try:
        gallery, skipped = build_gallery(model, str(crops / "gallery"))
    finally:
        (crops / "gallery" / "person0" / "broken.png").unlink()
    assert len(gallery) == 3 * NUM_IDS and [os.path.basename(p) for p, _ in skipped] == ["broken.png"]
    gallery.save(str(tmp_path / "g"))
    loaded = Gallery.load(str(tmp_path / "g.json"))
    assert loaded.identities == gallery.identities and loaded.attribute_names == ["a0", "a1", "a2"]
    np.testing.assert_array_equal(loaded.embeddings, gallery.embeddings)
    qpaths = preprocess.list_images(str(crops / "query"))
    out, kept, _ = model.predict_paths(qpaths)
    for i, p in enumerate(kept):
        want = f"person{int(parse_identity(p)[0])}"
        top = loaded.search(out["embedding"][i], top_k=3)
        assert top[0].identity == want, (p, top)
        assert len({m.identity for m in top}) == 3 and top[0].distance <= top[1].distance <= top[2].distance


def test_cli_gallery_query_without_tensorflow(models, crops, tmp_path):
    """The CLI end to end in a fresh interpreter that must never load TensorFlow."""
    paths, _, _ = models
    g = str(tmp_path / "gal")
    code = (
        "import sys, json\n"
        "import edge, edge.cli, edge.stream, edge.benchmark\n"
        "from edge.cli import main\n"
        f"assert main(['gallery', 'build', '--model', {paths['int8']!r}, '--images', {str(crops / 'gallery')!r}, '--out', {g!r}]) == 0\n"
        f"assert main(['query', '--model', {paths['int8']!r}, '--gallery', {g!r}, '--image', {str(crops / 'query')!r}, '--top_k', '2', '--json']) == 0\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'jax', 'torch')]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout[r.stdout.index("["):])
    assert len(results) == 2 * NUM_IDS
    for res in results:
        want = f"person{int(parse_identity(res['image'])[0])}"
        assert res["matches"][0]["identity"] == want
        assert set(res["attributes"]) == {"a0", "a1", "a2"}
    assert os.path.isfile(g + ".npz") and os.path.isfile(g + ".json")


def _separating_threshold(model, crops):
    """Between the largest same-person and the smallest different-person distance of the gallery crops."""
    gal, _ = build_gallery(model, str(crops / "gallery"))
    d = np.sqrt(((gal.embeddings[:, None] - gal.embeddings[None]) ** 2).sum(-1))
    same = np.array(gal.identities)[:, None] == np.array(gal.identities)[None]
    intra, inter = d[same].max(), d[~same].min()
    assert intra < inter, "synthetic identities must be separable for this test"
    return float((intra + inter) / 2)


def test_stream_registers_new_identities(models, crops, tmp_path):
    paths, _, _ = models
    model = EdgeModel(paths["int8"])
    threshold = _separating_threshold(model, crops)
    watch = tmp_path / "incoming"
    watch.mkdir()
    order = []
    for i in (0, 1, 0, 2, 1, 2):  # people come back
        k = sum(1 for o in order if o == i)
        src = crops / "gallery" / f"person{i}" / f"{k}.png"
        (watch / f"{len(order):03d}.png").write_bytes(src.read_bytes())
        order.append(i)
    (watch / "999.png").write_bytes(b"half-written")
    empty = Gallery(embeddings=[], identities=[], attribute_names=model.attribute_names)
    assigner = IdentityAssigner(empty, threshold=threshold)
    skipped = []
    got = list(process_images(model, assigner, watch_folder(str(watch), poll_seconds=0.01, idle_timeout=0,
                                                            skipped=skipped)))
    assert [a.is_new for a in got] == [True, True, False, True, False, False]
    ids = [a.identity for a in got]
    assert ids[0] == ids[2] and ids[1] == ids[4] and ids[3] == ids[5] and len(set(ids)) == 3
    assert ids[0] == "new-0001" and len(empty) == 3
    assert [os.path.basename(p) for p, _ in skipped] == ["999.png"]


def test_bad_inputs_give_clear_errors(models, tmp_path):
    paths, _, _ = models
    with pytest.raises(ModelError, match="nope.tflite: no such file"):
        EdgeModel(str(tmp_path / "nope.tflite"), metadata_path=paths["int8"].replace(".tflite", ".json"))
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\0" * 64)
    (tmp_path / "junk.json").write_text(open(paths["int8"].replace(".tflite", ".json")).read())
    with pytest.raises(ModelError, match="junk.tflite: not a TFLite flatbuffer"):
        EdgeModel(str(junk))
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(open(paths["int8"], "rb").read())
    with pytest.raises(ModelError, match="sidecar metadata .*lone.json not found"):
        EdgeModel(str(lone))
    (tmp_path / "lone.json").write_text("{broken")
    with pytest.raises(ValueError, match="lone.json: not valid JSON"):
        EdgeModel(str(lone))
    (tmp_path / "lone.json").write_text(json.dumps({"model_name": "tiny", "input_height": 64}))
    with pytest.raises(ValueError, match="lone.json: missing field.*input_width"):
        EdgeModel(str(lone))
    (tmp_path / "lone.json").write_text(json.dumps(
        {"model_name": "tiny", "input_height": 64, "input_width": 16, "embedding_size": 16}))
    with pytest.raises(ModelError, match="lone.json: input 64x16x3 does not match"):
        EdgeModel(str(lone))
    (tmp_path / "lone.json").write_text(json.dumps(
        {"model_name": "tiny", "input_height": 32, "input_width": 16, "embedding_size": 99}))
    with pytest.raises(ModelError, match="embedding_size 99 does not match"):
        EdgeModel(str(lone))
    bad_img = tmp_path / "bad.jpg"
    bad_img.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(preprocess.ImageError, match="bad.jpg: cannot decode"):
        preprocess.load_image(str(bad_img))
    with pytest.raises(preprocess.ImageError, match="missing.png: no such file"):
        preprocess.load_image(str(tmp_path / "missing.png"))
    with pytest.raises(FileNotFoundError, match="gallery .*nog.json: no such file"):
        Gallery.load(str(tmp_path / "nog"))
    # The CLI turns them into one line on stderr and exit code 2, no traceback.
    from edge.cli import main

    assert main(["query", "--model", str(junk), "--gallery", "x", "--image", str(bad_img)]) == 2


def test_benchmark_measures(models, capsys):
    from edge import benchmark

    paths, _, _ = models
    r = benchmark.measure(paths["int8"], 1, runs=20, warmup=2)
    assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["images_per_s"] > 0
    assert benchmark.main(["--model", paths["int8"], "--max_threads", "2", "--runs", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") >= 5 and "p99 ms" in out
    # The tiny int8 model: XNNPACK takes everything but the uint8<->int8 boundary QUANTIZE ops.
    line = next(ln for ln in out.splitlines() if ln.startswith("XNNPACK: "))
    assert " in 1 partition(s)" in line and "CONV_2D" not in line, line


def test_delegation_report(models):
    from edge.runtime import delegation, make_interpreter

    paths, _, _ = models
    for q in ("float32", "int8"):
        d = delegation(make_interpreter(paths[q], 1))
        assert d["partitions"] == 1 and 0 < d["delegated"] <= d["ops"], (q, d)
        assert d["delegated"] + sum(d["builtin"].values()) == d["ops"]
        assert set(d["builtin"]) <= {"QUANTIZE", "DEQUANTIZE"}, d  # only io conversions stay outside
    none = delegation(make_interpreter(paths["int8"], 1, "none"))
    assert none["partitions"] == 0 and none["delegated"] == 0 and sum(none["builtin"].values()) == none["ops"]


def test_broken_or_foreign_galleries_are_refused(models, crops, tmp_path, capsys):
    """Issue 12, section 5: on main a truncated .npz raised BadZipFile, NaN rows were
    accepted (an all-NaN gallery printed `distance nan` and exited 0), and a
    gallery of another model was never checked against the model's metadata."""
    from edge.cli import main

    paths, _, _ = models
    model = EdgeModel(paths["int8"])
    good, _ = build_gallery(model, str(crops / "gallery"))
    image = str(crops / "query" / "0000_c2s1_000000_00.jpg")

    def query(gallery_path):
        code = main(["query", "--model", paths["int8"], "--gallery", gallery_path, "--image", image])
        return code, capsys.readouterr().err

    g = str(tmp_path / "good")
    good.save(g)
    assert query(g)[0] == 0
    # truncated arrays
    npz = tmp_path / "cut.npz"
    good.save(str(tmp_path / "cut"))
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"cut\.npz: cannot read arrays, truncated or not a gallery \.npz"):
        Gallery.load(str(tmp_path / "cut"))
    code, err = query(str(tmp_path / "cut"))
    assert code == 2 and "cut.npz: cannot read arrays" in err and "Traceback" not in err
    # NaN rows, all-NaN
    for name, rows in (("somenan", [1, 4]), ("allnan", list(range(len(good))))):
        bad = Gallery(**{**good.__dict__, "embeddings": good.embeddings.copy()})
        bad.embeddings[rows] = np.nan
        with pytest.raises(ValueError, match=r"embeddings are not finite"):
            bad.save(str(tmp_path / name))  # refused on save too
        np.savez(tmp_path / f"{name}.npz", embeddings=bad.embeddings, attributes=bad.attributes)
        (tmp_path / f"{name}.json").write_text((tmp_path / "good.json").read_text())
        with pytest.raises(ValueError, match=rf"{name}\.npz: {len(rows)} of {len(good)} embeddings are not finite"):
            Gallery.load(str(tmp_path / name))
        code, err = query(str(tmp_path / name))
        assert code == 2 and "not finite" in err
    with pytest.raises(ValueError, match="not finite"):
        good.add(np.full(good.embedding_dim, np.nan), "x")
    # built with another model: embedding size, model name, attribute names, input size
    info = json.loads((tmp_path / "good.json").read_text())
    for field, value, shown in (("model_name", "hacnn", "model_name 'hacnn' vs the model's 'tiny'"),
                                ("attribute_names", ["x", "y", "z"], "attribute_names ['x', 'y', 'z']"),
                                ("input_size", [160, 64], "input_size [160, 64] vs the model's [32, 16]")):
        (tmp_path / "other.json").write_text(json.dumps({**info, field: value}))
        (tmp_path / "other.npz").write_bytes((tmp_path / "good.npz").read_bytes())
        code, err = query(str(tmp_path / "other"))
        assert code == 2 and "was built with another model" in err and shown in err, err
    np.savez(tmp_path / "other.npz", embeddings=np.zeros((len(good), 8), np.float32))
    (tmp_path / "other.json").write_text(json.dumps({**info, "embedding_size": 8}))
    code, err = query(str(tmp_path / "other"))
    assert code == 2 and "embedding_size 8 vs the model's 16" in err
    code = main(["stream", "--model", paths["int8"], "--gallery", str(tmp_path / "other"),
                 "--watch", str(tmp_path), "--threshold", "1", "--idle_timeout", "0"])
    assert code == 2 and "was built with another model" in capsys.readouterr().err


def test_track_id_and_grouping():
    from edge.stream import group_tracklets, track_id

    assert track_id("in/cam1_track7_0003.jpg") == "cam1_track7"
    assert track_id("0001C1T0001F001.jpg") == "0001C1T0001" and track_id("0012.jpg") == "0012"
    items = [(f"{t}_{k:03d}.png", k) for t, k in [("a", 0), ("a", 1), ("b", 0), ("a", 2), ("a", 3), ("a", 4)]]
    got = [(t, imgs) for t, _, imgs in group_tracklets(items, max_len=2)]
    assert got == [("a", [0, 1]), ("b", [0]), ("a", [2, 3]), ("a", [4])]


def test_tracklet_pooling_on_the_edge_is_the_video_models(tmp_path):
    """The attention the export writes into the metadata, read back from JSON, pools per-frame
    embeddings on the edge (numpy) to the video model's own output."""
    from keras_hpnet.metadata import ModelMetadata
    from keras_hpnet.models import VideoModel
    from support import make_tiny_model

    video = VideoModel(make_tiny_model(embedding_dim=8), seq_len=4, pooling="attention", attention_units=4)
    rng = np.random.default_rng(0)
    for v in video.temporal_pooling.weights:
        v.assign(rng.normal(0, 3, v.shape).astype("float32"))
    md = ModelMetadata("tiny", 32, 16, 8, ["a0", "a1", "a2"], extra={"temporal_pooling": video.temporal_pooling_params()})
    md.save(str(tmp_path / "m.json"))
    md = ModelMetadata.load(str(tmp_path / "m.json"))
    clip = rng.integers(0, 256, (1, 5, 32, 16, 3)).astype(np.uint8)
    frames = {k: np.asarray(v) for k, v in video.frame_model(clip[0], training=False).items()}
    want = {k: np.asarray(v)[0] for k, v in video(clip, training=False).items()}
    gallery = Gallery(embeddings=[], identities=[], attribute_names=["a0", "a1", "a2"])
    assigner = IdentityAssigner(gallery, threshold=1.0, metadata=md)
    assert assigner.pooling[0] == "attention"
    a = assigner.assign_tracklet(frames["embedding"], "track1", frames["attributes"])
    assert a.is_new and a.source == "track1"
    np.testing.assert_allclose(gallery.embeddings[0], want["embedding"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(list(a.attributes.values()), want["attributes"], rtol=1e-5, atol=1e-6)
    assert np.abs(want["embedding"] - frames["embedding"].mean(0)).max() > 1e-3  # not the average
    # no rule in the metadata: the average
    plain = IdentityAssigner(Gallery(embeddings=[], identities=[]), threshold=1.0)
    plain.assign_tracklet(frames["embedding"])
    np.testing.assert_allclose(plain.gallery.embeddings[0], frames["embedding"].mean(0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[T, D\] with T >= 1"):
        plain.assign_tracklet(np.zeros((0, 8)), "empty")
    md.extra["temporal_pooling"] = {"mode": "attention", "hidden_kernel": [[1.0]]}
    with pytest.raises(ValueError, match="missing hidden_bias"):
        IdentityAssigner(gallery, threshold=1.0, metadata=md)


def test_stream_matches_tracklets(models, crops, tmp_path, capsys):
    from edge.cli import main
    from edge.stream import group_tracklets, process_tracklets

    paths, _, _ = models
    model = EdgeModel(paths["int8"])
    threshold = _separating_threshold(model, crops)
    watch = tmp_path / "incoming"
    watch.mkdir()
    for track, person in (("t1", 0), ("t2", 1), ("t3", 0)):  # person 0 comes back as a new track
        for k in range(3):
            src = crops / "gallery" / f"person{person}" / f"{k}.png"
            (watch / f"cam1_{track}_{k:04d}.png").write_bytes(src.read_bytes())
    assigner = IdentityAssigner(Gallery(embeddings=[], identities=[], attribute_names=model.attribute_names),
                                threshold=threshold)
    groups = group_tracklets(watch_folder(str(watch), poll_seconds=0.01, idle_timeout=0),
                             track_of=lambda p: os.path.basename(p).split("_")[1])
    got = list(process_tracklets(model, assigner, groups))
    assert [(a.source, a.is_new) for a in got] == [("t1", True), ("t2", True), ("t3", False)]
    assert got[0].identity == got[2].identity != got[1].identity and len(assigner.gallery) == 2
    emb = model.run(np.stack([preprocess.prepare(preprocess.load_image(str(p)), *model.input_size)
                              for p in sorted(watch.iterdir())[:3]]))["embedding"]
    np.testing.assert_allclose(assigner.gallery.embeddings[0], emb.mean(0), rtol=1e-5, atol=1e-6)
    # the CLI, with the default track rule (file name without its frame number)
    capsys.readouterr()
    assert main(["stream", "--model", paths["int8"], "--watch", str(watch), "--tracklets", "--idle_timeout", "0",
                 "--threshold", str(threshold)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["cam1_t1", "cam1_t2", "cam1_t3"]
    assert "NEW new-0001" in lines[0] and "NEW new-0002" in lines[1] and "new-0001 (distance" in lines[2]
    assert "NEW" not in lines[2] and lines[3].startswith("3 tracklets, 2 new identities")


def test_video_run_exports_its_frame_model_and_pooling_rule(tmp_path):
    """A video run's TFLite file is the per-frame model, its sidecar carries the attention; the
    edge pools a tracklet to the Keras video model's embedding."""
    from export.tflite import convert_run
    from keras_hpnet.models import VideoModel
    from support import make_tiny_model, write_tiny_run

    video = VideoModel(make_tiny_model(embedding_dim=8), seq_len=4, pooling="attention", attention_units=4)
    rng = np.random.default_rng(5)
    for v in video.temporal_pooling.weights:
        v.assign(rng.normal(0, 3, v.shape).astype("float32"))
    run_dir = write_tiny_run(str(tmp_path / "run"), video)
    (exported,), _ = convert_run(run_dir, ["float32"], parity=False, verbose=False)
    model = EdgeModel(exported.path)
    assert model.input_size == (32, 16) and model.metadata.extra["temporal_pooling"]["mode"] == "attention"
    clip = rng.integers(0, 256, (1, 6, 32, 16, 3)).astype(np.uint8)
    frames = model.run(clip[0])
    assigner = IdentityAssigner(Gallery(embeddings=[], identities=[], attribute_names=model.attribute_names),
                                threshold=1.0, metadata=model.metadata)
    assigner.assign_tracklet(frames["embedding"], "t", frames["attributes"])
    want = np.asarray(video(clip, training=False)["embedding"])[0]
    np.testing.assert_allclose(assigner.gallery.embeddings[0], want, rtol=1e-4, atol=1e-4)

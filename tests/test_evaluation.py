"""keras_hpnet.evaluation on video datasets: frames pooled per tracklet, tracklet and frame metrics."""

import os

import numpy as np
import pytest
from PIL import Image

from keras_hpnet import temporal
from keras_hpnet.datasets.base import PedestrianDataset, Tracklet
from keras_hpnet.evaluation import evaluate, evaluate_model, extract_tracklets, keras_predictor
from keras_hpnet.metrics import euclidean_distance, reid_metrics
from keras_hpnet.preprocessing import load_rgb, prepare

H, W = 32, 16


def _write_tracklet(root, name, colour, num_frames, rng, bad=()):
    paths = []
    for f in range(num_frames):
        path = os.path.join(root, f"{name}F{f:03d}.png")
        if f in bad:
            with open(path, "wb") as out:
                out.write(b"not an image")
        else:
            img = np.clip(np.asarray(colour, np.float32) + rng.normal(0, 25, (H, W, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(path)
        paths.append(path)
    return tuple(paths)


def _video_dataset(root):
    """3 identities x 2 cameras; tracklet lengths 1..5 (chunks of 2 cross batch boundaries),
    one unreadable frame in a query tracklet, one tracklet with no readable frame, a distractor."""
    rng = np.random.default_rng(0)
    os.makedirs(root, exist_ok=True)
    colours = {1: (200, 40, 40), 2: (40, 200, 40), 3: (40, 40, 200), 0: (120, 120, 120)}
    query, gallery = [], []
    for pid in (1, 2, 3):
        query.append(Tracklet(_write_tracklet(root, f"q{pid}", colours[pid], 2 + pid, rng,
                                              bad=(1,) if pid == 2 else ()), pid, 0))
        for k, cam in enumerate((0, 1, 1)):
            gallery.append(Tracklet(_write_tracklet(root, f"g{pid}_{k}", colours[pid], 1 + (pid + k) % 5, rng),
                                    pid, cam))
    gallery.append(Tracklet(_write_tracklet(root, "d0", colours[0], 3, rng), 0, 1))  # distractor
    gallery.append(Tracklet(_write_tracklet(root, "bad", colours[1], 2, rng, bad=(0, 1)), 1, 1))  # no frame
    return PedestrianDataset("tiny_video", {"train": [], "query": query, "gallery": gallery}, kind="video")


def mean_colour(images):
    x = np.asarray(images, np.float32) / 255.0
    return {"embedding": np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)}


def _frame_outputs(tracklet):
    frames = [prepare(load_rgb(p), H, W) for p in tracklet.frames if open(p, "rb").read(4) != b"not "]
    return mean_colour(np.stack(frames))["embedding"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return _video_dataset(str(tmp_path_factory.mktemp("video")))


PARAMS = {"mode": "attention", "hidden_kernel": np.eye(6, 4, dtype=np.float32) * 3,
          "hidden_bias": np.zeros(4, np.float32), "score_kernel": np.array([4.0, -4.0, 2.0, 0.0], np.float32)}


@pytest.mark.parametrize("pooling", ["avg", PARAMS])
def test_tracklets_pool_every_readable_frame(dataset, pooling):
    out = extract_tracklets(mean_colour, dataset.gallery, input_size=(H, W), temporal_pooling=pooling,
                            chunk_len=2, batch_size=4)
    assert out["num_skipped"] == 1 and list(out["index"]) == list(range(len(dataset.gallery) - 1))
    mode = pooling if isinstance(pooling, str) else "attention"
    params = None if mode == "avg" else pooling
    for row, i in enumerate(out["index"]):
        frames = _frame_outputs(dataset.gallery[i])
        assert out["num_frames"][row] == len(frames)
        want = temporal.pool_frames(frames, mode=mode, params=params)
        np.testing.assert_allclose(out["embedding"][row], want, rtol=1e-5, atol=1e-6)
        assert np.isclose(frames, out["frame_embedding"][row], atol=1e-6).all(axis=1).any()  # one of its frames
    np.testing.assert_array_equal(out["pids"], [t.pid for t in dataset.gallery[:-1]])
    q = extract_tracklets(mean_colour, dataset.query, input_size=(H, W), chunk_len=3)
    assert list(q["num_frames"]) == [3, 3, 5] and q["num_dropped_frames"] == 1  # query 2 lost its bad frame


def test_video_evaluation_reports_tracklet_and_frame_metrics(dataset):
    result = evaluate(mean_colour, dataset, input_size=(H, W), chunk_len=2, batch_size=6)
    m = result.metrics
    q, g = result.query, result.gallery
    want = reid_metrics(euclidean_distance(q["embedding"], g["embedding"]), q["pids"], g["pids"], q["camids"],
                        g["camids"])
    frame = reid_metrics(euclidean_distance(q["frame_embedding"], g["frame_embedding"]), q["pids"], g["pids"],
                         q["camids"], g["camids"])
    for k in ("rank1", "rank5", "rank10", "mAP", "mINP", "mAP_trapezoid"):
        assert m[k] == pytest.approx(want[k]) and m[f"frame_{k}"] == pytest.approx(frame[k])
    assert m["rank1"] == 1.0  # colours separate the identities
    assert any("1 tracklet(s) without a readable frame" in n for n in result.notes)
    assert any("1 unreadable frame(s)" in n for n in result.notes)
    again = evaluate(mean_colour, dataset, input_size=(H, W), chunk_len=4, batch_size=64)
    np.testing.assert_allclose(again.query["embedding"], q["embedding"], rtol=1e-5)  # chunking does not matter


def test_gallery_tracklets_that_are_queries_are_read_once(dataset, monkeypatch):
    """MARS's official gallery holds the queries too: their rows are the query's, the rest is read."""
    import keras_hpnet.evaluation as ev

    official = PedestrianDataset("all", {"query": dataset.query, "gallery": dataset.query + dataset.gallery},
                                 kind="video")
    calls = []
    real = ev.extract_tracklets

    def counting(predict_fn, tracklets, **kw):
        calls.append(len(tracklets))
        return real(predict_fn, tracklets, **kw)

    monkeypatch.setattr(ev, "extract_tracklets", counting)
    result = evaluate(mean_colour, official, input_size=(H, W), chunk_len=2)
    assert calls == [len(dataset.query), len(dataset.gallery)]
    direct = real(mean_colour, official.gallery, input_size=(H, W), chunk_len=2)
    for k in ("embedding", "pids", "camids", "num_frames", "index"):
        np.testing.assert_allclose(result.gallery[k], direct[k], rtol=1e-6)
    assert result.gallery["num_skipped"] == 1
    # each query meets itself in the gallery as same-id same-camera junk: rank-1 stays 1
    assert result.metrics["rank1"] == 1.0


def test_video_model_is_evaluated_through_its_frame_model(dataset):
    from keras_hpnet.models import VideoModel
    from tests.support import make_tiny_model

    model = VideoModel(make_tiny_model(input_size=(H, W), num_attributes=0, embedding_dim=6), seq_len=2,
                       pooling="attention", attention_units=3)
    rng = np.random.default_rng(1)
    for v in model.temporal_pooling.weights:
        v.assign(rng.normal(0, 3, v.shape).astype("float32"))
    result = evaluate_model(model, dataset)
    direct = evaluate(keras_predictor(model.frame_model), dataset, input_size=(H, W),
                      temporal_pooling=model.temporal_pooling_params())
    assert result.metrics == direct.metrics
    # the pooled embedding of a tracklet is the video model's output on all of its frames
    tracklet = dataset.query[0]
    clip = np.stack([prepare(load_rgb(p), H, W) for p in tracklet.frames])[None]
    np.testing.assert_allclose(result.query["embedding"][0], np.asarray(model(clip)["embedding"])[0],
                               rtol=1e-4, atol=1e-5)


def test_tracklet_evaluation_errors_are_named(dataset):
    with pytest.raises(ValueError, match="needs the video model's parameters"):
        extract_tracklets(mean_colour, dataset.query, input_size=(H, W), temporal_pooling="attention")
    with pytest.raises(ValueError, match="mode"):
        extract_tracklets(mean_colour, dataset.query, input_size=(H, W), temporal_pooling={"mode": "max"})
    with pytest.raises(ValueError, match="no tracklets"):
        extract_tracklets(mean_colour, [], input_size=(H, W))
    with pytest.raises(ValueError, match="no 'embedding'"):
        extract_tracklets(lambda x: {"emb": x}, dataset.query, input_size=(H, W))

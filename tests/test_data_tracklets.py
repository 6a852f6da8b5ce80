"""The tracklet pipeline (keras_hpnet.data.tracklets): shapes, sampling modes,
unreadable frames, one-frame tracklets, test chunks, and that a frame is
decoded exactly like an image of the image pipeline."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image

from keras_hpnet.data import chunk_table, frame_positions, make_dataset, tracklet_dataset, tracklet_frames
from keras_hpnet.data.tracklets import check_tracklets
from keras_hpnet.datasets import Tracklet, frame_records

H, W = 16, 8


def write_frame(path, value):
    """A frame whose top-left pixel (red) is `value` (identifies it) over a gradient."""
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 1] = np.arange(W, dtype=np.uint8)[None, :] * 30
    img[..., 2] = np.arange(H, dtype=np.uint8)[:, None] * 15
    img[..., 0] = value
    Image.fromarray(img).save(path)  # PNG: lossless, the red value survives


def make_tracklets(folder, lengths, pids=None):
    """Tracklet k has lengths[k] frames; frame f of tracklet k has red value 10 * k + f."""
    out = []
    for k, n in enumerate(lengths):
        frames = []
        for f in range(n):
            path = os.path.join(folder, f"t{k}_f{f}.png")
            write_frame(path, 10 * k + f)
            frames.append(path)
        pid = k if pids is None else pids[k]
        out.append(Tracklet(tuple(frames), pid, k % 3))
    return out


def ids(frames):
    """Red value of the top-left pixel of every frame: [N, T]."""
    return np.asarray(frames)[:, :, 0, 0, 0].astype(int)


def collect(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append({k: v.numpy() for k, v in y.items()})
    return np.concatenate(xs), {k: np.concatenate([y[k] for y in ys]) for k in ys[0]}


def test_frame_positions_segments():
    assert frame_positions(10, 4, "evenly").tolist() == [0, 3, 5, 8]  # centres of [0,2) [2,5) [5,7) [7,10)
    assert frame_positions(1, 4, "evenly").tolist() == [0, 0, 0, 0]
    assert frame_positions(3, 5, "evenly").tolist() == [0, 0, 1, 1, 2]  # short: repeats in order
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = frame_positions(10, 4, "random", rng)
        assert (p >= [0, 2, 5, 7]).all() and (p < [2, 5, 7, 10]).all()
    draws = {tuple(frame_positions(10, 4, "random", rng)) for _ in range(50)}
    assert len(draws) > 10
    assert frame_positions(1, 3, "random", rng).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="sampling must be one of"):
        frame_positions(5, 2, "all")


def test_training_batches_shapes_labels_and_pk(tmp_path):
    tracklets = make_tracklets(str(tmp_path), [5, 1, 8, 3, 6, 2], pids=[0, 0, 1, 1, 2, 2])
    ds = tracklet_dataset(tracklets, input_size=(H, W), seq_len=4, batch_size=4, training=True, pk=2, seed=3,
                          flip=False, pad=0)
    batches = list(ds)
    assert len(batches) == 1  # 6 tracklets // 4, last partial batch dropped
    x, y = batches[0]
    assert x.shape == (4, 4, H, W, 3) and x.dtype.name == "uint8"
    assert set(y) == {"pid", "camid", "index"} and y["pid"].dtype.name == "int32"
    pids = y["pid"].numpy()
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[0] != pids[2]  # P x K over tracklets
    index = y["index"].numpy()
    assert [tracklets[i].pid for i in index] == pids.tolist()
    assert y["camid"].numpy().tolist() == [tracklets[i].camid for i in index]
    for row, i in zip(ids(x), index):  # every frame belongs to its tracklet, in temporal order
        assert (row // 10 == i).all() and (np.diff(row) >= 0).all()
    assert ds.report.num_good == 6 and ds.report.num_skipped == 0


def test_random_sampling_by_seed_and_epoch_evenly_fixed(tmp_path):
    tracklets = make_tracklets(str(tmp_path), [12, 12])
    kw = dict(input_size=(H, W), seq_len=3, batch_size=2, training=True, flip=False, pad=0)

    def frames(**more):
        x, y = collect(tracklet_dataset(tracklets, **kw, **more))
        order = np.argsort(y["index"])
        return ids(x)[order] - 10 * y["index"][order][:, None]  # frame numbers per tracklet

    a, b = frames(seed=1, epoch=0), frames(seed=1, epoch=0)
    assert np.array_equal(a, b)
    draws = [frames(seed=1, epoch=e) for e in range(6)]
    assert len({d.tobytes() for d in draws}) > 1  # new draws per epoch
    for d in draws:
        assert ((d >= [0, 4, 8]) & (d < [4, 8, 12])).all()  # one frame per segment of 4
    even = frames(seed=1, epoch=0, sampling="evenly")
    assert even.tolist() == [[1, 5, 9], [1, 5, 9]]
    assert np.array_equal(even, frames(seed=7, epoch=3, sampling="evenly"))


def test_one_frame_tracklet_repeats_and_evaluation_order(tmp_path):
    tracklets = make_tracklets(str(tmp_path), [1, 2, 7])
    x, y = collect(tracklet_dataset(tracklets, input_size=(H, W), seq_len=4, batch_size=2, training=False,
                                    sampling="evenly"))
    assert y["index"].tolist() == [0, 1, 2]  # training=False: input order, last partial batch kept
    assert ids(x).tolist() == [[0, 0, 0, 0], [10, 10, 11, 11], [20, 21, 23, 25]]


def test_unreadable_frames_dropped_and_frameless_tracklets_skipped(tmp_path):
    tracklets = make_tracklets(str(tmp_path), [4, 3, 2])
    open(tracklets[0].frames[1], "wb").write(b"")  # one bad frame: the tracklet keeps the other 3
    for p in tracklets[2].frames:  # no readable frame: skipped
        open(p, "wb").write(b"GIF89a not really")
    with pytest.warns(UserWarning, match="skipping 1 tracklet"):
        ds = tracklet_dataset(tracklets, input_size=(H, W), seq_len=3, batch_size=4, training=False,
                              sampling="evenly")
    report = ds.report
    assert report.good == [0, 1] and [i for i, _ in report.skipped] == [2]
    assert "none of its 2 frames is readable" in report.skipped[0][1]
    assert report.dropped_frames == {0: 1} and report.num_dropped_frames == 1
    assert report.frame_report.num_skipped == 3
    x, y = collect(ds)
    assert y["index"].tolist() == [0, 1]
    assert ids(x).tolist() == [[0, 2, 3], [10, 11, 12]]  # frame 1 of tracklet 0 never appears
    assert "2 of 3 tracklets readable" in report.summary()


def test_nothing_readable_and_bad_arguments(tmp_path):
    tracklets = make_tracklets(str(tmp_path), [2])
    for p in tracklets[0].frames:
        open(p, "wb").write(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="none of the 1 tracklets has a readable frame"):
            tracklet_dataset(tracklets, input_size=(H, W), seq_len=2, batch_size=1, training=True)
        with pytest.raises(ValueError, match="none of the 1 tracklets"):
            tracklet_frames(tracklets, input_size=(H, W), seq_len=2, batch_size=1)
    with pytest.raises(ValueError, match="no tracklets"):
        tracklet_dataset([], input_size=(H, W), seq_len=2, batch_size=1, training=True)
    good = make_tracklets(str(tmp_path / ".."), [2])
    with pytest.raises(ValueError, match="seq_len must be >= 1"):
        tracklet_dataset(good, input_size=(H, W), seq_len=0, batch_size=1, training=True)
    with pytest.raises(ValueError, match="sampling must be one of"):
        tracklet_dataset(good, input_size=(H, W), seq_len=2, batch_size=1, training=True, sampling="dense")
    with pytest.raises(TypeError, match=r"tracklets\[0\]: expected a Tracklet"):
        check_tracklets([frame_records(good)[0]])


def test_test_chunks_cover_every_frame_once(tmp_path):
    tracklets = make_tracklets(str(tmp_path), [1, 3, 7, 4])
    open(tracklets[3].frames[2], "wb").write(b"")
    with pytest.warns(UserWarning):
        ds = tracklet_frames(tracklets, input_size=(H, W), seq_len=3, batch_size=4)
    table = ds.chunks
    assert table["tracklet"].tolist() == [0, 1, 2, 2, 2, 3]
    assert table["chunk"].tolist() == [0, 0, 0, 1, 2, 0]
    assert table["num_valid"].tolist() == [1, 3, 3, 3, 1, 3]
    x, y = collect(ds)
    assert x.shape == (6, 3, H, W, 3)
    assert y["index"].tolist() == [0, 1, 2, 2, 2, 3] and y["chunk"].tolist() == table["chunk"].tolist()
    assert y["num_valid"].tolist() == [1, 3, 3, 3, 1, 3]
    assert y["pid"].tolist() == [0, 1, 2, 2, 2, 3]
    frames = ids(x)
    assert frames.tolist() == [[0, 0, 0], [10, 11, 12], [20, 21, 22], [23, 24, 25], [26, 20, 21], [30, 31, 33]]
    for t in range(4):  # the valid frames of a tracklet's chunks: each readable frame once, in order
        rows = np.flatnonzero(y["index"] == t)
        valid = np.concatenate([frames[r, : y["num_valid"][r]] for r in rows])
        expect = [10 * t + f for f in range(len(tracklets[t].frames)) if (t, f) != (3, 2)]
        assert valid.tolist() == expect
    assert chunk_table(ds.report, 3)["frame_pos"].shape == (6, 3)


def test_frames_decode_like_images_and_cache(tmp_path):
    """A frame is the image pipeline's image: same pixels as make_dataset, cached or not (JPEG too)."""
    folder = str(tmp_path)
    rng = np.random.default_rng(0)
    paths = []
    for f in range(5):
        p = os.path.join(folder, f"j{f}.jpg")
        Image.fromarray(rng.integers(0, 256, (37, 19, 3), dtype=np.uint8)).save(p, quality=80)
        paths.append(p)
    tracklets = [Tracklet(tuple(paths[:3]), 4, 1), Tracklet(tuple(paths[3:]), 5, 2)]
    images, _ = collect(make_dataset(frame_records(tracklets), input_size=(24, 12), batch_size=8, training=False))
    for cache in (False, True):
        x, _ = collect(tracklet_frames(tracklets, input_size=(24, 12), seq_len=3, batch_size=2, cache=cache))
        assert np.array_equal(x[0], images[:3]) and np.array_equal(x[1, :2], images[3:])
        assert np.array_equal(x[1, 2], images[3])  # the short last chunk cycles
    a, _ = collect(tracklet_dataset(tracklets, input_size=(24, 12), seq_len=2, batch_size=2, training=True,
                                    seed=5, pad=2, erasing_probability=0.5))
    b, _ = collect(tracklet_dataset(tracklets, input_size=(24, 12), seq_len=2, batch_size=2, training=True,
                                    seed=5, pad=2, erasing_probability=0.5, cache=True))
    assert np.array_equal(a, b)


def test_one_augmentation_draw_per_tracklet(tmp_path):
    """Frames of one tracklet get the same flip / crop / erasing: identical frames stay identical."""
    path = os.path.join(str(tmp_path), "same.png")
    write_frame(path, 77)
    tracklets = [Tracklet((path,) * 4, i, 0) for i in range(8)]
    x, _ = collect(tracklet_dataset(tracklets, input_size=(H, W), seq_len=4, batch_size=8, training=True, seed=2,
                                    pad=3, erasing_probability=1.0))
    assert all(np.array_equal(x[n, t], x[n, 0]) for n in range(8) for t in range(4))
    assert len({x[n, 0].tobytes() for n in range(8)}) > 1  # draws differ between tracklets


def test_attributes_carried(tmp_path):
    tracklets = [t._replace(attributes=np.array([k % 2, 1], np.uint8))
                 for k, t in enumerate(make_tracklets(str(tmp_path), [2, 3]))]
    _, y = collect(tracklet_dataset(tracklets, input_size=(H, W), seq_len=2, batch_size=2, training=False))
    assert y["attributes"].tolist() == [[0.0, 1.0], [1.0, 1.0]]
    _, y = collect(tracklet_frames(tracklets, input_size=(H, W), seq_len=2, batch_size=2))
    assert y["attributes"].tolist() == [[0.0, 1.0], [1.0, 1.0], [1.0, 1.0]]

"""The tf.data pipeline for video re-id: tracklets -> (uint8 [N, T, H, W, 3], labels).

A tracklet (`keras_hpnet.datasets.Tracklet`: frame paths in order, pid, camid)
is read through the image pipeline's own pieces (`pipeline`: the up-front
Pillow check, the decode/resize rule, the P x K and shuffled epoch orders, the
stateless augmentation), so a frame is decoded exactly like an image of an
image dataset. Frames that fail the check are dropped from their tracklet and
counted; a tracklet with no readable frame is skipped and counted
(`TrackletReport`, also `dataset.report` and a warning).

Training (`tracklet_dataset`) samples `seq_len` frames per tracklet:
"random" draws one frame from each of `seq_len` equal temporal segments (the
restricted random sampling of Li et al., "Diversity Regularized
Spatiotemporal Attention", CVPR 2018, Sec. 3.1; TSN's segments), "evenly" takes
the centre of each segment. A tracklet shorter than `seq_len` (one frame, too)
repeats frames in temporal order. One tracklet gets one flip / crop / erasing
draw for all of its frames. Testing (`tracklet_frames`) yields every readable
frame of each tracklet in chunks of `seq_len` with the tracklet index, so a
predictor pools chunk or frame features per tracklet (see docs/design.md).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import tensorflow as tf

from keras_hpnet.data import pipeline, resize, sampler
from keras_hpnet.data.validate import PipelineReport, check_images, display_path
from keras_hpnet.datasets.base import frame_records, key_frame_records

AUTOTUNE = tf.data.AUTOTUNE
SAMPLING = ("random", "evenly")
_FRAME_STREAM = 0x5452  # epoch_rng stream of the per-tracklet frame draws


@dataclasses.dataclass
class TrackletReport:
    """What the tracklet pipeline reads: `good` tracklet indices (input order)
    with at least one readable frame, `frames` {tracklet index: positions (into
    the flat good-frame list of `frame_report`) of its readable frames, in
    order}, `skipped` [(tracklet index, reason)] tracklets with no readable
    frame, `frame_report` the image check of every frame (`PipelineReport` over
    `frame_records(tracklets)`), `dropped_frames` {tracklet index: number of its
    unreadable frames} of the kept tracklets."""

    num_tracklets: int
    good: list
    frames: dict
    skipped: list
    frame_report: PipelineReport
    dropped_frames: dict = dataclasses.field(default_factory=dict)

    @property
    def num_good(self) -> int:
        return len(self.good)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    @property
    def num_dropped_frames(self) -> int:
        return sum(self.dropped_frames.values())

    def summary(self, limit: int = 5) -> str:
        text = (f"{self.num_good} of {self.num_tracklets} tracklets readable, {self.num_skipped} skipped "
                f"(no readable frame), {self.num_dropped_frames} unreadable frame(s) dropped from kept tracklets; "
                f"frames: {self.frame_report.summary(limit)}")
        if self.skipped:
            text += "; skipped tracklets: " + "; ".join(f"#{i} ({reason})" for i, reason in self.skipped[:limit])
        return text


def check_tracklets(tracklets, *, num_workers=None, warn=True, frame_report=None) -> TrackletReport:
    """The image check of every frame (`validate.check_images`), grouped back
    per tracklet. `frame_report` reuses a check already made of
    `frame_records(tracklets)`."""
    tracklets = list(tracklets)
    for i, t in enumerate(tracklets):
        if not isinstance(getattr(t, "frames", None), (tuple, list)):
            raise TypeError(f"tracklets[{i}]: expected a Tracklet (frames, pid, camid), got {type(t).__name__}")
    if frame_report is None:
        frame_report = check_images(frame_records(tracklets), num_workers=num_workers, warn=warn)
    owner = np.repeat(np.arange(len(tracklets)), [len(t.frames) for t in tracklets])
    frames: dict = {}
    for good_pos, flat in enumerate(frame_report.good):
        frames.setdefault(int(owner[flat]), []).append(good_pos)
    good, skipped, dropped = [], [], {}
    for i, t in enumerate(tracklets):
        if i in frames:
            good.append(i)
            if len(frames[i]) < len(t.frames):
                dropped[i] = len(t.frames) - len(frames[i])
        else:
            skipped.append((i, f"none of its {len(t.frames)} frames is readable" if t.frames else "no frames"))
    report = TrackletReport(len(tracklets), good, {i: np.asarray(frames[i], np.int64) for i in good}, skipped,
                            frame_report, dropped)
    if warn and skipped:
        first = tracklets[skipped[0][0]]
        example = display_path(first.frames[0]) if first.frames else f"pid {first.pid}"
        warnings.warn(f"keras_hpnet.data: skipping {len(skipped)} tracklet(s) with no readable frame "
                      f"(e.g. {example}); {report.num_dropped_frames} unreadable frame(s) dropped from the others",
                      stacklevel=3)
    return report


def frame_positions(num_frames: int, seq_len: int, sampling: str, rng=None) -> np.ndarray:
    """`seq_len` positions in 0..num_frames-1, in temporal order: one per equal
    segment, its centre ("evenly") or a uniform draw from it ("random", needs
    `rng`). A segment shorter than one frame takes the frame it starts in, so a
    short tracklet repeats frames in order (a one-frame tracklet: all zeros)."""
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    if num_frames < 1 or seq_len < 1:
        raise ValueError(f"frame_positions needs num_frames >= 1 and seq_len >= 1, got {num_frames}, {seq_len}")
    edges = np.arange(seq_len + 1, dtype=np.int64) * num_frames // seq_len
    start = edges[:-1]
    length = np.maximum(edges[1:] - start, 1)
    if sampling == "evenly":
        return start + (length - 1) // 2
    return start + np.floor(rng.random(seq_len) * length).astype(np.int64)


def _seq_len(seq_len) -> int:
    seq_len = int(seq_len)
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    return seq_len


def _prepare(tracklets, height, width, cache, num_parallel_calls, num_check_workers, what):
    """(tracklets, TrackletReport, cached frame images or None); raises when nothing is readable."""
    tracklets = list(tracklets)
    if not tracklets:
        raise ValueError(f"{what}: no tracklets")
    report = check_tracklets(tracklets, num_workers=num_check_workers)
    images = None
    if cache and report.frame_report.good:
        images, frame_report = pipeline._cached_images(
            frame_records(tracklets), report.frame_report, height, width, num_parallel_calls)
        if frame_report is not report.frame_report:  # TF rejected some frames Pillow could not read either
            report = check_tracklets(tracklets, frame_report=frame_report)
    if not report.good:
        raise ValueError(f"{what}: none of the {len(tracklets)} tracklets has a readable frame ({report.summary()})")
    return tracklets, report, images


def _frame_columns(tracklets, report, positions):
    """Per-frame paths and Pillow flags of the flat good-frame `positions` (any shape)."""
    records = frame_records(tracklets)
    fr = report.frame_report
    pillow = set(fr.pillow_decoded)
    paths = pipeline._tf_paths([records[i].path for i in fr.good])
    flags = np.array([i in pillow for i in fr.good], bool)
    return paths[positions], flags[positions]


def _frames_loader(height, width, seq_len, images):
    """A map function (positions, paths, flags) -> float32 [seq_len, H, W, 3]: the image pipeline's decode."""

    def load(item):
        if images is not None:
            return tf.cast(tf.gather(images, item["frame_pos"]), tf.float32)
        return tf.stack([pipeline._decode_resize(item["path"][t], item["pillow"][t], height, width)
                         for t in range(seq_len)])

    return load


def _label_table(tracklets, good):
    """pid / camid / index (/ attributes) of the good tracklets, by the image pipeline's
    label rule (a tracklet named by its key frame in its errors)."""
    return pipeline._label_table(*pipeline._labels_of(key_frame_records(tracklets), good), good)


def tracklet_dataset(
    tracklets,
    *,
    input_size,
    seq_len,
    batch_size,
    training,
    sampling="random",
    seed=0,
    epoch=0,
    pk=None,
    flip=True,
    pad=10,
    erasing_probability=0.0,
    drop_remainder=None,
    cache=False,
    deterministic=True,
    num_parallel_calls=AUTOTUNE,
    prefetch=AUTOTUNE,
    num_shards=1,
    shard_index=0,
    num_check_workers=None,
):
    """A `tf.data.Dataset` of `(frames, labels)` for one epoch, one sample per tracklet.

    frames: uint8 `[N, seq_len, H, W, 3]` (`input_size=(H, W)`), `seq_len`
    frames per tracklet chosen by `sampling` ("random" or "evenly", see the
    module doc; a new random draw per (seed, epoch, position)). labels: `pid`,
    `camid` int32 `[N]`, `index` int64 `[N]` (position in `tracklets`),
    `attributes` float32 `[N, A]` when the tracklets have them. The order,
    P x K identity sampling over tracklets (`pk=K`), sharding, augmentation and
    `drop_remainder` are those of `pipeline.make_dataset`; `cache=True` keeps
    the decoded frames in memory. `.report` is a `TrackletReport`.
    """
    height, width = pipeline._input_size(input_size)
    seq_len = _seq_len(seq_len)
    batch_size = pipeline._batch_size(batch_size)
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    pipeline._check_erasing(erasing_probability)
    tracklets, report, images = _prepare(tracklets, height, width, cache, num_parallel_calls, num_check_workers,
                                         "tracklet_dataset")
    good = report.good
    label_table = _label_table(tracklets, good)
    if drop_remainder is None:
        drop_remainder = bool(training)
    order = pipeline.epoch_order(
        [tracklets[i].pid for i in good], batch_size=batch_size, training=training, seed=seed, epoch=epoch, pk=pk,
        drop_remainder=drop_remainder, num_shards=num_shards, shard_index=shard_index)  # positions into `good`
    element = pipeline.element_ids(len(order), batch_size, num_shards, shard_index)
    frame_pos = np.zeros((len(order), seq_len), np.int64)
    for row, (pos, e) in enumerate(zip(order, element)):
        own = report.frames[good[pos]]
        rng = sampler.epoch_rng(seed, epoch, stream=_FRAME_STREAM + int(e)) if sampling == "random" else None
        frame_pos[row] = own[frame_positions(len(own), seq_len, sampling, rng)]

    columns = {"good_pos": order.astype(np.int64), "element": element, "frame_pos": frame_pos}
    if images is None:
        columns["path"], columns["pillow"] = _frame_columns(tracklets, report, frame_pos)
    load_frames = _frames_loader(height, width, seq_len, images)
    augmenter = pipeline.training_augmenter(training=training, flip=flip, pad=pad,
                                            erasing_probability=erasing_probability, seed=seed, epoch=epoch)

    def load(item):
        frames = load_frames(item)
        if augmenter is not None:  # the same draw (the tracklet's element seed) for every frame
            frames = tf.stack([augmenter(frames[t], item["element"]) for t in range(seq_len)])
        frames = resize.to_uint8(frames)
        frames.set_shape([seq_len, height, width, 3])
        return frames, {k: tf.gather(v, item["good_pos"]) for k, v in label_table.items()}

    ds = tf.data.Dataset.from_tensor_slices(columns)
    ds = ds.map(load, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    return pipeline.batched(ds, batch_size, drop_remainder=drop_remainder, prefetch=prefetch,
                            deterministic=deterministic, report=report)


def chunk_table(report: TrackletReport, seq_len: int) -> dict:
    """The test chunks of `report`'s good tracklets, numpy: `tracklet` (index
    into the tracklets) and `chunk` (0, 1, ... within it) [C], `frame_pos`
    [C, seq_len] (flat good-frame positions), `num_valid` [C] (frames of the
    chunk that are new: chunk c holds frames c*seq_len .. c*seq_len+num_valid-1
    of the tracklet's readable frames; the rest of the last chunk cycles from
    the tracklet's first frame so every chunk is full)."""
    seq_len = _seq_len(seq_len)
    tracklet, chunk, frame_pos, num_valid = [], [], [], []
    for i in report.good:
        own = report.frames[i]
        n = len(own)
        for c in range(-(-n // seq_len)):
            start = c * seq_len
            tracklet.append(i)
            chunk.append(c)
            frame_pos.append(own[(start + np.arange(seq_len)) % n])
            num_valid.append(min(seq_len, n - start))
    return {"tracklet": np.asarray(tracklet, np.int64), "chunk": np.asarray(chunk, np.int32),
            "frame_pos": np.asarray(frame_pos, np.int64).reshape(-1, seq_len),
            "num_valid": np.asarray(num_valid, np.int32)}


def tracklet_frames(
    tracklets,
    *,
    input_size,
    seq_len,
    batch_size,
    cache=False,
    deterministic=True,
    num_parallel_calls=AUTOTUNE,
    prefetch=AUTOTUNE,
    num_check_workers=None,
):
    """A `tf.data.Dataset` of every readable frame of every tracklet, in chunks,
    for testing: `(frames, labels)` with frames uint8 `[N, seq_len, H, W, 3]`
    (N chunks, the last batch may be partial) and labels `index` int64 `[N]`
    (the chunk's tracklet, position in `tracklets`), `chunk` int32 `[N]`,
    `num_valid` int32 `[N]` (see `chunk_table`), `pid`, `camid` int32 `[N]`
    (and `attributes`). Tracklets in input order, chunks in temporal order, no
    augmentation. Pool per tracklet over `index` (e.g. chunk embeddings
    weighted by `num_valid`, or the first `num_valid` frame features of every
    chunk). `.report` is a `TrackletReport`, `.chunks` the `chunk_table`.
    """
    height, width = pipeline._input_size(input_size)
    seq_len = _seq_len(seq_len)
    batch_size = pipeline._batch_size(batch_size)
    tracklets, report, images = _prepare(tracklets, height, width, cache, num_parallel_calls, num_check_workers,
                                         "tracklet_frames")
    table = chunk_table(report, seq_len)
    good_pos = np.searchsorted(np.asarray(report.good, np.int64), table["tracklet"])
    label_table = _label_table(tracklets, report.good)
    columns = {"good_pos": good_pos.astype(np.int64), "frame_pos": table["frame_pos"], "chunk": table["chunk"],
               "num_valid": table["num_valid"]}
    if images is None:
        columns["path"], columns["pillow"] = _frame_columns(tracklets, report, table["frame_pos"])
    load_frames = _frames_loader(height, width, seq_len, images)

    def load(item):
        frames = resize.to_uint8(load_frames(item))
        frames.set_shape([seq_len, height, width, 3])
        labels = {k: tf.gather(v, item["good_pos"]) for k, v in label_table.items()}
        labels.update(chunk=item["chunk"], num_valid=item["num_valid"])
        return frames, labels

    ds = tf.data.Dataset.from_tensor_slices(columns)
    ds = ds.map(load, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    ds = pipeline.batched(ds, batch_size, drop_remainder=False, prefetch=prefetch, deterministic=deterministic,
                          report=report)
    ds.chunks = table
    return ds

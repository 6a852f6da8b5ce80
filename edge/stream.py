"""Assign identities to a stream of person crops or tracklets, registering new people.

Each crop is matched against the gallery; the nearest identity is taken when
its distance is below `threshold`, otherwise the crop starts a new identity
(`new-0001`, ...) that later crops can match. Sources: a watched folder of
crops (polled) or the frames of a video file (needs OpenCV, optional).

Tracklets (a run of crops of one track id from a tracker, `group_tracklets`)
are matched by one embedding: the per-frame embeddings of the exported
frame model pooled by `keras_hpnet.temporal` (numpy), the rule the video
model trained with: its attention when the model metadata carries it
(`extra["temporal_pooling"]`, written by the export of a video run), else
the average (docs/edge.md "Tracklets").
"""

from __future__ import annotations

import dataclasses
import os
import re
import time

import numpy as np

from edge import preprocess
from edge.gallery import Gallery
from keras_hpnet import temporal

_FRAME_NUMBER = re.compile(r"^(.*?)[_\-]?F?\d+$")


@dataclasses.dataclass
class Assignment:
    source: str
    identity: str
    distance: float  # to the nearest gallery entry (inf for an empty gallery)
    is_new: bool
    attributes: dict | None = None


def match_threshold(threshold, metadata=None) -> float:
    """`threshold` when given, else the calibrated `metadata.match_threshold` (docs/retrieval.md).

    ValueError when neither is there: an uncalibrated model has no default.
    """
    if threshold is None:
        threshold = getattr(metadata, "match_threshold", None)
        if threshold is None:
            raise ValueError("the model was never calibrated (its metadata has no match_threshold): run "
                             "python -m training.calibrate --run_dir RUN and re-export, or pass --threshold")
    threshold = float(threshold)
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    return threshold


def tracklet_pooling(metadata=None) -> tuple:
    """(mode, params) of the temporal pooling in the model `metadata` (`extra["temporal_pooling"]`,
    a `VideoModel.temporal_pooling_params()` dict), or ("avg", None) when it has none."""
    rule = (getattr(metadata, "extra", None) or {}).get("temporal_pooling")
    if not rule:
        return "avg", None
    if not isinstance(rule, dict):
        raise ValueError(f"model metadata extra.temporal_pooling: expected an object, got {type(rule).__name__}")
    mode = temporal.check_mode(rule.get("mode"))
    return mode, (temporal.attention_params(rule) if mode == "attention" else None)


class IdentityAssigner:
    """Match embeddings (or tracklets of them) to a gallery; register the ones farther than `threshold`.

    `threshold=None` takes the calibrated one from the model `metadata`; the
    tracklet pooling rule comes from it too (`tracklet_pooling`).
    """

    def __init__(self, gallery: Gallery, threshold: float | None = None, prefix: str = "new-",
                 update_gallery: bool = True, metadata=None):
        distance = getattr(metadata, "match_distance", None)
        if threshold is None and distance and distance != gallery.distance:
            raise ValueError(f"the calibrated threshold is for {distance} distance, "
                             f"the gallery uses {gallery.distance}")
        threshold = match_threshold(threshold, metadata)
        self.gallery = gallery
        self.threshold = float(threshold)
        self.prefix = prefix
        self.update_gallery = update_gallery
        self._next = 1 + sum(1 for i in set(gallery.identities) if i.startswith(prefix))
        self.pooling = tracklet_pooling(metadata)

    def _new_identity(self) -> str:
        taken = set(self.gallery.identities)
        while True:
            name = f"{self.prefix}{self._next:04d}"
            self._next += 1
            if name not in taken:
                return name

    def assign(self, embedding, source: str = "", attributes=None) -> Assignment:
        matches = self.gallery.search(embedding, top_k=1)
        attr = None
        if attributes is not None and self.gallery.attribute_names:
            attr = {n: float(v) for n, v in zip(self.gallery.attribute_names, np.asarray(attributes).ravel())}
        if matches and matches[0].distance <= self.threshold:
            m = matches[0]
            return Assignment(source, m.identity, m.distance, False, attr)
        ident = self._new_identity()
        dist = matches[0].distance if matches else float("inf")
        if self.update_gallery:
            self.gallery.add(embedding, ident, path=source, attributes=attributes)
        return Assignment(source, ident, dist, True, attr)


    def assign_tracklet(self, embeddings, source: str = "", attributes=None) -> Assignment:
        """Assign one tracklet from its per-frame `embeddings` `[T, D]` (and `attributes`
        `[T, A]`): pooled by the model's rule (module doc), then matched like one crop."""
        emb = np.asarray(embeddings, np.float32)
        if emb.ndim != 2 or not len(emb):
            raise ValueError(f"tracklet {source}: expected per-frame embeddings [T, D] with T >= 1, "
                             f"got shape {emb.shape}")
        mode, params = self.pooling
        weights = temporal.frame_weights(emb, mode=mode, params=params)
        attr = None if attributes is None else temporal.pool_frames(attributes, weights=weights)
        return self.assign(temporal.pool_frames(emb, weights=weights), source, attr)


def track_id(path: str) -> str:
    """The track a crop belongs to: its file name without the trailing frame number
    (`cam1_track7_0003.jpg` -> "cam1_track7", MARS `0001C1T0001F001.jpg` -> "0001C1T0001");
    a name that is only a number is its own track."""
    stem = os.path.splitext(os.path.basename(path))[0]
    m = _FRAME_NUMBER.match(stem)
    return m.group(1) if m and m.group(1) else stem


def group_tracklets(items, *, track_of=track_id, max_len: int | None = None):
    """Group a stream of (source, image) into tracklets: runs of consecutive crops of
    one track (`track_of(source)`), cut when another track's crop arrives, after
    `max_len` crops, or at the end. Yields (track, [sources], [images])."""
    current, sources, images = None, [], []
    for source, image in items:
        track = track_of(source)
        if sources and (track != current or (max_len and len(sources) >= max_len)):
            yield current, sources, images
            sources, images = [], []
        current = track
        sources.append(source)
        images.append(image)
    if sources:
        yield current, sources, images


def process_tracklets(model, assigner: IdentityAssigner, tracklets):
    """Embed every crop of each (track, sources, images) from `group_tracklets` with the
    per-frame model and assign the pooled tracklet; yields Assignments (source = the track)."""
    h, w = model.input_size
    for track, _, images in tracklets:
        out = model.run(np.stack([preprocess.prepare(image, h, w) for image in images]))
        yield assigner.assign_tracklet(out["embedding"], track, out.get("attributes"))


def process_images(model, assigner: IdentityAssigner, items):
    """Embed and assign each (source name, RGB array) from `items`; yields Assignments."""
    for source, image in items:
        out = model.predict(image)
        yield assigner.assign(out["embedding"], source, out.get("attributes"))


def watch_folder(folder: str, poll_seconds: float = 0.5, idle_timeout: float | None = None,
                 stop=None, skipped: list | None = None):
    """Yield (path, image) for crops appearing in `folder` (existing ones first, by name).

    Stops after `idle_timeout` seconds with no new file (None: never) or when
    `stop()` returns True. Unreadable files are appended to `skipped`.
    """
    if not os.path.isdir(folder):
        raise ValueError(f"watch folder {folder}: not a directory")
    seen: set[str] = set()
    last_new = time.monotonic()
    while True:
        fresh = [p for p in preprocess.list_images(folder, recursive=False) if p not in seen]
        for p in fresh:
            seen.add(p)
            try:
                yield p, preprocess.load_image(p)
            except preprocess.ImageError as e:
                # A file still being written shows up as undecodable; it is
                # skipped, not retried (writers should rename into place).
                if skipped is not None:
                    skipped.append((p, str(e)))
        if fresh:
            last_new = time.monotonic()
        if stop is not None and stop():
            return
        if idle_timeout is not None and time.monotonic() - last_new >= idle_timeout:
            return
        time.sleep(poll_seconds)


def video_frames(path: str, every: int = 1, max_frames: int | None = None):
    """Yield ("path#frame", RGB frame) from a video file; needs OpenCV (cv2)."""
    try:
        import cv2
    except ImportError:
        raise ImportError("reading video needs OpenCV: pip install opencv-python-headless "
                          "(or pass a folder of crops with --watch)") from None
    if not os.path.isfile(path):
        raise ValueError(f"video {path}: no such file")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise ValueError(f"video {path}: OpenCV cannot open it")
    try:
        i = n = 0
        while max_frames is None or n < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            if i % max(1, every) == 0:
                yield f"{path}#{i}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                n += 1
            i += 1
    finally:
        cap.release()

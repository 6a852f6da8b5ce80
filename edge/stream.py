"""Assign identities to a stream of person crops, registering new people.

Each crop is matched against the gallery; the nearest identity is taken when
its distance is below `threshold`, otherwise the crop starts a new identity
(`new-0001`, ...) that later crops can match. Sources: a watched folder of
crops (polled) or the frames of a video file (needs OpenCV, optional).
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from edge import preprocess
from edge.gallery import Gallery


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


class IdentityAssigner:
    """Match embeddings to a gallery; register the ones farther than `threshold`.

    `threshold=None` takes the calibrated one from the model `metadata`.
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

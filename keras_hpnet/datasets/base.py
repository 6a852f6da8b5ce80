"""Records, the dataset object and helpers shared by the readers.

Numpy/scipy only (no TensorFlow): `keras_hpnet.datasets` is importable where
TensorFlow is not.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

import numpy as np

from keras_hpnet.datasets.report import DataReport, DatasetWarning, SkipCounter, write_report  # noqa: F401
from keras_hpnet.preprocessing import IMAGE_EXTENSIONS

REID_SPLITS = ("train", "query", "gallery")
ATTRIBUTE_SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset on disk is missing, unreadable or inconsistent (names the file)."""


UNKNOWN_ATTRIBUTE = 255
"""An attribute entry nobody labelled (outside its file's coding, e.g. a 0 in a
1/2-coded field, RAP's 2 "uncertain", or an attribute another dataset of a
multi-dataset run lacks): masked out of the attribute loss and of every
attribute metric, counted in `dataset.report`."""


class Record(NamedTuple):
    """One image: `path`, `pid` (-1 if none), `camid` (0-based, -1 if unknown),
    `attributes` (uint8 vector of length len(attribute_names): 0/1, or
    `UNKNOWN_ATTRIBUTE` for an entry nobody labelled; None when the image has no
    attribute labels at all)."""

    path: str
    pid: int
    camid: int
    attributes: np.ndarray | None = None


class Tracklet(NamedTuple):
    """One tracklet (a run of crops of one person from one camera, video re-id):
    `frames` (tuple of frame paths in temporal order), `pid` (-1 if none),
    `camid` (0-based, -1 if unknown), `attributes` (as in `Record`, or None)."""

    frames: tuple
    pid: int
    camid: int
    attributes: np.ndarray | None = None


KINDS = ("reid", "attribute", "video")


def frame_records(tracklets) -> list:
    """The frames of `tracklets` as `Record`s (pid/camid of their tracklet), in
    tracklet then frame order: what the image check reads for a video split."""
    return [Record(path, t.pid, t.camid) for t in tracklets for path in t.frames]


def key_frame_records(tracklets) -> list:
    """One `Record` per tracklet, its middle frame: what a picture shows of a tracklet."""
    return [Record(t.frames[len(t.frames) // 2] if t.frames else "", t.pid, t.camid, t.attributes)
            for t in tracklets]


class PedestrianDataset:
    """A loaded dataset: `name`, `kind` ("reid", "attribute" or "video"),
    `attribute_names`, `num_train_pids`, `num_cameras`, `root` and `splits`
    (re-id: train/query/gallery of `Record`; video: train/query/gallery of
    `Tracklet`; attribute: train/val/test), each split also an attribute
    (`ds.train`, `ds.query`, ...), `info` (reader notes, e.g. the protocol)
    and `report` (a `DataReport`: what the readers and the image check skipped)."""

    def __init__(self, name, splits, *, kind, attribute_names=(), num_cameras=0, root=None, info=None,
                 report=None):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
        self.name = name
        self.kind = kind
        self.splits = {k: list(v) for k, v in splits.items()}
        self.attribute_names = list(attribute_names)
        self.num_cameras = int(num_cameras)
        self.root = root
        self.info = dict(info or {})
        self.report = report if report is not None else DataReport()
        train = self.splits.get("train", [])
        self.num_train_pids = len({r.pid for r in train if r.pid >= 0})

    def __getattr__(self, item):
        splits = self.__dict__.get("splits", {})
        if item in splits:
            return splits[item]
        raise AttributeError(f"{type(self).__name__} {self.__dict__.get('name')!r} has no attribute or split {item!r}")

    def write_report(self, path: str) -> dict:
        """Write `report` (after the image check of every split) as JSON; see `report.write_report`."""
        return write_report(self, path)

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_names)

    def summary(self) -> str:
        """A torchreid-style table: images (video: tracklets and frames),
        identities and cameras per split."""
        video = self.kind == "video"
        rule = "  " + "-" * (53 if video else 40)
        header = "  subset   | # ids | # tracklets | # frames | # cameras" if video else \
            "  subset   | # ids | # images | # cameras"
        lines = [f"=> {self.name} ({self.kind}) loaded from {self.root}", rule, header, rule]
        for split, recs in self.splits.items():
            pids = len({r.pid for r in recs if r.pid >= 0})
            cams = len({r.camid for r in recs if r.camid >= 0})
            if video:
                frames = sum(len(t.frames) for t in recs)
                lines.append(f"  {split:<8} | {pids:5d} | {len(recs):11d} | {frames:8d} | {cams:9d}")
            else:
                lines.append(f"  {split:<8} | {pids:5d} | {len(recs):8d} | {cams:9d}")
        lines.append(rule)
        if "protocol" in self.info:
            lines.append(f"  protocol: {self.info.get('protocol_note') or self.info['protocol']}")
        lines.append(f"  attributes: {self.num_attributes}")
        return "\n".join(lines)

    def __str__(self):
        return self.summary()

    def __repr__(self):
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return (f"PedestrianDataset(name={self.name!r}, kind={self.kind!r}, {sizes}, "
                f"num_train_pids={self.num_train_pids}, num_attributes={self.num_attributes})")


def require_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise DatasetError(f"{what}: folder not found: {path}")
    return path


def loadmat(path: str) -> dict:
    """scipy.io.loadmat(squeeze_me=True, struct_as_record=False) with a clear error."""
    import scipy.io  # local: keeps `import keras_hpnet.datasets` light

    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file not found")
    try:
        return scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as e:  # scipy raises many types for a bad file
        raise DatasetError(f"{path}: unreadable .mat file ({type(e).__name__}: {e})") from e


def mat_cells(value) -> list:
    """The entries of a MATLAB cell (or struct) array loaded with squeeze_me=True,
    each unwrapped from nested 0-d/1-element object arrays; empty entries -> None."""
    out = []
    for v in np.atleast_1d(np.asarray(value, dtype=object)).ravel():
        while isinstance(v, np.ndarray):
            v = v.ravel()[0] if v.size else None
        out.append(v)
    return out


def mat_strings(value) -> list:
    """Unwrap a MATLAB cell array of strings loaded with squeeze_me=True.

    Entries may be str, nested 0-d/1-element object arrays, or empty arrays
    (trimmed files): empty entries become "".
    """
    if isinstance(value, str):
        return [value.strip()]
    return ["" if v is None else str(v).strip() for v in mat_cells(value)]


def relabel(records: list) -> list:
    """Map train pids to 0..N-1 in sorted order of the original ids."""
    pids = sorted({r.pid for r in records})
    mapping = {p: i for i, p in enumerate(pids)}
    return [r._replace(pid=mapping[r.pid]) for r in records]


MARKET_NAME = re.compile(r"^([-\d]+)_c(\d+)")


def list_images(folder: str, skips: SkipCounter | None = None) -> list:
    """Sorted image file names in `folder`; other entries are counted in `skips`."""
    names = []
    for f in sorted(os.listdir(folder)):
        if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(folder, f)):
            names.append(f)
        elif skips is not None:
            kind = "sub-folder" if os.path.isdir(os.path.join(folder, f)) else "file"
            skips.add(f"{kind} without an image extension ({', '.join(IMAGE_EXTENSIONS)})", os.path.join(folder, f))
    return names

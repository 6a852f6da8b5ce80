"""A user's own data, without renaming files.

Two forms, chosen automatically:
- Market-1501 layout: `root/{bounding_box_train,query,bounding_box_test}` with
  `PPPP_cC...` file names (any number of cameras) and an optional identity-level
  attribute .mat in the Market format (`attribute_file=`, struct name
  `attribute_struct=`, default "market_attribute").
- CSV manifests: one file per split in `root`, `train.csv`, `query.csv`,
  `gallery.csv` (re-id) or `train.csv`, `val.csv`, `test.csv` (attribute-only),
  each with a header `path,pid,camid[,attr1,attr2,...]`; `path` relative to the
  CSV's folder and inside it (or absolute), `pid` an integer identity (-1
  none; train ids are relabelled 0..N-1 when the dataset is re-id), `camid`
  0-based (-1 unknown), both at most 2**31-1, attribute columns 0/1. All CSVs
  must have the same attribute columns; a repeated row is skipped and counted.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from keras_hpnet.datasets.base import (
    ATTRIBUTE_SPLITS, REID_SPLITS, DataReport, DatasetError, PedestrianDataset, Record, SkipCounter, relabel,
    require_dir)
from keras_hpnet.datasets.market1501 import load_market_layout


INT32_MAX = 2**31 - 1


def _label(path, lineno, field, text):
    """An identity or camera number: an integer in -1..2**31-1 (what the pipeline stores as int32)."""
    try:
        value = int(text)
    except ValueError:
        raise DatasetError(f"{path}:{lineno}: {field} must be an integer, got {text!r}") from None
    if not -1 <= value <= INT32_MAX:
        raise DatasetError(f"{path}:{lineno}: {field} {value} outside -1..{INT32_MAX}")
    return value


def _image_path(path, lineno, base, text):
    """The row's image: absolute as written, or relative to the CSV's folder and inside it."""
    if not text:
        raise DatasetError(f"{path}:{lineno}: empty path")
    if os.path.isabs(text):
        full = os.path.normpath(text)
    else:
        full = os.path.normpath(os.path.join(base, text))
        if os.path.commonpath([base, full]) != base:
            raise DatasetError(f"{path}:{lineno}: path {text!r} leaves the dataset folder {base} "
                               "(relative paths must stay inside it; write an absolute path to read elsewhere)")
    if not os.path.isfile(full):
        raise DatasetError(f"{path}:{lineno}: image not found: {full}")
    return full


def read_manifest(path: str, skips: SkipCounter | None = None):
    """(attribute_names, records) of one CSV manifest; errors name file, line and field.

    A row repeating an earlier row (same image and labels) is skipped and
    counted in `skips`; the same image with other labels is an error.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: unreadable manifest ({e})") from e
    if not rows:
        raise DatasetError(f"{path}: empty manifest (no header)")
    header = [h.strip() for h in rows[0]]
    if header[:3] != ["path", "pid", "camid"]:
        raise DatasetError(f"{path}: header must start with path,pid,camid; got {','.join(header[:3])}")
    names = header[3:]
    if len(set(names)) != len(names) or any(not n for n in names):
        raise DatasetError(f"{path}: attribute column names must be unique and non-empty: {names}")
    base = os.path.dirname(os.path.abspath(path))
    records, seen = [], {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DatasetError(f"{path}:{lineno}: {len(row)} columns, header has {len(header)}")
        pid = _label(path, lineno, "pid", row[1].strip())
        camid = _label(path, lineno, "camid", row[2].strip())
        attrs = None
        if names:
            try:
                vals = [int(v) for v in row[3:]]
            except ValueError:
                raise DatasetError(f"{path}:{lineno}: attribute values must be 0 or 1, got {row[3:]}") from None
            if any(v not in (0, 1) for v in vals):
                raise DatasetError(f"{path}:{lineno}: attribute values must be 0 or 1, got {vals}")
            attrs = np.asarray(vals, np.uint8)
        full = _image_path(path, lineno, base, row[0].strip())
        labels = (pid, camid, None if attrs is None else tuple(vals))
        if full in seen:
            first, first_labels = seen[full]
            if first_labels != labels:
                raise DatasetError(f"{path}:{lineno}: image {full} is also line {first} with other labels")
            if skips is not None:
                skips.add("duplicated manifest row (kept the first)", f"{path}:{lineno} (= line {first})")
            continue
        seen[full] = (lineno, labels)
        records.append(Record(full, pid, camid, attrs))
    if not records:
        raise DatasetError(f"{path}: empty split (no rows after the header)")
    return names, records


def load_custom(root, *, attribute_file=None, attribute_struct="market_attribute", age="drop", name="custom"):
    """Load a user's dataset from `root` (Market layout or per-split CSV manifests)."""
    require_dir(root, "custom dataset root")
    if os.path.isdir(os.path.join(root, "bounding_box_train")):
        return load_market_layout(root, name=name, num_cameras=None, attribute_file=attribute_file,
                                  attribute_struct=attribute_struct, age=age)
    for kind, split_names in (("reid", REID_SPLITS), ("attribute", ATTRIBUTE_SPLITS)):
        paths = {s: os.path.join(root, f"{s}.csv") for s in split_names}
        if all(os.path.isfile(p) for p in paths.values()):
            break
    else:
        raise DatasetError(
            f"{root}: no custom dataset found: expected bounding_box_train/ (Market layout) or "
            f"train.csv+query.csv+gallery.csv or train.csv+val.csv+test.csv")
    names, splits = None, {}
    skips = SkipCounter(f"{name} at {root}")
    for s, p in paths.items():
        n, recs = read_manifest(p, skips)
        if names is not None and n != names:
            raise DatasetError(f"{p}: attribute columns {n} differ from train.csv's {names}")
        names, splits[s] = n, recs
    if kind == "reid":
        if any(r.pid < 0 for r in splits["train"]):
            raise DatasetError(f"{paths['train']}: re-id train rows need pid >= 0")
        splits["train"] = relabel(splits["train"])
    skips.warn()
    cams = max((r.camid for recs in splits.values() for r in recs), default=-1) + 1
    return PedestrianDataset(name, splits, kind=kind, attribute_names=names, num_cameras=cams, root=root,
                             info={"manifests": paths, "skipped": dict(skips.counts)}, report=DataReport([skips]))

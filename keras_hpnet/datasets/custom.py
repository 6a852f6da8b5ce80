"""A user's own data, without renaming files.

Two forms, chosen automatically:
- Market-1501 layout: `root/{bounding_box_train,query,bounding_box_test}` with
  `PPPP_cC...` file names (any number of cameras) and an optional identity-level
  attribute .mat in the Market format (`attribute_file=`, struct name
  `attribute_struct=`, default "market_attribute").
- CSV manifests: one file per split in `root`, `train.csv`, `query.csv`,
  `gallery.csv` (re-id) or `train.csv`, `val.csv`, `test.csv` (attribute-only),
  each with a header `path,pid,camid[,attr1,attr2,...]`; `path` relative to the
  CSV's folder (or absolute), `pid` an integer identity (-1 none; train ids are
  relabelled 0..N-1 when the dataset is re-id), `camid` 0-based (-1 unknown),
  attribute columns 0/1. All CSVs must have the same attribute columns.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from keras_hpnet.datasets.base import (
    ATTRIBUTE_SPLITS, REID_SPLITS, DatasetError, PedestrianDataset, Record, relabel, require_dir)
from keras_hpnet.datasets.market1501 import load_market_layout


def read_manifest(path: str):
    """(attribute_names, records) of one CSV manifest; errors name file and line."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
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
    records = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise DatasetError(f"{path}:{lineno}: {len(row)} columns, header has {len(header)}")
        p = row[0].strip()
        try:
            pid, camid = int(row[1]), int(row[2])
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: pid and camid must be integers, got {row[1]!r}, {row[2]!r}")
        attrs = None
        if names:
            try:
                vals = [int(v) for v in row[3:]]
            except ValueError:
                raise DatasetError(f"{path}:{lineno}: attribute values must be 0 or 1, got {row[3:]}")
            if any(v not in (0, 1) for v in vals):
                raise DatasetError(f"{path}:{lineno}: attribute values must be 0 or 1, got {vals}")
            attrs = np.asarray(vals, np.uint8)
        full = p if os.path.isabs(p) else os.path.join(base, p)
        if not os.path.isfile(full):
            raise DatasetError(f"{path}:{lineno}: image not found: {full}")
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
    for s, p in paths.items():
        n, recs = read_manifest(p)
        if names is not None and n != names:
            raise DatasetError(f"{p}: attribute columns {n} differ from train.csv's {names}")
        names, splits[s] = n, recs
    if kind == "reid":
        if any(r.pid < 0 for r in splits["train"]):
            raise DatasetError(f"{paths['train']}: re-id train rows need pid >= 0")
        splits["train"] = relabel(splits["train"])
    cams = max((r.camid for recs in splits.values() for r in recs), default=-1) + 1
    return PedestrianDataset(name, splits, kind=kind, attribute_names=names, num_cameras=cams, root=root,
                             info={"manifests": paths})

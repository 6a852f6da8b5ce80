"""MSMT17 (Wei et al., PTGAN, CVPR 2018), V1 and V2, read from the official
list files unchanged (docs/datasets.md).

Layout: `root/MSMT17_V1/` or `root/MSMT17_V2/` (or `root` itself) with the
image folders `train/`, `test/` (V2 may name them `mask_train_v2/`,
`mask_test_v2/`) and the lists `list_train.txt`, `list_val.txt` (images of
the training folder), `list_query.txt`, `list_gallery.txt` (test folder); each
line `relative/path.jpg pid`. The camera (1..15) is the third `_` field of the
file name (`0000_000_01_0303morning_0015_0.jpg` -> camera 01), or a `_cCC_`
field where the name has one; camids are 0-based. `merge_val=True` (default,
the common protocol: 1,041 ids / 32,621 images) trains on train+val; training
pids are relabelled 0..N-1, query/gallery keep the listed pids.
A missing list file or a line that does not parse is an error naming it; a
listed image that is not on disk is a counted skip (`dataset.report`).
"""

from __future__ import annotations

import os
import re

from keras_hpnet.datasets.base import (
    DataReport, DatasetError, PedestrianDataset, Record, SkipCounter, relabel, require_dir)

NUM_CAMERAS = 15
VERSIONS = ("MSMT17_V1", "MSMT17_V2", "MSMT17", "msmt17")  # release names; torchreid keeps it in msmt17/
IMAGE_FOLDERS = {"train": ("train", "mask_train_v2"), "test": ("test", "mask_test_v2")}
LISTS = {"train": ("list_train.txt", "train"), "val": ("list_val.txt", "train"),
         "query": ("list_query.txt", "test"), "gallery": ("list_gallery.txt", "test")}
CAMERA_FIELD = re.compile(r"_c(\d+)(?:s\d+)?_")


def find_msmt_root(root: str) -> str:
    """`root` itself or its MSMT17_V1/_V2 sub-folder: the one holding list_train.txt."""
    require_dir(root, "MSMT17 root")
    candidates = [root, *[os.path.join(root, v) for v in VERSIONS]]
    for cand in candidates:
        if os.path.isfile(os.path.join(cand, "list_train.txt")):
            return cand
    tried = ", ".join(os.path.join(c, "list_train.txt") for c in candidates)
    raise DatasetError(f"no MSMT17 layout under {root}: list_train.txt not found (tried {tried})")


def image_folder(base: str, part: str) -> str:
    """The `train`/`test` image folder of `base` (V1 or V2 name)."""
    for name in IMAGE_FOLDERS[part]:
        if os.path.isdir(os.path.join(base, name)):
            return os.path.join(base, name)
    raise DatasetError(f"{base}: no {part} image folder (tried {', '.join(IMAGE_FOLDERS[part])})")


def camera_of(fname: str) -> int:
    """1-based camera from an MSMT17 file name; ValueError if it has none."""
    m = CAMERA_FIELD.search(fname)
    if m:
        return int(m.group(1))
    fields = os.path.splitext(fname)[0].split("_")
    if len(fields) < 3 or not fields[2].isdigit():
        raise ValueError("no camera field")
    return int(fields[2])


def read_list(path: str, folder: str, skips: SkipCounter) -> list:
    """Records of one MSMT17 list file; images not on disk are counted in `skips`."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: list file not found")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            where = f"{path}:{lineno}"
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DatasetError(f"{where}: expected '<relative path> <pid>', got {line.strip()!r}")
            rel, pid = parts[0], int(parts[1])
            if pid < 0:
                raise DatasetError(f"{where}: invalid identity {pid}")
            try:
                cam = camera_of(os.path.basename(rel))
            except ValueError:
                raise DatasetError(f"{where}: no camera field in file name {rel!r}") from None
            if not 1 <= cam <= NUM_CAMERAS:
                raise DatasetError(f"{where}: camera {cam} outside 1..{NUM_CAMERAS}")
            full = os.path.join(folder, rel)
            if not os.path.isfile(full):
                skips.add("image listed but not on disk", full)
                continue
            records.append(Record(full, pid, cam - 1, None))
    return records


def load_msmt17(root, *, merge_val=True):
    """Load MSMT17 (V1 or V2) from `root`; `merge_val` adds list_val.txt to train."""
    base = find_msmt_root(root)
    folders = {part: image_folder(base, part) for part in IMAGE_FOLDERS}
    skips = SkipCounter(f"msmt17 at {base}")
    lists = {split: read_list(os.path.join(base, fname), folders[part], skips)
             for split, (fname, part) in LISTS.items()}
    skips.warn()
    train = lists["train"] + (lists["val"] if merge_val else [])
    splits = {"train": relabel(train), "query": lists["query"], "gallery": lists["gallery"]}
    for split, recs in splits.items():
        if not recs:
            raise DatasetError(f"{base}: empty {split} split (no listed image found on disk)")
    return PedestrianDataset("msmt17", splits, kind="reid", num_cameras=NUM_CAMERAS, root=base,
                             info={"version": os.path.basename(base), "merge_val": bool(merge_val),
                                   "num_val": len(lists["val"]), "skipped": dict(skips.counts)},
                             report=DataReport([skips]))

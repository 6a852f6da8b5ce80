"""CUHK03 (Li et al., DeepReID, CVPR 2014) with the new protocol of Zhong et
al. (CVPR 2017, "Re-ranking Person Re-identification with k-reciprocal
Encoding"; CUHK03-NP), read from the official files unchanged (docs/datasets.md).

Files (`root` itself or `root/cuhk03/`, torchreid's layout):
`cuhk03_new_protocol_config_labeled.mat` / `..._detected.mat` (MATLAB v5, read
with scipy) with `filelist` (cell of image names), `labels` (identity of each
entry, 1..1467 over the 5 camera pairs), `camId` (1/2: the view within the
pair) and `train_idx`, `query_idx`, `gallery_idx` (1-based rows of `filelist`):
767 train / 700 test ids; labeled 7,368 / 1,400 / 5,328 images, detected
7,365 / 1,400 / 5,332 (the CUHK03-NP readme). Images come from
`images_labeled/` / `images_detected/` when present (torchreid's extraction),
else from `cuhk03_release/cuhk-03.mat`, extracted once into a cache
(:func:`extract_images`). Field names, the file name scheme and the .mat
layout were checked against torchreid's `cuhk03.py` (it reads the same two
files) and Zhong's `CUHK03_evaluation.m` (`labels(train_idx)`,
`camId(query_idx)`, ...).

Image names `P_III_V_KK.png`: camera pair P (1..5), identity III within the
pair (1-based), view V (1: columns 1-5 of the pair's cell, 2: columns 6-10),
image KK (1..10, the cell column, so names stay unique when cells are empty).
Cameras: `camid = 2 * (P - 1) + (V - 1)`, 10 cameras. An identity appears in
one pair only, so "same identity and same camid" is exactly Zhong's junk rule
"same label and same camId": the usual cross-camera CMC/mAP is the protocol's.
`camId` must agree with the view of the name (an error naming the entry).

Training pids are relabelled 0..N-1; query/gallery keep `labels`. A listed
image missing on disk is a counted skip (`dataset.report`); one found under
another image extension (`1_001_1_01.bmp` for `.png`) is used and counted in
`info["other_extension"]`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

import numpy as np

from keras_hpnet.datasets.base import (
    DataReport, DatasetError, PedestrianDataset, Record, SkipCounter, loadmat, mat_strings, relabel, require_dir)

VARIANTS = ("labeled", "detected")
NUM_PAIRS = 5
IMAGES_PER_ID = 10  # columns of a pair's cell: 1-5 view 1, 6-10 view 2
NUM_CAMERAS = 2 * NUM_PAIRS
SUBFOLDERS = ("cuhk03", "CUHK03")
RAW_MAT = ("cuhk03_release/cuhk-03.mat", "cuhk-03.mat")
PROTOCOL_FIELDS = ("filelist", "labels", "camId", "train_idx", "query_idx", "gallery_idx")
SPLIT_FIELDS = {"train": "train_idx", "query": "query_idx", "gallery": "gallery_idx"}
IMAGE_NAME = re.compile(r"^([1-5])_(\d{3})_([12])_(\d{2})\.\w+$")
MARKER = "cuhk03_extract.json"


def protocol_file(variant: str) -> str:
    return f"cuhk03_new_protocol_config_{variant}.mat"


def find_cuhk03_root(root: str, variant: str) -> str:
    """`root` or its `cuhk03/` sub-folder: the one holding the protocol .mat."""
    require_dir(root, "CUHK03 root")
    candidates = [root, *[os.path.join(root, s) for s in SUBFOLDERS]]
    for cand in candidates:
        if os.path.isfile(os.path.join(cand, protocol_file(variant))):
            return cand
    tried = ", ".join(os.path.join(c, protocol_file(variant)) for c in candidates)
    raise DatasetError(f"no CUHK03 new protocol under {root}: {protocol_file(variant)} not found (tried {tried})")


def camera_of(name: str) -> tuple:
    """(0-based camid, view 1/2) of a `P_III_V_KK.ext` name; ValueError if not in the scheme."""
    m = IMAGE_NAME.match(name)
    if not m:
        raise ValueError(name)
    pair, view = int(m.group(1)), int(m.group(3))
    return 2 * (pair - 1) + view - 1, view


def _integers(mat: dict, field: str, path: str) -> np.ndarray:
    values = np.atleast_1d(np.asarray(mat[field])).ravel()
    if values.size and (not np.issubdtype(values.dtype, np.number) or np.any(values != np.round(values))):
        raise DatasetError(f"{path}: field {field!r} is not a vector of integers")
    return values.astype(np.int64)


def read_protocol(path: str) -> dict:
    """The new-protocol .mat: {"filelist": [names], "labels", "camId", "<split>": 0-based rows}."""
    mat = loadmat(path)
    missing = [f for f in PROTOCOL_FIELDS if f not in mat]
    if missing:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"{path}: not a CUHK03 new-protocol file: no field(s) {missing} (found {found})")
    names = mat_strings(mat["filelist"])
    out = {"filelist": names}
    for field in ("labels", "camId"):
        out[field] = _integers(mat, field, path)
        if len(out[field]) != len(names):
            raise DatasetError(f"{path}: field {field!r} has {len(out[field])} entries for {len(names)} in 'filelist'")
    for split, field in SPLIT_FIELDS.items():
        idx = _integers(mat, field, path)
        bad = idx[(idx < 1) | (idx > len(names))]
        if bad.size:
            raise DatasetError(f"{path}: field {field!r} holds {sorted(set(bad.tolist()))[:5]} outside 1..{len(names)} "
                               f"(the rows of 'filelist'; indices are 1-based)")
        out[split] = idx - 1
    return out


def _open_raw(path: str):
    import h5py  # local: keeps `import keras_hpnet.datasets` light

    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(f"{path}: unreadable MATLAB v7.3 (HDF5) file, truncated or not HDF5 ({e})") from e


def _cell(f, obj, where: str) -> np.ndarray:
    """The references of a MATLAB cell dataset, in MATLAB's (transposed back) shape."""
    import h5py

    if not isinstance(obj, h5py.Dataset) or h5py.check_ref_dtype(obj.dtype) is None:
        raise DatasetError(f"{f.filename}: {where} is not a MATLAB cell array (object references)")
    return np.asarray(obj[()]).T


def extract_images(mat_path: str, variant: str, folder: str) -> dict:
    """Write every image of `variant` in `cuhk-03.mat` to `folder` as `P_III_V_KK.png`.

    Layout (MATLAB v7.3 = HDF5, stored transposed): `variant` is a 5x1 cell of
    references to each pair's (identities x 10) cell, whose entries reference
    uint8 (H, W, 3) images stored as (3, W, H); empty entries are 2-element
    (or 0-size) arrays. Returns {"images", "empty_cells", "not_rgb"}.
    """
    from PIL import Image

    counts = {"images": 0, "empty_cells": 0, "not_rgb": 0}
    with _open_raw(mat_path) as f:
        if variant not in f:
            raise DatasetError(f"{mat_path}: no {variant!r} cell array (found {sorted(f.keys())}): "
                               "not CUHK03's cuhk-03.mat")
        try:
            pairs = _cell(f, f[variant], variant).ravel()
            if len(pairs) != NUM_PAIRS:
                raise DatasetError(f"{mat_path}: {variant} has {len(pairs)} camera pairs, expected {NUM_PAIRS}")
            for p, pair_ref in enumerate(pairs, 1):
                grid = _cell(f, f[pair_ref], f"{variant}{{{p}}}")
                if grid.ndim != 2 or grid.shape[1] != IMAGES_PER_ID:
                    raise DatasetError(f"{mat_path}: {variant}{{{p}}} has shape {grid.shape}, "
                                       f"expected (identities, {IMAGES_PER_ID})")
                for i, row in enumerate(grid, 1):
                    for k, ref in enumerate(row, 1):
                        pixels = np.asarray(f[ref][()]) if ref else np.zeros(0)
                        if pixels.size == 0 or pixels.ndim < 3:
                            counts["empty_cells"] += 1
                            continue
                        image = np.transpose(pixels)  # (3, W, H) -> (H, W, 3)
                        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                            counts["not_rgb"] += 1
                            continue
                        view = 1 if k <= IMAGES_PER_ID // 2 else 2
                        Image.fromarray(image).save(os.path.join(folder, f"{p}_{i:03d}_{view}_{k:02d}.png"))
                        counts["images"] += 1
        except DatasetError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as e:  # h5py's errors on a damaged file
            raise DatasetError(f"{mat_path}: cannot read the {variant!r} images ({type(e).__name__}: {e})") from e
    return counts


def extraction_folder(mat_path: str, variant: str, cache_dir: str | None) -> str:
    """Where `variant`'s images from `mat_path` are cached: `cache_dir/images_<variant>`,
    by default `<keras_hpnet cache>/cuhk03/<hash of the file's path, size, mtime>/`."""
    if cache_dir is None:
        from keras_hpnet.datasets.synthetic.cache import cache_dir as default_cache

        st = os.stat(mat_path)
        key = hashlib.sha1(f"{os.path.abspath(mat_path)}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:10]
        cache_dir = os.path.join(default_cache(), "cuhk03", key)
    return os.path.join(cache_dir, f"images_{variant}")


def cached_images(mat_path: str, variant: str, cache_dir: str | None) -> tuple:
    """(folder, extraction counts): the cache folder, extracted on first use (atomically:
    a temporary folder renamed into place once its marker is written)."""
    from keras_hpnet.fileio import atomic_folder

    final = extraction_folder(mat_path, variant, cache_dir)

    def build(tmp):
        counts = extract_images(mat_path, variant, tmp)
        with open(os.path.join(tmp, MARKER), "w") as f:
            json.dump({"source": os.path.abspath(mat_path), "variant": variant, **counts}, f, indent=1)

    try:
        atomic_folder(final, build, marker=MARKER, what="CUHK03 extraction")
    except FileExistsError as e:
        raise DatasetError(str(e)) from None
    with open(os.path.join(final, MARKER)) as f:
        return final, json.load(f)


def image_folder(base: str, variant: str, cache_dir: str | None) -> tuple:
    """(folder, info): `base/images_<variant>` if present, else the extraction cache of cuhk-03.mat."""
    pre = os.path.join(base, f"images_{variant}")
    if os.path.isdir(pre):
        return pre, {"images_from": "pre-extracted"}
    for rel in RAW_MAT:
        mat_path = os.path.join(base, rel)
        if os.path.isfile(mat_path):
            folder, counts = cached_images(mat_path, variant, cache_dir)
            return folder, {"images_from": mat_path, "extraction": counts}
    tried = ", ".join([pre, *[os.path.join(base, r) for r in RAW_MAT]])
    raise DatasetError(f"{base}: no CUHK03 {variant} images (tried {tried})")


def read_split(protocol: dict, split: str, folder: str, on_disk: dict, skips: SkipCounter, where: str) -> tuple:
    """Records of `split`; returns (records, number found under another extension)."""
    records, other = [], 0
    for row in protocol[split]:
        name = protocol["filelist"][row]
        try:
            camid, view = camera_of(name)
        except ValueError:
            skips.add("filelist name not in the P_III_V_KK scheme", f"{where}: filelist[{row + 1}] = {name!r}")
            continue
        if protocol["camId"][row] != view:
            raise DatasetError(f"{where}: camId[{row + 1}] = {protocol['camId'][row]} but filelist[{row + 1}] "
                               f"= {name!r} is view {view}")
        found = on_disk.get(name) or on_disk.get(os.path.splitext(name)[0])
        if found is None:
            skips.add("image listed but not on disk", os.path.join(folder, name))
            continue
        other += found != name
        records.append(Record(os.path.join(folder, found), int(protocol["labels"][row]), camid, None))
    return records, other


def _files_by_name(folder: str) -> dict:
    """{file name: file name, stem: file name} of the images in `folder` (stems map to the first in sorted order)."""
    from keras_hpnet.preprocessing import IMAGE_EXTENSIONS

    out = {}
    for name in sorted(os.listdir(folder)):
        if name.lower().endswith(IMAGE_EXTENSIONS):
            out[name] = name
            out.setdefault(os.path.splitext(name)[0], name)
    return out


def load_cuhk03(root, *, variant="labeled", cache_dir=None):
    """Load CUHK03 under the new protocol (767/700 ids) from `root`.

    Args:
      root: the folder holding `cuhk03_new_protocol_config_<variant>.mat` (or its parent).
      variant: "labeled" (default: hand-drawn boxes) or "detected" (DPM boxes).
      cache_dir: where images extracted from cuhk-03.mat go (`cache_dir/images_<variant>`);
        default `$KERAS_HPNET_CACHE` or `~/.cache/keras_hpnet`, under `cuhk03/<key>/`.
        Unused when `images_<variant>/` is beside the protocol file.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    base = find_cuhk03_root(root, variant)
    where = os.path.join(base, protocol_file(variant))
    protocol = read_protocol(where)
    folder, info = image_folder(base, variant, cache_dir)
    on_disk = _files_by_name(folder)
    skips = SkipCounter(f"cuhk03 {variant} at {base}")
    splits, other = {}, 0
    for split in SPLIT_FIELDS:
        splits[split], n = read_split(protocol, split, folder, on_disk, skips, where)
        other += n
    skips.warn()
    for split, recs in splits.items():
        if not recs:
            raise DatasetError(f"{where}: empty {split} split (no listed image found in {folder})")
    splits["train"] = relabel(splits["train"])
    return PedestrianDataset("cuhk03", splits, kind="reid", num_cameras=NUM_CAMERAS, root=base,
                             info={"variant": variant, "protocol_file": where, "image_folder": folder, **info,
                                   "other_extension": other, "skipped": dict(skips.counts)},
                             report=DataReport([skips]))

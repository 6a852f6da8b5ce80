"""PA-100K (Liu et al., HydraPlus-Net, ICCV 2017): 26 image-level attributes.

`root/annotation.mat` (keys `train_images_name`, `val_images_name`,
`test_images_name`, `train_label`, `val_label`, `test_label`, `attributes`)
with the images in `root/data/` (Rethinking_of_PAR layout) or beside the .mat.
Splits train/val/test; records have pid -1 and camid -1. Trimmed copies (an
empty image name, a name without a label row, a listed image missing on disk)
are tolerated: such entries are skipped and counted in one warning per reason.
"""

from __future__ import annotations

import os

import numpy as np

from keras_hpnet.datasets.base import (
    ATTRIBUTE_SPLITS, DataReport, DatasetError, PedestrianDataset, Record, SkipCounter, loadmat, mat_strings, require_dir)


def load_pa100k(root, *, annotation_file=None, image_dir=None, name="pa100k"):
    """Load PA-100K from `root` (see module docstring for the layout)."""
    require_dir(root, "PA-100K root")
    ann = annotation_file or os.path.join(root, "annotation.mat")
    mat = loadmat(ann)
    missing = [k for k in ("attributes", *[f"{s}_images_name" for s in ATTRIBUTE_SPLITS],
                           *[f"{s}_label" for s in ATTRIBUTE_SPLITS]) if k not in mat]
    if missing:
        raise DatasetError(f"{ann}: malformed annotation file, missing keys {missing}")
    names = mat_strings(mat["attributes"])
    skips = SkipCounter(f"{name} at {ann}")
    if any(not n for n in names):
        raise DatasetError(f"{ann}: attributes has an empty name: {names}")

    all_names = {s: mat_strings(mat[f"{s}_images_name"]) for s in ATTRIBUTE_SPLITS}
    candidates = [image_dir] if image_dir else [os.path.join(root, "data"), root]
    listing = {}
    for d in candidates:
        if os.path.isdir(d):
            listing[d] = set(os.listdir(d))
    folder = None
    for d, files in listing.items():
        if any(n in files for names_ in all_names.values() for n in names_[:50] if n):
            folder = d
            break
    if folder is None:
        raise DatasetError(f"{ann}: none of the listed images found; tried folders {candidates}")
    files = listing[folder]

    splits = {}
    for s in ATTRIBUTE_SPLITS:
        labels = np.asarray(mat[f"{s}_label"])
        if labels.ndim == 1 and len(names) > 1 and labels.size == len(names):
            labels = labels[None, :]  # a one-image split squeezed to a vector
        if labels.size == 0:
            labels = np.zeros((0, len(names)))
        if labels.ndim != 2 or labels.shape[1] != len(names):
            raise DatasetError(f"{ann}: {s}_label has shape {labels.shape}, expected (N, {len(names)})")
        if not np.isin(labels, (0, 1)).all():
            raise DatasetError(f"{ann}: {s}_label has values other than 0/1")
        labels = labels.astype(np.uint8)
        recs = []
        for i, fname in enumerate(all_names[s]):
            if not fname:
                skips.add("empty image name", f"{s}_images_name[{i}]")
                continue
            if i >= labels.shape[0]:
                skips.add("image name without a label row", f"{s}:{fname}")
                continue
            if fname not in files:
                skips.add("image listed but not on disk", os.path.join(folder, fname))
                continue
            recs.append(Record(os.path.join(folder, fname), -1, -1, labels[i]))
        if labels.shape[0] > len(all_names[s]):
            for _ in range(labels.shape[0] - len(all_names[s])):
                skips.add("label row without an image name", f"{s}_label")
        if not recs:
            raise DatasetError(f"{ann}: empty {s} split (no usable images in {folder})")
        splits[s] = recs
    counts = skips.warn()
    return PedestrianDataset(name, splits, kind="attribute", attribute_names=names, root=root,
                             info={"annotation_file": ann, "image_dir": folder, "skipped": counts},
                             report=DataReport([skips]))

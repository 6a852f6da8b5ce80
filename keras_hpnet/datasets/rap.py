"""RAP v1 (Li et al., arXiv 1603.07054, 2016) and RAP v2 (Li et al., TIP 2018),
read from the official `RAP_annotation.mat` unchanged (docs/datasets.md).

Layout: `root/RAP_annotation/RAP_annotation.mat` (or `root/RAP_annotation.mat`)
and the images in `root/RAP_dataset/`; `root` may also be the folder one level
above (the extracted archive's own folder is found) or `RAP_annotation/`.
The .mat holds one struct, `RAP_annotation`. Fields as confirmed from the
authors' code and readme (dangweili/RAP, dangweili/pedestrian-attribute-
recognition-pytorch `transform_rap.py`/`transform_rap2.py`, Rethinking_of_PAR
`format_rap.py`/`format_rap2.py`):

- v1: `partion` (5x1 cell, each a struct whose first field holds the train and
  second the test image indices, 1-based; the readme calls them `.train` /
  `.test`, this reader takes `train_index`/`test_index` or `train`/`test`),
  `label` (41,585 x 92; 0/1, 2 = uncertain: the readme's 2016-10-8 log for
  gender), `attribute_chinese`, `attribute_eng` (92 names, `hs-`/`ub-`/`lb-`
  = head-shoulder/upper/lower body), `position`, `imagesname` (41,585),
  `attribute_exp` (the short names of the first 51 attributes, "the same as
  our paper": the standard protocol). `identity`/`person_identity`, when a
  release has one (not confirmed), give the pids.
- v2: `name` (84,928), `data` (84,928 x 152), `attribute` (152 names),
  `selected_attribute` (54 indices, 1-based), `partition_attribute` (1x5 cell of
  structs `train_index`, `val_index`, `test_index`, 1-based),
  `person_identity` (one per image, -1 = no identity), `partition_reid`
  (`train_identity`, `test_identity`, ...).

Options: `version` ("auto": v2 when the struct has `data`/`name`, v1 when it has
`label`/`imagesname`), `partition` (0-based, default 0 = the file's first),
`attributes` ("standard": v1 `selected_attribute` if present, else the first
`len(attribute_exp)` (51) columns; v2 `selected_attribute` (54); "all"; or a
list of `attribute_eng`/`attribute` names). Splits train/val/test; v1 has no
validation split (the official protocol trains on the partition's train
indices), so val is empty. Records: pid = the file's identity (-1 = none or no
identity field), camid = the `CAMnn` name prefix - 1 (-1 if absent).
Label values other than 0/1 become `UNKNOWN_ATTRIBUTE` (255), counted in
`dataset.report`; a listed image missing from `RAP_dataset/` is a counted skip.
"""

from __future__ import annotations

import os
import re

import numpy as np

from keras_hpnet.datasets.base import (
    UNKNOWN_ATTRIBUTE, DataReport, DatasetError, PedestrianDataset, Record, SkipCounter, loadmat, mat_cells,
    mat_strings, require_dir)

ANNOTATION_FILE = "RAP_annotation.mat"
ANNOTATION_FOLDER = "RAP_annotation"
IMAGE_FOLDER = "RAP_dataset"
STRUCT = "RAP_annotation"
# version: (image names, labels, attribute names, attribute partitions, identity fields)
FIELDS = {
    "v1": ("imagesname", "label", "attribute_eng", "partion", ("person_identity", "identity")),
    "v2": ("name", "data", "attribute", "partition_attribute", ("person_identity",)),
}
SPLIT_FIELDS = {"train": ("train_index", "train"), "val": ("val_index", "val"), "test": ("test_index", "test")}
V1_STANDARD = 51  # the paper's attributes: the first 51 columns of `label`
VERSIONS = ("auto", "v1", "v2")
CAMERA = re.compile(r"^CAM(\d+)", re.IGNORECASE)
UNCERTAIN = 2


def find_annotation(root: str) -> tuple:
    """(path of RAP_annotation.mat, the release folder holding it) in `root` or one level below."""
    require_dir(root, "RAP root")
    folders = [root] + [os.path.join(root, d) for d in sorted(os.listdir(root))
                        if os.path.isdir(os.path.join(root, d)) and d != IMAGE_FOLDER]
    tried = []
    for folder in folders:
        for path in (os.path.join(folder, ANNOTATION_FOLDER, ANNOTATION_FILE), os.path.join(folder, ANNOTATION_FILE)):
            if os.path.isfile(path):
                return path, folder
            tried.append(path)
    raise DatasetError(f"no {ANNOTATION_FILE} under {root}: tried {', '.join(tried[:4])}"
                       f"{' ...' if len(tried) > 4 else ''}")


def find_image_dir(release: str, ann: str) -> str:
    candidates = [os.path.join(release, IMAGE_FOLDER), os.path.join(os.path.dirname(release), IMAGE_FOLDER)]
    for d in candidates:
        if os.path.isdir(d):
            return d
    raise DatasetError(f"{ann}: image folder {IMAGE_FOLDER}/ not found; tried {', '.join(candidates)}")


def read_struct(ann: str, version: str) -> tuple:
    """(version, the RAP_annotation struct) of `ann`; a file of another dataset is an error naming it."""
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
    mat = loadmat(ann)
    struct = mat.get(STRUCT)
    fields = set(getattr(struct, "_fieldnames", None) or ())
    found = {v for v, names in FIELDS.items() if set(names[:4]) <= fields}
    expected = "; ".join(f"{v}: {', '.join(names[:4])}" for v, names in FIELDS.items())
    if not fields:
        variables = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"{ann}: not a RAP annotation file: expected a struct {STRUCT!r} with fields ({expected}); "
                           f"found variables {variables}")
    if version == "auto":
        if not found:
            raise DatasetError(f"{ann}: struct {STRUCT} has neither RAP v1 nor v2 fields ({expected}); "
                               f"found {sorted(fields)}")
        version = "v2" if "v2" in found else "v1"
    elif version not in found:
        missing = [f for f in FIELDS[version][:4] if f not in fields]
        raise DatasetError(f"{ann}: {STRUCT} lacks the RAP {version} fields {missing}; found {sorted(fields)}")
    return version, struct


def numbers(value, where: str, ann: str) -> np.ndarray:
    """A numeric MATLAB field as float64 (at least 1-d), or an error naming it."""
    try:
        return np.atleast_1d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{ann}: {where} is not numeric ({type(value).__name__})") from e


def one_based(value, n: int, where: str, ann: str) -> np.ndarray:
    """0-based int indices from a MATLAB 1-based index vector, each checked to lie in 1..n."""
    idx = numbers(value, where, ann).ravel()
    if not np.all(np.isfinite(idx)) or np.any(idx != np.round(idx)):
        raise DatasetError(f"{ann}: {where} holds non-integer indices")
    bad = idx[(idx < 1) | (idx > n)]
    if bad.size:
        raise DatasetError(f"{ann}: {where} holds index {int(bad[0])} outside 1..{n} (1-based; {n} entries)")
    return idx.astype(np.int64) - 1


def read_partition(struct, version: str, partition: int, n: int, ann: str) -> dict:
    """{split: 0-based image indices} of partition `partition` (0-based)."""
    field = FIELDS[version][3]
    parts = mat_cells(getattr(struct, field))
    if not isinstance(partition, int) or isinstance(partition, bool) or not 0 <= partition < len(parts):
        raise DatasetError(f"{ann}: partition={partition!r}: {field} holds {len(parts)} partition(s), "
                           f"0..{len(parts) - 1} (0-based)")
    part = parts[partition]
    names = set(getattr(part, "_fieldnames", None) or ())
    splits = {}
    for split, candidates in SPLIT_FIELDS.items():
        key = next((c for c in candidates if c in names), None)
        if key is None and not (version == "v1" and split == "val"):
            raise DatasetError(f"{ann}: {field}[{partition}] has no {' or '.join(candidates)} field; "
                               f"found {sorted(names)}")
        splits[split] = (one_based(getattr(part, key), n, f"{field}[{partition}].{key}", ann)
                         if key else np.zeros(0, np.int64))
    return splits


def select_columns(struct, version: str, attributes, names: list, ann: str) -> list:
    """0-based label columns for `attributes` ("standard", "all" or a list of names)."""
    if isinstance(attributes, str):
        if attributes == "all":
            return list(range(len(names)))
        if attributes != "standard":
            raise ValueError(f"attributes must be 'standard', 'all' or a list of names, got {attributes!r}")
        fields = set(struct._fieldnames)
        if "selected_attribute" in fields:
            return one_based(struct.selected_attribute, len(names), "selected_attribute", ann).tolist()
        if version == "v2":
            raise DatasetError(f"{ann}: RAP v2 {STRUCT} has no selected_attribute (the 54-attribute protocol)")
        count = len(mat_strings(struct.attribute_exp)) if "attribute_exp" in fields else V1_STANDARD
        return list(range(min(count, len(names))))
    wanted = list(attributes)
    index = {n: i for i, n in enumerate(names)}
    unknown = [n for n in wanted if n not in index]
    if unknown or not wanted or len(set(wanted)) != len(wanted):
        raise ValueError(f"attributes: unknown or repeated names {unknown or wanted}; known: {', '.join(names)}")
    return [index[n] for n in wanted]


def read_identities(struct, version: str, n: int, ann: str):
    """Per-image identity (int64, -1 = none) or None when the file has no identity field."""
    field = next((f for f in FIELDS[version][4] if f in struct._fieldnames), None)
    if field is None:
        return None
    ids = numbers(getattr(struct, field), field, ann).ravel()
    if ids.size != n or not np.all(np.isfinite(ids)):
        raise DatasetError(f"{ann}: {field} has {ids.size} entries, expected one integer per image ({n})")
    ids = ids.astype(np.int64)
    return np.where(ids < 0, -1, ids)


def code_labels(values: np.ndarray, rows, names: list, image_names: list, skips: SkipCounter) -> np.ndarray:
    """uint8 labels: 0/1 kept, 2 (uncertain) and any other value -> UNKNOWN_ATTRIBUTE, counted
    over `rows` (the images the splits keep)."""
    known = (values == 0) | (values == 1)
    coded = np.where(known, values, UNKNOWN_ATTRIBUTE).astype(np.uint8)
    rows = np.asarray(rows, np.int64)
    for r, j in zip(*np.nonzero(~known[rows])):
        i = rows[r]
        reason = ("label 2 (uncertain) read as unknown (255)" if values[i, j] == UNCERTAIN
                  else "label outside 0/1/2 read as unknown (255)")
        skips.add(reason, f"{image_names[i]}: {names[j]}")
    return coded


def load_rap(root, *, version="auto", partition=0, attributes="standard", merge_val=False):
    """Load RAP v1 or v2 from `root` (see the module docstring for layout, fields and options).

    `merge_val=True` trains on train + val (v2; what many PAR papers report), leaving val empty.
    """
    ann, release = find_annotation(root)
    version, struct = read_struct(ann, version)
    names_field, label_field, attr_field, _, _ = FIELDS[version]
    image_names = mat_strings(getattr(struct, names_field))
    all_attributes = mat_strings(getattr(struct, attr_field))
    n = len(image_names)
    labels = numbers(getattr(struct, label_field), label_field, ann)
    if labels.ndim == 1 and n == 1:
        labels = labels[None, :]
    if labels.shape != (n, len(all_attributes)):
        raise DatasetError(f"{ann}: {label_field} has shape {labels.shape}, expected ({n}, {len(all_attributes)}) "
                           f"({names_field} x {attr_field})")
    columns = select_columns(struct, version, attributes, all_attributes, ann)
    names = [all_attributes[c] for c in columns]
    index = read_partition(struct, version, partition, n, ann)
    pids = read_identities(struct, version, n, ann)
    folder = find_image_dir(release, ann)
    files = set(os.listdir(folder))

    skips = SkipCounter(f"rap ({version}) at {ann}")
    kept = {}
    for split, idx in index.items():
        kept[split] = []
        for i in idx.tolist():
            if not image_names[i]:
                skips.add("empty image name", f"{names_field}[{i + 1}]")
            elif image_names[i] not in files:
                skips.add("image listed but not on disk", os.path.join(folder, image_names[i]))
            else:
                kept[split].append(i)
        if not kept[split] and split != "val":
            raise DatasetError(f"{ann}: empty {split} split of partition {partition} (no usable images in {folder})")
    used = sorted({i for idx in kept.values() for i in idx})
    before = sum(skips.counts.values())
    coded = code_labels(labels[:, columns], used, names, image_names, skips)
    unknown = sum(skips.counts.values()) - before

    def record(i):
        cam = CAMERA.match(image_names[i])
        return Record(os.path.join(folder, image_names[i]), int(pids[i]) if pids is not None else -1,
                      int(cam.group(1)) - 1 if cam else -1, coded[i])

    if merge_val:
        kept["train"], kept["val"] = kept["train"] + kept.get("val", []), []
    splits = {split: [record(i) for i in idx] for split, idx in kept.items()}
    counts = skips.warn()
    cams = [r.camid for recs in splits.values() for r in recs if r.camid >= 0]
    info = {"version": version, "partition": partition, "merge_val": bool(merge_val), "annotation_file": ann, "image_dir": folder,
            "unknown_attribute_entries": unknown, "skipped": counts,
            "num_identities": int(len(set(pids[used].tolist()) - {-1})) if pids is not None else 0}
    if version == "v2" and "partition_reid" in struct._fieldnames:
        reid = mat_cells(struct.partition_reid)[0]
        info["reid_partition"] = {f: int(np.size(getattr(reid, f))) for f in getattr(reid, "_fieldnames", ())}
    return PedestrianDataset("rap", splits, kind="attribute", attribute_names=names, root=release,
                             num_cameras=max(cams) + 1 if cams else 0, info=info, report=DataReport([skips]))

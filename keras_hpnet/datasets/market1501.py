"""Market-1501 (Zheng et al., ICCV 2015) with the Market-1501 attributes of
Lin et al. (Pattern Recognition 2019), read from the official files unchanged.

Layout: `root/{bounding_box_train,query,bounding_box_test}/PPPP_cCsS_FFFFFF_NN.jpg`
(also accepted: `root/Market-1501-v15.09.15/...`). Identity -1 (junk) is
dropped; identity 0 (distractor) is kept in the gallery only; train ids are
relabelled 0..N-1; query/gallery keep their original ids; cameras are 0-based.

Attributes (`market_attribute.mat`, struct `market_attribute` with `train` and
`test`, one value per identity, 1/2 coded) are attached to every image of the
identity, decoded to 0/1 as `value - 1`: gender 1=female, hair 1=long,
up 1=short sleeve, down 1=short, clothes 1=pants, hat/backpack/bag/handbag and
the colours 1=yes. Attribute order is the file's field order.
Age (1 young, 2 teenager, 3 adult, 4 old) is not binary: `age="drop"`
(default, the 26 binary attributes HAT-CNN uses) or `age="onehot"`, which
replaces it in place by 4 binary attributes `age_young, age_teenager,
age_adult, age_old` (27 fields -> 30 attributes).

Unlabelled entries: a 0 in a 1/2-coded field (and in age) is an identity
nobody labelled for that attribute (the official duke_attribute.mat has
`top = 0` for two training identities). It becomes `UNKNOWN_ATTRIBUTE`
(masked from the loss and the metrics), counted in `dataset.report` under the
field with the identities as examples; any other value outside the coding is
a DatasetError naming the field.
"""

from __future__ import annotations

import os

import numpy as np

from keras_hpnet.datasets.base import (
    MARKET_NAME, UNKNOWN_ATTRIBUTE, DataReport, DatasetError, PedestrianDataset, Record, SkipCounter, list_images, loadmat, relabel,
    require_dir)

AGE_CLASSES = ("young", "teenager", "adult", "old")
MARKET_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def find_layout_root(root: str, subfolders=("Market-1501-v15.09.15",)) -> str:
    """`root` itself or a known sub-folder that holds `bounding_box_train`."""
    require_dir(root, "dataset root")
    for cand in (root, *[os.path.join(root, s) for s in subfolders]):
        if os.path.isdir(os.path.join(cand, "bounding_box_train")):
            return cand
    tried = ", ".join(os.path.join(c, "bounding_box_train") for c in (root, *[os.path.join(root, s) for s in subfolders]))
    raise DatasetError(f"no Market-1501 layout under {root}: folder bounding_box_train not found (tried {tried})")


def read_market_split(folder: str, split: str, num_cameras: int | None, skips: SkipCounter) -> list:
    """Records of one split folder; junk dropped, distractors kept in the gallery only."""
    require_dir(folder, f"{split} split")
    records = []
    for fname in list_images(folder, skips):
        m = MARKET_NAME.match(fname)
        if not m:
            skips.add("file name not in the PPPP_cC... scheme", os.path.join(folder, fname))
            continue
        pid, cam = int(m.group(1)), int(m.group(2))
        if pid == -1:
            continue  # junk
        if pid == 0 and split != "gallery":
            continue  # distractors belong to the gallery
        if pid < -1:
            raise DatasetError(f"{os.path.join(folder, fname)}: invalid identity {pid}")
        if cam < 1 or (num_cameras and cam > num_cameras):
            raise DatasetError(f"{os.path.join(folder, fname)}: camera {cam} outside 1..{num_cameras}")
        records.append(Record(os.path.join(folder, fname), pid, cam - 1, None))
    if not records:
        raise DatasetError(f"{folder}: empty {split} split (no usable images)")
    return records


def decode_attribute_mat(path: str, struct_name: str, age: str = "drop", skips: SkipCounter | None = None):
    """Read an identity-level attribute .mat (Market/Duke-attribute format).

    Returns (attribute_names, {original_pid: uint8 vector}). Entries 0 (not
    labelled) become UNKNOWN_ATTRIBUTE and are counted in `skips` (one reason
    per field, the identities as examples).
    """
    if age not in ("drop", "onehot"):
        raise ValueError(f"age must be 'drop' or 'onehot', got {age!r}")
    mat = loadmat(path)
    if struct_name not in mat:
        keys = [k for k in mat if not k.startswith("__")]
        raise DatasetError(f"{path}: no struct {struct_name!r} (found {keys})")
    top = mat[struct_name]
    table = {}
    names = None
    for part in ("train", "test"):
        if not hasattr(top, part):
            raise DatasetError(f"{path}: {struct_name} has no field {part!r}")
        sub = getattr(top, part)
        fields = list(getattr(sub, "_fieldnames", []) or [])
        if "image_index" not in fields:
            raise DatasetError(f"{path}: {struct_name}.{part} has no image_index field (fields: {fields})")
        ids = np.atleast_1d(getattr(sub, "image_index"))
        try:
            pids = [int(str(x).strip()) for x in ids.ravel()]
        except ValueError as e:
            raise DatasetError(f"{path}: {struct_name}.{part}.image_index is not a list of identity numbers") from e
        cols, part_names = [], []
        for f in fields:
            if f == "image_index":
                continue
            v = np.atleast_1d(np.asarray(getattr(sub, f))).ravel()
            if v.shape[0] != len(pids):
                raise DatasetError(f"{path}: {struct_name}.{part}.{f} has {v.shape[0]} values for {len(pids)} identities")
            if not np.issubdtype(v.dtype, np.number):
                raise DatasetError(f"{path}: {struct_name}.{part}.{f} is not numeric")
            v = v.astype(np.int64)
            if f == "age" and age == "drop":
                continue
            top_value = 4 if f == "age" else 2
            bad = (v != 0) & ((v < 1) | (v > top_value))
            if bad.any():
                raise DatasetError(f"{path}: {struct_name}.{part}.{f} has values {sorted(set(v[bad].tolist()))[:5]}; "
                                   f"expected the 1..{top_value} coding (0: not labelled)")
            unknown = v == 0
            if skips is not None:
                for pid in np.asarray(pids)[unknown]:
                    skips.add(f"{struct_name}.{part}.{f} = 0 (not labelled): entry unknown", f"identity {pid:04d}")
            if f == "age":
                for k, cls in enumerate(AGE_CLASSES):
                    cols.append(np.where(unknown, UNKNOWN_ATTRIBUTE, v == k + 1).astype(np.uint8))
                    part_names.append(f"age_{cls}")
                continue
            cols.append(np.where(unknown, UNKNOWN_ATTRIBUTE, v - 1).astype(np.uint8))
            part_names.append(f)
        if names is None:
            names = part_names
        elif set(names) != set(part_names):
            raise DatasetError(f"{path}: {struct_name}.train and .test have different attribute fields")
        else:  # same fields, possibly in another order (as in duke_attribute.mat): use train's order
            by_name = dict(zip(part_names, cols))
            cols = [by_name[n] for n in names]
        mat_rows = np.stack(cols, axis=1) if cols else np.zeros((len(pids), 0), np.uint8)
        for pid, row in zip(pids, mat_rows):
            table[pid] = row
    return names, table


def attach_attributes(splits: dict, table: dict, path: str) -> dict:
    """Give every image its identity's attributes; distractors (pid 0) get None."""
    out = {}
    for split, recs in splits.items():
        new = []
        for r in recs:
            if r.pid == 0 and split == "gallery":
                new.append(r)
                continue
            if r.pid not in table:
                raise DatasetError(f"{path}: identity {r.pid:04d} (image {r.path}) is in the images but not in the .mat")
            new.append(r._replace(attributes=table[r.pid]))
        out[split] = new
    return out


def load_market_layout(root, *, name, num_cameras, attribute_file=None, attribute_struct=None, age="drop",
                       subfolders=()):
    """Shared reader for Market-1501-layout datasets (Market, Duke, custom)."""
    base = find_layout_root(root, subfolders)
    skips = SkipCounter(f"{name} at {base}")
    raw = {split: read_market_split(os.path.join(base, folder), split, num_cameras, skips)
           for split, folder in MARKET_FOLDERS.items()}
    skips.warn()
    names = []
    unknown = SkipCounter(f"{name} attributes {attribute_file}")
    if attribute_file is not None:
        names, table = decode_attribute_mat(attribute_file, attribute_struct, age=age, skips=unknown)
        unknown.warn()
        raw = attach_attributes(raw, table, attribute_file)
    raw["train"] = relabel(raw["train"])
    cams = num_cameras or (1 + max(r.camid for recs in raw.values() for r in recs))
    return PedestrianDataset(name, raw, kind="reid", attribute_names=names, num_cameras=cams, root=base,
                             info={"attribute_file": attribute_file, "skipped": dict(skips.counts),
                                   "unknown_attributes": dict(unknown.counts)},
                             report=DataReport([skips, unknown]))


def _default_attribute_file(root, base_candidates, fname):
    for d in base_candidates:
        p = os.path.join(d, fname)
        if os.path.isfile(p):
            return p
    return None


def load_market1501(root, *, attribute_file=None, attributes=True, age="drop"):
    """Load Market-1501 from `root`.

    Args:
      root: folder with bounding_box_train/, query/, bounding_box_test/.
      attribute_file: path of market_attribute.mat; default: looked up in
        `root` (and the layout folder). Missing file -> no attributes.
      attributes: False to ignore any attribute file.
      age: "drop" (default) or "onehot" (see the module docstring).
    """
    base = find_layout_root(root, ("Market-1501-v15.09.15",))
    if attributes and attribute_file is None:
        attribute_file = _default_attribute_file(root, (root, base), "market_attribute.mat")
    return load_market_layout(root, name="market1501", num_cameras=6,
                              attribute_file=attribute_file if attributes else None,
                              attribute_struct="market_attribute", age=age,
                              subfolders=("Market-1501-v15.09.15",))

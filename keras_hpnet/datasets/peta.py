"""PETA (Deng, Luo, Loy, Tang, ACM MM 2014): 19,000 crops from 10 subsets,
read from the official release unchanged (docs/datasets.md).

Layout: `root/PETA dataset/<subset>/archive/` (or `root` = `PETA dataset/`)
with the images (.jpg/.jpeg/.png/.bmp) and `Label.txt`, one line per identity,
`ID tag tag ...` (the attributes present, by name). An image belongs to the
ID whose label line matches its file stem (CUHK: every image its own ID) or,
failing that, the stem's first `_` field (VIPeR `000_45_1.bmp` -> `000`;
numeric IDs also match without leading zeros).

Attributes: `attributes="deepmar35"` (default; the 35 of DeepMAR, Li et al.
2015, used by HP-Net, in that order), `"all"` (the 61 binary attributes, then
the 4 colour groups as 11 one-hot attributes each: 105), or a list of names.
Splits (`split`): `"random"` (default: the original protocol, the one the
papers' figures use): 9,500 / 1,900 / 7,600 images from a permutation by
`seed`; with fewer images, the same 50 % / 10 % / 40 % proportions (train and
val rounded, test the rest). `"identity"`: identities (subset, ID) shuffled by
`seed` fill train, then val, then test up to the same sizes, so no identity is
in two splits (PETAzs idea; the split sizes are approximate).
Quirks of the release are counted in `dataset.report`, never fatal: known
misspellings (`footwearSneakers`) are mapped, unknown and discarded tags
ignored, repeated tags and repeated ID lines merged, label lines without
images and images without a label line skipped, contradictory carrying tags
kept as written.
"""

from __future__ import annotations

import os

import numpy as np

from keras_hpnet.datasets.base import DataReport, DatasetError, PedestrianDataset, Record, SkipCounter, require_dir
from keras_hpnet.preprocessing import IMAGE_EXTENSIONS

RELEASE_FOLDER = "PETA dataset"
SUBSETS = ("3DPeS", "CAVIAR4REID", "CUHK", "GRID", "i-LID", "MIT", "PRID", "SARC3D", "TownCentre", "VIPeR")
LABEL_FILE = "Label.txt"

DEEPMAR35 = (
    "personalLess30", "personalLess45", "personalLess60", "personalLarger60", "carryingBackpack", "carryingOther",
    "lowerBodyCasual", "upperBodyCasual", "lowerBodyFormal", "upperBodyFormal", "accessoryHat", "upperBodyJacket",
    "lowerBodyJeans", "footwearLeatherShoes", "upperBodyLogo", "hairLong", "personalMale", "carryingMessengerBag",
    "accessoryMuffler", "accessoryNothing", "carryingNothing", "upperBodyPlaid", "carryingPlasticBags",
    "footwearSandals", "footwearShoes", "lowerBodyShorts", "upperBodyShortSleeve", "lowerBodyShortSkirt",
    "footwearSneaker", "upperBodyThinStripes", "accessorySunglasses", "lowerBodyTrousers", "upperBodyTshirt",
    "upperBodyOther", "upperBodyVNeck")
OTHER_BINARY = (
    "accessoryHeadphone", "personalLess15", "carryingBabyBuggy", "hairBald", "footwearBoots", "lowerBodyCapri",
    "carryingShoppingTro", "carryingUmbrella", "personalFemale", "carryingFolder", "accessoryHairBand",
    "lowerBodyHotPants", "accessoryKerchief", "lowerBodyLongSkirt", "upperBodyLongSleeve", "lowerBodyPlaid",
    "lowerBodyThinStripes", "carryingLuggageCase", "upperBodyNoSleeve", "hairShort", "footwearStocking",
    "upperBodySuit", "carryingSuitcase", "lowerBodySuits", "upperBodySweater", "upperBodyThickStripes")
BINARY = DEEPMAR35 + OTHER_BINARY  # the 61 binary attributes
COLOURS = ("Black", "Blue", "Brown", "Green", "Grey", "Orange", "Pink", "Purple", "Red", "White", "Yellow")
COLOUR_GROUPS = ("upperBody", "lowerBody", "hair", "footwear")
ALL_ATTRIBUTES = BINARY + tuple(g + c for g in COLOUR_GROUPS for c in COLOURS)  # 105
# Spellings found in the label files -> the readme's name.
VARIANTS = {"footwearSneakers": "footwearSneaker", **{g + "Gray": g + "Grey" for g in COLOUR_GROUPS}}
DISCARDED = ("accessoryFaceMask", "lowerBodyLogo", "accessoryShawl")  # readme: discarded, still tagged
CARRIED = ("carryingBackpack", "carryingOther", "carryingMessengerBag", "carryingPlasticBags", "carryingBabyBuggy",
           "carryingShoppingTro", "carryingUmbrella", "carryingFolder", "carryingLuggageCase", "carryingSuitcase")
STANDARD_SIZES = (9500, 1900, 7600)
SPLITS = ("random", "identity")


def find_release_root(root: str) -> str:
    """`root/PETA dataset` or `root` itself when it holds subset folders."""
    require_dir(root, "PETA root")
    inner = os.path.join(root, RELEASE_FOLDER)
    if os.path.isdir(inner):
        return inner
    if any(os.path.isdir(os.path.join(root, s)) for s in SUBSETS):
        return root
    raise DatasetError(f"no PETA release under {root}: tried {inner} and subset folders "
                       f"({', '.join(SUBSETS)}) in {root}")


def attribute_list(attributes) -> tuple:
    if isinstance(attributes, str):
        table = {"deepmar35": DEEPMAR35, "all": ALL_ATTRIBUTES}
        if attributes not in table:
            raise ValueError(f"attributes must be 'deepmar35', 'all' or a list of names, got {attributes!r}")
        return table[attributes]
    names = tuple(attributes)
    unknown = [n for n in names if n not in ALL_ATTRIBUTES]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"attributes: unknown or repeated names {unknown or names}; "
                         f"known: {', '.join(ALL_ATTRIBUTES)}")
    return names


_CANONICAL = {n.lower(): n for n in ALL_ATTRIBUTES}


def canonical_tag(tag: str, skips: SkipCounter, where: str):
    """The readme name of a label-file tag, or None (counted) if unknown/discarded."""
    if tag in _CANONICAL.values():
        return tag
    if tag in VARIANTS:
        skips.add(f"tag spelled {tag!r}, read as {VARIANTS[tag]!r}", where)
        return VARIANTS[tag]
    if tag.lower() in _CANONICAL:
        skips.add("tag in another letter case (mapped)", f"{where}: {tag}")
        return _CANONICAL[tag.lower()]
    if tag in DISCARDED:
        skips.add("tag the readme lists as discarded (ignored)", f"{where}: {tag}")
    else:
        skips.add("unknown tag (ignored)", f"{where}: {tag}")
    return None


def read_label_file(path: str, skips: SkipCounter) -> dict:
    """{ID: set of readme attribute names} from one Label.txt, quirks counted."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: label file not found")
    labels = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            where = f"{path}:{lineno}"
            pid, tags = parts[0], parts[1:]
            names = [n for n in (canonical_tag(t, skips, where) for t in tags) if n]
            if len(set(names)) != len(names):
                skips.add("repeated tag on a line (counted once)", where)
            if "carryingNothing" in names and any(n in CARRIED for n in names):
                skips.add("carryingNothing with a carried object (kept as written)", where)
            if pid in labels:
                skips.add("repeated ID line (tags merged)", where)
            labels.setdefault(pid, set()).update(names)
    return labels


def image_id(stem: str, labels: dict, numeric: dict):
    """The label ID of an image stem: the stem itself, else its first `_` field
    (`numeric`: {int(ID): ID} for IDs written with other leading zeros)."""
    if stem in labels:
        return stem
    head = stem.split("_")[0]
    if head in labels:
        return head
    return numeric.get(int(head)) if head.isdigit() else None


def read_subset(archive: str, names: tuple, skips: SkipCounter) -> list:
    """(path, identity, attribute vector) of the labelled images of one subset."""
    labels = read_label_file(os.path.join(archive, LABEL_FILE), skips)
    index = {n: i for i, n in enumerate(names)}
    numeric = {int(k): k for k in labels if k.isdigit()}
    items, seen = [], set()
    for fname in sorted(os.listdir(archive)):
        path = os.path.join(archive, fname)
        if fname == LABEL_FILE or not os.path.isfile(path):
            continue
        if not fname.lower().endswith(IMAGE_EXTENSIONS):
            skips.add("file without an image extension", path)
            continue
        pid = image_id(os.path.splitext(fname)[0], labels, numeric)
        if pid is None:
            skips.add("image without a label line", path)
            continue
        seen.add(pid)
        vec = np.zeros(len(names), np.uint8)
        vec[[index[n] for n in labels[pid] if n in index]] = 1
        items.append((path, pid, vec))
    for pid in sorted(set(labels) - seen):
        skips.add("label line without an image", f"{archive}: ID {pid}")
    return items


def split_sizes(n: int) -> tuple:
    """(train, val, test) for `n` images: the standard 9,500/1,900/7,600 scaled to n."""
    total = sum(STANDARD_SIZES)
    train = int(round(n * STANDARD_SIZES[0] / total))
    val = int(round(n * STANDARD_SIZES[1] / total))
    return train, val, n - train - val


def partition(groups: list, sizes: tuple, seed: int, by_identity: bool) -> list:
    """Three lists of item indices; `groups[i]` is the identity of item i."""
    rng = np.random.default_rng(seed)
    if not by_identity:
        order = rng.permutation(len(groups))
        a, b = sizes[0], sizes[0] + sizes[1]
        return [sorted(order[:a].tolist()), sorted(order[a:b].tolist()), sorted(order[b:].tolist())]
    members: dict = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    keys = sorted(members)
    out, target, k = [[], [], []], sizes[0], 0
    for key in (keys[j] for j in rng.permutation(len(keys))):
        while k < 2 and len(out[k]) >= target:
            k += 1
            target = sizes[k]
        out[k].extend(members[key])
    return [sorted(part) for part in out]


def load_peta(root, *, attributes="deepmar35", split="random", seed=0):
    """Load PETA from `root` (see the module docstring for layout, options and quirks)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    names = attribute_list(attributes)
    base = find_release_root(root)
    skips = SkipCounter(f"peta at {base}")
    items, groups = [], []
    for subset in SUBSETS:
        archive = os.path.join(base, subset, "archive")
        if not os.path.isdir(archive):
            skips.add("subset folder missing", archive)
            continue
        for path, pid, vec in read_subset(archive, names, skips):
            items.append(Record(path, -1, -1, vec))
            groups.append((subset, pid))
    if len(items) < 3:
        raise DatasetError(f"{base}: {len(items)} labelled image(s) found; need at least 3 for train/val/test")
    counts = skips.warn()
    parts = partition(groups, split_sizes(len(items)), int(seed), split == "identity")
    splits = {s: [items[i] for i in idx] for s, idx in zip(("train", "val", "test"), parts)}
    for s, recs in splits.items():
        if not recs:
            raise DatasetError(f"{base}: empty {s} split with split={split!r} ({len(items)} images)")
    return PedestrianDataset("peta", splits, kind="attribute", attribute_names=names, root=base,
                             info={"split": split, "seed": int(seed), "num_identities": len(set(groups)),
                                   "skipped": counts}, report=DataReport([skips]))

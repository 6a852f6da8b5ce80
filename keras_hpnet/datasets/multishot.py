"""Two-camera multi-shot video sets (PRID-2011 multi-shot, iLIDS-VID): one
folder of frames per person and camera, one tracklet each, and the 10-split
protocol of Wang et al., "Person Re-Identification by Video Ranking" (ECCV
2014): half the persons train (both cameras), the other half test with the
first camera's tracklets as queries and the second camera's as the gallery
(docs/datasets.md, "PRID-2011 multi-shot and iLIDS-VID").

Shared by `prid2011.py` and `ilidsvid.py` (`load_multishot`): they find the
files and read their split file; this module scans the camera folders, checks
a split against them (or derives one) and builds the `PedestrianDataset`
(kind "video"; camid 0 / 1; train pids relabelled 0..N-1, query and gallery
keep the person number of the folder name).
"""

from __future__ import annotations

import os
import re
import warnings

import numpy as np

from keras_hpnet.datasets.base import (
    DataReport, DatasetError, DatasetWarning, PedestrianDataset, SkipCounter, Tracklet, list_images, relabel,
    require_dir)

NUM_SPLITS = 10  # Wang et al. 2014: 10 random half/half splits of the persons
PERSON_FOLDER = re.compile(r"^person_?(\d+)$")  # PRID `person_0001`, iLIDS-VID `person001`
DERIVED_NOTE = ("derived: a seeded half/half split of the persons seen by both cameras with >= min_frames frames "
                "(the split file is missing); NOT the official splits, figures are not comparable with published "
                "results")


def find_layout(root: str, subfolders, camera_names, what: str) -> str:
    """The first of `root/<subfolder>` (`""` = root itself) holding a camera
    folder; both `camera_names` must then exist (else a DatasetError)."""
    require_dir(root, f"{what} root")
    candidates = [os.path.join(root, sub) if sub else root for sub in subfolders]
    for cand in candidates:
        if any(os.path.isdir(os.path.join(cand, cam)) for cam in camera_names):
            for cam in camera_names:
                require_dir(os.path.join(cand, cam), f"{what} camera {cam}")
            return cand
    raise DatasetError(f"no {what} layout under {root}: folder {'/'.join(camera_names)} not found "
                       f"(tried {', '.join(candidates)})")


def frame_order(name: str) -> list:
    """Sort key of a frame file name: its digit runs compared as numbers
    (`0002.png` < `0010.png`, `..._00317.png` < `..._01002.png`)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def scan_camera(folder: str, skips: SkipCounter) -> dict:
    """{person folder name: frame paths in temporal order} of one camera folder.
    Entries that are not `person_<n>` folders, files that are not images and
    person folders without frames are counted in `skips` (the folder then
    counts as absent from this camera)."""
    require_dir(folder, "camera")
    persons = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isdir(path) or not PERSON_FOLDER.match(name):
            skips.add("entry that is not a person_<n> folder", path)
            continue
        frames = sorted(list_images(path, skips), key=frame_order)
        if not frames:
            skips.add("person folder without frames", path)
            continue
        persons[name] = tuple(os.path.join(path, f) for f in frames)
    return persons


def person_pid(name: str) -> int:
    return int(PERSON_FOLDER.match(name).group(1))


def check_split(train, test, cameras: dict, where: str) -> None:
    """Every person named by the split has frames in both cameras, once; train
    and test do not share a person. `cameras`: {camera folder: scan_camera(...)}."""
    for part, names in (("train", train), ("test", test)):
        if len(set(names)) < len(names):
            again = sorted({n for n in names if names.count(n) > 1})
            raise DatasetError(f"{where}: {part} names {len(again)} person(s) more than once, e.g. {again[:3]}")
    shared = sorted(set(train) & set(test))
    if shared:
        raise DatasetError(f"{where}: {len(shared)} person(s) in both train and test, e.g. {shared[:3]}")
    for folder, persons in cameras.items():
        missing = sorted(set(train) - set(persons)) + sorted(set(test) - set(persons))
        if missing:
            raise DatasetError(f"{where}: names {len(missing)} person(s) not found (or without frames) in "
                               f"{folder}, e.g. {missing[:3]}")


def derived_split(persons, split: int, seed: int):
    """(train, test) names: a seeded permutation of `persons` (sorted), its first
    half the test persons (Wang et al.'s convention), split `split` of `seed`."""
    persons = sorted(persons)
    order = np.random.default_rng([seed, split]).permutation(len(persons))
    half = len(persons) // 2
    return sorted(persons[i] for i in order[half:]), sorted(persons[i] for i in order[:half])


def check_split_index(split: int, num_splits: int, where: str) -> int:
    if isinstance(split, bool) or not isinstance(split, (int, np.integer)) or not 0 <= split < num_splits:
        raise DatasetError(f"{where}: split={split!r}; expected an integer 0..{num_splits - 1}")
    return int(split)


def tracklets(names, persons: dict, camid: int) -> list:
    return [Tracklet(persons[n], person_pid(n), camid, None) for n in names]


def load_multishot(name, base, camera_names, split_file, read_splits, *, split, seed, missing, min_frames=1):
    """Load a two-camera set: scan `base/<camera>` for both `camera_names`
    (query camera first), take split `split` of `read_splits(split_file,
    cameras)` -> [(train names, test names), ...] (official), or without a
    `split_file` a derived split of the persons with >= `min_frames` frames in
    both cameras (`missing` names the absent file in the warning)."""
    skips = SkipCounter(f"{name} at {base}")
    cameras = {os.path.join(base, cam): scan_camera(os.path.join(base, cam), skips) for cam in camera_names}
    skips.warn()
    (folder_a, cam_a), (folder_b, cam_b) = cameras.items()
    if split_file is not None:
        splits = read_splits(split_file, cameras)
        train, test = splits[check_split_index(split, len(splits), split_file)]
        check_split(train, test, cameras, f"{split_file} split {split}")
        protocol, num_splits = "official", len(splits)
    else:
        split = check_split_index(split, NUM_SPLITS, f"{base} (derived splits)")
        if isinstance(min_frames, bool) or not isinstance(min_frames, (int, np.integer)) or min_frames < 1:
            raise DatasetError(f"{base}: min_frames={min_frames!r}; expected an integer >= 1")
        eligible = {p for p in set(cam_a) & set(cam_b) if min(len(cam_a[p]), len(cam_b[p])) >= min_frames}
        if len(eligible) < 2:
            raise DatasetError(f"{base}: {len(eligible)} person(s) seen by both cameras with >= {min_frames} "
                               f"frames each ({len(set(cam_a) & set(cam_b))} in both cameras); need 2 to split")
        train, test = derived_split(eligible, split, seed)
        protocol, num_splits = "derived", NUM_SPLITS
        warnings.warn(f"{base}: no {missing}; {name} split {DERIVED_NOTE}", DatasetWarning, stacklevel=3)
    if not train or not test:
        raise DatasetError(f"{split_file or base}: split {split} has {len(train)} train and {len(test)} test persons")
    splits = {
        "train": relabel(tracklets(train, cam_a, 0) + tracklets(train, cam_b, 1)),
        "query": tracklets(test, cam_a, 0),
        "gallery": tracklets(test, cam_b, 1),
    }
    info = {"protocol": protocol, "protocol_note": "" if protocol == "official" else DERIVED_NOTE,
            "split": split, "num_splits": num_splits, "split_file": split_file,
            "min_frames": None if protocol == "official" else int(min_frames),
            "num_split_persons": len(train) + len(test),
            "persons": {os.path.basename(folder_a): len(cam_a), os.path.basename(folder_b): len(cam_b),
                        "both": len(set(cam_a) & set(cam_b))},
            "unused_persons": len((set(cam_a) | set(cam_b)) - set(train) - set(test)),
            "skipped": dict(skips.counts)}
    return PedestrianDataset(name, splits, kind="video", num_cameras=2, root=base, info=info,
                             report=DataReport([skips]))

"""MARS (Zheng et al., "MARS: A Video Benchmark for Large-Scale Person
Re-identification", ECCV 2016): video re-id, read from the official files
unchanged (docs/datasets.md, "MARS").

Layout: `root/` (or `root/MARS/`, `root/mars/`) with `bbox_train/` and
`bbox_test/` holding `<pid>/<pid>C<cam>T<tracklet>F<frame>.jpg` (pid `0000`
distractors, `00-1` junk; cameras 1..6) and `info/` with `train_name.txt`,
`test_name.txt` (frame names in order), `tracks_train_info.mat` (variable
`track_train_info`) and `tracks_test_info.mat` (`track_test_info`), one row
per tracklet: start and end index (1-based, inclusive) into the name list,
pid, camera; `query_IDX.mat` (`query_IDX`, 1-based rows of the test tracks:
the 1,980 official queries).

Splits are lists of `Tracklet` (frames in order, pid, camid 0-based).
Official protocol (Zheng et al.'s `evaluation_mars.m`): the gallery is the
whole test set (`gallery="all"`, queries included; the same-identity
same-camera rule of the evaluation makes a query's own tracklet junk) or,
torchreid's convention, the test set without the queries
(`gallery="exclude_query"`). Junk tracklets (pid -1) are junk to every query,
so they are left out of the splits (counted in `info["dropped"]`);
distractors (pid 0) stay in the gallery. Train pids are relabelled 0..N-1.

Without `info/` the tracklets are rebuilt from the file names (one tracklet
per pid, camera, T number; frames by F number) and the queries are DERIVED
(`derived_queries`: for every test identity seen by two or more cameras, its
lowest-numbered tracklet in each camera), which is NOT the official protocol:
a warning says so, `info["protocol"]` is "derived" (with `info["protocol_note"]`
and a line of `dataset.summary()`), and figures on it are not
comparable with published MARS results.
"""

from __future__ import annotations

import collections
import os
import re
import warnings

import numpy as np

from keras_hpnet.datasets.base import (
    DataReport, DatasetError, DatasetWarning, PedestrianDataset, SkipCounter, Tracklet, list_images, loadmat, relabel,
    require_dir)

NUM_CAMERAS = 6
FOLDERS = {"train": "bbox_train", "test": "bbox_test"}
NAME_FILES = {"train": "train_name.txt", "test": "test_name.txt"}
TRACK_FILES = {"train": ("tracks_train_info.mat", "track_train_info"),
               "test": ("tracks_test_info.mat", "track_test_info")}
QUERY_FILE = ("query_IDX.mat", "query_IDX")
GALLERY_MODES = ("all", "exclude_query")
FRAME_NAME = re.compile(r"^(00-1|\d+)C(\d+)T(\d+)F(\d+)\.(?:jpe?g|png)$", re.IGNORECASE)
JUNK, DISTRACTOR = -1, 0
DERIVED_PROTOCOL = ("derived: for every test identity seen by >= 2 cameras, its lowest-numbered tracklet in each "
                    "camera is a query; NOT the official MARS protocol (info/query_IDX.mat missing), figures are "
                    "not comparable with published MARS results")


def parse_frame_name(name: str, where: str):
    """`<pid>C<cam>T<tracklet>F<frame>.jpg` -> (pid, cam 1-based, tracklet, frame, pid text); pid 00-1 is -1."""
    m = FRAME_NAME.match(name)
    if not m:
        raise DatasetError(f"{where}: {name!r} is not a MARS frame name (<pid>C<cam>T<tracklet>F<frame>.jpg, "
                           f"e.g. 0003C4T0003F001.jpg)")
    text = m.group(1)
    pid = JUNK if text == "00-1" else int(text)
    return pid, int(m.group(2)), int(m.group(3)), int(m.group(4)), text


def find_mars_root(root: str) -> str:
    """`root` itself or its MARS/mars sub-folder: the one holding bbox_train/."""
    require_dir(root, "MARS root")
    candidates = [root, os.path.join(root, "MARS"), os.path.join(root, "mars")]
    for cand in candidates:
        if os.path.isdir(os.path.join(cand, FOLDERS["train"])):
            return cand
    tried = ", ".join(os.path.join(c, FOLDERS["train"]) for c in candidates)
    raise DatasetError(f"no MARS layout under {root}: folder bbox_train not found (tried {tried})")


def read_name_list(path: str) -> list:
    """The frame names of `train_name.txt` / `test_name.txt`, one per line (trailing blank lines ignored)."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file not found (MARS info/ needs it)")
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        names = [line.strip() for line in f]
    while names and not names[-1]:
        names.pop()
    for i, n in enumerate(names):
        if not n:
            raise DatasetError(f"{path}: line {i + 1} is empty (the track rows index this list by line)")
    if not names:
        raise DatasetError(f"{path}: no frame names")
    return names


def _integer_matrix(path: str, var: str, columns: int | None) -> np.ndarray:
    mat = loadmat(path)
    if var not in mat:
        keys = [k for k in mat if not k.startswith("__")]
        raise DatasetError(f"{path}: no variable {var!r} (found {keys}); not a MARS {os.path.basename(path)}")
    value = np.asarray(mat[var])
    if not np.issubdtype(value.dtype, np.number) or value.size == 0:
        raise DatasetError(f"{path}: {var} is not a numeric array (dtype {value.dtype}, shape {value.shape})")
    if columns is None:
        value = value.ravel()
    else:
        value = np.atleast_2d(value)
        if value.ndim != 2 or value.shape[1] != columns:
            raise DatasetError(f"{path}: {var} has shape {value.shape}; expected (tracklets, {columns}): "
                               "start, end, pid, camera")
    if not np.all(np.isfinite(value)) or not np.all(value == np.round(value)):
        raise DatasetError(f"{path}: {var} holds values that are not whole numbers")
    return value.astype(np.int64)


def read_track_info(path: str, var: str, num_names: int, name_file: str) -> np.ndarray:
    """The (tracklets, 4) rows start, end (1-based, inclusive), pid, camera of a tracks_*_info.mat."""
    rows = _integer_matrix(path, var, 4)
    for r, (start, end, _, _) in enumerate(rows):
        if start < 1 or end < start or end > num_names:
            raise DatasetError(f"{path}: {var} row {r + 1} (start {start}, end {end}) runs outside the "
                               f"{num_names} names of {name_file}")
    return rows


def _tracklets_from_rows(rows, names, folder, split_file, num_cameras) -> list:
    """One Tracklet per row; every frame name must parse and agree with its row's pid and camera."""
    out = []
    for r, (start, end, pid, cam) in enumerate(rows):
        if not 1 <= cam <= num_cameras:
            raise DatasetError(f"{split_file}: row {r + 1} has camera {cam}, outside 1..{num_cameras}")
        frames = []
        for i in range(start - 1, end):
            fpid, fcam, _, _, text = parse_frame_name(names[i], f"{split_file} row {r + 1} (name {i + 1})")
            if fpid != pid or fcam != cam:
                raise DatasetError(f"{split_file}: row {r + 1} says pid {pid} camera {cam}, its frame {names[i]!r} "
                                   f"(name {i + 1}) has pid {fpid} camera {fcam}")
            frames.append(os.path.join(folder, text, names[i]))
        out.append(Tracklet(tuple(frames), int(pid), int(cam) - 1, None))
    return out


def derived_queries(tracklets, keys=None) -> list:
    """Positions of the derived queries (the rule of the module doc): for each
    identity >= 1 seen by two or more cameras, per camera the tracklet with the
    lowest key (`keys[i]`, default the position)."""
    keys = list(range(len(tracklets))) if keys is None else list(keys)
    first = {}
    for i, t in enumerate(tracklets):
        if t.pid >= 1:
            k = (t.pid, t.camid)
            if k not in first or keys[i] < keys[first[k]]:
                first[k] = i
    cameras = collections.Counter(pid for pid, _ in first)
    return sorted(i for (pid, _), i in first.items() if cameras[pid] >= 2)


def scan_tracklets(folder: str, num_cameras: int, skips: SkipCounter):
    """Tracklets rebuilt from `folder/<pid>/` file names (sorted by pid, camera,
    tracklet number; frames by frame number) and their tracklet numbers."""
    require_dir(folder, "MARS split")
    groups = collections.defaultdict(list)
    for sub in sorted(os.listdir(folder)):
        path = os.path.join(folder, sub)
        if not os.path.isdir(path):
            skips.add("file outside the <pid>/ folders", path)
            continue
        for name in list_images(path, skips):
            pid, cam, tnum, fnum, text = parse_frame_name(name, os.path.join(path, name))
            if text != sub:
                raise DatasetError(f"{os.path.join(path, name)}: pid {text} in the folder of pid {sub}")
            if not 1 <= cam <= num_cameras:
                raise DatasetError(f"{os.path.join(path, name)}: camera {cam} outside 1..{num_cameras}")
            groups[(pid, cam, tnum)].append((fnum, os.path.join(path, name)))
    if not groups:
        raise DatasetError(f"{folder}: no MARS frames")
    keys = sorted(groups)
    tracklets = [Tracklet(tuple(p for _, p in sorted(groups[k])), k[0], k[1] - 1, None) for k in keys]
    return tracklets, [k[2] for k in keys]


def _drop(tracklets, pids, counts, what):
    kept = [t for t in tracklets if t.pid not in pids]
    if len(kept) < len(tracklets):
        counts[what] = counts.get(what, 0) + len(tracklets) - len(kept)
    return kept


def _official_splits(base, info, num_cameras):
    """train / test tracklets and the 0-based query rows from the info/ files."""
    tracks, names = {}, {}
    for split in ("train", "test"):
        name_file = os.path.join(info, NAME_FILES[split])
        names[split] = read_name_list(name_file)
        mat_file, var = TRACK_FILES[split]
        rows = read_track_info(os.path.join(info, mat_file), var, len(names[split]), name_file)
        tracks[split] = _tracklets_from_rows(rows, names[split], os.path.join(base, FOLDERS[split]),
                                             os.path.join(info, mat_file), num_cameras)
    query_file = os.path.join(info, QUERY_FILE[0])
    query_idx = _integer_matrix(query_file, QUERY_FILE[1], None)
    n = len(tracks["test"])
    bad = query_idx[(query_idx < 1) | (query_idx > n)]
    if len(bad):
        raise DatasetError(f"{query_file}: {QUERY_FILE[1]} holds {bad[0]}, outside the {n} rows of "
                           f"{TRACK_FILES['test'][0]}")
    return tracks["train"], tracks["test"], sorted(set((query_idx - 1).tolist()))


def load_mars_layout(root, *, name, num_cameras=NUM_CAMERAS, gallery="all"):
    """Read a MARS-layout folder (MARS itself, or the synthetic video set); see the module doc."""
    if gallery not in GALLERY_MODES:
        raise ValueError(f"gallery must be one of {GALLERY_MODES}, got {gallery!r}")
    base = find_mars_root(root)
    require_dir(os.path.join(base, FOLDERS["test"]), "MARS test split")
    info_dir = os.path.join(base, "info")
    skips = SkipCounter(f"{name} at {base}")
    if os.path.isdir(info_dir):
        train, test, query_rows = _official_splits(base, info_dir, num_cameras)
        protocol = "official"
    else:
        train, _ = scan_tracklets(os.path.join(base, FOLDERS["train"]), num_cameras, skips)
        test, numbers = scan_tracklets(os.path.join(base, FOLDERS["test"]), num_cameras, skips)
        query_rows = derived_queries(test, numbers)
        protocol = "derived"
        warnings.warn(f"{base}: no info/ folder; MARS query/gallery split {DERIVED_PROTOCOL}", DatasetWarning,
                      stacklevel=2)
    skips.warn()
    dropped: dict = {}
    in_query = set(query_rows)
    query = [test[i] for i in query_rows]
    gallery_tracks = test if gallery == "all" else [t for i, t in enumerate(test) if i not in in_query]
    splits = {
        "train": relabel(_drop(train, {JUNK, DISTRACTOR}, dropped, "train junk/distractor tracklets")),
        "query": _drop(query, {JUNK, DISTRACTOR}, dropped, "query junk/distractor tracklets"),
        "gallery": _drop(gallery_tracks, {JUNK}, dropped, "gallery junk tracklets"),
    }
    for split, tracks in splits.items():
        if not tracks:
            raise DatasetError(f"{base}: empty MARS {split} split")
    info = {"protocol": protocol, "protocol_note": "" if protocol == "official" else DERIVED_PROTOCOL,
            "gallery": gallery,
            "info_dir": info_dir if protocol == "official" else None, "dropped": dropped,
            "skipped": dict(skips.counts)}
    return PedestrianDataset(name, splits, kind="video", num_cameras=num_cameras, root=base, info=info,
                             report=DataReport([skips]))


def load_mars(root, *, gallery="all"):
    """Load MARS from `root` (bbox_train/, bbox_test/, info/).

    Args:
      root: the MARS folder (or its parent holding MARS/ or mars/).
      gallery: "all" (official: every test tracklet, queries included) or
        "exclude_query" (torchreid's 9,330-tracklet gallery).
    """
    return load_mars_layout(root, name="mars", num_cameras=NUM_CAMERAS, gallery=gallery)

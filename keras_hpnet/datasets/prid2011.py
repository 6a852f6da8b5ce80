"""PRID-2011 multi-shot (Hirzer et al., "Person Re-Identification by
Descriptive and Discriminative Classification", SCIA 2011): video re-id over
two cameras, read from the release folders (docs/datasets.md, "PRID-2011").

Layout: `root/multi_shot/` (or `root/prid_2011/multi_shot/`) with `cam_a/`
and `cam_b/`, each `person_XXXX/` holding one tracklet's frames
(`0001.png`, ...; frames in name order). 385 persons in camera A, 749 in
camera B, the first 200 in both.

Protocol (Wang et al., "Person Re-identification by Video Ranking", ECCV 2014,
Sec. 5; McLaughlin et al., CVPR 2016): the persons seen by both cameras with
at least `min_frames` (21) frames in each, split in half at random, ten times
(`split` 0..9); train on both cameras' tracklets of one half, query with the
camera-A tracklets of the other half against their camera-B tracklets. The
published split files are not part of the release, so the halves are drawn
here from `split` (a seeded permutation): the protocol is the papers', the
splits are not theirs (`info["protocol"]` "derived", `info["protocol_note"]`).
"""

from __future__ import annotations

import os
import re

import numpy as np

from keras_hpnet.datasets.base import (
    DataReport, DatasetError, PedestrianDataset, SkipCounter, Tracklet, list_images, relabel, require_dir)

CAMERAS = ("cam_a", "cam_b")
PERSON = re.compile(r"^person_(\d+)$")
NUM_SPLITS = 10
SPLIT_SEED = 0x50524944  # the splits' permutation stream ("PRID")


def find_multi_shot(root: str) -> str:
    """The `multi_shot` folder under `root` (root itself, root/multi_shot or root/prid_2011/multi_shot)."""
    require_dir(root, "PRID-2011 root")
    candidates = [root, os.path.join(root, "multi_shot"), os.path.join(root, "prid_2011", "multi_shot")]
    for cand in candidates:
        if all(os.path.isdir(os.path.join(cand, cam)) for cam in CAMERAS):
            return cand
    tried = ", ".join(os.path.join(c, "cam_a") for c in candidates)
    raise DatasetError(f"no PRID-2011 multi_shot layout under {root}: cam_a/ and cam_b/ not found (tried {tried})")


def read_camera(folder: str, skips: SkipCounter) -> dict:
    """{person number: frame paths in name order} of one camera folder."""
    people = {}
    for sub in sorted(os.listdir(folder)):
        path = os.path.join(folder, sub)
        m = PERSON.match(sub)
        if not m or not os.path.isdir(path):
            skips.add("entry that is not a person_XXXX folder", path)
            continue
        frames = [os.path.join(path, f) for f in list_images(path, skips)]
        if frames:
            people[int(m.group(1))] = tuple(frames)
        else:
            skips.add("person folder without frames", path)
    return people


def split_ids(ids, split: int) -> tuple:
    """(train ids, test ids): the seeded half/half split number `split` of `ids`."""
    ids = np.asarray(sorted(ids), np.int64)
    order = np.random.default_rng([SPLIT_SEED, int(split)]).permutation(len(ids))
    half = len(ids) // 2
    return sorted(ids[order[:half]].tolist()), sorted(ids[order[half:]].tolist())


def load_prid2011(root, *, split=0, min_frames=21):
    """Load PRID-2011 multi-shot split `split` (0..9; see the module doc).

    Args:
      root: the folder holding multi_shot/ (or multi_shot itself).
      split: which of the ten random halvings.
      min_frames: persons need this many frames in both cameras (DVR: 21).
    """
    if not 0 <= int(split) < NUM_SPLITS:
        raise ValueError(f"split must be in 0..{NUM_SPLITS - 1}, got {split!r}")
    if int(min_frames) < 1:
        raise ValueError(f"min_frames must be >= 1, got {min_frames!r}")
    base = find_multi_shot(root)
    skips = SkipCounter(f"prid2011 at {base}")
    cams = [read_camera(os.path.join(base, cam), skips) for cam in CAMERAS]
    skips.warn()
    both = sorted(set(cams[0]) & set(cams[1]))
    eligible = [p for p in both if min(len(cams[0][p]), len(cams[1][p])) >= int(min_frames)]
    if len(eligible) < 2:
        raise DatasetError(f"{base}: {len(eligible)} person(s) seen by both cameras with >= {min_frames} frames "
                           f"each ({len(both)} in both cameras); need at least 2 to split")
    train_ids, test_ids = split_ids(eligible, split)

    def tracklets(ids, cam_indices):
        return [Tracklet(cams[c][p], p, c, None) for p in ids for c in cam_indices]

    splits = {"train": relabel(tracklets(train_ids, (0, 1))), "query": tracklets(test_ids, (0,)),
              "gallery": tracklets(test_ids, (1,))}
    note = (f"PRID-2011 split {int(split)}: a seeded half/half split of the {len(eligible)} persons seen by both "
            f"cameras with >= {int(min_frames)} frames (the DVR/RCN protocol; not the papers' split files)")
    info = {"protocol": "derived", "protocol_note": note, "split": int(split), "min_frames": int(min_frames),
            "num_eligible": len(eligible), "num_in_both_cameras": len(both), "skipped": dict(skips.counts)}
    return PedestrianDataset("prid2011", splits, kind="video", num_cameras=2, root=base, info=info,
                             report=DataReport([skips]))

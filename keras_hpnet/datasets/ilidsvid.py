"""iLIDS-VID (Wang et al., "Person Re-Identification by Video Ranking", ECCV
2014): video re-id with two cameras, 300 persons seen by both, read from the
release unchanged (docs/datasets.md, "PRID-2011 multi-shot and iLIDS-VID").

Layout (the release `iLIDS-VID.tar`, as torchreid expects it under
`ilids-vid/`): `i-LIDS-VID/sequences/cam1/personNNN/cam1_personNNN_XXXXX.png`
and `.../cam2/...`, one sequence per person and camera, and
`train-test people splits/train_test_splits_ilidsvid.mat`, variable `ls_set`:
10 rows (splits), each a permutation of 1..300, 1-based positions in the
sorted person folder names; the first half of a row are the test persons, the
rest train (Wang et al.; torchreid reads it the same way). Query = cam1
(camid 0), gallery = cam2 (camid 1) of the test persons; train = both
cameras, pids relabelled. Without the .mat, a seeded half/half split of the
persons seen by both cameras: NOT the official splits (a warning,
`info["protocol"] == "derived"`).
"""

from __future__ import annotations

import os

import numpy as np

from keras_hpnet.datasets.base import DatasetError, loadmat
from keras_hpnet.datasets.multishot import find_layout, load_multishot

CAMERAS = ("cam1", "cam2")  # query, gallery
SPLIT_DIR, SPLIT_MAT, SPLIT_VAR = "train-test people splits", "train_test_splits_ilidsvid.mat", "ls_set"


def find_sequences(root: str) -> str:
    """The `sequences/` folder under `root` (root itself, `sequences/`,
    `i-LIDS-VID/sequences/` or `ilids-vid/i-LIDS-VID/sequences/`)."""
    return find_layout(root, ("", "sequences", os.path.join("i-LIDS-VID", "sequences"),
                              os.path.join("ilids-vid", "i-LIDS-VID", "sequences")), CAMERAS, "iLIDS-VID")


def read_split_mat(path: str, num_persons: int) -> np.ndarray:
    """`ls_set` of train_test_splits_ilidsvid.mat: (splits, num_persons) 0-based positions."""
    mat = loadmat(path)
    if SPLIT_VAR not in mat:
        keys = [k for k in mat if not k.startswith("__")]
        raise DatasetError(f"{path}: no variable {SPLIT_VAR!r} (found {keys})")
    value = np.atleast_2d(np.asarray(mat[SPLIT_VAR]))
    if value.ndim != 2 or not np.issubdtype(value.dtype, np.number) or value.shape[1] != num_persons:
        raise DatasetError(f"{path}: {SPLIT_VAR} has shape {value.shape} (dtype {value.dtype}); expected "
                           f"(splits, {num_persons}), one column per person folder")
    for r, row in enumerate(value):
        if sorted(row.tolist()) != list(range(1, num_persons + 1)):
            raise DatasetError(f"{path}: {SPLIT_VAR} row {r + 1} is not a permutation of 1..{num_persons}")
    return value.astype(np.int64) - 1


def read_splits(path: str, cameras: dict) -> list:
    """[(train names, test names), ...] of the .mat: positions in the sorted
    person folder names of both cameras; a row's first half is the test set."""
    persons = sorted(set().union(*cameras.values()))
    half = len(persons) // 2
    return [(sorted(persons[i] for i in row[half:]), sorted(persons[i] for i in row[:half]))
            for row in read_split_mat(path, len(persons))]


def _split_mat(sequences: str, root: str) -> str | None:
    release = os.path.dirname(os.path.abspath(sequences))
    for folder in (release, os.path.dirname(release), root):
        path = os.path.join(folder, SPLIT_DIR, SPLIT_MAT)
        if os.path.isfile(path):
            return path
    return None


def load_ilidsvid(root, *, split=0, seed=0):
    """Load iLIDS-VID from `root` (see the module doc).

    Args:
      root: torchreid's `ilids-vid/` folder, the release's `i-LIDS-VID/`, or `sequences/`.
      split: which of the 10 splits (0..9).
      seed: the seed of the derived splits when there is no split .mat.
    """
    sequences = find_sequences(root)
    return load_multishot("ilidsvid", sequences, CAMERAS, _split_mat(sequences, root), read_splits, split=split,
                          seed=seed, missing=f"{SPLIT_DIR}/{SPLIT_MAT}")

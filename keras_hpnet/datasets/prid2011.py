"""PRID-2011 multi-shot (Hirzer et al., "Person Re-Identification by
Descriptive and Discriminative Classification", SCIA 2011): video re-id with
two cameras, read from the release unchanged (docs/datasets.md,
"PRID-2011 multi-shot and iLIDS-VID").

Layout (the release's `prid_2011/`, as torchreid expects it under
`prid2011/`): `multi_shot/cam_a/person_XXXX/*.png` and
`multi_shot/cam_b/person_XXXX/*.png`, one sequence per person and camera
(frames `0001.png`, ... in temporal order). cam_a holds 385 persons, cam_b
749; `person_0001`..`person_0200` are the 200 seen by both.

Protocol (Wang et al., ECCV 2014; `multishot.py`): 10 splits of 89 train /
89 test persons out of the 178 persons whose sequences are longer than a
frame threshold. The splits are read from `splits_prid2011.json`, torchreid's
file (its docs: "the split created by iLIDS-VID", presumably from the
`train_test_splits_prid.mat` shipped with iLIDS-VID; 178 persons): a JSON list
of `{"train": [person folder names], "test": [...]}`, looked for beside
`prid_2011/`, in it, or in `root`. Query = cam_a (camid 0), gallery = cam_b
(camid 1) of the test persons; train = both cameras, pids relabelled.
Without the file, the persons with at least `min_frames` (21) frames in both
cameras are split half/half with a seed: NOT the official splits (a warning,
`info["protocol"] == "derived"`, a line of `dataset.summary()`). The threshold
behind the official 178 is not in any file: 21 is the number usually quoted,
while a public reader counting the release reports 183 persons with >= 21
frames in both cameras and 178 with >= 27 (docs/datasets.md).
"""

from __future__ import annotations

import json
import os

from keras_hpnet.datasets.base import DatasetError
from keras_hpnet.datasets.multishot import find_layout, load_multishot

CAMERAS = ("cam_a", "cam_b")  # query, gallery
SPLIT_FILE = "splits_prid2011.json"


def find_multi_shot(root: str) -> str:
    """The `multi_shot/` folder under `root` (root itself, `multi_shot/`,
    `prid_2011/multi_shot/` or torchreid's `prid2011/prid_2011/multi_shot/`)."""
    return find_layout(root, ("", "multi_shot", os.path.join("prid_2011", "multi_shot"),
                              os.path.join("prid2011", "prid_2011", "multi_shot")), CAMERAS, "PRID-2011 multi-shot")


def read_split_json(path: str) -> list:
    """The [(train names, test names), ...] of a splits_prid2011.json."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: unreadable split file ({type(e).__name__}: {e})") from e
    if not isinstance(data, list) or not data:
        raise DatasetError(f"{path}: expected a non-empty JSON list of {{'train': [...], 'test': [...]}} splits")
    splits = []
    for i, entry in enumerate(data):
        parts = [entry.get(key) if isinstance(entry, dict) else None for key in ("train", "test")]
        if not all(isinstance(p, list) and all(isinstance(n, str) for n in p) for p in parts):
            raise DatasetError(f"{path}: split {i} is not {{'train': [person folder names], 'test': [...]}}")
        splits.append(tuple(parts))
    return splits


def _split_file(multi_shot: str, root: str, split_file: str | None) -> str | None:
    if split_file is not None:
        if not os.path.isfile(split_file):
            raise DatasetError(f"{split_file}: split file not found")
        return split_file
    release = os.path.dirname(os.path.abspath(multi_shot))
    for folder in (os.path.dirname(release), release, root):
        if os.path.isfile(os.path.join(folder, SPLIT_FILE)):
            return os.path.join(folder, SPLIT_FILE)
    return None


def load_prid2011(root, *, split=0, split_file=None, seed=0, min_frames=21):
    """Load PRID-2011 multi-shot from `root` (see the module doc).

    Args:
      root: torchreid's `prid2011/` folder, the release's `prid_2011/`, or `multi_shot/`.
      split: which of the 10 splits (0..9).
      split_file: a splits_prid2011.json elsewhere (default: looked for beside the release).
      seed: the seed of the derived splits when there is no split file.
      min_frames: derived splits only: persons need this many frames in both
        cameras (21, the threshold usually quoted for the protocol).
    """
    multi_shot = find_multi_shot(root)
    return load_multishot("prid2011", multi_shot, CAMERAS, _split_file(multi_shot, root, split_file),
                          lambda path, cameras: read_split_json(path), split=split, seed=seed, missing=SPLIT_FILE,
                          min_frames=min_frames)

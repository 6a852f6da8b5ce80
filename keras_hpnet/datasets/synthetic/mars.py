"""The "mars" variant: synthetic video re-id in the MARS layout and info/ files.

`bbox_train/`, `bbox_test/` with `<pid>/<pid>C<c>T<tttt>F<fff>.jpg` tracklets
(:mod:`.tracklet`), a few distractor `0000` and junk `00-1` test tracklets,
and `info/` in the official format (`train_name.txt`, `test_name.txt`,
`tracks_train_info.mat`, `tracks_test_info.mat`, `query_IDX.mat`), read by the
real reader :func:`keras_hpnet.datasets.mars.load_mars_layout`. The queries
follow :func:`keras_hpnet.datasets.mars.derived_queries` (every test identity
is seen by >= 2 cameras). Deterministic by `seed`, independent of the worker
count (:mod:`.workers`).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from keras_hpnet.datasets.base import Tracklet
from keras_hpnet.datasets.synthetic.cache import Sizes, atomic_generate, cache_dir, write_marker
from keras_hpnet.datasets.synthetic.market import DISTRACTOR_KEY, JUNK_KEY
from keras_hpnet.datasets.synthetic.tracklet import VERSION, render_tracklet
from keras_hpnet.datasets.synthetic.workers import run_jobs


@dataclasses.dataclass(frozen=True)
class VideoConfig(Sizes):
    """Sizes of the synthetic video set (all deterministic by `seed`)."""

    seed: int = 0
    num_train_ids: int = 100
    num_test_ids: int = 50
    num_cameras: int = 6
    min_cameras: int = 2  # cameras each identity appears in (test identities: at least 2)
    max_cameras: int = 4
    min_tracklets: int = 1  # tracklets per identity per camera
    max_tracklets: int = 2
    min_frames: int = 4  # frames per tracklet
    max_frames: int = 12
    num_distractors: int = 6  # test tracklets "0000"
    num_junk: int = 4  # test tracklets "00-1"
    jpeg_quality: int = 90


def _check(cfg: VideoConfig):
    if not 2 <= cfg.num_cameras <= 9:
        raise ValueError(f"num_cameras must be in 2..9 (one digit in the file name), got {cfg.num_cameras}")
    if not 1 <= cfg.min_cameras <= cfg.max_cameras <= cfg.num_cameras:
        raise ValueError("need 1 <= min_cameras <= max_cameras <= num_cameras")
    if cfg.max_cameras < 2:
        raise ValueError("max_cameras must be >= 2 (test identities need two cameras)")
    if not 1 <= cfg.min_tracklets <= cfg.max_tracklets:
        raise ValueError("need 1 <= min_tracklets <= max_tracklets")
    if not 1 <= cfg.min_frames <= cfg.max_frames <= 999:
        raise ValueError("need 1 <= min_frames <= max_frames <= 999 (three digits in the file name)")
    if cfg.num_train_ids < 1 or cfg.num_test_ids < 1 or cfg.num_train_ids + cfg.num_test_ids > 9999:
        raise ValueError("need num_train_ids, num_test_ids >= 1 and at most 9999 identities (4-digit ids)")
    if min(cfg.num_distractors, cfg.num_junk) < 0:
        raise ValueError("num_distractors and num_junk must be >= 0")


def mars_plan(cfg: VideoConfig) -> dict:
    """{"train", "test": [(folder, frame names, pid, camera 1-based, person key, tracklet key, junk)]} in
    name order (the order of `*_name.txt`)."""
    _check(cfg)
    rng = np.random.default_rng([cfg.seed, 6])
    ids = rng.permutation(np.arange(1, cfg.num_train_ids + cfg.num_test_ids + 1))
    people = {"train": [(int(p), f"{p:04d}", int(p), False) for p in sorted(ids[: cfg.num_train_ids])],
              "test": [(int(p), f"{p:04d}", int(p), False) for p in sorted(ids[cfg.num_train_ids:])]}
    people["test"] += [(0, "0000", DISTRACTOR_KEY + i, False) for i in range(cfg.num_distractors)]
    people["test"] += [(-1, "00-1", JUNK_KEY + i, True) for i in range(cfg.num_junk)]
    plan, key = {}, 0
    for split in ("train", "test"):
        rows, numbers = [], {}
        for pid, text, person, junk in people[split]:
            if pid <= 0:  # one tracklet each, in a random camera
                cams = [int(rng.integers(cfg.num_cameras))]
            else:
                low = max(cfg.min_cameras, 2) if split == "test" else cfg.min_cameras
                cams = sorted(rng.choice(cfg.num_cameras, int(rng.integers(low, cfg.max_cameras + 1)),
                                         replace=False).tolist())
            for cam in cams:
                count = 1 if pid <= 0 else int(rng.integers(cfg.min_tracklets, cfg.max_tracklets + 1))
                for _ in range(count):
                    t = numbers[(text, cam)] = numbers.get((text, cam), 0) + 1
                    frames = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
                    names = tuple(f"{text}C{cam + 1}T{t:04d}F{f:03d}.jpg" for f in range(1, frames + 1))
                    rows.append((f"bbox_{split}/{text}", names, pid, cam + 1, person, key, junk))
                    key += 1
        plan[split] = sorted(rows, key=lambda r: r[1][0])
    return plan


def mars_jobs(plan: dict) -> list:
    """The render jobs of a `mars_plan`: (folder, frame names, camera 0-based, person key, tracklet key, junk)."""
    return [(folder, names, cam - 1, person, tkey, junk) for split in ("train", "test")
            for folder, names, _, cam, person, tkey, junk in plan[split]]


def render_tracklet_jobs(seed, quality, out_dir, jobs):
    """Render tracklet `jobs` (folder, frame names, camera, person key, tracklet key, junk) as JPEGs of `quality`."""
    from PIL import Image

    for folder, names, cam, person, tkey, junk in jobs:
        os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
        for name, frame in zip(names, render_tracklet(seed, person, cam, tkey, len(names), junk=junk)):
            Image.fromarray(frame).save(os.path.join(out_dir, folder, name), format="JPEG", quality=quality)


def write_info(folder: str, plan: dict) -> None:
    """info/ in the official MARS format: name lists, track rows (start, end, pid, camera; 1-based, double)
    and query_IDX (1-based rows of the test tracks, :func:`~keras_hpnet.datasets.mars.derived_queries`)."""
    import scipy.io

    from keras_hpnet.datasets.mars import QUERY_FILE, TRACK_FILES, derived_queries

    info = os.path.join(folder, "info")
    os.makedirs(info, exist_ok=True)
    for split in ("train", "test"):
        names, rows = [], []
        for _, frames, pid, cam, *_ in plan[split]:
            rows.append((len(names) + 1, len(names) + len(frames), pid, cam))
            names.extend(frames)
        with open(os.path.join(info, f"{split}_name.txt"), "w") as f:
            f.write("".join(n + "\n" for n in names))
        mat_file, var = TRACK_FILES[split]
        scipy.io.savemat(os.path.join(info, mat_file), {var: np.asarray(rows, np.float64)}, do_compression=False)
    test = plan["test"]
    tracks = [Tracklet((), pid, cam - 1) for _, _, pid, cam, *_ in test]
    numbers = [int(frames[0].split("T")[1][:4]) for _, frames, *_ in test]
    query = np.asarray(derived_queries(tracks, numbers), np.float64) + 1
    scipy.io.savemat(os.path.join(info, QUERY_FILE[0]), {QUERY_FILE[1]: query.reshape(1, -1)}, do_compression=False)


def generate_mars(root: str | None = None, *, workers: int | None = None, **sizes) -> str:
    """Write the MARS-layout synthetic video set; returns its folder
    (`root/synthetic_mars_<key>`, root defaults to the cache directory;
    an existing finished copy is reused)."""
    cfg = VideoConfig(**sizes)
    final = os.path.join(root or cache_dir(), f"synthetic_mars_{cfg.key(f'mars-tracklet{VERSION}')}")

    def build(tmp):
        plan = mars_plan(cfg)
        jobs = mars_jobs(plan)
        run_jobs("mars", cfg, jobs, tmp, workers, render=render_tracklet_jobs,
                 size=sum(len(job[1]) for job in jobs))
        write_info(tmp, plan)
        write_marker(tmp, "mars", cfg, sum(len(job[1]) for job in jobs))

    return atomic_generate(final, build)


def load_synthetic_mars(root=None, *, gallery="all", workers=None, **sizes):
    """Make (first use) and load the synthetic video set with the real MARS reader.

    `sizes`: fields of :class:`VideoConfig`; `gallery` as in `load_mars`.
    """
    from keras_hpnet.datasets.mars import load_mars_layout

    folder = generate_mars(root, workers=workers, **sizes)
    return load_mars_layout(folder, name="synthetic_mars", num_cameras=VideoConfig(**sizes).num_cameras,
                            gallery=gallery)

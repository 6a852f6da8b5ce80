"""The "market" variant: the Market-1501 layout, file names and `market_attribute.mat`.

`bounding_box_train`, `query`, `bounding_box_test` with `PPPP_cCsS_FFFFFF_NN.jpg`
names, a few junk `-1` and distractor `0000` gallery images, and identity
attributes in the official struct format (1/2 coding); read by
:func:`keras_hpnet.datasets.market1501.load_market_layout` (docs/datasets.md).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from keras_hpnet.datasets.synthetic.cache import Sizes, atomic_generate, cache_dir, write_marker
from keras_hpnet.datasets.synthetic.person import DOWN_COLOURS, UP_COLOURS, Person, make_person
from keras_hpnet.datasets.synthetic.workers import run_jobs

# Official field order of market_attribute.mat (image_index last).
MARKET_FIELDS = ("age", "backpack", "bag", "handbag", "downblack", "downblue", "downbrown", "downgray",
                 "downgreen", "downpink", "downpurple", "downwhite", "downyellow", "upblack", "upblue",
                 "upgreen", "upgray", "uppurple", "upred", "upwhite", "upyellow", "clothes", "down", "up",
                 "hair", "hat", "gender")
DISTRACTOR_KEY, JUNK_KEY = 20000, 30000  # person keys of gallery distractors "0000" and junk "-1"


@dataclasses.dataclass(frozen=True)
class Config(Sizes):
    """Sizes of the synthetic dataset (all deterministic by `seed`)."""

    seed: int = 0
    num_train_ids: int = 1000
    num_test_ids: int = 150
    num_cameras: int = 6
    min_cameras: int = 2  # cameras each identity appears in: min_cameras..max_cameras
    max_cameras: int = 5
    min_images: int = 2  # images per identity per camera (test identities: at least 2)
    max_images: int = 4
    # Training identities: many identities with few images each (attributes
    # generalise with attribute diversity, not with more views of the same
    # person: 1,000 identities x 2 cameras x 1 image give the demo's attribute
    # network +1.9 points mA over 500 x 2-3 x 1-2 with max pooling, docs/training.md);
    # 0 = as the test split. Capped by max_cameras / max_images.
    train_max_cameras: int = 2
    train_min_images: int = 1
    train_max_images: int = 1
    num_distractors: int = 40  # gallery images "0000"
    num_junk: int = 20  # gallery images "-1"
    jpeg_quality: int = 90


def _check(cfg: Config):
    if cfg.num_cameras < 2 or cfg.num_cameras > 9:
        raise ValueError(f"num_cameras must be in 2..9 (one digit in the file name), got {cfg.num_cameras}")
    if not (1 <= cfg.min_cameras <= cfg.max_cameras <= cfg.num_cameras):
        raise ValueError("need 1 <= min_cameras <= max_cameras <= num_cameras")
    if not (1 <= cfg.min_images <= cfg.max_images):
        raise ValueError("need 1 <= min_images <= max_images")
    if min(cfg.train_max_cameras, cfg.train_min_images, cfg.train_max_images) < 0:
        raise ValueError("train_max_cameras, train_min_images and train_max_images must be >= 0 "
                         "(0 = as the test split)")
    if cfg.num_train_ids < 1 or cfg.num_test_ids < 1:
        raise ValueError("num_train_ids and num_test_ids must be >= 1")
    if cfg.num_train_ids + cfg.num_test_ids > 9998:
        raise ValueError("at most 9998 identities (4-digit ids)")


def _sampling(cfg: Config, test: bool):
    """(min, max cameras per identity, min, max images per camera) of the test or the training split."""
    if test:
        return max(cfg.min_cameras, 2), cfg.max_cameras, max(cfg.min_images, 2), max(cfg.max_images, 2)
    min_c = cfg.min_cameras
    max_c = max(min_c, min(cfg.train_max_cameras or cfg.max_cameras, cfg.max_cameras))
    max_i = min(cfg.train_max_images or cfg.max_images, cfg.max_images)
    return min_c, max_c, min(cfg.train_min_images or cfg.min_images, max_i), max_i


def market_plan(cfg: Config):
    """[(relative path, person key, camera, image key, junk)] and {pid: person key} per split."""
    _check(cfg)
    rng = np.random.default_rng([cfg.seed, 4])
    ids = rng.permutation(np.arange(1, cfg.num_train_ids + cfg.num_test_ids + 1))
    train_ids = sorted(ids[: cfg.num_train_ids].tolist())
    test_ids = sorted(ids[cfg.num_train_ids:].tolist())
    frame = np.zeros(cfg.num_cameras, np.int64)
    plan = []

    def name(pid_text, cam):
        frame[cam] += rng.integers(5, 60)
        seq = 1 + min(int(frame[cam] // 40000), 5)
        return f"{pid_text}_c{cam + 1}s{seq}_{int(frame[cam]):06d}_{int(rng.integers(1, 4)):02d}.jpg"

    for split_ids, test in ((train_ids, False), (test_ids, True)):
        min_c, max_c, min_i, max_i = _sampling(cfg, test)
        for pid in split_ids:
            ncam = int(rng.integers(min_c, max_c + 1))
            cams = sorted(rng.choice(cfg.num_cameras, ncam, replace=False).tolist())
            for cam in cams:
                for k in range(int(rng.integers(min_i, max_i + 1))):
                    folder = ("query" if k == 0 else "bounding_box_test") if test else "bounding_box_train"
                    plan.append((f"{folder}/{name(f'{pid:04d}', cam)}", pid, cam, False))
    for i in range(cfg.num_distractors):
        cam = int(rng.integers(cfg.num_cameras))
        plan.append((f"bounding_box_test/{name('0000', cam)}", DISTRACTOR_KEY + i, cam, False))
    for i in range(cfg.num_junk):
        cam = int(rng.integers(cfg.num_cameras))
        plan.append((f"bounding_box_test/{name('-1', cam)}", JUNK_KEY + i, cam, True))
    jobs = [(rel, key, cam, idx, junk) for idx, (rel, key, cam, junk) in enumerate(plan)]
    return jobs, train_ids, test_ids


def _yes_no(flag) -> int:
    return 2 if flag else 1


def market_codes(p: Person) -> dict:
    """One identity's `market_attribute.mat` values: 1 = no, 2 = yes; age 1..4 (young..old)."""
    codes = {"age": p.age + 1, "backpack": _yes_no(p.backpack), "bag": _yes_no(p.bag),
             "handbag": _yes_no(p.handbag), "hat": _yes_no(p.hat), "clothes": _yes_no(not p.dress),
             "down": _yes_no(p.short_lower), "up": _yes_no(p.short_sleeve), "hair": _yes_no(p.long_hair),
             "gender": _yes_no(p.female)}
    codes.update({f"up{c}": _yes_no(p.up == c) for c in UP_COLOURS})
    codes.update({f"down{c}": _yes_no(p.down == c) for c in DOWN_COLOURS})
    return codes


def _market_mat_struct(seed, pids):
    codes = [market_codes(make_person(seed, p)) for p in pids]
    cols = {f: np.asarray([c[f] for c in codes], np.float64).reshape(1, -1) for f in MARKET_FIELDS}  # double rows
    idx = np.empty((1, len(pids)), dtype=object)
    for i, p in enumerate(pids):
        idx[0, i] = f"{p:04d}"
    cols["image_index"] = idx  # cell array of char
    return cols


def write_market_attribute_mat(path, seed, train_ids, test_ids):
    """`market_attribute.mat` in the official struct format (1/2 coding, per identity)."""
    import scipy.io

    scipy.io.savemat(path, {"market_attribute": {"train": _market_mat_struct(seed, train_ids),
                                                 "test": _market_mat_struct(seed, test_ids)}},
                     do_compression=False, oned_as="row")


def generate_market(root: str | None = None, *, workers: int | None = None, **sizes) -> str:
    """Write the Market-1501-layout synthetic dataset; returns its folder.

    The folder is `root/synthetic_market_<key>` (root defaults to the cache
    directory), `key` a hash of the sizes, seed and renderer version, so other
    sizes never reuse a mismatching copy. An existing finished copy is reused.
    """
    cfg = Config(**sizes)
    final = os.path.join(root or cache_dir(), f"synthetic_market_{cfg.key('market')}")

    def build(tmp):
        jobs, train_ids, test_ids = market_plan(cfg)
        for folder in ("bounding_box_train", "bounding_box_test", "query"):
            os.makedirs(os.path.join(tmp, folder))
        run_jobs("market", cfg, jobs, tmp, workers)
        write_market_attribute_mat(os.path.join(tmp, "market_attribute.mat"), cfg.seed, train_ids, test_ids)
        write_marker(tmp, "market", cfg, len(jobs))

    return atomic_generate(final, build)


def load_synthetic(root=None, *, age="drop", workers=None, **sizes):
    """Make (first use) and load the Market-layout synthetic dataset with the real reader.

    `sizes`: fields of :class:`Config` (seed, num_train_ids, num_test_ids,
    num_cameras, min/max_cameras, min/max_images, num_distractors, num_junk).
    """
    from keras_hpnet.datasets.market1501 import load_market_layout

    folder = generate_market(root, workers=workers, **sizes)
    return load_market_layout(folder, name="synthetic", num_cameras=Config(**sizes).num_cameras,
                              attribute_file=os.path.join(folder, "market_attribute.mat"),
                              attribute_struct="market_attribute", age=age)

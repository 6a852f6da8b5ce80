"""The "pa100k" variant: `annotation.mat` + `data/000001.jpg...`, 26 PA-100K attributes per image.

View-dependent attributes (view, glasses, logo...) are image level, as drawn;
read by :func:`keras_hpnet.datasets.pa100k.load_pa100k` (docs/datasets.md).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from keras_hpnet.datasets.synthetic.cache import Sizes, atomic_generate, cache_dir, write_marker
from keras_hpnet.datasets.synthetic.camera import VIEWS
from keras_hpnet.datasets.synthetic.person import Person, make_person
from keras_hpnet.datasets.synthetic.workers import run_jobs

PA100K_ATTRIBUTES = ("Female", "AgeOver60", "Age18-60", "AgeLess18", "Front", "Side", "Back", "Hat", "Glasses",
                     "HandBag", "ShoulderBag", "Backpack", "HoldObjectsInFront", "ShortSleeve", "LongSleeve",
                     "UpperStride", "UpperLogo", "UpperPlaid", "UpperSplice", "LowerStripe", "LowerPattern",
                     "LongCoat", "Trousers", "Shorts", "Skirt&Dress", "boots")
PERSON_KEY, IMAGE_KEY = 40000, 100000  # every image is its own person (key offsets)


@dataclasses.dataclass(frozen=True)
class Config100k(Sizes):
    """Sizes of the PA-100K-style variant (images per split)."""

    seed: int = 0
    num_train: int = 2400
    num_val: int = 300
    num_test: int = 300
    num_cameras: int = 6
    jpeg_quality: int = 90


def pa100k_labels(p: Person, view: str) -> np.ndarray:
    """The 26 PA-100K attributes of one image (view-dependent ones as drawn)."""
    v = {"Female": p.female, "AgeOver60": p.age == 3, "Age18-60": p.age == 2, "AgeLess18": p.age < 2,
         "Front": view == "front", "Side": view == "side", "Back": view == "back", "Hat": p.hat,
         "Glasses": p.glasses and view != "back", "HandBag": p.handbag, "ShoulderBag": p.bag,
         "Backpack": p.backpack, "HoldObjectsInFront": p.holding and view != "back",
         "ShortSleeve": p.short_sleeve, "LongSleeve": not p.short_sleeve, "UpperStride": p.pattern == "stride",
         "UpperLogo": p.pattern == "logo" and view == "front", "UpperPlaid": p.pattern == "plaid",
         "UpperSplice": p.pattern == "splice" and view != "side",
         "LowerStripe": p.lower_pattern == "stripe" and not p.dress,
         "LowerPattern": p.lower_pattern == "pattern" and not p.dress, "LongCoat": p.longcoat,
         "Trousers": not p.dress and not p.short_lower, "Shorts": not p.dress and p.short_lower,
         "Skirt&Dress": p.dress, "boots": p.boots}
    return np.asarray([int(bool(v[n])) for n in PA100K_ATTRIBUTES], np.uint8)


def pa100k_plan(cfg: Config100k):
    """[(relative path, person key, camera, image key, junk, view)], train then val then test."""
    rng = np.random.default_rng([cfg.seed, 5])
    jobs = []
    for i in range(cfg.num_train + cfg.num_val + cfg.num_test):
        cam = int(rng.integers(cfg.num_cameras))
        view = VIEWS[int(rng.integers(3))]
        jobs.append((f"data/{i + 1:06d}.jpg", PERSON_KEY + i, cam, IMAGE_KEY + i, False, view))
    return jobs


def write_annotation_mat(path, cfg: Config100k, jobs):
    """`annotation.mat` as the official file: attribute names, image names and labels per split."""
    import scipy.io

    labels = np.stack([pa100k_labels(make_person(cfg.seed, j[1]), j[5]) for j in jobs]).astype(np.float64)
    names = np.array([os.path.basename(j[0]) for j in jobs], dtype=object)
    a, b = cfg.num_train, cfg.num_train + cfg.num_val
    cell = lambda x: x.reshape(-1, 1)  # noqa: E731  (N x 1 cell array, as in the official file)
    scipy.io.savemat(path, {
        "attributes": cell(np.array(PA100K_ATTRIBUTES, dtype=object)),
        "train_images_name": cell(names[:a]), "val_images_name": cell(names[a:b]),
        "test_images_name": cell(names[b:]),
        "train_label": labels[:a], "val_label": labels[a:b], "test_label": labels[b:]})


def generate_pa100k(root: str | None = None, *, workers: int | None = None, **sizes) -> str:
    """Write the PA-100K-style variant (`annotation.mat` + `data/`); returns its folder."""
    cfg = Config100k(**sizes)
    if min(cfg.num_train, cfg.num_val, cfg.num_test) < 1:
        raise ValueError("num_train, num_val and num_test must be >= 1")
    final = os.path.join(root or cache_dir(), f"synthetic_pa100k_{cfg.key('pa100k')}")

    def build(tmp):
        os.makedirs(os.path.join(tmp, "data"))
        jobs = pa100k_plan(cfg)
        run_jobs("pa100k", cfg, jobs, tmp, workers)
        write_annotation_mat(os.path.join(tmp, "annotation.mat"), cfg, jobs)
        write_marker(tmp, "pa100k", cfg, len(jobs))

    return atomic_generate(final, build)


def load_synthetic_pa100k(root=None, *, workers=None, **sizes):
    """Make (first use) and load the PA-100K-style synthetic variant with the real reader."""
    from keras_hpnet.datasets.pa100k import load_pa100k

    return load_pa100k(generate_pa100k(root, workers=workers, **sizes), name="synthetic_pa100k")

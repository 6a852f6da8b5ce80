"""Where generated datasets live, their cache key, and atomic generation.

A dataset folder is named by a hash of its sizes, seed, variant and the
renderer version, and is trusted only when it holds the :data:`MARKER` file,
written last inside a temporary folder that is renamed into place: a killed
run never leaves a dataset that is later trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from keras_hpnet.datasets.synthetic.render import VERSION
from keras_hpnet.fileio import atomic_folder

MARKER = "synthetic.json"


def cache_dir() -> str:
    """`$KERAS_HPNET_CACHE` or `~/.cache/keras_hpnet`."""
    return os.environ.get("KERAS_HPNET_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "keras_hpnet")


def _cache_key(config, variant: str) -> str:
    """Short hash of a size config, the variant and the renderer version (cache folder name)."""
    text = json.dumps({"v": VERSION, "variant": variant, **dataclasses.asdict(config)}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


class Sizes:
    """Base of the (frozen dataclass) size configs: their cache key."""

    def key(self, variant: str) -> str:
        return _cache_key(self, variant)


def write_marker(folder: str, variant: str, cfg, images: int):
    """The MARKER file: what was generated (written last, it makes the folder trusted)."""
    with open(os.path.join(folder, MARKER), "w") as f:
        json.dump({"variant": variant, "version": VERSION, "images": images, **dataclasses.asdict(cfg)}, f, indent=1)


def atomic_generate(final: str, build) -> str:
    """A generated dataset folder, made by `build(tmp_dir)` (keras_hpnet.fileio.atomic_folder)."""
    return atomic_folder(final, build, marker=MARKER, what="synthetic dataset")

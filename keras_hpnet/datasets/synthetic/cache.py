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
import shutil
import tempfile

from keras_hpnet.datasets.synthetic.render import VERSION

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


def atomic_generate(final: str, build, marker: str = MARKER, what: str = "synthetic dataset") -> str:
    """Run `build(tmp_dir)` (which writes `marker` last) and rename the finished
    folder to `final` (if absent); also the CUHK03 extraction cache's rule."""
    if os.path.isfile(os.path.join(final, marker)):
        return final
    parent = os.path.dirname(os.path.abspath(final))
    os.makedirs(parent, exist_ok=True)
    if os.path.isdir(final):  # not ours / unfinished by another tool: never trusted, never deleted
        raise FileExistsError(f"{final} exists but has no {marker}: not a finished {what}; remove it")
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-" + os.path.basename(final) + "-")
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isfile(os.path.join(final, marker)):  # lost a race to a finished copy? else re-raise
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return final

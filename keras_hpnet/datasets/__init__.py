"""Dataset readers and the embedded synthetic dataset, by name.

`load(name, root=None, **options)` -> :class:`PedestrianDataset` whose splits
are lists of :class:`Record` (path, pid, camid, attributes). Names:
`market1501`, `dukemtmc`, `msmt17`, `pa100k`, `peta`, `custom`, `synthetic`
(default data, Market-1501 layout, made on first use), `synthetic_pa100k` (PA-100K-style
attribute-only variant). What was skipped: `dataset.report`, written by
`write_report(dataset, path)`. Numpy/scipy/Pillow only: no TensorFlow.
"""

from __future__ import annotations

from keras_hpnet.datasets.base import (
    ATTRIBUTE_SPLITS, REID_SPLITS, UNKNOWN_ATTRIBUTE, DatasetError, DatasetWarning, PedestrianDataset, Record)
from keras_hpnet.datasets.baseline import raw_pixel_attribute_baseline, raw_pixel_baseline
from keras_hpnet.datasets.custom import load_custom
from keras_hpnet.datasets.dukemtmc import load_dukemtmc
from keras_hpnet.datasets.market1501 import load_market1501
from keras_hpnet.datasets.msmt17 import load_msmt17
from keras_hpnet.datasets.pa100k import load_pa100k
from keras_hpnet.datasets.peta import load_peta
from keras_hpnet.datasets.report import DataReport, SkipCounter, write_report
from keras_hpnet.datasets.synthetic import cache_dir, load_synthetic, load_synthetic_pa100k

_REGISTRY = {
    "market1501": load_market1501,
    "dukemtmc": load_dukemtmc,
    "msmt17": load_msmt17,
    "pa100k": load_pa100k,
    "peta": load_peta,
    "custom": load_custom,
    "synthetic": load_synthetic,
    "synthetic_pa100k": load_synthetic_pa100k,
}
_NEEDS_ROOT = {"market1501", "dukemtmc", "msmt17", "pa100k", "peta", "custom"}


def available_datasets() -> list:
    return sorted(_REGISTRY)


def reader_options(name: str) -> dict:
    """The keyword options of dataset `name`'s reader with their defaults
    (what ``training.fit --dataset_option key=value`` may set)."""
    import inspect

    params = inspect.signature(_REGISTRY[name]).parameters.values()
    return {p.name: p.default for p in params if p.kind == p.KEYWORD_ONLY}


def load(name: str, root: str | None = None, **options) -> PedestrianDataset:
    """Load dataset `name` from `root` (synthetic: made under root or the cache dir)."""
    key = name.lower().replace("-", "").replace("_", "") if name else name
    aliases = {k.replace("_", ""): k for k in _REGISTRY}
    aliases.update({"market": "market1501", "duke": "dukemtmc", "dukemtmcreid": "dukemtmc"})
    if key not in aliases:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    canonical = aliases[key]
    if canonical in _NEEDS_ROOT and not root:
        raise ValueError(f"dataset {canonical!r} needs root= (the folder holding its files); see docs/datasets.md")
    return _REGISTRY[canonical](root, **options)


__all__ = ["ATTRIBUTE_SPLITS", "REID_SPLITS", "DataReport", "DatasetError", "DatasetWarning", "PedestrianDataset",
           "Record", "SkipCounter", "UNKNOWN_ATTRIBUTE", "available_datasets", "cache_dir", "load", "load_custom", "load_dukemtmc",
           "load_market1501", "load_msmt17", "load_pa100k", "load_peta", "load_synthetic", "load_synthetic_pa100k",
           "raw_pixel_attribute_baseline", "raw_pixel_baseline",
           "reader_options", "write_report"]

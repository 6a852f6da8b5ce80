"""DukeMTMC-reID (Zheng et al., ICCV 2017): the Market-1501 layout with 8
cameras, plus the optional DukeMTMC-attribute file of Lin et al.
(`duke_attribute.mat`, struct `duke_attribute`, 23 attributes, 1/2 coding
decoded to 0/1 as `value - 1`, the file's field order; no age field).
Also accepted: `root/DukeMTMC-reID/...`.
"""

from __future__ import annotations

from keras_hpnet.datasets.market1501 import _default_attribute_file, find_layout_root, load_market_layout

SUBFOLDERS = ("DukeMTMC-reID",)


def load_dukemtmc(root, *, attribute_file=None, attributes=True):
    """Load DukeMTMC-reID from `root` (attributes from duke_attribute.mat when present)."""
    base = find_layout_root(root, SUBFOLDERS)
    if attributes and attribute_file is None:
        attribute_file = _default_attribute_file(root, (root, base), "duke_attribute.mat")
    return load_market_layout(root, name="dukemtmc", num_cameras=8,
                              attribute_file=attribute_file if attributes else None,
                              attribute_struct="duke_attribute", subfolders=SUBFOLDERS)

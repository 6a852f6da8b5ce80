"""Raw-pixel nearest-neighbour re-id: the floor a learned model must beat."""

from __future__ import annotations

import numpy as np


def load_pixels(records, image_size=(128, 64)) -> np.ndarray:
    """[N, H*W*3] float32 in 0..1: each image resized (bilinear) to `image_size` (H, W)."""
    from PIL import Image

    h, w = image_size
    out = np.empty((len(records), h * w * 3), np.float32)
    for i, r in enumerate(records):
        with Image.open(r.path) as im:
            im = im.convert("RGB")
            if im.size != (w, h):
                im = im.resize((w, h), Image.BILINEAR)
            out[i] = np.asarray(im, np.float32).ravel() / 255.0
    return out


def _euclidean(a, b):
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(d, 0.0))


def raw_pixel_baseline(dataset, image_size=(128, 64)) -> dict:
    """Re-id metrics (keras_hpnet.metrics.reid_metrics, Market protocol) of
    Euclidean nearest neighbour on resized raw pixels, query vs gallery."""
    from keras_hpnet.metrics import reid_metrics

    q, g = dataset.splits["query"], dataset.splits["gallery"]
    qf, gf = load_pixels(q, image_size), load_pixels(g, image_size)
    dist = _euclidean(qf, gf)
    return reid_metrics(dist, np.array([r.pid for r in q]), np.array([r.pid for r in g]),
                        np.array([r.camid for r in q]), np.array([r.camid for r in g]))

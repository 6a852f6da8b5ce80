"""Raw-pixel nearest-neighbour re-id: the floor a learned model must beat."""

from __future__ import annotations

import numpy as np

from keras_hpnet.datasets.report import SkipCounter
from keras_hpnet.preprocessing import ImageError, load_rgb, prepare


def load_pixels(records, input_size=(128, 64), skips: SkipCounter | None = None):
    """Pixels of the readable images and their positions in `records`.

    Returns (float32 [N, H*W*3] in 0..1, int64 [N] positions): each image read
    and resized to `input_size` (H, W) by the image rule
    (keras_hpnet.preprocessing). Unreadable images are left out and counted
    in `skips` (reason "unreadable image", the error as example).
    """
    h, w = (int(v) for v in input_size)
    out = np.empty((len(records), h * w * 3), np.float32)
    kept = []
    for i, r in enumerate(records):
        try:
            image = load_rgb(r.path)
        except ImageError as e:
            if skips is not None:
                skips.add("unreadable image", str(e))
            continue
        out[len(kept)] = prepare(image, h, w).ravel() / np.float32(255.0)
        kept.append(i)
    return out[: len(kept)], np.asarray(kept, np.int64)


def _euclidean(a, b):
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(d, 0.0))


def raw_pixel_baseline(dataset, input_size=(128, 64)) -> dict:
    """Re-id metrics (keras_hpnet.metrics.reid_metrics, Market protocol) of
    Euclidean nearest neighbour on resized raw pixels, query vs gallery, over
    the readable images (the rest are skipped, counted in `num_skipped` and in
    `dataset.report`, and named in a DatasetWarning)."""
    from keras_hpnet.metrics import reid_metrics

    skips = SkipCounter(f"raw_pixel_baseline on {dataset.name}")
    q, g = dataset.splits["query"], dataset.splits["gallery"]
    (qf, qi), (gf, gi) = load_pixels(q, input_size, skips), load_pixels(g, input_size, skips)
    skips.warn()
    dataset.report.add_reader(skips)
    if not len(qi) or not len(gi):
        raise ValueError(f"raw_pixel_baseline: no readable {'query' if not len(qi) else 'gallery'} image")
    q, g = [q[i] for i in qi], [g[i] for i in gi]
    dist = _euclidean(qf, gf)
    metrics = reid_metrics(dist, np.array([r.pid for r in q]), np.array([r.pid for r in g]),
                           np.array([r.camid for r in q]), np.array([r.camid for r in g]))
    metrics["num_skipped"] = sum(skips.counts.values())
    return metrics

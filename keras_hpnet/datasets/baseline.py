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


def _balanced_ridge(x, y, alpha):
    """Per-attribute ridge regression of y in {-1, +1} on x (bias column
    included) with balanced sample weights: each class of each attribute
    weighs one half (positives 1/(2r), negatives 1/(2(1-r))); entries with
    y == 0 (unknown) weigh nothing. Returns weights [D+1, A]."""
    xb = np.concatenate([x, np.ones((len(x), 1), x.dtype)], 1).astype(np.float64)
    eye = np.eye(xb.shape[1])
    eye[-1, -1] = 0.0  # the bias is not shrunk
    out = np.zeros((xb.shape[1], y.shape[1]))
    for a in range(y.shape[1]):
        pos, neg = y[:, a] > 0, y[:, a] < 0
        w = np.zeros(len(y))
        if pos.any():
            w[pos] = 0.5 / pos.sum()
        if neg.any():
            w[neg] = 0.5 / neg.sum()
        xw = xb * w[:, None]
        out[:, a] = np.linalg.solve(xb.T @ xw + alpha * eye, xw.T @ y[:, a])
    return out


def raw_pixel_attribute_baseline(dataset, input_size=(32, 16), alphas=(1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)) -> dict:
    """The linear-probe floor of attribute recognition: per-attribute ridge
    regression with balanced class weights on resized raw pixels (`input_size`
    (H, W), standardised), predicting "present" where the score is > 0 (the
    threshold that balanced weights make the mA optimum). The ridge strength
    is chosen among `alphas` by mA on the "val" split (on "train" when there is
    none); the metrics (keras_hpnet.metrics.attribute_metrics) are on "test".
    Unknown entries (UNKNOWN_ATTRIBUTE) weigh nothing in the fit and are left
    out of the metrics, counted in `num_unknown`."""
    from keras_hpnet.datasets.base import UNKNOWN_ATTRIBUTE
    from keras_hpnet.metrics import attribute_metrics

    skips = SkipCounter(f"raw_pixel_attribute_baseline on {dataset.name}")
    splits = {}
    for name in ("train", "val", "test"):
        records = [r for r in dataset.splits.get(name) or [] if r.attributes is not None]
        x, kept = load_pixels(records, input_size, skips)
        labels = np.stack([records[i].attributes for i in kept]) if len(kept) else None
        splits[name] = (x, labels)
    skips.warn()
    dataset.report.add_reader(skips)
    for name in ("train", "test"):
        if splits[name][1] is None:
            raise ValueError(f"raw_pixel_attribute_baseline: no readable labelled {name} image")

    def signed(labels):  # +1 present, -1 absent, 0 unknown
        labels = np.asarray(labels)
        return np.where(labels == UNKNOWN_ATTRIBUTE, 0.0, np.where(labels > 0, 1.0, -1.0))

    mean, std = splits["train"][0].mean(0), splits["train"][0].std(0) + 1e-6
    norm = lambda x: (x - mean) / std  # noqa: E731

    def score(w, x, labels):
        s = np.concatenate([norm(x), np.ones((len(x), 1), np.float32)], 1) @ w
        y = signed(labels)
        pos, neg = (y > 0), (y < 0)
        pred = s > 0
        terms = [((pred[:, a] & pos[:, a]).sum() / pos[:, a].sum() + (~pred[:, a] & neg[:, a]).sum() / neg[:, a].sum())
                 / 2 for a in range(y.shape[1]) if pos[:, a].any() and neg[:, a].any()]
        return float(np.mean(terms)) if terms else 0.0, s

    xt, yt = norm(splits["train"][0]), signed(splits["train"][1])
    chooser = "val" if splits["val"][1] is not None else "train"
    fits = {alpha: _balanced_ridge(xt, yt, alpha) for alpha in alphas}
    alpha = max(alphas, key=lambda a: score(fits[a], *splits[chooser])[0])
    x_test, labels = splits["test"]
    _, s = score(fits[alpha], x_test, labels)
    known = np.all(np.asarray(labels) != UNKNOWN_ATTRIBUTE, axis=1)
    metrics = {k: v for k, v in attribute_metrics(1.0 / (1.0 + np.exp(-s[known])), np.asarray(labels)[known])
               .items() if k != "per_attribute"}
    metrics.update(alpha=alpha, input_size=list(input_size), num_skipped=sum(skips.counts.values()),
                   num_unknown=int((np.asarray(labels) == UNKNOWN_ATTRIBUTE).sum()), chosen_on=chooser)
    return metrics

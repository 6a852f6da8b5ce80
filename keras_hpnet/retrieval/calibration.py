"""Open-set threshold calibration: "is the nearest match the same person?" (numpy only).

On a labelled query/gallery split (docs/retrieval.md "Calibrating the match
threshold"):

- genuine pairs: (query, gallery) images of the same identity seen by
  different cameras (the Market-1501 protocol ignores same-camera matches);
  all of them, or `max_genuine_pairs` drawn with the seed when there are more;
- impostor pairs: (query, gallery) images of different identities; all of
  them when there are at most `max_impostor_pairs` (default 2,000,000), else
  that many drawn uniformly with replacement with a fixed seed, in chunks, so
  memory stays O(max pairs + chunk x D) however large the split;
- a pair is accepted ("same person") when its distance is <= the threshold:
  the ROC is (FPR, TPR) over every distinct threshold, AUC by the trapezoid
  rule (= P(d_genuine < d_impostor) + P(=)/2), the EER where FPR = 1 - TPR
  (linear interpolation between ROC points), TPR at a target FPR the largest
  TPR of a point with FPR <= target, and the threshold for a target FPR the
  largest pair distance whose FPR stays <= target. An FPR below
  1/num_impostor_pairs cannot be resolved: the report says so (`notes`).
- threshold for a target rank-1 precision: each query's nearest gallery image
  (same-identity same-camera images excluded) is accepted when its distance is
  <= t; the largest t whose accepted matches are right at least `target` of the
  time.

`calibration_picture` draws both distance histograms with the threshold and
the ROC (log FPR axis) with Pillow.
"""

from __future__ import annotations

import json
import os

import numpy as np

from keras_hpnet.fileio import write_text_atomic

CALIBRATION_FILE = "calibration.json"
CALIBRATION_PICTURE = "calibration.png"
REPORT_FPRS = (1e-2, 1e-3, 1e-4)
DISTANCES = ("euclidean", "cosine")


def _features(x, name):
    from keras_hpnet.metrics.distance import _features as checked

    x = checked(x, name)
    if not len(x):
        raise ValueError(f"{name}: no embeddings")
    return x


def pair_distance(a, b, ia, ib, distance="euclidean", chunk_size=65536):
    """Distances `d(a[ia[k]], b[ib[k]])` `[K]` (float64), gathered `chunk_size` pairs at a time
    (memory O(chunk_size x D), never K x D)."""
    from keras_hpnet.metrics.distance import _l2_normalize

    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    ia, ib = np.asarray(ia, np.int64), np.asarray(ib, np.int64)
    out = np.empty(len(ia), np.float64)
    for s in range(0, len(ia), chunk_size):
        x = np.asarray(a[ia[s : s + chunk_size]], np.float64)
        y = np.asarray(b[ib[s : s + chunk_size]], np.float64)
        if distance == "euclidean":
            out[s : s + len(x)] = np.sqrt(((x - y) ** 2).sum(1))
        else:  # 1 - cos, a zero vector at distance 1 (keras_hpnet.metrics.distance's normalisation)
            out[s : s + len(x)] = 1.0 - (_l2_normalize(x) * _l2_normalize(y)).sum(1)
    return out


def genuine_pairs(q_pids, q_cams, g_pids, g_cams):
    """(query index, gallery index) of every same-identity different-camera pair."""
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_cams, g_cams = np.asarray(q_cams), np.asarray(g_cams)
    order = np.argsort(g_pids, kind="stable")
    lo = np.searchsorted(g_pids[order], q_pids, side="left")
    hi = np.searchsorted(g_pids[order], q_pids, side="right")
    qi, gi = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for q in range(len(q_pids)):
        cand = order[lo[q] : hi[q]]
        cand = cand[g_cams[cand] != q_cams[q]]
        qi.append(np.full(len(cand), q, np.int64))
        gi.append(cand.astype(np.int64))
    return np.concatenate(qi), np.concatenate(gi)


def _same_identity_pairs(q_pids, g_pids) -> int:
    qu, qc = np.unique(q_pids, return_counts=True)
    gu, gc = np.unique(g_pids, return_counts=True)
    _, a, b = np.intersect1d(qu, gu, return_indices=True)
    return int(np.sum(qc[a].astype(np.int64) * gc[b]))


def impostor_pairs(q_pids, g_pids, max_pairs, seed=0, chunk=1_000_000):
    """(query index, gallery index, sampled) of different-identity pairs.

    All of them when there are at most `max_pairs`; otherwise `max_pairs`
    drawn uniformly with replacement (seeded), `chunk` candidates at a time.
    """
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    nq, ng = len(q_pids), len(g_pids)
    population = nq * ng - _same_identity_pairs(q_pids, g_pids)
    qi, gi = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    if population <= max_pairs:
        rows = max(1, chunk // max(ng, 1))
        for s in range(0, nq, rows):
            q = np.arange(s, min(nq, s + rows))
            qq, gg = np.repeat(q, ng), np.tile(np.arange(ng), len(q))
            keep = q_pids[qq] != g_pids[gg]
            qi.append(qq[keep])
            gi.append(gg[keep])
        return np.concatenate(qi), np.concatenate(gi), False
    rng = np.random.default_rng(seed)
    have = 0
    while have < max_pairs:
        qq = rng.integers(0, nq, chunk)
        gg = rng.integers(0, ng, chunk)
        keep = q_pids[qq] != g_pids[gg]
        qq, gg = qq[keep][: max_pairs - have], gg[keep][: max_pairs - have]
        qi.append(qq)
        gi.append(gg)
        have += len(qq)
    return np.concatenate(qi), np.concatenate(gi), True


def roc_curve(genuine, impostor):
    """(fpr, tpr, thresholds): one point per distinct distance, accepting d <= threshold.

    The first point is (0, 0) at threshold -inf.
    """
    genuine = np.asarray(genuine, np.float64).ravel()
    impostor = np.asarray(impostor, np.float64).ravel()
    if not len(genuine) or not len(impostor):
        raise ValueError(f"roc_curve: needs genuine and impostor pairs (got {len(genuine)} genuine, "
                         f"{len(impostor)} impostor)")
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    tpr = np.searchsorted(np.sort(genuine), thresholds, side="right") / len(genuine)
    fpr = np.searchsorted(np.sort(impostor), thresholds, side="right") / len(impostor)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr]), np.concatenate([[-np.inf], thresholds])


def auc(fpr, tpr) -> float:
    """Area under the ROC (trapezoid rule)."""
    fpr, tpr = np.asarray(fpr, np.float64), np.asarray(tpr, np.float64)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def equal_error_rate(fpr, tpr, thresholds) -> tuple[float, float]:
    """(EER, threshold) where FPR = FNR = 1 - TPR, interpolated between ROC points."""
    fpr, tpr, thr = (np.asarray(x, np.float64) for x in (fpr, tpr, thresholds))
    gap = fpr - (1.0 - tpr)  # increases along the curve, from -1 to >= 0
    k = int(np.argmax(gap >= 0))
    if k == 0:
        return float(fpr[0]), float(thr[0])
    g0, g1 = gap[k - 1], gap[k]
    w = 0.0 if g1 == g0 else -g0 / (g1 - g0)
    eer = fpr[k - 1] + w * (fpr[k] - fpr[k - 1])
    t0 = thr[k - 1] if np.isfinite(thr[k - 1]) else thr[k]
    return float(eer), float(t0 + w * (thr[k] - t0))


def tpr_at_fpr(fpr, tpr, target: float) -> float:
    """Largest TPR of a ROC point with FPR <= `target`."""
    fpr, tpr = np.asarray(fpr), np.asarray(tpr)
    return float(tpr[fpr <= target].max())


def threshold_at_fpr(fpr, thresholds, target: float) -> float:
    """Largest threshold (a pair distance) whose FPR stays <= `target`; -inf when none does."""
    fpr, thresholds = np.asarray(fpr), np.asarray(thresholds)
    return float(thresholds[fpr <= target].max())


def threshold_at_rank1_precision(nearest_distance, nearest_correct, target: float):
    """(threshold, accepted fraction): largest t with precision of {nearest <= t} >= `target`.

    None when even the single closest accepted match misses the target.
    """
    d = np.asarray(nearest_distance, np.float64)
    ok = np.asarray(nearest_correct, bool)
    order = np.argsort(d, kind="stable")
    d, ok = d[order], ok[order]
    precision = np.cumsum(ok) / np.arange(1, len(d) + 1)
    last = np.r_[d[1:] != d[:-1], True]  # a threshold accepts every tie at once
    good = np.flatnonzero(last & (precision >= target))
    if not len(good):
        return None, 0.0
    k = good[-1]
    return float(d[k]), float((k + 1) / len(d))


def nearest_gallery(q_emb, q_pids, q_cams, g_emb, g_pids, g_cams, distance="euclidean", budget=4_000_000):
    """(distance, correct) of each query's nearest gallery image, same-id same-camera excluded.

    Queries are processed `budget / G` at a time (memory O(budget))."""
    from keras_hpnet.metrics import cosine_distance, euclidean_distance

    fn = euclidean_distance if distance == "euclidean" else cosine_distance
    q_pids, q_cams, g_pids, g_cams = (np.asarray(x) for x in (q_pids, q_cams, g_pids, g_cams))
    dist = np.empty(len(q_emb))
    correct = np.zeros(len(q_emb), bool)
    chunk_size = max(1, int(budget) // max(1, len(g_emb)))
    for s in range(0, len(q_emb), chunk_size):
        d = fn(q_emb[s : s + chunk_size], g_emb).astype(np.float64)
        sl = slice(s, s + len(d))
        junk = (q_pids[sl, None] == g_pids[None, :]) & (q_cams[sl, None] == g_cams[None, :])
        d[junk] = np.inf
        j = np.argmin(d, axis=1)
        dist[sl] = d[np.arange(len(d)), j]
        correct[sl] = g_pids[j] == q_pids[sl]
    keep = np.isfinite(dist)
    return dist[keep], correct[keep]


def calibrate(q_emb, q_pids, q_cams, g_emb, g_pids, g_cams, *, distance="euclidean", target_fpr=1e-3,
              target_precision=None, max_impostor_pairs=2_000_000, max_genuine_pairs=2_000_000, seed=0):
    """The calibration report (a JSON-ready dict) and the pair distances (for the picture).

    Returns (report, genuine distances, impostor distances).
    """
    q_emb, g_emb = _features(q_emb, "query embeddings"), _features(g_emb, "gallery embeddings")
    if q_emb.shape[1] != g_emb.shape[1]:
        raise ValueError(f"embedding sizes differ: query {q_emb.shape[1]}, gallery {g_emb.shape[1]}")
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    if not 0 < target_fpr < 1:
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}")
    for n, x, emb in (("query", (q_pids, q_cams), q_emb), ("gallery", (g_pids, g_cams), g_emb)):
        if any(len(v) != len(emb) for v in x):
            raise ValueError(f"{n}: pids/camids and embeddings differ in length")
    gq, gg = genuine_pairs(q_pids, q_cams, g_pids, g_cams)
    if not len(gq):
        raise ValueError("no genuine pair (same identity, different camera) between query and gallery")
    num_genuine_total = len(gq)
    if len(gq) > max_genuine_pairs:
        pick = np.sort(np.random.default_rng(seed).choice(len(gq), max_genuine_pairs, replace=False))
        gq, gg = gq[pick], gg[pick]
    iq, ig, sampled = impostor_pairs(q_pids, g_pids, max_impostor_pairs, seed=seed + 1)
    if not len(iq):
        raise ValueError("no impostor pair (different identities) between query and gallery")
    genuine = pair_distance(q_emb, g_emb, gq, gg, distance)
    impostor = pair_distance(q_emb, g_emb, iq, ig, distance)
    fpr, tpr, thr = roc_curve(genuine, impostor)
    eer, eer_threshold = equal_error_rate(fpr, tpr, thr)
    notes = []
    for f in REPORT_FPRS + (target_fpr,):
        if f * len(impostor) < 1:
            notes.append(f"FPR {f:g} is below the resolution 1/{len(impostor)} of the impostor pairs")
    threshold = threshold_at_fpr(fpr, thr, target_fpr)
    if not np.isfinite(threshold):
        threshold = float(min(genuine.min(), impostor.min()))
        notes.append(f"no threshold reaches FPR <= {target_fpr:g}: the smallest pair distance is used")
    report = {
        "distance": distance,
        "auc": auc(fpr, tpr),
        "eer": eer,
        "eer_threshold": eer_threshold,
        "tpr_at_fpr": {str(f): tpr_at_fpr(fpr, tpr, f) for f in sorted(set(REPORT_FPRS + (target_fpr,)))},
        "target_fpr": float(target_fpr),
        "threshold": threshold,
        "tpr_at_threshold": float(np.mean(genuine <= threshold)),
        "fpr_at_threshold": float(np.mean(impostor <= threshold)),
        "num_genuine_pairs": int(len(genuine)),
        "num_genuine_pairs_total": int(num_genuine_total),
        "num_impostor_pairs": int(len(impostor)),
        "impostor_pairs_sampled": sampled,
        "genuine_pairs_sampled": bool(num_genuine_total > len(genuine)),
        "seed": int(seed),
        "num_query": int(len(q_emb)),
        "num_gallery": int(len(g_emb)),
        "notes": notes,
    }
    if target_precision is not None:
        d, ok = nearest_gallery(q_emb, q_pids, q_cams, g_emb, g_pids, g_cams, distance)
        t, accepted = threshold_at_rank1_precision(d, ok, float(target_precision))
        report.update({"target_rank1_precision": float(target_precision), "rank1_precision_threshold": t,
                       "rank1_accepted_fraction": accepted, "rank1_precision_queries": int(len(d))})
    return report, genuine, impostor


def write_calibration(run_dir: str, report: dict) -> str:
    """`run_dir/calibration.json`, atomically; returns its path."""
    path = os.path.join(run_dir, CALIBRATION_FILE)
    write_text_atomic(path, json.dumps(report, indent=2, sort_keys=True) + "\n")
    return path


def read_calibration(run_dir: str) -> dict | None:
    """`run_dir/calibration.json` as a dict, None when the run was never calibrated."""
    path = os.path.join(run_dir, CALIBRATION_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the calibration ({e})") from None
    for k in ("threshold", "distance"):
        if not isinstance(report, dict) or k not in report:
            raise ValueError(f"{path}: missing field {k!r} (rerun python -m training.calibrate)")
    return report


def apply_calibration(metadata, run_dir: str):
    """Copy the run's calibrated threshold into a ModelMetadata (exporters call this).

    Sets `match_threshold` / `match_distance` (and `extra["calibration"]`, the
    headline figures) when `run_dir/calibration.json` exists; leaves them None
    otherwise. Returns `metadata`.
    """
    report = read_calibration(run_dir)
    if report is None:
        return metadata
    metadata.match_threshold = float(report["threshold"])
    metadata.match_distance = str(report["distance"])
    metadata.extra = dict(metadata.extra or {})
    metadata.extra["calibration"] = {k: report[k] for k in ("target_fpr", "auc", "eer", "tpr_at_fpr",
                                                            "num_genuine_pairs", "num_impostor_pairs")
                                     if k in report}
    return metadata


def calibration_picture(genuine, impostor, fpr, tpr, threshold, *, title="", bins=50, size=(360, 360)):
    """RGB uint8 picture: genuine/impostor distance histograms with the threshold, and the ROC."""
    from PIL import Image, ImageDraw

    from keras_hpnet.viz._draw import BLACK, BLUE, GREEN, GREY, LIGHT_GREY, RED, WHITE, font

    w, h = size
    pad = 36
    canvas = Image.new("RGB", (2 * w, h + 24), WHITE)
    draw = ImageDraw.Draw(canvas)
    fnt = font(12)
    draw.text((6, 4), title or "calibration", fill=BLACK, font=fnt)
    top = 24
    # Histograms (each normalised to its own peak: densities, not counts).
    lo = float(min(genuine.min(), impostor.min()))
    hi = float(max(genuine.max(), impostor.max()))
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    x0, x1, y0, y1 = pad, w - 10, top + 10, top + h - pad

    def px(v):
        return x0 + (v - lo) / (hi - lo) * (x1 - x0)

    draw.rectangle([x0, y0, x1, y1], outline=GREY)
    for values, colour in ((impostor, RED), (genuine, GREEN)):
        counts = np.histogram(values, edges)[0].astype(np.float64)
        counts /= max(counts.max(), 1.0)
        pts = [(px(edges[0]), y1)]
        for k, c in enumerate(counts):
            y = y1 - c * (y1 - y0)
            pts += [(px(edges[k]), y), (px(edges[k + 1]), y)]
        pts.append((px(edges[-1]), y1))
        draw.line(pts, fill=colour, width=2)
    if lo <= threshold <= hi:
        draw.line([(px(threshold), y0), (px(threshold), y1)], fill=BLUE, width=2)
    draw.text((x0, y1 + 4), f"{lo:.3g}", fill=BLACK, font=fnt)
    draw.text((x1 - 30, y1 + 4), f"{hi:.3g}", fill=BLACK, font=fnt)
    draw.text((x0 + 4, y0 + 2), f"genuine ({len(genuine)})", fill=GREEN, font=fnt)
    draw.text((x0 + 4, y0 + 16), f"impostor ({len(impostor)})", fill=RED, font=fnt)
    draw.text((x0 + 4, y0 + 30), f"threshold {threshold:.4g}", fill=BLUE, font=fnt)
    # ROC with a log FPR axis from 1e-5 to 1.
    ox = w
    rx0, rx1 = ox + pad, ox + w - 10
    draw.rectangle([rx0, y0, rx1, y1], outline=GREY)
    for dec in range(-5, 1):
        x = rx0 + (dec + 5) / 5 * (rx1 - rx0)
        draw.line([(x, y0), (x, y1)], fill=LIGHT_GREY)
        draw.text((min(x - 10, rx1 - 24), y1 + 4), f"1e{dec}", fill=BLACK, font=fnt)
    draw.text((rx0 - 30, y0), "TPR 1", fill=BLACK, font=fnt)
    draw.text((rx0 - 12, y1 - 12), "0", fill=BLACK, font=fnt)
    f = np.clip(np.asarray(fpr, np.float64), 1e-5, 1.0)
    t = np.asarray(tpr, np.float64)
    keep = np.unique(np.linspace(0, len(f) - 1, min(len(f), 4000)).astype(np.int64))  # enough for 360 px
    pts = [(rx0 + (np.log10(a) + 5) / 5 * (rx1 - rx0), y1 - b * (y1 - y0)) for a, b in zip(f[keep], t[keep])]
    draw.line(pts, fill=BLUE, width=2)
    draw.text((rx0 + 4, y0 + 2), "ROC: TPR vs FPR (log)", fill=BLACK, font=fnt)
    return np.asarray(canvas)

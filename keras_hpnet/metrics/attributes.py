"""Pedestrian attribute recognition metrics (numpy only).

Label-based mA (Li, Chen, Huang, "Multi-attribute learning for pedestrian
attribute recognition in surveillance scenarios", ACPR 2015 / PETA protocol)
and the instance-based accuracy, precision, recall and F1 used by HydraPlus-Net
(Liu et al., ICCV 2017, Sec. 5) and later work.
"""

from __future__ import annotations

import numpy as np

from keras_hpnet.datasets.base import UNKNOWN_ATTRIBUTE


def _safe_ratio(num, den):
    """num / den with 0 where den == 0 (the usual convention of the PAR code)."""
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.zeros(np.broadcast(num, den).shape, np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def attribute_metrics(probs, labels, threshold=0.5, *, attribute_names=None):
    """mA, instance-based acc / prec / rec / f1 and a per-attribute table.

    `probs` `[N, A]` are probabilities (prediction = prob > threshold), `labels`
    `[N, A]` are 0/1, or `UNKNOWN_ATTRIBUTE` (255) for an entry nobody
    labelled: such entries are left out of every count below.

    - mA: mean over attributes of (TP/P + TN/N) / 2 over the attribute's known
      entries. An attribute with no positive (or no negative) sample in
      `labels` contributes only the half that exists (its other half is
      undefined, not counted as 0); one with no known entry is left out.
    - acc = mean_i |pred_i & gt_i| / |pred_i | gt_i|, prec = mean_i |pred_i &
      gt_i| / |pred_i|, rec = mean_i |pred_i & gt_i| / |gt_i|, each over the
      known entries of row i; a ratio whose denominator is empty counts as 0
      for that sample (the convention of the PETA / RAP / PA-100K evaluation
      code); rows with no known entry are left out. f1 = 2 prec rec / (prec +
      rec) from the averaged prec and rec.

    `per_attribute` is a list (one dict per attribute, in column order) with
    `index`, `pos_acc` (TP/P), `neg_acc` (TN/N), `mA` (this attribute's term),
    `pos_ratio` (P / known entries), `num_pos`, `num_neg`, `num_unknown` and,
    when `attribute_names` is given, `name`. Undefined values are NaN.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2:
        raise ValueError(f"probs: expected a 2-D [num_samples, num_attributes] array, got shape {probs.shape}")
    if labels.shape != probs.shape:
        raise ValueError(f"labels: shape {labels.shape} differs from probs shape {probs.shape}")
    if probs.shape[0] == 0 or probs.shape[1] == 0:
        raise ValueError(f"probs: empty array of shape {probs.shape}")
    if np.isnan(probs).any():
        raise ValueError("probs: contains NaN")
    if not np.isin(labels, (0, 1, UNKNOWN_ATTRIBUTE)).all():
        raise ValueError(f"labels: expected only 0/1 values (or {UNKNOWN_ATTRIBUTE}, unknown)")
    if attribute_names is not None and len(attribute_names) != probs.shape[1]:
        raise ValueError(f"attribute_names: has {len(attribute_names)} names for {probs.shape[1]} attributes")

    known = labels != UNKNOWN_ATTRIBUTE
    if not known.any():
        raise ValueError("labels: every entry is unknown")
    gt = (labels == 1) & known
    pred = probs > threshold
    pred_known = pred & known

    # Label-based.
    num_pos = gt.sum(0)
    num_neg = (~gt & known).sum(0)
    tp = (pred & gt).sum(0)
    tn = (~pred & ~gt & known).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pos_acc = np.where(num_pos > 0, tp / np.maximum(num_pos, 1), np.nan)
        neg_acc = np.where(num_neg > 0, tn / np.maximum(num_neg, 1), np.nan)
        pos_ratio = np.where(num_pos + num_neg > 0, num_pos / np.maximum(num_pos + num_neg, 1), np.nan)
    both = np.stack([pos_acc, neg_acc])
    defined = ~np.isnan(both).all(0)
    ma_terms = np.full(probs.shape[1], np.nan)
    ma_terms[defined] = np.nanmean(both[:, defined], axis=0)

    # Instance-based, over the rows with a known entry.
    rows = known.any(1)
    inter = (pred & gt).sum(1)[rows]
    union = (pred_known | gt).sum(1)[rows]
    acc = float(np.mean(_safe_ratio(inter, union)))
    prec = float(np.mean(_safe_ratio(inter, pred_known.sum(1)[rows])))
    rec = float(np.mean(_safe_ratio(inter, gt.sum(1)[rows])))
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0

    per_attribute = []
    for j in range(probs.shape[1]):
        row = {
            "index": j,
            "pos_acc": float(pos_acc[j]),
            "neg_acc": float(neg_acc[j]),
            "mA": float(ma_terms[j]),
            "pos_ratio": float(pos_ratio[j]),
            "num_pos": int(num_pos[j]),
            "num_neg": int(num_neg[j]),
            "num_unknown": int(probs.shape[0] - num_pos[j] - num_neg[j]),
        }
        if attribute_names is not None:
            row["name"] = str(attribute_names[j])
        per_attribute.append(row)

    return {
        "mA": float(np.mean(ma_terms[defined])),
        "acc": acc,
        "prec": prec,
        "rec": rec,
        "f1": float(f1),
        "per_attribute": per_attribute,
    }

"""Pedestrian attribute recognition metrics (numpy only).

Label-based mA (Li, Chen, Huang, "Multi-attribute learning for pedestrian
attribute recognition in surveillance scenarios", ACPR 2015 / PETA protocol)
and the instance-based accuracy, precision, recall and F1 used by HydraPlus-Net
(Liu et al., ICCV 2017, Sec. 5) and later work.
"""

from __future__ import annotations

import numpy as np


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
    `[N, A]` are 0/1.

    - mA: mean over attributes of (TP/P + TN/N) / 2. An attribute with no
      positive (or no negative) sample in `labels` contributes only the half
      that exists (its other half is undefined, not counted as 0).
    - acc = mean_i |pred_i & gt_i| / |pred_i | gt_i|, prec = mean_i |pred_i &
      gt_i| / |pred_i|, rec = mean_i |pred_i & gt_i| / |gt_i|; a ratio whose
      denominator is empty counts as 0 for that sample (the convention of the
      PETA / RAP / PA-100K evaluation code). f1 = 2 prec rec / (prec + rec)
      from the averaged prec and rec.

    `per_attribute` is a list (one dict per attribute, in column order) with
    `index`, `pos_acc` (TP/P), `neg_acc` (TN/N), `mA` (this attribute's term),
    `pos_ratio` (P/N_samples), `num_pos`, `num_neg` and, when
    `attribute_names` is given, `name`. Undefined accuracies are NaN.
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
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels: expected only 0/1 values")
    if attribute_names is not None and len(attribute_names) != probs.shape[1]:
        raise ValueError(f"attribute_names: has {len(attribute_names)} names for {probs.shape[1]} attributes")

    gt = labels.astype(bool)
    pred = probs > threshold

    # Label-based.
    num_pos = gt.sum(0)
    num_neg = (~gt).sum(0)
    tp = (pred & gt).sum(0)
    tn = (~pred & ~gt).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pos_acc = np.where(num_pos > 0, tp / np.maximum(num_pos, 1), np.nan)
        neg_acc = np.where(num_neg > 0, tn / np.maximum(num_neg, 1), np.nan)
    ma_terms = np.nanmean(np.stack([pos_acc, neg_acc]), axis=0)

    # Instance-based.
    inter = (pred & gt).sum(1)
    union = (pred | gt).sum(1)
    acc = float(np.mean(_safe_ratio(inter, union)))
    prec = float(np.mean(_safe_ratio(inter, pred.sum(1))))
    rec = float(np.mean(_safe_ratio(inter, gt.sum(1))))
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0

    per_attribute = []
    for j in range(probs.shape[1]):
        row = {
            "index": j,
            "pos_acc": float(pos_acc[j]),
            "neg_acc": float(neg_acc[j]),
            "mA": float(ma_terms[j]),
            "pos_ratio": float(num_pos[j] / probs.shape[0]),
            "num_pos": int(num_pos[j]),
            "num_neg": int(num_neg[j]),
        }
        if attribute_names is not None:
            row["name"] = str(attribute_names[j])
        per_attribute.append(row)

    return {
        "mA": float(np.mean(ma_terms)),
        "acc": acc,
        "prec": prec,
        "rec": rec,
        "f1": float(f1),
        "per_attribute": per_attribute,
    }

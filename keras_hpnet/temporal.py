"""Temporal pooling of per-frame features into one tracklet feature: the numpy form (no TensorFlow).

One rule, two forms: this module (evaluation of frame predictors, the edge
stream) and the Keras layer `keras_hpnet.layers.TemporalPooling` (the video
model, `keras_hpnet.models.video`) compute the same maths, checked equal by
tests/test_layers.py:

    w_t = mask_t * exp(s_t - max_valid s) / sum_u mask_u * exp(s_u - max_valid s)
    pooled = sum_t w_t * f_t

- "avg": s_t = 0, so w_t = mask_t / (number of valid frames): temporal average
  pooling, the standard video re-id baseline (MARS, Zheng et al. ECCV 2016,
  averages frame features; Gao & Nevatia, "Revisiting Temporal Modeling for
  Video-based Person ReID", arXiv:1805.02104, 2018, temporal pooling).
- "attention": a learned score per frame from its own feature,
  s_t = v . tanh(W f_t + b) (+ c; a constant cancels in the softmax), then a
  softmax over the valid frames: temporal attention (Gao & Nevatia 2018) /
  quality-aware set aggregation (Liu, Yan, Ouyang, "Quality Aware Network for
  Set to Set Recognition", CVPR 2017). `v` starts at zero, so an untrained
  attention pool is the average.

A tracklet with no valid frame pools to the zero vector (its weights are all 0).
"""

from __future__ import annotations

import numpy as np

MODES = ("avg", "attention")
PARAM_NAMES = ("hidden_kernel", "hidden_bias", "score_kernel")  # W [D, U], b [U], v [U]


def check_mode(mode) -> str:
    if mode not in MODES:
        raise ValueError(f"temporal pooling mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def attention_params(params, dim=None) -> dict:
    """`params` (a dict of the PARAM_NAMES, e.g. from JSON metadata) as float32 arrays, shapes checked."""
    if not isinstance(params, dict):
        raise ValueError(f"temporal attention parameters: expected a dict of {', '.join(PARAM_NAMES)}, "
                         f"got {type(params).__name__}")
    missing = [k for k in PARAM_NAMES if k not in params]
    if missing:
        raise ValueError(f"temporal attention parameters: missing {', '.join(missing)}")
    w, b, v = (np.asarray(params[k], np.float32) for k in PARAM_NAMES)
    if w.ndim != 2 or b.shape != (w.shape[1],) or v.reshape(-1).shape != (w.shape[1],):
        raise ValueError(f"temporal attention parameters: shapes hidden_kernel {w.shape}, hidden_bias {b.shape}, "
                         f"score_kernel {v.shape} do not fit ([D, U], [U], [U])")
    if dim is not None and w.shape[0] != dim:
        raise ValueError(f"temporal attention parameters are for {w.shape[0]}-d features, got {dim}-d")
    return {"hidden_kernel": w, "hidden_bias": b, "score_kernel": v.reshape(-1)}


def frame_scores(features, params) -> np.ndarray:
    """Attention scores `[..., T]` of frame features `[..., T, D]`: v . tanh(W f + b)."""
    p = attention_params(params, np.shape(features)[-1])
    hidden = np.tanh(np.asarray(features, np.float32) @ p["hidden_kernel"] + p["hidden_bias"])
    return hidden @ p["score_kernel"]


def masked_softmax(scores, mask=None) -> np.ndarray:
    """Softmax over the last axis restricted to `mask` (nonzero = valid frame); all-masked rows -> 0."""
    s = np.asarray(scores, np.float32)
    m = np.ones_like(s) if mask is None else (np.asarray(mask) != 0).astype(np.float32)
    if m.shape != s.shape:
        raise ValueError(f"frame mask shape {m.shape} does not match the frames {s.shape}")
    top = np.max(np.where(m > 0, s, np.float32(-np.inf)), axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, np.float32(0.0))
    e = np.exp(np.minimum(s - top, 0.0)) * m
    return e / np.maximum(e.sum(axis=-1, keepdims=True), np.float32(1e-30))


def frame_weights(features, mask=None, *, mode="avg", params=None) -> np.ndarray:
    """Pooling weights `[..., T]` of frame features `[..., T, D]` (sum 1 over the valid frames)."""
    f = np.asarray(features, np.float32)
    if f.ndim < 2:
        raise ValueError(f"frame features: expected [..., T, D], got shape {f.shape}")
    if check_mode(mode) == "avg":
        scores = np.zeros(f.shape[:-1], np.float32)
    else:
        if params is None:
            raise ValueError("temporal pooling 'attention' needs its parameters (the video model's, "
                             "VideoModel.temporal_pooling_params())")
        scores = frame_scores(f, params)
    return masked_softmax(scores, mask)


def pool_frames(features, mask=None, *, mode="avg", params=None, weights=None) -> np.ndarray:
    """Pool frame features `[..., T, D]` to `[..., D]` (module doc); `weights` `[..., T]` given
    (those of another output of the same frames) skip computing them."""
    f = np.asarray(features, np.float32)
    if weights is None:
        weights = frame_weights(f, mask, mode=mode, params=params)
    return np.einsum("...t,...td->...d", np.asarray(weights, np.float32), f)

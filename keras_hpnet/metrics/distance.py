"""Distance matrices between feature sets (numpy only, float32, row-chunked)."""

from __future__ import annotations

import numpy as np


def _features(x, name):
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D feature matrix [N, D], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{name}: expected numbers, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return x


def _check_dims(a, b):
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: a has {a.shape[1]}, b has {b.shape[1]}")


def euclidean_distance(a, b, *, squared=False, chunk_size=4096):
    """Euclidean distances `[len(a), len(b)]` as float32.

    Computed as |a|^2 + |b|^2 - 2 a.b in row chunks of `a` (memory stays at
    `chunk_size x len(b)` besides the output), clipped at 0 before the square
    root. `squared=True` skips the root (same ranking).
    """
    a = _features(a, "a")
    b = _features(b, "b")
    _check_dims(a, b)
    out = np.empty((a.shape[0], b.shape[0]), np.float32)
    b2 = np.einsum("ij,ij->i", b, b)
    for start in range(0, a.shape[0], chunk_size):
        part = a[start : start + chunk_size]
        d = part @ b.T
        d *= -2.0
        d += np.einsum("ij,ij->i", part, part)[:, None]
        d += b2[None, :]
        np.maximum(d, 0.0, out=d)
        if not squared:
            np.sqrt(d, out=d)
        out[start : start + len(part)] = d
    return out


def _l2_normalize(x):
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))
    norm[norm == 0] = 1.0  # a zero vector stays zero: distance 1 to everything
    return x / norm[:, None]


def cosine_distance(a, b, *, chunk_size=4096):
    """Cosine distances `1 - cos(a_i, b_j)` (0..2) as float32, row-chunked."""
    a = _features(a, "a")
    b = _features(b, "b")
    _check_dims(a, b)
    a = _l2_normalize(a)
    b = _l2_normalize(b)
    out = np.empty((a.shape[0], b.shape[0]), np.float32)
    for start in range(0, a.shape[0], chunk_size):
        part = a[start : start + chunk_size]
        out[start : start + len(part)] = 1.0 - part @ b.T
    return out

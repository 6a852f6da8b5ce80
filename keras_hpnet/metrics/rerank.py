"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li, "Re-ranking Person
Re-identification with k-reciprocal Encoding", CVPR 2017), numpy only.

Sec. 3.2: k-reciprocal nearest neighbours R(p, k) = {g in N(p, k) : p in N(g, k)};
Sec. 3.3: the set is expanded with R(q, k/2) of each member q when
|R(q, k/2) & R(p, k)| > 2/3 |R(q, k/2)| (the paper writes >=, the authors'
release and the published numbers use >; we follow the release), encoded as
a Gaussian-kernel weighted vector V_p, locally expanded over the k2 nearest
neighbours (query expansion), and compared by Jaccard distance
d_J = 1 - sum_j min(V_p,j, V_g,j) / sum_j max(V_p,j, V_g,j); the final distance is
(1 - lambda) d_J + lambda d, with d the squared input distance normalised by its
row maximum (as in the release).

Everything is vectorised over sparse (row, column) pair arrays, so memory is
O(N^2) only for the dense (Q+G) x (Q+G) distance matrix.
"""

from __future__ import annotations

import numpy as np

from keras_hpnet.metrics.reid import _orderable_bits


def _nearest(dist, k, chunk_size=512):
    """Indices of the k+1 nearest columns per row: distance, then column index."""
    n, m = dist.shape
    kk = min(k + 1, m)
    out = np.empty((n, kk), np.int64)
    cols = np.arange(m, dtype=np.uint64)
    for start in range(0, n, chunk_size):
        part = dist[start : start + chunk_size]
        keys = (_orderable_bits(part).astype(np.uint64) << np.uint64(32)) | cols
        if kk < m:
            keys = np.partition(keys, kk - 1, axis=1)[:, :kk]
        keys.sort(axis=1)
        out[start : start + len(part)] = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)
    return out


def _pair_set(rows, cols, n):
    return np.unique(rows.astype(np.int64) * n + cols)


def _in_set(keys, sorted_set):
    if len(sorted_set) == 0:
        return np.zeros(keys.shape, bool)
    pos = np.clip(np.searchsorted(sorted_set, keys), 0, len(sorted_set) - 1)
    return sorted_set[pos] == keys


def _reciprocal(ranks, k, n):
    """R(i, k) for every i as (values [n, k+1], mask [n, k+1])."""
    forward = ranks[:, : k + 1]
    rows = np.repeat(np.arange(n), forward.shape[1]).reshape(forward.shape)
    in_forward = _pair_set(rows.ravel(), forward.ravel(), n)
    mask = _in_set(forward * n + rows, in_forward)  # i in N(forward[i, j], k)
    return forward, mask


def k_reciprocal_rerank(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """Re-ranked query x gallery distances `[Q, G]` (float32).

    Inputs are distances (e.g. Euclidean) between query/gallery features:
    `q_g_dist` `[Q, G]`, `q_q_dist` `[Q, Q]`, `g_g_dist` `[G, G]` (symmetric).
    `k1` sizes the k-reciprocal sets, `k2` the query expansion (1 = none),
    `lambda_value` weighs the original distance. Memory is dominated by the
    dense (Q+G)^2 float32 matrix: fine for a few thousand images.
    """
    q_g = np.asarray(q_g_dist, np.float32)
    q_q = np.asarray(q_q_dist, np.float32)
    g_g = np.asarray(g_g_dist, np.float32)
    if q_g.ndim != 2:
        raise ValueError(f"q_g_dist: expected 2-D [Q, G], got shape {q_g.shape}")
    num_q, num_g = q_g.shape
    if q_q.shape != (num_q, num_q):
        raise ValueError(f"q_q_dist: expected shape {(num_q, num_q)}, got {q_q.shape}")
    if g_g.shape != (num_g, num_g):
        raise ValueError(f"g_g_dist: expected shape {(num_g, num_g)}, got {g_g.shape}")
    for name, x in (("q_g_dist", q_g), ("q_q_dist", q_q), ("g_g_dist", g_g)):
        if not np.isfinite(x).all():
            raise ValueError(f"{name}: contains NaN or inf")
    k1, k2 = int(k1), int(k2)
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")

    n = num_q + num_g
    dist = np.empty((n, n), np.float32)
    dist[:num_q, :num_q] = q_q
    dist[:num_q, num_q:] = q_g
    dist[num_q:, :num_q] = q_g.T
    dist[num_q:, num_q:] = g_g
    np.square(dist, out=dist)
    row_max = dist.max(axis=1, keepdims=True)
    row_max[row_max == 0] = 1.0
    dist /= row_max

    k_half = int(np.around(k1 / 2.0))
    ranks = _nearest(dist, max(k1, k2 - 1))

    # R(i, k1) and R(c, k1/2) for all images.
    r_val, r_mask = _reciprocal(ranks, k1, n)
    h_val, h_mask = _reciprocal(ranks, k_half, n)
    rows = np.repeat(np.arange(n), r_val.shape[1]).reshape(r_val.shape)
    r_set = np.unique(rows[r_mask] * n + r_val[r_mask])

    # Expansion: candidate c = R(i, k1)[j] adds R(c, k1/2) when it overlaps enough.
    cand_val = h_val[r_val]  # [n, k1+1, k_half+1]
    cand_mask = h_mask[r_val] & r_mask[:, :, None]
    overlap = (_in_set(np.arange(n)[:, None, None] * n + cand_val, r_set) & cand_mask).sum(-1)
    size = cand_mask.sum(-1)
    accept = r_mask & (overlap > 2.0 / 3.0 * size)
    add_mask = cand_mask & accept[:, :, None]
    add_rows = np.broadcast_to(np.arange(n)[:, None, None], cand_val.shape)[add_mask]
    expansion = np.unique(np.concatenate([r_set, add_rows * n + cand_val[add_mask]]))
    v_rows = expansion // n
    v_cols = expansion % n
    weight = np.exp(-dist[v_rows, v_cols].astype(np.float64))
    weight /= np.bincount(v_rows, weights=weight, minlength=n)[v_rows]

    # Local query expansion: V_i <- mean of V over the k2 nearest neighbours of i.
    if k2 > 1:
        indptr = np.concatenate([[0], np.cumsum(np.bincount(v_rows, minlength=n))])
        nb = ranks[:, :k2]  # [n, k2]
        lengths = (indptr[nb + 1] - indptr[nb]).ravel()
        src_start = np.repeat(indptr[nb].ravel(), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        src = src_start + offsets
        dst_rows = np.repeat(np.repeat(np.arange(n), k2), lengths)
        keys, inverse = np.unique(dst_rows * n + v_cols[src], return_inverse=True)
        weight = np.bincount(inverse, weights=weight[src]) / k2
        v_rows, v_cols = keys // n, keys % n

    row_sum = np.bincount(v_rows, weights=weight, minlength=n)
    # Column-major copy (inverted index): for each column, the rows using it.
    by_col = np.lexsort((v_rows, v_cols))
    c_rows, c_vals = v_rows[by_col], weight[by_col]
    c_ptr = np.concatenate([[0], np.cumsum(np.bincount(v_cols, minlength=n))])

    # Jaccard distance of the queries to every image, chunk of queries at a time.
    q_ptr = np.concatenate([[0], np.cumsum(np.bincount(v_rows, minlength=n))])
    final = np.empty((num_q, num_g), np.float32)
    chunk = max(1, min(num_q, 4_000_000 // max(n, 1)))
    for start in range(0, num_q, chunk):
        stop = min(start + chunk, num_q)
        a, b = q_ptr[start], q_ptr[stop]
        p_rows, p_cols, p_vals = v_rows[a:b] - start, v_cols[a:b], weight[a:b]
        lengths = c_ptr[p_cols + 1] - c_ptr[p_cols]
        src = np.repeat(c_ptr[p_cols], lengths) + (
            np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        )
        mins = np.minimum(np.repeat(p_vals, lengths), c_vals[src])
        shared = np.bincount(
            np.repeat(p_rows, lengths) * n + c_rows[src], weights=mins, minlength=(stop - start) * n
        ).reshape(stop - start, n)[:, num_q:]
        union = row_sum[start:stop, None] + row_sum[None, num_q:] - shared
        jaccard = np.ones_like(shared)
        np.divide(union - shared, union, out=jaccard, where=union > 0)
        final[start:stop] = (1.0 - lambda_value) * jaccard + lambda_value * dist[start:stop, num_q:]
    return final

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

Memory is bounded: the (Q+G) x (Q+G) distances are never held at once. They
are produced `row_chunk` rows at a time (rows ~ `memory_budget` / (Q+G)), three
times: for the k-nearest ranks and row maxima, for the Gaussian weights of the
sparse k-reciprocal sets, and for the final mix with the original distance.
Everything else is sparse (row, column) pair arrays, O((Q+G) k1 k2) entries.
`k_reciprocal_rerank` takes the three distance matrices (results identical
whatever the budget); `k_reciprocal_rerank_features` computes distance rows
from the features and can return only each query's top-k, so nothing
quadratic is stored (MSMT17: 11,659 x 82,161, docs/retrieval.md).

`average_query_expansion` (AQE, Chum et al., ICCV 2007; alpha-QE, Radenovic et
al., TPAMI 2019) is the cheap alternative / complement: each query becomes the
normalised sum of itself and its k nearest gallery features weighted by
similarity^alpha.
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


DEFAULT_MEMORY_BUDGET = 1 << 24  # float32 elements of one block of distance rows (64 MB)


def _normalized_rows(d):
    """Squared distances divided by their row maximum (in place, float32), as the release does."""
    np.square(d, out=d)
    row_max = d.max(axis=1, keepdims=True)
    row_max[row_max == 0] = 1.0
    d /= row_max
    return d


def _check_options(k1, k2, lambda_value):
    k1, k2 = int(k1), int(k2)
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")
    return k1, k2


def _rerank_blocks(rows, num_q, num_g, k1, k2, lambda_value, memory_budget):
    """Yield (start, stop, final [stop-start, G]) over query chunks.

    `rows(s, e)` returns the float32 distances `[e-s, Q+G]` of images s..e-1
    (queries first, then gallery) to all Q+G images.
    """
    n = num_q + num_g
    row_chunk = max(1, int(memory_budget) // max(n, 1))

    def normalized(s, e):  # `rows` returns a fresh array: normalised in place
        return _normalized_rows(np.asarray(rows(s, e), np.float32))

    kk = min(max(k1, k2 - 1) + 1, n)
    ranks = np.empty((n, kk), np.int64)
    for s in range(0, n, row_chunk):
        ranks[s : s + row_chunk] = _nearest(normalized(s, min(n, s + row_chunk)), max(k1, k2 - 1))
    k_half = int(np.around(k1 / 2.0))

    # R(i, k1) and R(c, k1/2) for all images.
    r_val, r_mask = _reciprocal(ranks, k1, n)
    h_val, h_mask = _reciprocal(ranks, k_half, n)
    rows_i = np.repeat(np.arange(n), r_val.shape[1]).reshape(r_val.shape)
    r_set = np.unique(rows_i[r_mask] * n + r_val[r_mask])

    # Expansion: candidate c = R(i, k1)[j] adds R(c, k1/2) when it overlaps enough.
    cand_val = h_val[r_val]  # [n, k1+1, k_half+1]
    cand_mask = h_mask[r_val] & r_mask[:, :, None]
    overlap = (_in_set(np.arange(n)[:, None, None] * n + cand_val, r_set) & cand_mask).sum(-1)
    size = cand_mask.sum(-1)
    accept = r_mask & (overlap > 2.0 / 3.0 * size)
    add_mask = cand_mask & accept[:, :, None]
    add_rows = np.broadcast_to(np.arange(n)[:, None, None], cand_val.shape)[add_mask]
    expansion = np.unique(np.concatenate([r_set, add_rows * n + cand_val[add_mask]]))
    del cand_val, cand_mask, add_mask, add_rows
    v_rows = expansion // n
    v_cols = expansion % n
    # Gaussian weights exp(-d) of the sparse entries, distance rows recomputed chunk by chunk.
    weight = np.empty(len(expansion), np.float64)
    bounds = np.searchsorted(v_rows, np.arange(0, n + row_chunk, row_chunk))
    for c, s in enumerate(range(0, n, row_chunk)):
        a, b = bounds[c], bounds[c + 1]
        d = normalized(s, min(n, s + row_chunk))
        weight[a:b] = np.exp(-d[v_rows[a:b] - s, v_cols[a:b]].astype(np.float64))
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
        del src_start, offsets, src, dst_rows, keys, inverse

    row_sum = np.bincount(v_rows, weights=weight, minlength=n)
    # Column-major copy (inverted index): for each column, the rows using it.
    by_col = np.lexsort((v_rows, v_cols))
    c_rows, c_vals = v_rows[by_col], weight[by_col]
    c_ptr = np.concatenate([[0], np.cumsum(np.bincount(v_cols, minlength=n))])

    # Jaccard distance of the queries to every image, chunk of queries at a time.
    q_ptr = np.concatenate([[0], np.cumsum(np.bincount(v_rows, minlength=n))])
    chunk = max(1, min(num_q, 4_000_000 // max(n, 1), row_chunk))
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
        original = normalized(start, stop)[:, num_q:]
        yield start, stop, ((1.0 - lambda_value) * jaccard + lambda_value * original).astype(np.float32)


def k_reciprocal_rerank(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3,
                        memory_budget=DEFAULT_MEMORY_BUDGET):
    """Re-ranked query x gallery distances `[Q, G]` (float32).

    Inputs are distances (e.g. Euclidean) between query/gallery features:
    `q_g_dist` `[Q, G]`, `q_q_dist` `[Q, Q]`, `g_g_dist` `[G, G]` (symmetric).
    `k1` sizes the k-reciprocal sets, `k2` the query expansion (1 = none),
    `lambda_value` weighs the original distance. Rows of the (Q+G)^2 matrix
    are assembled `memory_budget` elements at a time (the result does not
    depend on it); for large sets use `k_reciprocal_rerank_features`.
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
    k1, k2 = _check_options(k1, k2, lambda_value)

    def rows(s, e):
        out = np.empty((e - s, num_q + num_g), np.float32)
        qs, qe = min(s, num_q), min(e, num_q)  # query rows of the block
        gs, ge = max(s, num_q) - num_q, max(e, num_q) - num_q  # gallery rows of the block
        out[: qe - qs, :num_q] = q_q[qs:qe]
        out[: qe - qs, num_q:] = q_g[qs:qe]
        out[qe - qs :, :num_q] = q_g[:, gs:ge].T
        out[qe - qs :, num_q:] = g_g[gs:ge]
        return out

    final = np.empty((num_q, num_g), np.float32)
    for start, stop, block in _rerank_blocks(rows, num_q, num_g, k1, k2, lambda_value, memory_budget):
        final[start:stop] = block
    return final


def k_reciprocal_rerank_features(q_feat, g_feat, k1=20, k2=6, lambda_value=0.3, *, top_k=None,
                                 aqe_k=0, aqe_alpha=0.0, memory_budget=DEFAULT_MEMORY_BUDGET):
    """k-reciprocal re-ranking from features `[Q, D]`, `[G, D]` (Euclidean), in bounded memory.

    Distance rows are computed from the features when needed, never the
    (Q+G)^2 matrix. `top_k=None` returns the `[Q, G]` distances (as
    `k_reciprocal_rerank` on the Euclidean matrices, up to float rounding of
    the distance computation); `top_k=k` returns `(distances [Q, k],
    gallery indices [Q, k])` of each query's k best (ties by index) and stores
    nothing of size Q x G. `aqe_k > 0` first applies
    `average_query_expansion(q, g, aqe_k, aqe_alpha)` to the queries (and
    L2-normalises the gallery to match).
    """
    from keras_hpnet.metrics.distance import _features, euclidean_distance

    q = _features(q_feat, "q_feat")
    g = _features(g_feat, "g_feat")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"feature sizes differ: q_feat has {q.shape[1]}, g_feat has {g.shape[1]}")
    k1, k2 = _check_options(k1, k2, lambda_value)
    if aqe_k:  # expanded queries are unit vectors: compare them with unit gallery vectors
        from keras_hpnet.metrics.distance import _l2_normalize

        q = average_query_expansion(q, g, aqe_k, aqe_alpha)
        g = _l2_normalize(g)
    x = np.concatenate([q, g])
    num_q, num_g = len(q), len(g)

    def rows(s, e):
        return euclidean_distance(x[s:e], x)

    blocks = _rerank_blocks(rows, num_q, num_g, k1, k2, lambda_value, memory_budget)
    if top_k is None:
        final = np.empty((num_q, num_g), np.float32)
        for start, stop, block in blocks:
            final[start:stop] = block
        return final
    k = min(int(top_k), num_g)
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    dist = np.empty((num_q, k), np.float32)
    index = np.empty((num_q, k), np.int64)
    for start, stop, block in blocks:
        top = _nearest(block, k - 1)[:, :k]
        index[start:stop] = top
        dist[start:stop] = np.take_along_axis(block, top, 1)
    return dist, index


def average_query_expansion(q_feat, g_feat, k=5, alpha=0.0, *, expand_gallery=False, chunk_size=1024):
    """Average query expansion: q' = normalise(q^ + sum_j w_j g^_j) over q's k nearest gallery features.

    Features are L2-normalised (^), neighbours found by cosine similarity s_j,
    weights w_j = max(s_j, 0)^alpha (alpha = 0: the plain average of Chum et
    al.; alpha-QE with alpha > 0). Returns the expanded queries `[Q, D]`
    (float32, unit norm); `expand_gallery=True` returns `(queries, gallery)`
    with every gallery feature expanded by its k nearest other gallery
    features too (database-side augmentation). Memory: chunk_size x G.
    """
    from keras_hpnet.metrics.distance import _features, _l2_normalize

    q = _l2_normalize(_features(q_feat, "q_feat"))
    g = _l2_normalize(_features(g_feat, "g_feat"))
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"feature sizes differ: q_feat has {q.shape[1]}, g_feat has {g.shape[1]}")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")

    def expand(x, exclude_self):
        out = np.empty_like(x)
        kk = min(k + exclude_self, len(g))
        for s in range(0, len(x), chunk_size):
            sim = x[s : s + chunk_size] @ g.T
            if exclude_self:
                sim[np.arange(len(sim)), np.arange(s, s + len(sim))] = -np.inf
            top = _nearest(-sim, kk - 1)[:, : min(k, len(g) - exclude_self)]
            w = np.maximum(np.take_along_axis(sim, top, 1), 0.0) ** alpha
            out[s : s + len(sim)] = x[s : s + len(sim)] + np.einsum("qk,qkd->qd", w, g[top])
        return _l2_normalize(out).astype(np.float32)

    if expand_gallery:
        return expand(q, 0), expand(g, 1)
    return expand(q, 0)

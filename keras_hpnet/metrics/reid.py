"""Re-identification ranking metrics under the Market-1501 protocol (numpy only).

Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015
(CMC and mAP, same-identity-same-camera gallery images ignored per query);
mINP from Ye et al., "Deep Learning for Person Re-identification: A Survey and
Outlook", TPAMI 2021 (mean of #relevant / rank of the hardest relevant match).
The same junk/distractor rules are MARS's official video protocol (Zheng et
al., "MARS: A Video Benchmark for Large-Scale Person Re-identification", ECCV
2016; its evaluation code, `evaluation_mars.m`): docs/evaluation.md "Video".

`mAP` averages the precision at each true match (torchreid, fast-reid);
`mAP_trapezoid` is the area under the precision-recall curve by the
trapezoid rule, what MARS's MATLAB `compute_AP` computes.

Ranking rule (deterministic): gallery items are ordered by their distance
compared at float32 precision, ties broken by gallery index (a stable sort).
"""

from __future__ import annotations

import numpy as np

_SIGN_BIT = np.uint32(0x80000000)


def _int_vector(x, name, length):
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D vector, got shape {x.shape}")
    if len(x) != length:
        raise ValueError(f"{name}: has {len(x)} entries, distmat needs {length}")
    if x.size and not np.issubdtype(x.dtype, np.integer):
        if not np.all(np.mod(x, 1) == 0):
            raise ValueError(f"{name}: expected integer ids, got dtype {x.dtype}")
    return x.astype(np.int64)


def _orderable_bits(x):
    """Map float32 values to uint32 keys whose unsigned order is the float order.

    -0.0 is folded onto +0.0 first, so the two compare equal like floats do.
    """
    x = np.add(x, np.float32(0.0), dtype=np.float32)
    bits = x.view(np.uint32)
    flip = (x.view(np.int32) >> 31).view(np.uint32)  # all ones for negatives
    flip |= _SIGN_BIT
    return bits ^ flip


def _ranks_of_pairs(distmat, col_index, pair_rows, pair_cols, pair_offsets, chunk_size):
    """0-based rank of gallery column `pair_cols[i]` in the ranking of query `pair_rows[i]`.

    The ranking of a row sorts the 64-bit keys (orderable distance bits << 32 |
    column), unique per row, so the (unstable, SIMD) sort equals a stable sort
    by distance. Each pair's rank is then a binary search in its sorted row.
    """
    num_q = distmat.shape[0]
    num_g = len(col_index) if col_index is not None else distmat.shape[1]
    ranks = np.empty(len(pair_rows), np.int64)
    chunk_size = max(1, min(chunk_size, num_q))
    buffer = np.empty((chunk_size, num_g), np.uint64)
    columns = np.arange(num_g, dtype=np.uint32)
    for start in range(0, num_q, chunk_size):
        stop = min(start + chunk_size, num_q)
        n = stop - start
        chunk = np.asarray(distmat[start:stop], dtype=np.float32)
        if col_index is not None:
            chunk = chunk[:, col_index]
        p0, p1 = pair_offsets[start], pair_offsets[stop]
        rows_local = pair_rows[p0:p1] - start
        cols = pair_cols[p0:p1]
        pair_keys = (_orderable_bits(chunk[rows_local, cols]).astype(np.uint64) << np.uint64(32)) | cols.astype(
            np.uint64
        )
        keys = buffer[:n]
        halves = keys.view(np.uint32).reshape(n, num_g, 2)
        if np.little_endian:
            halves[:, :, 0] = columns
            halves[:, :, 1] = _orderable_bits(chunk)
        else:  # pragma: no cover - big-endian hosts
            halves[:, :, 1] = columns
            halves[:, :, 0] = _orderable_bits(chunk)
        keys.sort(axis=1)
        for r in range(n):
            a, b = pair_offsets[start + r] - p0, pair_offsets[start + r + 1] - p0
            if b > a:
                ranks[p0 + a : p0 + b] = np.searchsorted(keys[r], pair_keys[a:b])
    return ranks


def reid_metrics(
    distmat,
    query_pids,
    gallery_pids,
    query_camids,
    gallery_camids,
    max_rank=50,
    *,
    chunk_size=256,
):
    """CMC, mAP and mINP of a query x gallery distance matrix (smaller = closer).

    Market-1501 protocol: for each query, gallery items with the same pid AND
    the same camid are removed, junk gallery items (pid -1) are removed for
    every query, distractors (pid 0) stay. Queries left with no true match are
    skipped (`num_valid_queries` counts the rest). Cost is one row sort per
    query (chunked, `chunk_size` rows at a time) plus work on the true matches
    only: a Market-scale 3,368 x 15,913 problem takes well under a second.

    Returns a dict: `rank1`, `rank5`, `rank10`, `mAP`, `mINP`,
    `mAP_trapezoid` (floats in 0..1), `cmc` (float64 `[max_rank]`, cmc[k-1] = fraction of valid queries
    with a true match within the top k), `num_valid_queries`, `num_queries`.
    Raises ValueError on malformed input or when no query has a true match.
    """
    d = np.asarray(distmat)
    if d.ndim != 2:
        raise ValueError(f"distmat: expected a 2-D [num_query, num_gallery] matrix, got shape {d.shape}")
    if not np.issubdtype(d.dtype, np.number):
        raise ValueError(f"distmat: expected numbers, got dtype {d.dtype}")
    num_q, num_g = d.shape
    q_pids = _int_vector(query_pids, "query_pids", num_q)
    q_cams = _int_vector(query_camids, "query_camids", num_q)
    g_pids = _int_vector(gallery_pids, "gallery_pids", num_g)
    g_cams = _int_vector(gallery_camids, "gallery_camids", num_g)
    max_rank = int(max_rank)
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if num_q == 0:
        raise ValueError("distmat: no queries")
    if np.issubdtype(d.dtype, np.floating) and np.isnan(d).any():
        raise ValueError("distmat: contains NaN")

    # Junk gallery items are removed for every query: drop their columns.
    keep = g_pids != -1
    col_index = None if keep.all() else np.flatnonzero(keep)
    g_pids, g_cams = g_pids[keep], g_cams[keep]

    # True-match candidates (same pid) per query, as (row, column) pairs.
    by_pid = np.argsort(g_pids, kind="stable")
    uniq, starts, counts = np.unique(g_pids[by_pid], return_index=True, return_counts=True)
    pos = np.clip(np.searchsorted(uniq, q_pids), 0, max(len(uniq) - 1, 0))
    present = (uniq[pos] == q_pids) if len(uniq) else np.zeros(num_q, bool)
    m_count = np.where(present, counts[pos] if len(uniq) else 0, 0)
    m_start = np.where(present, starts[pos] if len(uniq) else 0, 0)
    pair_offsets = np.concatenate([[0], np.cumsum(m_count)])
    pair_rows = np.repeat(np.arange(num_q), m_count)
    within = np.arange(pair_offsets[-1]) - np.repeat(pair_offsets[:-1], m_count)
    pair_cols = by_pid[np.repeat(m_start, m_count) + within]

    rank0 = _ranks_of_pairs(d, col_index, pair_rows, pair_cols, pair_offsets, chunk_size)

    # Order pairs by (query, rank); same-camera matches are removed and shift
    # the rank of every later item of that query up by one.
    order = np.lexsort((rank0, pair_rows))
    rows = pair_rows[order]
    rank0 = rank0[order]
    removed = (g_cams[pair_cols[order]] == q_cams[rows]).astype(np.int64)
    row_start = pair_offsets[rows]  # pairs of a row are contiguous after the sort
    cum_removed = np.cumsum(removed)
    base_removed = np.concatenate([[0], cum_removed])[row_start]
    kept_rank = rank0 + 1 - (cum_removed - removed - base_removed)  # 1-based

    good = removed == 0
    g_rows = rows[good]
    g_rank = kept_rank[good]
    num_rel = np.bincount(g_rows, minlength=num_q)
    g_start = np.concatenate([[0], np.cumsum(num_rel)])
    hit_number = np.arange(len(g_rows)) - g_start[g_rows] + 1
    precision_at_hit = hit_number / g_rank
    valid = num_rel > 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError("no query has a true match in the gallery (after removing same-camera matches)")
    ap = np.bincount(g_rows, weights=precision_at_hit, minlength=num_q)[valid] / num_rel[valid]
    # Trapezoid: the mean of the precision just before each hit (1 before the
    # first rank) and at it; steps between hits add no recall.
    precision_before = np.where(g_rank > 1, (hit_number - 1) / np.maximum(g_rank - 1, 1), 1.0)
    trapezoid = (precision_before + precision_at_hit) / 2
    ap_trapezoid = np.bincount(g_rows, weights=trapezoid, minlength=num_q)[valid] / num_rel[valid]
    first_rank = g_rank[g_start[:-1][valid]]
    last_rank = g_rank[g_start[1:][valid] - 1]
    inp = num_rel[valid] / last_rank

    hist = np.bincount(np.minimum(first_rank, max_rank + 1) - 1, minlength=max_rank + 1)[:max_rank]
    cmc = np.cumsum(hist) / num_valid
    return {
        "rank1": float(np.mean(first_rank <= 1)),
        "rank5": float(np.mean(first_rank <= 5)),
        "rank10": float(np.mean(first_rank <= 10)),
        "mAP": float(np.mean(ap)),
        "mINP": float(np.mean(inp)),
        "mAP_trapezoid": float(np.mean(ap_trapezoid)),
        "cmc": cmc.astype(np.float64),
        "num_valid_queries": num_valid,
        "num_queries": int(num_q),
    }

"""Benchmark: re-id metric time at Market-1501 scale vs a per-query loop reference.

    python benchmarks/bench_metrics.py [--num_query 3368 --num_gallery 15913]

The loop reference (one stable argsort per query, like torchreid's numpy
evaluation) runs on a subsample of queries and is extrapolated. Also times the
distance helpers and k-reciprocal re-ranking on a few thousand images.
"""

import argparse
import time

import numpy as np

from keras_hpnet.metrics import euclidean_distance, k_reciprocal_rerank, reid_metrics


def loop_reference(d, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    aps, cmcs = [], []
    for i in range(d.shape[0]):
        order = np.argsort(d[i], kind="stable")
        remove = ((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i])) | (g_pids[order] == -1)
        hits = (g_pids[order][~remove] == q_pids[i]).astype(np.float64)
        if not hits.any():
            continue
        cmcs.append(np.minimum(np.cumsum(hits), 1)[:max_rank])
        aps.append(((np.cumsum(hits) / np.arange(1, len(hits) + 1)) * hits).sum() / hits.sum())
    return np.mean(cmcs, axis=0), np.mean(aps)


def market_like(rng, num_q, num_g, num_ids=750, num_cams=6, dim=64):
    g_pids = rng.integers(0, num_ids + 1, num_g)  # 0 = distractors
    g_cams = rng.integers(0, num_cams, num_g)
    q_pids = rng.integers(1, num_ids + 1, num_q)
    q_cams = rng.integers(0, num_cams, num_q)
    centers = rng.normal(size=(num_ids + 1, dim)).astype(np.float32)
    q = centers[q_pids] + rng.normal(size=(num_q, dim)).astype(np.float32)
    g = centers[g_pids] + rng.normal(size=(num_g, dim)).astype(np.float32)
    return q, g, q_pids, g_pids, q_cams, g_cams


def timed(fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_query", type=int, default=3368)
    parser.add_argument("--num_gallery", type=int, default=15913)
    parser.add_argument("--loop_queries", type=int, default=300)
    parser.add_argument("--rerank_query", type=int, default=750)
    parser.add_argument("--rerank_gallery", type=int, default=3000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    q, g, q_pids, g_pids, q_cams, g_cams = market_like(rng, args.num_query, args.num_gallery)

    rows = []
    t_dist, d = timed(lambda: euclidean_distance(q, g))
    rows.append(("euclidean_distance (64-d)", f"{args.num_query}x{args.num_gallery}", t_dist))
    t_vec, out = timed(lambda: reid_metrics(d, q_pids, g_pids, q_cams, g_cams), repeat=3)
    rows.append(("reid_metrics (vectorised)", f"{args.num_query}x{args.num_gallery}", t_vec))
    n = min(args.loop_queries, args.num_query)
    t_loop, (cmc, m_ap) = timed(lambda: loop_reference(d[:n], q_pids[:n], g_pids, q_cams[:n], g_cams))
    t_loop_full = t_loop * args.num_query / n
    rows.append((f"loop reference ({n} queries)", f"{n}x{args.num_gallery}", t_loop))
    rows.append(("loop reference (extrapolated)", f"{args.num_query}x{args.num_gallery}", t_loop_full))
    sub = reid_metrics(d[:n], q_pids[:n], g_pids, q_cams[:n], g_cams)
    assert abs(sub["mAP"] - m_ap) < 1e-9 and np.allclose(sub["cmc"], cmc), "vectorised != loop"

    nq, ng = args.rerank_query, args.rerank_gallery
    t_rr, _ = timed(
        lambda: k_reciprocal_rerank(
            euclidean_distance(q[:nq], g[:ng]), euclidean_distance(q[:nq], q[:nq]), euclidean_distance(g[:ng], g[:ng])
        )
    )
    rows.append(("k_reciprocal_rerank (k1=20,k2=6)", f"{nq}x{ng}", t_rr))

    print(f"{'what':36s} {'size':>12s} {'seconds':>9s}")
    for name, size, sec in rows:
        print(f"{name:36s} {size:>12s} {sec:9.3f}")
    print(f"speed-up vs loop reference: {t_loop_full / t_vec:.0f}x   (rank1 {out['rank1']:.3f}, mAP {out['mAP']:.3f})")


if __name__ == "__main__":
    main()

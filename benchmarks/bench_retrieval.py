"""Benchmark: gallery index build time, size, query latency and recall (keras_hpnet.retrieval.index).

    python benchmarks/bench_retrieval.py [--sizes 10000,100000,1000000] [--dim 512] [--json FILE]

Clustered synthetic embeddings (identities = Gaussian clusters, L2-normalised
like re-id features); ground truth = exact top-10 by numpy brute force. For
numpy brute force and each faiss kind: build seconds, RAM bytes of the vector
store (codes + ids + quantizer; x smaller than float32), bytes on disk (the
float32 vectors file of the refined kinds, "rf": exact re-ranking of
k * refine_factor candidates, written to --vectors_dir), p50/p99 single-query
latency through GalleryIndex.search, batch throughput, recall@1 and recall@10
against exact. `--threads` sets faiss's OpenMP threads (default 1: the machine
is shared).
"""

import argparse
import json
import math
import os
import tempfile
import time

# One BLAS/OpenMP thread unless the environment says otherwise: the machine is
# shared, and oversubscribed BLAS threads make a single gemv 5x slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from keras_hpnet.retrieval.index import GalleryIndex, faiss_available  # noqa: E402


def clustered(n, dim, seed, per_identity=20, spread=0.35):
    rng = np.random.default_rng(seed)
    ids = max(1, n // per_identity)
    centres = rng.normal(size=(ids, dim)).astype(np.float32)
    x = centres[rng.integers(0, ids, n)] + spread * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), centres


def queries_near(centres, count, dim, seed, spread=0.35):
    rng = np.random.default_rng(seed)
    q = centres[rng.integers(0, len(centres), count)] + spread * rng.normal(size=(count, dim)).astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def exact_top(gallery, q, k):
    from keras_hpnet.retrieval.index import _brute_force

    return _brute_force(q, gallery, k)[1]


SHORT = {"ef_search": "ef", "nprobe": "np", "refine_factor": "rf"}


def configs(n, dim):
    """(name, kind, backend, build parameters, search-time variants): one build per entry."""
    nlist = max(16, int(4 * math.sqrt(n)))
    out = [("numpy", "flat", "numpy", {}, [{}])]
    if faiss_available():
        out += [
            ("faiss flat", "flat", "faiss", {}, [{}]),
            ("hnsw M32", "hnsw", "faiss", {"hnsw_m": 32}, [{"ef_search": 32}, {"ef_search": 64}, {"ef_search": 128}]),
            (f"ivf{nlist} sq8", "ivf_sq8", "faiss", {"nlist": nlist}, [{"nprobe": 8}, {"nprobe": 16}, {"nprobe": 64}]),
            (f"ivf{nlist} sq6", "ivf_sq6", "faiss", {"nlist": nlist}, [{"nprobe": 16}, {"nprobe": 32}]),
            (f"ivf{nlist} sq6 refine", "ivf_sq6", "faiss", {"nlist": nlist, "vectors_path": True},
             [{"nprobe": 16, "refine_factor": 4}, {"nprobe": 16, "refine_factor": 8},
              {"nprobe": 32, "refine_factor": 8}]),
            (f"ivf{nlist} pq{dim // 8}", "ivf_pq", "faiss", {"nlist": nlist, "pq_m": dim // 8}, [{"nprobe": 16}]),
            (f"ivf{nlist} pq{dim // 8} refine", "ivf_pq", "faiss",
             {"nlist": nlist, "pq_m": dim // 8, "vectors_path": True},
             [{"nprobe": 16, "refine_factor": 4}, {"nprobe": 16, "refine_factor": 8}]),
        ]
    return out


def bench(name, kind, backend, params, variants, gallery, q, truth, k=10, num_single=200, first_add=None,
          vectors_dir=None):
    params = dict(params)
    if params.pop("vectors_path", False):  # the refined kinds: float32 vectors in a file, not in RAM
        params["vectors_path"] = os.path.join(vectors_dir, f"{kind}_{len(gallery)}.f32")
    ix = GalleryIndex(gallery.shape[1], kind, backend=backend, **params)
    t = time.perf_counter()
    step = first_add or len(gallery)  # IVF kinds train on the first add
    for s in range(0, len(gallery), step):
        ix.add(gallery[s : s + step], np.arange(s, min(len(gallery), s + step)))
    build = time.perf_counter() - t
    nbytes = ix.nbytes()
    rows = []
    for variant in variants:
        ix.params.update(variant)
        ix.search(q[:2], k)  # warm-up
        lat = []
        for i in range(min(num_single, len(q))):
            t = time.perf_counter()
            ix.search(q[i], k)
            lat.append(1000 * (time.perf_counter() - t))
        t = time.perf_counter()
        hits = ix.search(q, k)
        batch = time.perf_counter() - t
        got = [[h.slot for h in row] for row in hits]
        r1 = float(np.mean([g[:1] == t[:1].tolist() for g, t in zip(got, truth)]))
        r10 = float(np.mean([len(set(g) & set(t.tolist())) / k for g, t in zip(got, truth)]))
        base = f"ivf{ix.params['nlist']} {name.split(' ', 1)[1]}" if kind.startswith("ivf") else name  # as built
        base = base.replace(" refine", "")  # the rf<r> suffix says it
        label = base + "".join(f" {SHORT[k]}{v}" for k, v in variant.items())
        rows.append({"index": label, "kind": kind, "backend": backend, "size": len(gallery),
                     "dim": gallery.shape[1], "build_s": round(build, 3), "bytes": nbytes,
                     "x_smaller": round(gallery.nbytes / max(nbytes, 1), 2), "disk_bytes": ix.vectors_nbytes(),
                     "p50_ms": round(float(np.percentile(lat, 50)), 3),
                     "p99_ms": round(float(np.percentile(lat, 99)), 3), "batch_qps": round(len(q) / batch, 1),
                     "recall_at_1": round(r1, 4), "recall_at_10": round(r10, 4),
                     "params": dict(ix.params) if backend == "faiss" else {}})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--num_queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default="",
                        help="comma-separated kinds (flat,hnsw,ivf_sq8,ivf_sq6,ivf_pq) or numpy/faiss (default: all)")
    parser.add_argument("--pq_max_size", type=int, default=20000,
                        help="skip ivf_pq above this size (its k-means training is slow on 2 cores)")
    parser.add_argument("--first_add", type=int, default=None,
                        help="add the gallery in batches of this size (IVF kinds train on the first)")
    parser.add_argument("--json", default=None, help="write the rows here")
    parser.add_argument("--vectors_dir", default=None,
                        help="where the refined kinds write their float32 vectors file (default: a temporary "
                             "directory, removed at the end)")
    args = parser.parse_args()
    if faiss_available():
        import faiss

        faiss.omp_set_num_threads(args.threads)
    from keras_hpnet.cpu import describe

    print(f"{describe()}; faiss threads {args.threads}, dim {args.dim}")
    header = (f"{'index':<22} {'size':>8} {'build s':>8} {'RAM MB':>8} {'x smaller':>9} {'disk MB':>8} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'batch q/s':>9} {'R@1':>6} {'R@10':>6}")
    print(header)
    with tempfile.TemporaryDirectory(dir=args.vectors_dir) as vectors_dir:
        rows = run(args, vectors_dir)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def run(args, vectors_dir):
    rows = []
    for n in [int(s) for s in args.sizes.split(",") if s]:
        gallery, centres = clustered(n, args.dim, seed=0)
        q = queries_near(centres, args.num_queries, args.dim, seed=1)
        truth = exact_top(gallery, q, 10)
        for name, kind, backend, params, variants in configs(n, args.dim):
            if args.only and not {kind, name.split()[0]} & set(args.only.split(",")):
                continue
            if kind == "ivf_pq" and n > args.pq_max_size:
                print(f"{name:<22} {n:>8} skipped (--pq_max_size {args.pq_max_size})", flush=True)
                continue
            for row in bench(name, kind, backend, params, variants, gallery, q, truth, first_add=args.first_add,
                             vectors_dir=vectors_dir):
                rows.append(row)
                print(f"{row['index']:<22} {n:>8} {row['build_s']:>8.2f} {row['bytes'] / 2**20:>8.1f} "
                      f"{row['x_smaller']:>9.2f} {row['disk_bytes'] / 2**20:>8.1f} "
                      f"{row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} {row['batch_qps']:>9.1f} "
                      f"{row['recall_at_1']:>6.3f} {row['recall_at_10']:>6.3f}", flush=True)
    return rows


if __name__ == "__main__":
    main()

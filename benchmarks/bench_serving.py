"""Serving throughput and latency: export.serve over gRPC vs the same SavedModel in-process.

    python benchmarks/bench_serving.py [--model hacnn] [--requests 40] [--concurrency 1,4,16] [--batch_sizes 1,32]

Builds the model (untrained weights; speed does not depend on them), exports it
with export.saved_model into a temporary directory, starts export.serve on a
free 127.0.0.1 port in this process, and for each batch size and number of
concurrent clients reports requests/s, images/s and p50/p99 latency. The
"in-process" rows call the loaded SavedModel signature directly from the same
number of threads, so the difference is the serving overhead (proto
conversion, gRPC, validation). Not a test.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_string("model", "hacnn", "keras_hpnet model name ('tiny': the small contract model)")
flags.DEFINE_integer("requests", 40, "requests per client thread (batch 1; fewer for big batches, see code)")
flags.DEFINE_list("concurrency", ["1", "4", "16"], "concurrent clients")
flags.DEFINE_list("batch_sizes", ["1", "32"], "images per request")
flags.DEFINE_float("min_seconds", 3.0, "stop a cell early once this much time passed and >= 8 requests ran")
FLAGS = flags.FLAGS


# Benchmark variants: the tiny contract model at its small size (embedding 8).
BUILD = {"tiny": dict(num_classes=5, num_attributes=3, feature_dim=5, input_shape=(32, 16))}


def _build(name):
    import keras_hpnet

    n_attr = 0 if keras_hpnet.spec(name).attributes == "none" else 10
    model = keras_hpnet.build_model(name, **BUILD.get(name, dict(num_classes=10, num_attributes=n_attr)))
    attrs = [f"attr{i}" for i in range(model.num_attributes)]
    from export.run import metadata_from

    cfg = {"model": name, "input_height": model.input_size[0], "input_width": model.input_size[1], "attribute_names": attrs}
    return model, metadata_from(model, cfg)


def _run_cell(call, clients, n_requests, min_seconds):
    """`clients` threads each calling `call()` up to n_requests times -> latencies (s), wall (s)."""
    lat = [[] for _ in range(clients)]
    deadline = [None]
    start = threading.Barrier(clients + 1)

    def worker(i):
        start.wait()
        for _ in range(n_requests):
            t = time.perf_counter()
            call()
            lat[i].append(time.perf_counter() - t)
            if deadline[0] is not None and time.perf_counter() > deadline[0] and len(lat[i]) >= 2:
                break

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    deadline[0] = t0 + min_seconds
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return np.concatenate([np.asarray(x) for x in lat]), wall


def main(argv):
    import tensorflow as tf

    from export.client import GrpcClient
    from export.saved_model import export_saved_model
    from export.serve import ModelServer

    model, md = _build(FLAGS.model)
    h, w = md.input_height, md.input_width
    tmp = tempfile.mkdtemp(prefix="bench_serving_")
    t = time.perf_counter()
    res = export_saved_model(model, tmp, md, model_name="bench")
    print(f"model {FLAGS.model} input {h}x{w}, exported in {time.perf_counter() - t:.1f}s -> {res.path}")
    loaded = tf.saved_model.load(res.path)
    fn = loaded.signatures["serving_default"]
    server = ModelServer(os.path.dirname(res.path), port=0, workers=16, poll_interval_s=60).start()
    rows = []
    try:
        for bs in [int(b) for b in FLAGS.batch_sizes]:
            x = np.random.default_rng(0).integers(0, 256, (bs, h, w, 3)).astype(np.uint8)
            fn(images=tf.constant(x))  # warm-up
            n_req = max(10, FLAGS.requests // max(1, bs // 4))
            for clients in [int(c) for c in FLAGS.concurrency]:
                lat, wall = _run_cell(lambda: fn(images=tf.constant(x)), clients, n_req, FLAGS.min_seconds)
                rows.append(("in-process", bs, clients, lat, wall))
                chans = [GrpcClient(f"127.0.0.1:{server.port}", "bench", timeout_s=600, batch_size=bs) for _ in range(clients)]
                chans[0].predict(x)  # warm-up
                local = threading.local()
                counter = iter(range(10**9))
                lock = threading.Lock()

                def grpc_call():
                    if not hasattr(local, "c"):
                        with lock:
                            local.c = chans[next(counter)]
                    local.c.predict(x)

                lat, wall = _run_cell(grpc_call, clients, n_req, FLAGS.min_seconds)
                rows.append(("export.serve gRPC", bs, clients, lat, wall))
                for c in chans:
                    c.close()
                print(f"  done batch {bs} clients {clients}", file=sys.stderr)
    finally:
        server.stop(grace_s=1)
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"{'path':<18} {'batch':>5} {'clients':>7} {'requests':>8} {'req/s':>8} {'img/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for path, bs, clients, lat, wall in rows:
        n = len(lat)
        print(
            f"{path:<18} {bs:>5} {clients:>7} {n:>8} {n / wall:>8.1f} {n * bs / wall:>8.1f} "
            f"{np.percentile(lat, 50) * 1e3:>8.1f} {np.percentile(lat, 99) * 1e3:>8.1f}"
        )


if __name__ == "__main__":
    app.run(main)

"""Serving throughput and latency: export.serve over gRPC vs the same SavedModel in-process,
and a bounded concurrency run against the server as a separate process.

    python benchmarks/bench_serving.py [--model hacnn] [--requests 40] [--concurrency 1,4,16] [--batch_sizes 1,32]
    python benchmarks/bench_serving.py --mode concurrency [--model tiny] [--clients 16] [--seconds 5] [--protocols grpc,rest]

Builds the model (untrained weights; speed does not depend on them), exports it
with export.saved_model into a temporary directory, starts export.serve on a
free 127.0.0.1 port in this process, and for each batch size and number of
concurrent clients reports requests/s, images/s and p50/p99 latency. The
"in-process" rows call the loaded SavedModel signature directly from the same
number of threads, so the difference is the serving overhead (proto
conversion, gRPC, validation).

``--mode concurrency`` starts ``python -m export.serve`` on 127.0.0.1 (free
ports) in a child process, then for each protocol runs `--clients` client
threads sending batch-1 requests for `--seconds` seconds (each thread stops
by itself at the deadline), and prints requests/s, p50/p99 latency, errors
by kind and the server's peak RSS during the run (VmHWM, reset before each
protocol). The server is stopped with SIGTERM at the end. Not a test.
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
flags.DEFINE_enum("mode", "matrix", ["matrix", "concurrency"], "matrix: in-process vs gRPC; concurrency: N clients for T s")
flags.DEFINE_integer("clients", 16, "concurrency mode: client threads")
flags.DEFINE_float("seconds", 5.0, "concurrency mode: seconds per protocol (at most 120)")
flags.DEFINE_list("protocols", ["grpc", "rest"], "concurrency mode: grpc and/or rest")
FLAGS = flags.FLAGS


# Benchmark variants: the tiny contract model at its small size (embedding 8).
BUILD = {"tiny": dict(num_classes=5, num_attributes=3, feature_dim=5, input_shape=(32, 16))}


def _build(name):
    import keras_hpnet

    n_attr = 0 if keras_hpnet.spec(name).attributes == "none" else 10
    model = keras_hpnet.build_model(name, **BUILD.get(name, dict(num_classes=10, num_attributes=n_attr)))
    attrs = [f"attr{i}" for i in range(model.num_attributes)]
    from keras_hpnet.runs import metadata_from

    cfg = {"model": name, "input_height": model.input_size[0], "input_width": model.input_size[1], "attribute_names": attrs}
    return model, metadata_from(model, cfg)


def _proc_status(pid, key):
    """A kB field (VmRSS, VmHWM) of /proc/<pid>/status, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss(pid):
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _start_server(model_base_path):
    """`python -m export.serve` on free 127.0.0.1 ports -> (process, grpc port, rest port)."""
    import subprocess

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "export.serve", "--model_base_path", model_base_path, "--host", "127.0.0.1",
         "--port", "0", "--rest_port", "0", "--poll_interval", "60", "--grace_period", "2"],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    for line in proc.stdout:
        if line.startswith("READY"):
            fields = dict(f.split("=", 1) for f in line.split()[1:])
            return proc, int(fields["grpc"].rsplit(":", 1)[1]), int(fields["rest"].rsplit(":", 1)[1])
    raise RuntimeError(f"export.serve exited with {proc.wait()} before READY")


def _load(call, clients, seconds, max_requests=None, min_requests=1):
    """`clients` threads calling `call(client_index)`, each until `seconds`
    passed (and it made `min_requests`) or it made `max_requests`
    -> (latencies of successful calls, {error kind: count}, wall seconds)."""
    lat = [[] for _ in range(clients)]
    errors = [{} for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def worker(i):
        start.wait()
        done = 0
        while (max_requests is None or done < max_requests) and (time.perf_counter() < deadline[0] or done < min_requests):
            done += 1
            t = time.perf_counter()
            try:
                call(i)
            except Exception as e:  # noqa: BLE001 - counted, not raised
                kind = getattr(e, "code", None) or type(e).__name__
                errors[i][kind] = errors[i].get(kind, 0) + 1
            else:
                lat[i].append(time.perf_counter() - t)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    deadline[0] = t0 + seconds
    start.wait()
    for t in threads:
        t.join(timeout=seconds + 600)
    merged = {}
    for e in errors:
        for k, v in e.items():
            merged[k] = merged.get(k, 0) + v
    return np.asarray([x for li in lat for x in li]), merged, time.perf_counter() - t0


def concurrency_run(res, md):
    import signal

    from export.serving.client import GrpcClient, RestClient

    if FLAGS.clients < 1 or not 0 < FLAGS.seconds <= 120:
        raise SystemExit("--clients >= 1 and 0 < --seconds <= 120")
    x = np.random.default_rng(0).integers(0, 256, (1, md.input_height, md.input_width, 3)).astype(np.uint8)
    proc, grpc_port, rest_port = _start_server(os.path.dirname(res.path))
    rows = []
    try:
        print(f"server pid {proc.pid}: RSS after start {_proc_status(proc.pid, 'VmRSS'):.0f} MiB")
        for protocol in FLAGS.protocols:
            if protocol == "grpc":
                clients = [GrpcClient(f"127.0.0.1:{grpc_port}", "bench", timeout_s=60) for _ in range(FLAGS.clients)]
            elif protocol == "rest":
                clients = [RestClient(f"http://127.0.0.1:{rest_port}", "bench", timeout_s=60) for _ in range(FLAGS.clients)]
            else:
                raise SystemExit(f"--protocols: unknown {protocol!r} (grpc, rest)")
            clients[0].predict(x)  # warm-up
            reset = _reset_peak_rss(proc.pid)
            lat, errors, wall = _load(lambda i: clients[i].predict(x), FLAGS.clients, FLAGS.seconds)
            rows.append((protocol, lat, errors, wall, _proc_status(proc.pid, "VmHWM"), reset))
            if protocol == "grpc":
                for c in clients:
                    c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except Exception:  # noqa: BLE001
            proc.kill()
    print(f"\n{FLAGS.clients} clients x {FLAGS.seconds:g} s, batch 1, model {FLAGS.model}, 127.0.0.1")
    print(f"{'protocol':<8} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>8}  {'peak RSS MiB':>12}")
    for protocol, lat, errors, wall, peak, reset in rows:
        n = len(lat)
        p50, p99 = (np.percentile(lat, 50) * 1e3, np.percentile(lat, 99) * 1e3) if n else (float("nan"),) * 2
        err = sum(errors.values())
        print(f"{protocol:<8} {n:>8} {n / wall:>8.1f} {p50:>8.1f} {p99:>8.1f} {err:>8}  {peak:>12.0f}"
              + ("" if reset else " (since start)") + (f"  {errors}" if errors else ""))


def main(argv):
    import tensorflow as tf

    from export.saved_model import export_saved_model
    from export.serving.client import GrpcClient
    from export.serving.server import ModelServer

    model, md = _build(FLAGS.model)
    h, w = md.input_height, md.input_width
    tmp = tempfile.mkdtemp(prefix="bench_serving_")
    t = time.perf_counter()
    res = export_saved_model(model, tmp, md, model_name="bench")
    print(f"model {FLAGS.model} input {h}x{w}, exported in {time.perf_counter() - t:.1f}s -> {res.path}")
    if FLAGS.mode == "concurrency":
        try:
            concurrency_run(res, md)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
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
                lat, _, wall = _load(lambda i: fn(images=tf.constant(x)), clients, FLAGS.min_seconds, n_req, 2)
                rows.append(("in-process", bs, clients, lat, wall))
                chans = [GrpcClient(f"127.0.0.1:{server.port}", "bench", timeout_s=600, batch_size=bs) for _ in range(clients)]
                chans[0].predict(x)  # warm-up
                lat, errors, wall = _load(lambda i: chans[i].predict(x), clients, FLAGS.min_seconds, n_req, 2)
                if errors:
                    print(f"  errors: {errors}", file=sys.stderr)
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

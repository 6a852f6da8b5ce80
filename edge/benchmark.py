"""Batch-1 latency of an exported model on this device (LiteRT only).

    python -m edge.benchmark --model hacnn_int8.tflite --max_threads 4

Prints which ops XNNPACK runs (the rest run on LiteRT's builtin kernels, and
each switch splits the graph into partitions), then p50 / p90 / p99 latency
and images/s for 1..N threads.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def measure(model_path: str, num_threads: int | None, runs: int = 100, warmup: int = 10,
            delegate: str = "xnnpack") -> dict:
    """Latency (ms) percentiles of `runs` batch-1 invocations on random pixels."""
    from edge.runtime import make_interpreter

    it = make_interpreter(model_path, num_threads, delegate)
    det = it.get_input_details()[0]
    shape = [max(1, int(s)) for s in det["shape"]]
    rng = np.random.default_rng(0)
    if np.issubdtype(det["dtype"], np.integer):
        info = np.iinfo(det["dtype"])
        x = rng.integers(info.min, int(info.max) + 1, shape).astype(det["dtype"])
    else:
        x = rng.uniform(0, 255, shape).astype(det["dtype"])
    it.set_tensor(det["index"], x)
    for _ in range(warmup):
        it.invoke()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        it.invoke()
        times[i] = time.perf_counter() - t0
    ms = times * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"threads": num_threads, "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "images_per_s": float(shape[0] / times.mean())}


def placement(model_path: str) -> str:
    """Where the ops run with the default XNNPACK delegate (edge.runtime.delegation), one line."""
    import warnings

    from edge.runtime import delegation, delegation_summary, make_interpreter

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        it = make_interpreter(model_path, 1)
    refused = [str(c.message) for c in caught if "XNNPACK" in str(c.message)]
    if refused:
        return "refused the model; LiteRT's builtin kernels run all of it (slower)"
    return delegation_summary(delegation(it))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge.benchmark", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help=".tflite file")
    p.add_argument("--max_threads", type=int, default=os.cpu_count() or 1, help="measure 1..N threads")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--delegate", default="xnnpack", help="xnnpack (default), none, or a delegate library path")
    args = p.parse_args(argv)
    if not os.path.isfile(args.model):
        print(f"error: model {args.model}: no such file", file=sys.stderr)
        return 2
    try:
        size = os.path.getsize(args.model)
        print(f"{args.model} ({size / 1e6:.2f} MB), delegate {args.delegate}, {args.runs} runs")
        if args.delegate == "xnnpack":
            print("XNNPACK: " + placement(args.model))
        print(f"{'threads':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'img/s':>8}")
        for n in range(1, max(1, args.max_threads) + 1):
            r = measure(args.model, n, args.runs, args.warmup, args.delegate)
            print(f"{n:>7} {r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['images_per_s']:>8.1f}",
                  flush=True)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

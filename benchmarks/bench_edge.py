"""Batch-1 latency and size: Keras, SavedModel, TFLite float32/float16/dynamic/int8.

    python benchmarks/bench_edge.py                       # hacnn, hatcnn, mnet, hpnet (untrained)
    python benchmarks/bench_edge.py --models hacnn --threads 2
    python benchmarks/bench_edge.py --run_dir runs/hacnn  # a trained run (its own calibration images)
    python benchmarks/bench_edge.py --models hacnn --reference "python benchmarks/reference_torch_hacnn.py"

Targets (issue 6): int8 latency <= 1/3 of the SavedModel's, int8 size <= float / 3.5.
The formats are timed in turns (10 rounds, round-robin) so that the load of a
shared machine hits all of them alike: compare the ratios, not absolute times.
Column `kernels`: `xnn D/N pK` = D of the N TFLite ops run by XNNPACK in K
partitions (edge.runtime.delegation); `builtin` = XNNPACK refused the model and
LiteRT's reference kernels run it.
`--reference COMMAND`: any command printing a line `p50_ms=<number>` (e.g.
torchreid's HA-CNN in PyTorch, `reference_torch_hacnn.py`; benchmarks/README.md)
runs `--reference_runs` times between the rounds of each model's timing, and
the table gains its median and the ratios reference / format.
`--xnnpack_isa avx2`: XNNPACK runs the kernels it picks on an AVX2 CPU without
AVX-512 or VNNI (benchmarks/xnnpack_isa.py); with `TF_ENABLE_ONEDNN_OPTS=0`
(TensorFlow's default there) or `ONEDNN_MAX_CPU_ISA=AVX2` for the TF formats,
the whole table is an AVX2 CPU's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import xnnpack_isa  # noqa: E402
from benchmarks.reference import ReferenceCommandError, run_reference  # noqa: E402
from keras_hpnet.cpu import describe  # noqa: E402
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _interleaved(fns: dict, runs: int, warmup: int, rounds: int = 10, between=None, between_count: int = 0) -> dict:
    """p50/p90 ms of each callable, measured in turns (round-robin) so load changes hit all alike.

    `between` (untimed here) is called `between_count` times, spread evenly
    after the rounds: the reference command alternated with the formats.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    per_round = max(1, runs // rounds)
    after = np.linspace(0, rounds - 1, between_count).round().astype(int).tolist() if between_count else []
    times = {k: [] for k in fns}
    for r in range(rounds):
        for k, fn in fns.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        for _ in range(after.count(r)):
            between()
    return {k: tuple(np.percentile(np.array(v) * 1e3, [50, 90])) for k, v in times.items()}


def _dir_size(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def bench_model(name, model, metadata, calib, args, work):
    """Rows (format, size bytes, p50 ms, p90 ms, kernels) for one model, and the reference command's p50s."""
    import tensorflow as tf

    from edge.runtime import delegation, make_interpreter
    from export import tflite

    h, w = model.input_size
    x = np.random.default_rng(0).integers(0, 256, (1, h, w, 3)).astype(np.float32)
    fns, sizes, kernels = {}, {}, {}
    keras_path = os.path.join(work, f"{name}.keras")
    model.save(keras_path)
    fn = tf.function(lambda t: model(t, training=False))
    fn(x)  # traced (and the model called once, which model.export needs)
    fns["keras (tf.function)"] = lambda: fn(x)
    sizes["keras (tf.function)"], kernels["keras (tf.function)"] = os.path.getsize(keras_path), "tf"
    sm_dir = os.path.join(work, f"{name}_savedmodel")
    model.export(sm_dir, verbose=False)
    serve = tf.saved_model.load(sm_dir).signatures["serving_default"]
    arg = list(serve.structured_input_signature[1])[0]
    xt = tf.constant(x)
    fns["savedmodel"] = lambda: serve(**{arg: xt})
    sizes["savedmodel"], kernels["savedmodel"] = _dir_size(sm_dir), "tf"
    for q in tflite.QUANTIZATIONS:
        path = os.path.join(work, f"{name}_{q}.tflite")
        tflite.export_model(model, metadata, q, path, io_type="uint8" if q == "int8" else "float32",
                            representative_images=calib, verbose=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            it = make_interpreter(path, args.threads)
        if args.xnnpack_isa == "avx2":
            xnnpack_isa.check_capped()
        if any("XNNPACK" in str(c.message) for c in caught):
            kern = "builtin"
        else:
            d = delegation(it)
            kern = f"xnn {d['delegated']}/{d['ops']} p{d['partitions']}"
        det = it.get_input_details()[0]
        it.set_tensor(det["index"], x.astype(det["dtype"]))
        fmt = f"tflite {q}"
        fns[fmt], sizes[fmt], kernels[fmt] = it.invoke, os.path.getsize(path), kern
    reference = []
    timed = _interleaved(fns, args.runs, args.warmup, between=lambda: reference.append(run_reference(args.reference)),
                         between_count=args.reference_runs if args.reference else 0)
    return [(fmt, sizes[fmt], timed[fmt][0], timed[fmt][1], kernels[fmt]) for fmt in fns], reference


def reference_lines(name: str, command: str, p50s: list[float], rows) -> list[str]:
    """The reference's median p50 and the ratio reference / format for each timed format."""
    ref = float(np.median(p50s))
    runs = ", ".join(f"{v:.2f}" for v in p50s)
    lines = [f"{name:<8} reference: p50 {ref:.2f} ms (median of {len(p50s)} run(s): {runs}) from: {command}"]
    ratios = ", ".join(f"{fmt} {ref / p50:.1f}x" for fmt, _, p50, _, _ in rows)
    lines.append(f"{name:<8} reference p50 / ours (higher = ours faster): {ratios}")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="hacnn,hatcnn,mnet,hpnet")
    p.add_argument("--run_dir", default=None, help="benchmark this trained run instead of untrained models")
    p.add_argument("--threads", type=int, default=2, help="LiteRT threads")
    p.add_argument("--runs", type=int, default=100, help="timed runs per format (in 10 interleaved rounds)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--num_calibration", type=int, default=32)
    p.add_argument("--reference", default=None, metavar="COMMAND",
                   help="a shell command printing a line p50_ms=<number>, run between the timing rounds "
                        "(e.g. \"python benchmarks/reference_torch_hacnn.py --threads 2\")")
    p.add_argument("--reference_runs", type=int, default=3, help="runs of the reference command per model")
    p.add_argument("--xnnpack_isa", choices=("native", "avx2"), default="native",
                   help="avx2: XNNPACK kernels of an AVX2 CPU without AVX-512/VNNI (benchmarks/xnnpack_isa.py)")
    args = p.parse_args(argv)
    if args.reference is not None and (not args.reference.strip() or args.reference_runs < 1):
        p.error("--reference needs a command and --reference_runs >= 1")
    isa_line = None
    if args.xnnpack_isa == "avx2":
        try:
            isa_line = xnnpack_isa.cap_to_avx2()
        except xnnpack_isa.CapError as e:
            print(f"error: --xnnpack_isa avx2: {e}", file=sys.stderr)
            return 2
    if args.reference:  # fails fast, before the conversions
        try:
            print(f"reference check run (not counted): p50 {run_reference(args.reference):.2f} ms", flush=True)
        except ReferenceCommandError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    from export import tflite
    from keras_hpnet.metadata import ModelMetadata

    work = tempfile.mkdtemp(prefix="bench_edge-")
    try:
        jobs = []
        if args.run_dir:
            from keras_hpnet.runs import load_run

            run = load_run(args.run_dir)
            calib = tflite.calibration_images(run.config, tuple(run.model.input_size), args.num_calibration)
            jobs.append((run.metadata.model_name, run.model, run.metadata, calib))
        else:
            from keras_hpnet import build_model, spec

            for name in args.models.split(","):
                na = 0 if spec(name).attributes == "none" else 26
                model = build_model(name, num_classes=751, num_attributes=na)
                h, w = model.input_size
                md = ModelMetadata(name, h, w, model.embedding_dim, [f"a{i}" for i in range(na)])
                calib = np.random.default_rng(1).integers(0, 256, (args.num_calibration, h, w, 3)).astype(np.uint8)
                jobs.append((name, model, md, calib))
        print(describe())
        if isa_line:
            print(isa_line)
        print(f"batch 1, {args.runs} runs per format (interleaved), LiteRT threads {args.threads}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        print(f"{'model':<8} {'format':<20} {'size MB':>8} {'p50 ms':>8} {'p90 ms':>8}  kernels")
        for name, model, md, calib in jobs:
            try:
                rows, reference = bench_model(name, model, md, calib, args, work)
            except ReferenceCommandError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            for fmt, size, p50, p90, kern in rows:
                print(f"{name:<8} {fmt:<20} {size / 1e6:>8.2f} {p50:>8.2f} {p90:>8.2f}  {kern}", flush=True)
            if reference:
                print("\n".join(reference_lines(name, args.reference, reference, rows)), flush=True)
            by = {r[0]: r for r in rows}
            sm, f32, i8 = by["savedmodel"], by["tflite float32"], by["tflite int8"]
            print(f"{name:<8} targets: int8 latency / SavedModel = {i8[2] / sm[2]:.2f} (<= 0.33 "
                  f"{'met' if i8[2] <= sm[2] / 3 else 'NOT met'}), float / int8 size = {f32[1] / i8[1]:.2f} "
                  f"(>= 3.5 {'met' if f32[1] / i8[1] >= 3.5 else 'NOT met'}); load average {os.getloadavg()[0]:.1f}",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

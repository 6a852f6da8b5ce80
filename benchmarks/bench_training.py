"""Training throughput per model and strategy on this machine (not a test).

    python benchmarks/bench_training.py [--models hacnn,hatcnn,mnet,hpnet,tiny]
        [--strategies default,mirrored] [--precisions float32,mixed_bfloat16]
        [--steps 10] [--batch_size 32]

Each (model, strategy) runs in a fresh subprocess (mirrored = MirroredStrategy
over 2 logical CPUs, which must be set before TensorFlow starts) through the
real `training.loop.Trainer` and `keras_hpnet.data.make_dataset` on the
synthetic dataset. Per step, the time blocked fetching the next batch from the
input pipeline is measured separately from the training step:
`input_wait` = fetch time / total time (near 0 = the pipeline is never the
bottleneck). Also: process CPU seconds per step (all threads of the worker,
input pipeline included; less disturbed by other jobs than wall time) and the
first step's seconds (trace + graph optimisation, once per process). Prints a
table.

    python benchmarks/bench_training.py --models hacnn --reference "COMMAND"
        [--rounds 3] [--env "K=V K=V"]...

compares one (model, strategy, precision) with another implementation:
:func:`compare_with_reference` (benchmarks/README.md, "Training against torchreid").
"""

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from keras_hpnet.cpu import describe, prefer_onednn  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r"""
import json, os, sys, time
spec = json.loads(sys.argv[1])
import tensorflow as tf
if spec["strategy"] == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
else:
    strategy = tf.distribute.get_strategy()
import keras
from keras_hpnet import datasets
from keras_hpnet.data import make_dataset
from training import fit
from training.config import resolve_config
from training.loop import Trainer, dtype_policy

cfg = resolve_config({"model": spec["model"], "batch_size": spec["batch_size"], "out_dir": "/tmp/unused"})
ds = datasets.load("synthetic", spec["data_dir"] or None, **spec.get("data_sizes", {}))
train = ds.splits["train"]
plan = fit.make_plan(cfg, ds, replicas=strategy.num_replicas_in_sync, steps_per_epoch=100)  # HA-CNN: re-id only
nc, na = plan.num_classes, plan.num_attributes
policy = dtype_policy(spec["precision"])
policy.__enter__()  # for the whole worker: build and trace under it
with strategy.scope():
    model = fit.build_model(plan)
    opt = fit.make_optimizer(cfg, 100)
size = tuple(model.input_size)
per_replica = spec["batch_size"] // strategy.num_replicas_in_sync
def dataset_fn(ctx, epoch):
    return make_dataset(train, input_size=size, batch_size=per_replica, training=True, seed=0, epoch=epoch,
                        cache=spec["cache"], num_shards=ctx.num_input_pipelines, shard_index=ctx.input_pipeline_id)
trainer = Trainer(strategy=strategy, model=model, optimizer=opt, loss_fn=fit.make_loss_fn(cfg, nc, na),
                  dataset_fn=dataset_fn, per_replica_batch_size=per_replica, steps_per_epoch=100, epochs=1,
                  out_dir=None, verbose=0)
it = trainer.epoch_iterator(0)
t0 = time.perf_counter()
images, labels = next(it)
float(trainer.step_on_batch(images, labels))  # trace + graph optimisation
first = time.perf_counter() - t0
images, labels = next(it)
float(trainer.step_on_batch(images, labels))  # warm-up
wait = total = 0.0
c0 = time.process_time()
for _ in range(spec["steps"]):
    t0 = time.perf_counter()
    images, labels = next(it)
    t1 = time.perf_counter()
    float(trainer.step_on_batch(images, labels))
    t2 = time.perf_counter()
    wait += t1 - t0
    total += t2 - t0
print("RESULT " + json.dumps({"img_s": spec["steps"] * spec["batch_size"] / total, "input_wait": wait / total,
                              "cpu_step": (time.process_time() - c0) / spec["steps"], "first": first,
                              "replicas": strategy.num_replicas_in_sync}))
"""


# The one line a reference command must print (benchmarks/README.md); the last one counts.
REFERENCE_FIELD = re.compile(r"(?<![\w.])img_per_s=([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)")


def run_worker(spec: dict, env: dict) -> dict:
    """One (model, strategy, precision) measurement in a fresh process: the worker's RESULT dict."""
    proc = subprocess.run([sys.executable, "-c", WORKER, json.dumps(spec)], env=env, cwd=REPO,
                          capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(lines[-1][7:])


def parse_env(text: str) -> dict:
    """`--env "K=V K=V"` -> {K: V}; "" is the unchanged environment."""
    out = {}
    for item in shlex.split(text):
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SystemExit(f"--env {text!r}: {item!r} is not NAME=VALUE")
        out[name] = value
    return out


def parse_reference(stdout: str) -> float:
    """The img/s a reference command reported: its last `img_per_s=<number>`."""
    hits = REFERENCE_FIELD.findall(stdout)
    if not hits:
        raise ValueError("printed no 'img_per_s=<number>' line")
    return float(hits[-1])


def intra_op_threads(env: dict) -> int:
    """The intra-op threads TensorFlow uses under `env` (TF_NUM_INTRAOP_THREADS, else the usable CPUs)."""
    value = env.get("TF_NUM_INTRAOP_THREADS", "")
    if value.strip().isdigit() and int(value) > 0:
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def run_reference(command: str, env: dict) -> float:
    """Run the reference command through the shell; its img/s (SystemExit naming it on failure)."""
    proc = subprocess.run(command, shell=True, env=env, cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"--reference {command!r} exited {proc.returncode}: "
                         f"{proc.stderr.strip().splitlines()[-1:]}")
    try:
        return parse_reference(proc.stdout)
    except ValueError as e:
        raise SystemExit(f"--reference {command!r} {e} (stdout: {proc.stdout.strip()[-200:]!r})") from None


def compare_with_reference(spec: dict, command: str, variants: list, rounds: int, env: dict) -> list:
    """Ours vs a reference command, alternated: each round runs, for each environment
    variant, our worker and then the command, both under `env` + the variant; the
    command also gets BENCH_THREADS (our intra-op threads) and BENCH_BATCH_SIZE.
    Prints one row per run and a summary (medians; ratio = median of the per-round
    ratios, each taken from two adjacent runs); returns the summary rows."""
    print(f"{spec['model']}, {spec['strategy']}, {spec['precision']}, {rounds} rounds; "
          f"reference: {command}")
    print("| round | env | ours img/s | reference img/s | ratio | threads | load |")
    print("|---|---|---|---|---|---|---|")
    runs = [[] for _ in variants]
    for r in range(rounds):
        for i, variant in enumerate(variants):
            run_env = dict(env, **variant)
            threads = intra_op_threads(run_env)
            try:
                ours = run_worker(spec, run_env)["img_s"]
            except RuntimeError as e:
                raise SystemExit(f"ours ({spec['model']}, env {format_env(variant)}) {e}") from None
            ref = run_reference(command, dict(run_env, BENCH_THREADS=str(threads),
                                              BENCH_BATCH_SIZE=str(spec["batch_size"])))
            runs[i].append((ours, ref))
            print(f"| {r + 1} | {format_env(variant)} | {ours:.1f} | {ref:.1f} | {ours / ref:.2f} | {threads} | "
                  f"{os.getloadavg()[0]:.1f} |", flush=True)
    print()
    print("| env | ours img/s (median) | reference img/s (median) | ratio (median) | ratio min-max |")
    print("|---|---|---|---|---|")
    summary = []
    for variant, pairs in zip(variants, runs):
        ratios = [o / f for o, f in pairs]
        row = dict(env=format_env(variant), ours=statistics.median(o for o, _ in pairs),
                   reference=statistics.median(f for _, f in pairs), ratio=statistics.median(ratios),
                   ratio_min=min(ratios), ratio_max=max(ratios))
        summary.append(row)
        print(f"| {row['env']} | {row['ours']:.1f} | {row['reference']:.1f} | {row['ratio']:.2f} | "
              f"{row['ratio_min']:.2f}-{row['ratio_max']:.2f} |", flush=True)
    return summary


def format_env(variant: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in variant.items()) or "(unchanged)"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None, help="default hacnn,hatcnn,mnet,hpnet; hacnn with --reference")
    p.add_argument("--strategies", default=None, help="default default,mirrored; default with --reference")
    p.add_argument("--precisions", default="float32", help="float32 and/or mixed_bfloat16")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--data_dir", default="", help="synthetic dataset root (default: the cache dir)")
    p.add_argument("--data_sizes", default="{}", help="synthetic dataset size fields as JSON (default: the demo's)")
    p.add_argument("--no_cache", action="store_true", help="decode JPEGs every step instead of caching")
    p.add_argument("--reference", default="", help="shell command printing 'img_per_s=<number>', "
                   "run alternated with ours (one model, strategy and precision)")
    p.add_argument("--rounds", type=int, default=3, help="with --reference: rounds of ours-then-reference")
    p.add_argument("--env", action="append", default=None,
                   help="with --reference: 'K=V K=V' set for both sides; repeat for several variants per round")
    args = p.parse_args()
    prefer_onednn()  # the entry points' kernel policy, inherited by the workers (docs/models.md)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    models = (args.models or ("hacnn" if args.reference else "hacnn,hatcnn,mnet,hpnet")).split(",")
    strategies = (args.strategies or ("default" if args.reference else "default,mirrored")).split(",")
    try:
        sizes = json.loads(args.data_sizes)
    except json.JSONDecodeError as e:
        raise SystemExit(f"--data_sizes: not JSON ({e})") from None
    print(describe())
    print(f"batch {args.batch_size}, {args.steps} timed steps, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    if args.reference:
        if len(models) * len(strategies) * len(args.precisions.split(",")) != 1:
            raise SystemExit("--reference compares one model, strategy and precision: give one of each")
        spec = dict(model=models[0], strategy=strategies[0], precision=args.precisions, steps=args.steps,
                    batch_size=args.batch_size, data_dir=args.data_dir, cache=not args.no_cache, data_sizes=sizes)
        compare_with_reference(spec, args.reference, [parse_env(v) for v in args.env or [""]], args.rounds, env)
        return
    print("| model | strategy | precision | replicas | img/s | input_wait | CPU s/step | 1st step s | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in models:
        for strategy in strategies:
            for precision in args.precisions.split(","):
                spec = dict(model=model, strategy=strategy, precision=precision, steps=args.steps,
                            batch_size=args.batch_size, data_dir=args.data_dir, cache=not args.no_cache,
                            data_sizes=sizes)
                try:
                    r = run_worker(spec, env)
                except RuntimeError as e:
                    print(f"| {model} | {strategy} | {precision} | {e} |")
                    continue
                print(f"| {model} | {strategy} | {precision} | {r['replicas']} | {r['img_s']:.1f} | "
                      f"{r['input_wait']:.1%} | {r['cpu_step']:.2f} | {r['first']:.0f} | "
                      f"{os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()

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
"""

import argparse
import json
import os
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
ds = datasets.load("synthetic", spec["data_dir"] or None)
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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="hacnn,hatcnn,mnet,hpnet")
    p.add_argument("--strategies", default="default,mirrored")
    p.add_argument("--precisions", default="float32", help="float32 and/or mixed_bfloat16")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--data_dir", default="", help="synthetic dataset root (default: the cache dir)")
    p.add_argument("--no_cache", action="store_true", help="decode JPEGs every step instead of caching")
    args = p.parse_args()
    prefer_onednn()  # the entry points' kernel policy, inherited by the workers (docs/models.md)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    print(describe())
    print(f"batch {args.batch_size}, {args.steps} timed steps, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print("| model | strategy | precision | replicas | img/s | input_wait | CPU s/step | 1st step s | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        for strategy in args.strategies.split(","):
            for precision in args.precisions.split(","):
                spec = dict(model=model, strategy=strategy, precision=precision, steps=args.steps,
                            batch_size=args.batch_size, data_dir=args.data_dir, cache=not args.no_cache)
                proc = subprocess.run([sys.executable, "-c", WORKER, json.dumps(spec)], env=env, cwd=REPO,
                                      capture_output=True, text=True)
                lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
                if proc.returncode or not lines:
                    print(f"| {model} | {strategy} | {precision} | failed: {proc.stderr.strip().splitlines()[-1:]} |")
                    continue
                r = json.loads(lines[-1][7:])
                print(f"| {model} | {strategy} | {precision} | {r['replicas']} | {r['img_s']:.1f} | "
                      f"{r['input_wait']:.1%} | {r['cpu_step']:.2f} | {r['first']:.0f} | "
                      f"{os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()

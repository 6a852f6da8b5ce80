"""Per-model speed and size on this CPU (run on demand, not a test).

    python benchmarks/bench_models.py                 # all four models
    python benchmarks/bench_models.py --models=hacnn --steps=5
    python benchmarks/bench_models.py --models=hacnn,hatcnn --policy=mixed_bfloat16
    python benchmarks/bench_models.py --models=hacnn --train_only --jit_compile
    python benchmarks/bench_models.py --models=hacnn,hatcnn --train_only --profile=15   # per-op table

Prints, per model: parameters (with / without classifiers), FLOPs per image
(multiply and add counted separately, TF profiler on the frozen inference graph),
training images/s at batch 32 (forward + backward + SGD step, graph mode), inference
batch-1 latency (ms) and batch-64 images/s (graph mode). Training is also given as
process CPU seconds per step, which other jobs on a shared machine disturb less
than wall time (compare runs by it; the load average is printed).

`--profile=N` also traces one training step (TF profiler, after warm-up) and prints
the N op types with the most time (summed over the executor's threads, so shares
are of all op time, not wall time; `_Mkl*` types are oneDNN kernels, the others
Eigen's) and the time per part of the model (sampler gathers, BatchNorm,
optimizer update, ...). docs/models.md has the tables.
"""

import os

from keras_hpnet.cpu import describe, prefer_onednn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
prefer_onednn()  # the entry points' kernel policy (docs/models.md, "oneDNN on AVX2")

import collections  # noqa: E402
import glob  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402
from tensorflow.python.framework.convert_to_constants import (  # noqa: E402
    convert_variables_to_constants_v2)

import keras  # noqa: E402
import keras_hpnet  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["hacnn", "hatcnn", "mnet", "hpnet"], "models to measure")
flags.DEFINE_integer("num_classes", 751, "identities (Market-1501 has 751)")
flags.DEFINE_integer("num_attributes", 26, "attributes for hatcnn/mnet/hpnet")
flags.DEFINE_integer("batch_size", 32, "training batch size")
flags.DEFINE_integer("steps", 5, "timed training steps (after one warm-up step)")
flags.DEFINE_integer("repeats", 20, "timed batch-1 inference calls")
flags.DEFINE_string("policy", "float32", "Keras dtype policy, e.g. mixed_bfloat16 (AMX-BF16 CPUs)")
flags.DEFINE_boolean("jit_compile", False, "XLA-compile the training step")
flags.DEFINE_boolean("train_only", False, "skip FLOPs and inference (faster)")
flags.DEFINE_integer("profile", 0, "print the N op types with the most time in one traced step (0: off)")
flags.DEFINE_enum("optimizer", "sgd", ["sgd", "adam"], "optimizer of the training step")

# Parts of a training step, by the first pattern found in an op's name or type
# (lower case). Order matters: the sampler's gathers before "gather" elsewhere.
PARTS = (("sampler (gathers + grads)", ("sampler",)), ("batchnorm", ("fusedbatchnorm", "batchnorm", "/bn")),
         ("optimizer update", ("resourceapply", "sgd/", "adam/", "assignaddvariable", "assignsubvariable",
                               "optimizer")),
         ("convolution", ("conv2d", "convolution", "depthwise")), ("pooling", ("pool",)),
         ("dense / matmul", ("matmul",)), ("layout / reorder", ("transpose", "reorder", "tomkl", "mkltotf")))


def count_flops(model):
    h, w = model.input_size
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, h, w, 3), tf.float32))
    graph = convert_variables_to_constants_v2(fn).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return tf.compat.v1.profiler.profile(graph, options=opts).total_float_ops


def classifier_params(model):
    names = ("global_classifier", "local_classifier", "classifier")
    return sum(getattr(model, n).count_params() for n in names if hasattr(model, n))


def make_train_step(model, batch, jit_compile=False, optimizer="sgd"):
    """A graph-mode training step on fixed random data (identity CE + attribute BCE)."""
    h, w = model.input_size
    opt = (keras.optimizers.SGD(0.01, momentum=0.9) if optimizer == "sgd"
           else keras.optimizers.Adam(0.001))
    x = tf.random.uniform((batch, h, w, 3), 0, 255)
    pid = tf.random.uniform((batch,), 0, max(model.num_classes, 1), tf.int32)
    attrs = tf.cast(tf.random.uniform((batch, max(model.num_attributes, 1))) > 0.5, tf.float32)
    variables = model.trainable_variables

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss = 0.0
            for logits in out.get("identity_logits", []):
                loss += tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                    pid, logits, from_logits=True))
            if "attribute_logits" in out:
                loss += tf.reduce_mean(keras.losses.binary_crossentropy(
                    attrs, out["attribute_logits"], from_logits=True))
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads, variables))
        return loss

    return step


def train_speed(model, batch, steps, jit_compile=False, optimizer="sgd"):
    step = make_train_step(model, batch, jit_compile, optimizer)
    t0 = time.perf_counter()
    step().numpy()
    first = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step().numpy()
    return batch * steps / (time.perf_counter() - t0), first, (time.process_time() - c0) / steps


def _part(name, kind):
    text = f"{name}:{kind}".lower()
    for part, patterns in PARTS:
        if any(p in text for p in patterns):
            return part
    return "other (elementwise, reductions, ...)"


def profile_step(model, batch, top, jit_compile=False, optimizer="sgd"):
    """Trace one warm training step; returns (wall ms, {op type: [ms, count]}, {part: ms})."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    step = make_train_step(model, batch, jit_compile, optimizer)
    step().numpy(), step().numpy()  # trace, warm up
    logdir = tempfile.mkdtemp(prefix="bench_models_trace_")
    tf.profiler.experimental.start(logdir)
    t0 = time.perf_counter()
    step().numpy()
    wall = 1000 * (time.perf_counter() - t0)
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0], "rb") as f:
        space.ParseFromString(f.read())
    kinds, parts = collections.defaultdict(lambda: [0.0, 0]), collections.defaultdict(float)
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue  # executor threads run the graph's ops, one event "name:Type" per op
            for event in line.events:
                full = plane.event_metadata[event.metadata_id].name
                name, _, kind = full.rpartition(":")
                if not name or "::" in full or kind in ("ReadVariableOp", "_Recv", "_Send") or event.duration_ps <= 0:
                    continue
                ms = event.duration_ps / 1e9
                kinds[kind][0] += ms
                kinds[kind][1] += 1
                parts[_part(name, kind)] += ms
    return wall, dict(sorted(kinds.items(), key=lambda kv: -kv[1][0])[:top]), parts


def print_profile(name, wall, kinds, parts):
    total = sum(parts.values())
    print(f"\n{name}: one training step, wall {wall:.0f} ms, op time {total:.0f} ms (summed over threads)")
    print("| op type | ms | share | ops |\n|---|---|---|---|")
    for kind, (ms, count) in kinds.items():
        print(f"| {kind} | {ms:.0f} | {ms / total:.1%} | {count} |")
    print("| part of the step | ms | share |\n|---|---|---|")
    for part, ms in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"| {part} | {ms:.0f} | {ms / total:.1%} |")


def inference_speed(model, repeats):
    h, w = model.input_size
    fn = tf.function(lambda x: model(x, training=False))
    x1 = tf.random.uniform((1, h, w, 3), 0, 255)
    x64 = tf.random.uniform((64, h, w, 3), 0, 255)
    fn(x1), fn(x64)  # trace
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x1)["embedding"].numpy()
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(2):
        fn(x64)["embedding"].numpy()
    return 1000 * float(np.median(times)), 128 / (time.perf_counter() - t0)


def main(argv):
    del argv
    keras.mixed_precision.set_global_policy(FLAGS.policy)
    rows, profiles = [], []
    for name in FLAGS.models:
        keras.utils.set_random_seed(0)
        model = keras_hpnet.build_model(
            name, num_classes=FLAGS.num_classes,
            num_attributes=0 if keras_hpnet.spec(name).attributes == "none" else FLAGS.num_attributes)
        params = model.count_params()
        flops = latency = throughput = float("nan")
        if not FLAGS.train_only:
            flops = count_flops(model)
            latency, throughput = inference_speed(model, FLAGS.repeats)
        train, first, cpu = train_speed(model, FLAGS.batch_size, FLAGS.steps, FLAGS.jit_compile,
                                        FLAGS.optimizer)
        if FLAGS.profile:
            profiles.append((name, *profile_step(model, FLAGS.batch_size, FLAGS.profile, FLAGS.jit_compile,
                                                 FLAGS.optimizer)))
        rows.append((name, "x".join(map(str, model.input_size)), params,
                     params - classifier_params(model), flops, train, cpu, first, latency, throughput))
        print(f"{name}: done", flush=True)
    head = ("model", "input", "params", "params w/o cls", "GFLOPs", f"train img/s (b{FLAGS.batch_size})",
            "train CPU s/step", "1st step s", "infer b1 ms", "infer b64 img/s")
    print(describe())
    threads = (tf.config.threading.get_intra_op_parallelism_threads(),
               tf.config.threading.get_inter_op_parallelism_threads())
    print(f"threads intra/inter {threads[0]}/{threads[1]} (0 = TF's default, one per core)")
    print(f"policy {FLAGS.policy}, optimizer {FLAGS.optimizer}, jit_compile {FLAGS.jit_compile}, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for n, size, p, p0, f, tr, cpu, first, lat, thr in rows:
        print(f"| {n} | {size} | {p / 1e6:.2f}M | {p0 / 1e6:.2f}M | {f / 1e9:.2f} | {tr:.1f} | {cpu:.2f} | "
              f"{first:.0f} | {lat:.1f} | {thr:.1f} |")
    for profile in profiles:
        print_profile(*profile)


if __name__ == "__main__":
    app.run(main)

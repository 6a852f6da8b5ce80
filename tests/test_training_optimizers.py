"""training.optimizers: the fused AdamW/SGD give Keras' update (same start,
several steps, incl. weight decay, LR schedules, MirroredStrategy, mixed
bfloat16) with the same variables and checkpoints, and a smaller step graph."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras
from training import optimizers
from training.checkpoint import checkpoint_variables
from training.loop import dtype_policy
from training.schedule import WarmupCosine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 6

CASES = {  # name: (Keras class, fused class, kwargs)
    "adamw": (keras.optimizers.AdamW, optimizers.AdamW, dict(weight_decay=0.05)),
    "adamw_zero_decay": (keras.optimizers.AdamW, optimizers.AdamW, dict(weight_decay=0.0)),
    "adamw_amsgrad": (keras.optimizers.AdamW, optimizers.AdamW, dict(weight_decay=0.05, amsgrad=True)),
    "adamw_clip_ema": (keras.optimizers.AdamW, optimizers.AdamW, dict(weight_decay=0.05, global_clipnorm=0.5,
                                                                      use_ema=True, ema_overwrite_frequency=3)),
    "sgd_momentum": (keras.optimizers.SGD, optimizers.SGD, dict(momentum=0.9, weight_decay=5e-4)),
    "sgd_nesterov": (keras.optimizers.SGD, optimizers.SGD, dict(momentum=0.9, nesterov=True, weight_decay=5e-4)),
    "sgd_plain": (keras.optimizers.SGD, optimizers.SGD, dict(momentum=0.0, weight_decay=None)),
    "sgd_accumulate": (keras.optimizers.SGD, optimizers.SGD, dict(momentum=0.9, weight_decay=5e-4,
                                                                  gradient_accumulation_steps=2)),
}


def _model(policy="float32"):
    keras.backend.clear_session()  # the same layer (so optimizer-variable) names every time
    keras.utils.set_random_seed(3)
    with dtype_policy(policy):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)  # a bias before BN has noise for gradient
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(keras.layers.GlobalAveragePooling2D()(x))
        outputs = keras.layers.Dense(5)(x)
        return keras.Model(inputs, outputs)


def _batch():
    rng = np.random.default_rng(0)
    return (tf.constant(rng.normal(size=(16, 8, 8, 3)).astype("float32")),
            tf.constant(rng.integers(0, 5, 16).astype("int32")))


def _train(model, optimizer, steps, images, labels):
    optimizer.build(model.trainable_variables)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    for _ in range(steps):
        step()
    return step


def _run(case, lr, policy="float32", steps=STEPS):
    keras_cls, fused_cls, kwargs = CASES[case]
    images, labels = _batch()
    out = []
    for cls in (keras_cls, fused_cls):
        model = _model(policy)
        opt = cls(learning_rate=lr() if callable(lr) else lr, name="opt", **kwargs)
        _train(model, opt, steps, images, labels)
        out.append((model, opt))
    return out


def _assert_same(a, b, rtol=2e-5, atol=1e-6):
    (model_a, opt_a), (model_b, opt_b) = a, b
    assert [v.path for v in opt_a.variables] == [v.path for v in opt_b.variables]
    assert int(opt_a.iterations) == int(opt_b.iterations)
    for va, vb in zip(model_a.weights + opt_a.variables, model_b.weights + opt_b.variables):
        assert va.dtype == vb.dtype, va.path
        np.testing.assert_allclose(np.asarray(va), np.asarray(vb), rtol=rtol, atol=atol, err_msg=va.path)


def _schedule():
    return WarmupCosine(0.05, total_steps=STEPS, warmup_steps=2, initial_fraction=0.2)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("lr", [0.01, _schedule], ids=["constant", "schedule"])
def test_fused_matches_keras(case, lr):
    keras_run, fused_run = _run(case, lr)
    _assert_same(keras_run, fused_run)
    # and training moved the weights (the comparison is not between two no-ops)
    start = _model()
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(start.trainable_weights, fused_run[0].trainable_weights))
    assert moved > 1e-3


@pytest.mark.parametrize("case", ["adamw", "sgd_momentum"])
def test_fused_matches_keras_mixed_bfloat16(case):
    keras_run, fused_run = _run(case, _schedule, policy="mixed_bfloat16")
    assert all(v.dtype == "float32" for v in fused_run[0].trainable_weights)
    # a float32 rounding difference in a weight can flip its bfloat16 rounding in the
    # forward pass, so the gradients differ at bfloat16 precision: a looser bound
    _assert_same(keras_run, fused_run, rtol=1e-4, atol=5e-5)


def _update_ops(optimizer_cls, **kwargs):
    model = _model()
    images, labels = _batch()
    step = _train(model, optimizer_cls(learning_rate=_schedule(), **kwargs), 1, images, labels)
    graph = step.get_concrete_function().graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return len(nodes), {n.op for n in nodes}


@pytest.mark.parametrize("case, fused_op", [("adamw", "ResourceApplyAdam"),
                                            ("sgd_momentum", "ResourceApplyKerasMomentum")])
def test_fused_graph_is_smaller(case, fused_op):
    keras_cls, fused_cls, kwargs = CASES[case]
    keras_nodes, keras_ops = _update_ops(keras_cls, **kwargs)
    fused_nodes, fused_ops = _update_ops(fused_cls, **kwargs)
    assert fused_op in fused_ops and fused_op not in keras_ops
    assert fused_nodes < 0.8 * keras_nodes, (fused_nodes, keras_nodes)


def test_zero_weight_decay_adds_no_decay_op():
    """weight_decay 0 (what --weight_decay 0 gives) updates like None: no decay op per variable."""
    _, with_decay = _update_ops(optimizers.AdamW, weight_decay=0.05)
    _, zero = _update_ops(optimizers.AdamW, weight_decay=0.0)
    assert "ResourceApplyGradientDescent" in with_decay and "ResourceApplyGradientDescent" not in zero
    assert "ResourceApplyAdam" in zero


def test_fallback_keeps_keras_update():
    """AMSGrad has no fused path: Keras' ops run (and match, test above)."""
    _, ops = _update_ops(optimizers.AdamW, weight_decay=0.05, amsgrad=True)
    assert "ResourceApplyAdam" not in ops


def test_default_names_and_config_are_keras():
    keras_opt, fused_opt = keras.optimizers.AdamW(), optimizers.AdamW()
    base = lambda opt: re.sub(r"_\d+$", "", opt.name)  # noqa: E731  (the uniquifying suffix)
    assert base(fused_opt) == base(keras_opt) == "adam_w"
    assert base(optimizers.SGD()) == base(keras.optimizers.SGD()) == "sgd"
    keras_cfg, fused_cfg = keras_opt.get_config(), fused_opt.get_config()
    keras_cfg.pop("name"), fused_cfg.pop("name")
    assert keras_cfg == fused_cfg


@pytest.mark.parametrize("case", ["adamw", "sgd_momentum"])
def test_keras_checkpoint_restores_into_fused(case, tmp_path):
    keras_cls, fused_cls, kwargs = CASES[case]
    images, labels = _batch()
    model_a, opt_a = _model(), keras_cls(learning_rate=_schedule(), **kwargs)
    step_a = _train(model_a, opt_a, 3, images, labels)
    path = tf.train.Checkpoint(model=checkpoint_variables(model_a.weights),
                               optimizer=checkpoint_variables(opt_a.variables)).write(str(tmp_path / "ckpt"))

    keras.utils.set_random_seed(9)  # another start: everything must come from the checkpoint
    model_b, opt_b = _model(), fused_cls(learning_rate=_schedule(), **kwargs)
    opt_b.build(model_b.trainable_variables)
    tf.train.Checkpoint(model=checkpoint_variables(model_b.weights),
                        optimizer=checkpoint_variables(opt_b.variables)).read(path).assert_consumed()
    assert int(opt_b.iterations) == 3
    step_b = _train(model_b, opt_b, 0, images, labels)
    for _ in range(3):
        step_a(), step_b()
    _assert_same((model_a, opt_a), (model_b, opt_b))


@pytest.mark.parametrize("case", ["adamw", "sgd_momentum"])
def test_keras_object_checkpoint_restores_into_fused(case, tmp_path):
    """tf.train.Checkpoint(optimizer=...) keeps the Keras object graph too."""
    keras_cls, fused_cls, kwargs = CASES[case]
    images, labels = _batch()
    model_a, opt_a = _model(), keras_cls(learning_rate=0.01, **kwargs)
    model_b, opt_b = _model(), fused_cls(learning_rate=0.01, **kwargs)
    for model, opt, steps in ((model_a, opt_a, 2), (model_b, opt_b, 1)):
        _train(model, opt, steps, images, labels)
    assert sorted(opt_b._trackable_children()) == sorted(opt_a._trackable_children())
    path = tf.train.Checkpoint(optimizer=opt_a).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(optimizer=opt_b).read(path).assert_consumed()
    assert int(opt_b.iterations) == 2
    for va, vb in zip(opt_a.variables, opt_b.variables):
        np.testing.assert_array_equal(np.asarray(va), np.asarray(vb), err_msg=va.path)


MIRRORED = r"""
import json, sys
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from training import optimizers
from training.schedule import WarmupCosine

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
rng = np.random.default_rng(0)
x = rng.normal(size=(16, 6)).astype("float32")
y = rng.integers(0, 3, 16).astype("int32")
result = {}
for name, keras_cls, fused_cls, kw in [("adamw", keras.optimizers.AdamW, optimizers.AdamW, dict(weight_decay=0.05)),
                                       ("sgd", keras.optimizers.SGD, optimizers.SGD,
                                        dict(momentum=0.9, weight_decay=5e-4))]:
    finals = []
    for cls in (keras_cls, fused_cls):
        keras.utils.set_random_seed(1)
        with strategy.scope():
            model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                                      keras.layers.Dense(3)])
            opt = cls(learning_rate=WarmupCosine(0.1, total_steps=5, warmup_steps=2), **kw)
            opt.build(model.trainable_variables)
        ds = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(16))
        images, labels = next(iter(ds))

        def replica_step(a, b):
            with tf.GradientTape() as tape:
                logits = model(a, training=True)
                loss = tf.nn.compute_average_loss(
                    tf.keras.losses.sparse_categorical_crossentropy(b, logits, from_logits=True), global_batch_size=16)
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))

        step = tf.function(lambda: strategy.run(replica_step, args=(images, labels)))
        for _ in range(5):
            step()
        replicas = [[np.asarray(c) for c in v.value.values] for v in model.weights + opt.variables]
        assert all(len(r) == 2 for r in replicas)
        finals.append(replicas)
    result[name] = {
        "replica_diff": max(float(np.max(np.abs(r[0] - r[1]))) for f in finals for r in f),
        "keras_vs_fused": max(float(np.max(np.abs(a[0] - b[0]))) for a, b in zip(*finals)),
        "count": [len(f) for f in finals],
    }
print("RESULT " + json.dumps(result))
"""


def test_mirrored_two_replicas_match_keras():
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    proc = subprocess.run([sys.executable, "-c", MIRRORED], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:]
    for name, r in json.loads(lines[-1][7:]).items():
        assert r["count"][0] == r["count"][1], (name, r)
        assert r["replica_diff"] == 0.0, (name, r)
        assert r["keras_vs_fused"] < 1e-5, (name, r)


@pytest.mark.parametrize("name, cls", [("sgd", optimizers.SGD), ("adam", optimizers.AdamW)])
def test_make_optimizer_uses_the_fused_classes(name, cls):
    from training import fit
    from training.config import resolve_config

    cfg = resolve_config({"model": "tiny", "optimizer": name, "weight_decay": 5e-4, "momentum": 0.9})
    opt = fit.make_optimizer(cfg, steps_per_epoch=10)
    assert type(opt) is cls and opt.weight_decay == 5e-4
    if name == "sgd":
        assert opt.momentum == 0.9


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_make_optimizer_without_weight_decay(name):
    """--weight_decay 0 builds the optimizer (AdamW refuses None) and decays nothing."""
    from training import fit
    from training.config import resolve_config

    cfg = resolve_config({"model": "tiny", "optimizer": name, "weight_decay": 0.0, "lr": 0.1})
    opt = fit.make_optimizer(cfg, steps_per_epoch=10)
    var = keras.Variable(np.ones(3, "float32"))
    opt.apply_gradients([(keras.ops.zeros(3), var)])  # a zero gradient: only weight decay could move it
    np.testing.assert_array_equal(np.asarray(var), np.ones(3, "float32"))

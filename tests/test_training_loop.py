"""training.loop in-process: checkpoints, resume position, NaN stop (default strategy)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import keras
from keras_hpnet import losses
from training.checkpoint import CheckpointStore, checkpoint_variables
from training.loop import NonFiniteLossError, Trainer
from training.schedule import WarmupMultiStep
from keras_hpnet.models.tiny import TinyNet

N, C = 48, 6


def _data():
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(C), N // C).astype("int32")
    imgs = (rng.random((N, 32, 16, 3)) * 80 + pids[:, None, None, None] * 30).astype("uint8")
    return imgs, pids


def _trainer(out_dir, *, epochs=3, nan_at_step=None, max_steps=0, lr=0.05, hooks=None, verbose=0):
    imgs, pids = _data()
    seen = []

    def dataset_fn(ctx, epoch):
        ds = tf.data.Dataset.from_tensor_slices((imgs, {"pid": pids, "index": np.arange(N)}))
        return ds.shuffle(N, seed=100 + epoch).batch(8, drop_remainder=True)

    def loss_fn(out, labels):
        seen.append(labels["index"])
        ce = losses.identity_cross_entropy(labels["pid"], out["identity_logits"][0])
        if nan_at_step is not None:
            ce = tf.cond(trainer.optimizer.iterations + 1 >= nan_at_step, lambda: ce * np.nan, lambda: ce)
        return {"id": ce}

    keras.utils.set_random_seed(1)
    model = TinyNet(C, 0, input_shape=(32, 16))
    opt = keras.optimizers.SGD(WarmupMultiStep(lr, [10], 0.1, 2), momentum=0.9)
    trainer = Trainer(strategy=tf.distribute.get_strategy(), model=model, optimizer=opt, loss_fn=loss_fn,
                      dataset_fn=dataset_fn, per_replica_batch_size=8, steps_per_epoch=N // 8, epochs=epochs,
                      out_dir=str(out_dir) if out_dir else None, checkpoint_every=4, max_steps=max_steps,
                      verbose=verbose, hooks=hooks)
    return trainer


def _weights(model):
    return [np.array(v) for v in model.weights]


def test_resume_continues_exactly(tmp_path):
    full = _trainer(tmp_path / "full")
    rows = full.fit()
    assert len(rows) == 3 and float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert full.optimizer.iterations.numpy() == 18

    # stop in the middle of epoch 2 (step 10: checkpoint at 8 and the max_steps end)
    part = _trainer(tmp_path / "part", max_steps=10)
    part.fit()
    info = json.load(open(tmp_path / "part" / "checkpoints" / "latest.json"))
    assert info["step"] == 10 and info["epoch"] == 1 and info["step_in_epoch"] == 4
    resumed = _trainer(tmp_path / "part")
    resumed.fit()
    assert resumed.resumed_from == 10
    assert resumed.optimizer.iterations.numpy() == 18  # schedule position restored
    for a, b in zip(_weights(full.model), _weights(resumed.model)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    hist = open(tmp_path / "part" / "history.csv").read().splitlines()
    assert hist[0].startswith("epoch,step,loss") and len(hist) == 4  # 3 epochs, no duplicate rows
    kept = sorted(f for f in os.listdir(tmp_path / "part" / "checkpoints") if f.endswith(".index"))
    assert kept == ["ckpt-00000016.index", "ckpt-00000018.index"]  # keep_checkpoints=2


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, nan_at_step=11)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 11 \(epoch 2\).*last good checkpoint"):
        trainer.fit()
    info = json.load(open(tmp_path / "checkpoints" / "latest.json"))
    assert info["step"] == 8
    # the kept checkpoint holds finite weights
    model = TinyNet(C, 0, input_shape=(32, 16))
    ckpt = tf.train.Checkpoint(model=checkpoint_variables(model.weights))
    ckpt.read(str(tmp_path / "checkpoints" / info["prefix"])).expect_partial()
    assert all(np.all(np.isfinite(w)) for w in _weights(model))


def test_checkpoint_pointer_is_the_commit_point(tmp_path):
    v = tf.Variable(1.0)
    store = CheckpointStore(tf.train.Checkpoint(v=v), str(tmp_path), keep=5)
    store.save(1)
    v.assign(2.0)
    # a crash after the files of step 2 but before its record and the pointer: step 1 still wins
    tf.train.Checkpoint(v=v).write(str(tmp_path / "ckpt-00000002"))
    v.assign(0.0)
    assert store.restore()["step"] == 1 and float(v.numpy()) == 1.0
    os.unlink(tmp_path / "ckpt-00000001.index")
    with pytest.raises(FileNotFoundError, match="ckpt-00000001"):
        store.restore()


def test_schedule():
    s = WarmupMultiStep(0.1, [10, 20], 0.1, warmup_steps=4)
    got = [float(s(i)) for i in (0, 3, 9, 10, 25)]
    np.testing.assert_allclose(got, [0.025, 0.1, 0.1, 0.01, 0.001], rtol=1e-5)

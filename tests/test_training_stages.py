"""HP-Net stage-wise training (training.stages): what each stage trains and
fixes, the AF-net switch, per-stage LR restarts, resume across stages."""

import numpy as np
import pytest
import tensorflow as tf

import keras
import keras_hpnet
from keras_hpnet import losses
from training.loop import Trainer
from training.schedule import StageRestarts, WarmupMultiStep
from training.stages import TrainingStage, model_stages, split_epochs, stage_at

HPNET = keras_hpnet.spec("hpnet").stages  # HP-Net declares its stages (keras_hpnet.model_catalog)
SHARES = [s.share for s in HPNET]


def hpnet_stages(stage_epochs):
    return model_stages(HPNET, stage_epochs, keras_hpnet.spec("hpnet").stage_parts)


N, C, A = 16, 4, 3
SIZE = (64, 32)


def test_split_and_lookup():
    assert split_epochs(3, SHARES) == [1, 1, 1]
    assert split_epochs(7, SHARES) == [3, 3, 1]
    assert split_epochs(8, SHARES) == [3, 3, 2]
    assert split_epochs(10, SHARES) == [4, 4, 2]
    with pytest.raises(ValueError, match="at least 3 epochs"):
        split_epochs(2, SHARES)
    stages = hpnet_stages([2, 1, 3])
    assert [(s.name, s.first_epoch, s.epochs, dict(s.switches)) for s in stages] == [
        ("mnet", 0, 2, {"af_net_enabled": False}), ("afnet", 2, 1, {}), ("fusion", 3, 3, {})]
    assert [stage_at(stages, e).name for e in range(7)] == ["mnet", "mnet", "afnet"] + ["fusion"] * 4
    assert stages[1].describe() == "afnet: trains af_net + fusion, main_net fixed"
    with pytest.raises(ValueError, match="3 integers >= 1"):
        hpnet_stages([2, 0, 1])


def test_stage_restarts_schedule():
    s = StageRestarts([WarmupMultiStep(0.1, [4], 0.1, 2), WarmupMultiStep(0.1, [2], 0.1, 0)], [0, 6])
    got = [float(s(i)) for i in (0, 1, 4, 5, 6, 7, 8, 20)]
    np.testing.assert_allclose(got, [0.05, 0.1, 0.01, 0.01, 0.1, 0.1, 0.01, 0.01], rtol=1e-5)
    again = StageRestarts.from_config(s.get_config())
    assert [float(again(i)) for i in (0, 6, 8)] == [float(s(i)) for i in (0, 6, 8)]
    with pytest.raises(ValueError, match="starts increasing from 0"):
        StageRestarts([WarmupMultiStep(0.1)], [3])


@pytest.fixture(scope="module")
def hpnet():
    keras.utils.set_random_seed(0)
    return keras_hpnet.build_model("hpnet", num_classes=C, num_attributes=A, input_shape=SIZE, width=0.25,
                                   num_maps=2, embedding_dim=32)


def test_parts_cover_the_model_once(hpnet):
    ids = [id(v) for part in ("main_net", "af_net", "fusion") for layer in getattr(hpnet, f"{part}_layers")
           for v in layer.weights]
    assert len(ids) == len(set(ids)) and set(ids) == {id(v) for v in hpnet.weights}


def test_af_net_off_is_the_main_net_alone(hpnet):
    x = np.random.default_rng(0).integers(0, 256, (2, *SIZE, 3)).astype("float32")
    full = hpnet(x)["embedding"]
    hpnet.af_net_enabled = False
    try:
        alone = np.asarray(hpnet(x)["embedding"])
        saved = [np.array(v) for v in hpnet.mda_modules[0].weights]
        for v in hpnet.mda_modules[0].trainable_weights:
            v.assign(v * 3.0 + 1.0)
        np.testing.assert_array_equal(alone, np.asarray(hpnet(x)["embedding"]))  # the AF-net is not used
        assert not np.allclose(alone, full)
    finally:
        hpnet.af_net_enabled = True
        for v, value in zip(hpnet.mda_modules[0].weights, saved):
            v.assign(value)
    np.testing.assert_allclose(np.asarray(hpnet(x)["embedding"]), full, rtol=1e-5, atol=1e-6)


def _trainer(out_dir, max_steps):
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(C), N // C).astype("int32")
    imgs = (rng.random((N, *SIZE, 3)) * 80 + pids[:, None, None, None] * 40).astype("uint8")
    attrs = (rng.random((N, A)) < 0.5).astype("float32")

    def dataset_fn(ctx, epoch):
        ds = tf.data.Dataset.from_tensor_slices((imgs, {"pid": pids, "attributes": attrs}))
        return ds.shuffle(N, seed=epoch).batch(8, drop_remainder=True)

    def loss_fn(out, labels):
        return {"id": losses.identity_cross_entropy(labels["pid"], out["identity_logits"][0]),
                "attr": losses.weighted_attribute_bce(labels["attributes"], out["attribute_logits"], None)}

    keras.utils.set_random_seed(0)
    model = keras_hpnet.build_model("hpnet", num_classes=C, num_attributes=A, input_shape=SIZE, width=0.25,
                                    num_maps=2, embedding_dim=32)
    stages = hpnet_stages([1, 1, 1])
    spe = N // 8
    opt = keras.optimizers.Adam(StageRestarts([WarmupMultiStep(1e-2) for _ in stages],
                                              [s.first_epoch * spe for s in stages]))
    return Trainer(strategy=tf.distribute.get_strategy(), model=model, optimizer=opt, loss_fn=loss_fn,
                   dataset_fn=dataset_fn, per_replica_batch_size=8, steps_per_epoch=spe, epochs=3,
                   out_dir=str(out_dir), checkpoint_every=100, max_steps=max_steps, verbose=0, stages=stages)


def _parts(model):
    return {part: [np.array(v) for layer in getattr(model, f"{part}_layers") for v in layer.weights]
            for part in ("main_net", "af_net", "fusion")}


def _all_trainable(model):
    return all(layer.trainable for part in ("main_net", "af_net", "fusion")
               for layer in getattr(model, f"{part}_layers"))


def _changed(before, after):
    return {part: any(not np.array_equal(a, b) for a, b in zip(before[part], after[part])) for part in before}


def test_each_stage_trains_its_parts_and_resumes_across_stages(tmp_path):
    # Three processes' worth of runs in one directory: each stops at a stage
    # boundary (2 steps per epoch, one epoch per stage) and the next resumes.
    first = _trainer(tmp_path, max_steps=2)
    initial = _parts(first.model)
    first.fit()
    after_mnet = _parts(first.model)
    # M-net alone: the AF-net is neither run nor trained.
    assert _changed(initial, after_mnet) == {"main_net": True, "af_net": False, "fusion": True}
    assert _all_trainable(first.model) and first.model.af_net_enabled  # released

    second = _trainer(tmp_path, max_steps=4)
    second.fit()
    assert second.resumed_from == 2
    after_afnet = _parts(second.model)
    # AF-net on the fixed M-net: its kernels and BatchNorm statistics do not move.
    assert _changed(after_mnet, after_afnet) == {"main_net": False, "af_net": True, "fusion": True}

    third = _trainer(tmp_path, max_steps=0)
    rows = third.fit()
    after_fusion = _parts(third.model)
    assert _changed(after_afnet, after_fusion) == {"main_net": False, "af_net": False, "fusion": True}
    assert [r["stage"] for r in rows] == ["mnet", "afnet", "fusion"]
    assert int(third.optimizer.iterations.numpy()) == 6
    assert _all_trainable(third.model) and third.model.af_net_enabled


# -- HAT-CNN's attribute warm-up (--attribute_warmup; keras_hpnet.model_catalog HATCNN_WARMUP) ------------

HATCNN = keras_hpnet.spec("hatcnn")


def _hatcnn():
    keras.utils.set_random_seed(0)
    return keras_hpnet.build_model("hatcnn", num_classes=C, num_attributes=A, channels=(8, 16, 24), feature_dim=16)


def _hatcnn_parts(model):
    return {part: [np.array(v) for layer in getattr(model, f"{part}_layers") for v in layer.weights]
            for part in HATCNN.stage_parts}


def test_hatcnn_parts_cover_the_model_once():
    model = _hatcnn()
    ids = [id(v) for part in HATCNN.stage_parts for layer in getattr(model, f"{part}_layers") for v in layer.weights]
    assert len(ids) == len(set(ids)) and set(ids) == {id(v) for v in model.weights}


def test_hatcnn_warmup_switches():
    model = _hatcnn()
    x = np.random.default_rng(1).integers(0, 256, (2, 160, 64, 3)).astype("float32")
    full_logits = np.asarray(model(x, training=True)["attribute_logits"])
    warm = model_stages(HATCNN.attribute_warmup, [1, 1], HATCNN.stage_parts)
    warm[0].apply(model)
    assert not model.identity_net_enabled and model.attribute_input_pool == 2
    out = model(x, training=True)
    assert set(out) == {"attribute_logits"}  # HA-CNN is not run: no identity logits, no features
    # The attribute network sees the 2x2-averaged normalised image (half resolution).
    pooled = keras.ops.average_pool(model.normalize(x), 2, 2)
    np.testing.assert_allclose(np.asarray(out["attribute_logits"]),
                               np.asarray(model.attribute_net(pooled, training=True)), rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.asarray(out["attribute_logits"]), full_logits, atol=1e-3)
    inference = np.asarray(model(x)["embedding"])  # inference runs everything at full resolution, in any stage
    assert inference.shape == (2, model.embedding_dim)
    assert not any(layer.trainable for layer in model.identity_net_layers) and model.attribute_net.trainable
    warm[0].release(model)
    np.testing.assert_allclose(np.asarray(model(x)["embedding"]), inference, rtol=1e-5, atol=1e-6)
    assert model.identity_net_enabled and model.attribute_input_pool == 1
    assert all(layer.trainable for part in HATCNN.stage_parts for layer in getattr(model, f"{part}_layers"))
    assert warm[0].describe() == ("attributes: trains attribute_net, identity_net fixed, HA-CNN off, "
                                  "attribute network on half-resolution images")
    with pytest.raises(ValueError, match="no stage switch af_net_enabled"):
        TrainingStage("x", 0, 1, ("attribute_net",), HATCNN.stage_parts, (("af_net_enabled", False),)).apply(model)


def test_hatcnn_warmup_trains_the_attribute_network_alone_then_both(tmp_path):
    from training.config import resolve_config
    from training.fit import make_loss_fn

    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(C), N // C).astype("int32")
    imgs = (rng.random((N, 160, 64, 3)) * 80 + pids[:, None, None, None] * 40).astype("uint8")
    attrs = (rng.random((N, A)) < 0.5).astype("float32")

    def dataset_fn(ctx, epoch):
        ds = tf.data.Dataset.from_tensor_slices((imgs, {"pid": pids, "attributes": attrs}))
        return ds.shuffle(N, seed=epoch).batch(8, drop_remainder=True)

    cfg = resolve_config({"model": "hatcnn", "stage_epochs": [1, 1], "attribute_warmup": 0.5})
    loss_fn = make_loss_fn(cfg, C, A)
    model = _hatcnn()
    stages = model_stages(HATCNN.attribute_warmup, cfg.stage_epochs, HATCNN.stage_parts)
    spe = N // 8
    opt = keras.optimizers.Adam(StageRestarts([WarmupMultiStep(1e-2) for _ in stages], [0, spe]))
    trainer = Trainer(strategy=tf.distribute.get_strategy(), model=model, optimizer=opt, loss_fn=loss_fn,
                      dataset_fn=dataset_fn, per_replica_batch_size=8, steps_per_epoch=spe, epochs=2,
                      out_dir=str(tmp_path), checkpoint_every=100, max_steps=spe, verbose=0, stages=stages)
    initial = _hatcnn_parts(model)
    rows = trainer.fit()
    after_warmup = _hatcnn_parts(model)
    assert _changed(initial, after_warmup) == {"identity_net": False, "attribute_net": True}
    assert rows[0]["stage"] == "attributes" and float(rows[0]["id"]) == 0.0 and float(rows[0]["attr"]) > 0
    assert model.identity_net_enabled and model.attribute_input_pool == 1  # released

    trainer = Trainer(strategy=tf.distribute.get_strategy(), model=model, optimizer=opt, loss_fn=loss_fn,
                      dataset_fn=dataset_fn, per_replica_batch_size=8, steps_per_epoch=spe, epochs=2,
                      out_dir=str(tmp_path), checkpoint_every=100, max_steps=0, verbose=0, stages=stages)
    rows = trainer.fit()
    assert trainer.resumed_from == spe and [r["stage"] for r in rows] == ["attributes", "joint"]
    assert float(rows[1]["id"]) > 0
    assert _changed(after_warmup, _hatcnn_parts(model)) == {"identity_net": True, "attribute_net": True}

"""Temporal pooling (keras_hpnet.temporal, numpy) and its Keras layer
(keras_hpnet.layers.TemporalPooling): numbers by hand, masks, the two forms equal, gradients."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hpnet import temporal
from keras_hpnet.layers import TemporalPooling

FRAMES = np.array([[[1.0, 2.0], [3.0, 6.0], [5.0, 10.0]],
                   [[0.0, 4.0], [2.0, 0.0], [9.0, 9.0]]], np.float32)  # [N=2, T=3, D=2]
MASK = np.array([[1, 1, 1], [1, 1, 0]])  # the second tracklet has 2 real frames and 1 padding frame

# Attention parameters W = I (D = U = 2), b = 0, v = (1, 0): the score of a frame is tanh(f[0]).
PARAMS = {"hidden_kernel": np.eye(2, dtype=np.float32), "hidden_bias": np.zeros(2, np.float32),
          "score_kernel": np.array([1.0, 0.0], np.float32)}
SMALL = np.array([[[0.0, 7.0], [0.5, -3.0], [-0.5, 1.0]]], np.float32)  # [1, 3, 2]


def test_avg_by_hand_with_and_without_mask():
    np.testing.assert_allclose(temporal.pool_frames(FRAMES), [[3.0, 6.0], [11 / 3, 13 / 3]], rtol=1e-6)
    # masked: the padding frame (9, 9) is ignored -> mean of the two real frames
    np.testing.assert_allclose(temporal.pool_frames(FRAMES, MASK), [[3.0, 6.0], [1.0, 2.0]], rtol=1e-6)
    np.testing.assert_allclose(temporal.frame_weights(FRAMES, MASK), [[1 / 3] * 3, [0.5, 0.5, 0.0]], rtol=1e-6)


def test_attention_by_hand():
    # s_t = v . tanh(W f_t + b) = tanh(f_t[0]): 0, tanh(0.5), tanh(-0.5)
    s = np.tanh([0.0, 0.5, -0.5])
    w = np.exp(s) / np.exp(s).sum()
    np.testing.assert_allclose(temporal.frame_scores(SMALL, PARAMS)[0], s, rtol=1e-6)
    np.testing.assert_allclose(temporal.frame_weights(SMALL, mode="attention", params=PARAMS)[0], w, rtol=1e-6)
    np.testing.assert_allclose(temporal.pool_frames(SMALL, mode="attention", params=PARAMS)[0],
                               w @ SMALL[0], rtol=1e-6)
    # masking the last frame renormalises over the first two
    w2 = np.exp(s[:2]) / np.exp(s[:2]).sum()
    np.testing.assert_allclose(temporal.pool_frames(SMALL, [[1, 1, 0]], mode="attention", params=PARAMS)[0],
                               w2 @ SMALL[0, :2], rtol=1e-6)


def test_all_masked_tracklet_pools_to_zero_and_bad_input_is_named():
    out = temporal.pool_frames(FRAMES, np.zeros((2, 3)))
    np.testing.assert_array_equal(out, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="mode"):
        temporal.pool_frames(FRAMES, mode="max")
    with pytest.raises(ValueError, match="needs its parameters"):
        temporal.pool_frames(FRAMES, mode="attention")
    with pytest.raises(ValueError, match="missing score_kernel"):
        temporal.pool_frames(FRAMES, mode="attention", params={"hidden_kernel": np.eye(2), "hidden_bias": [0, 0]})
    with pytest.raises(ValueError, match="2-d features, got 3-d"):
        temporal.pool_frames(np.zeros((1, 2, 3)), mode="attention", params=PARAMS)
    with pytest.raises(ValueError, match="mask shape"):
        temporal.pool_frames(FRAMES, np.ones((2, 2)))


def test_large_scores_are_stable():
    params = dict(PARAMS, score_kernel=np.array([500.0, 0.0], np.float32))
    w = temporal.frame_weights(SMALL, mode="attention", params=params)
    assert np.isfinite(w).all() and abs(w.sum() - 1) < 1e-6 and w[0, 1] > 0.999


def _attention_layer(dim, units, seed=0):
    layer = TemporalPooling("attention", units=units)
    layer.build((None, None, dim))
    rng = np.random.default_rng(seed)
    layer.hidden_kernel.assign(rng.normal(size=(dim, units)).astype("float32"))
    layer.hidden_bias.assign(rng.normal(size=units).astype("float32"))
    layer.score_kernel.assign(rng.normal(size=units).astype("float32") * 2)
    return layer


@pytest.mark.parametrize("mode", ["avg", "attention"])
def test_layer_equals_the_numpy_rule(mode):
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(4, 5, 6)).astype("float32")
    mask = np.array([[1] * 5, [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0] * 5])
    layer = _attention_layer(6, 3) if mode == "attention" else TemporalPooling("avg")
    params = layer.numpy_params() if mode == "attention" else None
    for m in (None, mask):
        got = keras.ops.convert_to_numpy(layer(feats, mask=m))
        want = temporal.pool_frames(feats, m, mode=mode, params=params)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    weights = keras.ops.convert_to_numpy(layer.frame_weights(feats, mask))
    np.testing.assert_allclose(weights.sum(-1), [1, 1, 1, 0], atol=1e-6)
    assert (weights[mask == 0] == 0).all()


def test_untrained_attention_is_the_average():
    layer = TemporalPooling("attention", units=4)
    feats = np.random.default_rng(2).normal(size=(2, 3, 5)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(feats)), feats.mean(1), rtol=1e-5, atol=1e-6)


def test_gradients_reach_frames_and_attention_weights():
    layer = _attention_layer(3, 2)
    feats = tf.Variable(np.random.default_rng(3).normal(size=(2, 4, 3)).astype("float32"))
    mask = tf.constant([[1, 1, 1, 1], [1, 1, 0, 0]])
    target = tf.constant(np.random.default_rng(4).normal(size=(2, 3)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(layer(feats, mask=mask) - target))
    grads = tape.gradient(loss, [feats, *layer.trainable_weights])
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    assert all(np.abs(g.numpy()).sum() > 0 for g in grads[1:])
    assert np.all(grads[0].numpy()[1, 2:] == 0)  # padding frames get no gradient
    # finite difference on one attention weight
    eps = 1e-3
    v = layer.score_kernel
    base = v.numpy()

    def loss_at(value):
        v.assign(value)
        return float(tf.reduce_sum(tf.square(layer(feats, mask=mask) - target)))

    bumped = base.copy()
    bumped[0] += eps
    lowered = base.copy()
    lowered[0] -= eps
    numeric = (loss_at(bumped) - loss_at(lowered)) / (2 * eps)
    v.assign(base)
    np.testing.assert_allclose(grads[3].numpy()[0], numeric, rtol=2e-2)


def test_layer_config_round_trip_and_errors():
    layer = TemporalPooling("attention", units=7, name="tp")
    clone = TemporalPooling.from_config(layer.get_config())
    assert (clone.mode, clone.units, clone.name) == ("attention", 7, "tp")
    with pytest.raises(ValueError, match="mode"):
        TemporalPooling("median")
    with pytest.raises(ValueError, match=r"\[N, T, D\]"):
        TemporalPooling("avg").build((None, 4))
    assert TemporalPooling("avg").numpy_params() == {}

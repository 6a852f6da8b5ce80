"""The video model (keras_hpnet.models.video): an image model + one temporal head."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_hpnet
from keras_hpnet import temporal
from keras_hpnet.models import VideoModel, build_like, build_video_model
from tests.support import make_tiny_model

N, T, H, W = 2, 3, 32, 16


def _clips(seed=0, n=N, t=T):
    return np.random.default_rng(seed).integers(0, 256, (n, t, H, W, 3)).astype("uint8")


def _video(pooling, seed=0):
    model = VideoModel(make_tiny_model(input_size=(H, W), seed=seed), seq_len=T, pooling=pooling, attention_units=4)
    if pooling == "attention":  # non-trivial attention (the untrained one is the average)
        rng = np.random.default_rng(seed)
        for v in model.temporal_pooling.weights:
            v.assign(rng.normal(0, 3.0, v.shape).astype("float32"))
    return model


def _per_frame(image_model, clips, training):
    out = image_model(clips.reshape(-1, H, W, 3), training=training)
    return keras.tree.map_structure(lambda v: keras.ops.convert_to_numpy(v).reshape(N, T, -1), out)


@pytest.mark.parametrize("pooling", ["avg", "attention"])
def test_inference_is_the_pooled_frame_outputs(pooling):
    model = _video(pooling)
    clips = _clips()
    out = {k: keras.ops.convert_to_numpy(v) for k, v in model(clips, training=False).items()}
    assert out["embedding"].shape == (N, model.embedding_dim) and out["attributes"].shape == (N, 3)
    frames = _per_frame(model.frame_model, clips, False)
    params = model.temporal_pooling_params()
    w = temporal.frame_weights(frames["embedding"], mode=pooling, params=params if pooling == "attention" else None)
    if pooling == "attention":
        assert np.abs(w - 1 / T).max() > 0.02  # the weights are not the average
    for key in ("embedding", "attributes"):
        np.testing.assert_allclose(out[key], temporal.pool_frames(frames[key], weights=w), rtol=1e-5, atol=1e-6)
    # the numpy rule alone (what the edge runs) from the exported parameters
    np.testing.assert_allclose(out["embedding"], temporal.pool_frames(frames["embedding"], mode=pooling,
                                                                      params=params if pooling != "avg" else None),
                               rtol=1e-5, atol=1e-6)


def test_training_outputs_are_pooled_with_the_embedding_weights_and_linear_heads_commute():
    model = _video("attention")
    clips = _clips(1)
    out = model(clips, training=True)
    assert sorted(out) == ["attribute_logits", "embedding", "features", "identity_logits"]
    assert out["identity_logits"][0].shape == (N, 5) and out["features"][0].shape == (N, 5)
    frames = _per_frame(model.frame_model, clips, True)
    w = temporal.frame_weights(frames["embedding"], mode="attention", params=model.temporal_pooling_params())
    for key in ("embedding", "attribute_logits"):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out[key]), temporal.pool_frames(frames[key], weights=w),
                                   rtol=1e-4, atol=1e-5)
    pooled_feature = temporal.pool_frames(frames["features"][0], weights=w)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["features"][0]), pooled_feature, rtol=1e-4, atol=1e-5)
    # exact commutation: the classifier applied to the pooled feature gives the pooled logits
    head = model.frame_model.classifier
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out["identity_logits"][0]),
                               keras.ops.convert_to_numpy(head(pooled_feature)), rtol=1e-4, atol=1e-5)


def test_mask_ignores_padding_frames():
    model = _video("attention")
    clips = _clips(2)
    mask = np.array([[1, 1, 1], [1, 1, 0]])
    padded = clips.copy()
    padded[1, 2] = 255 - padded[1, 2]  # the padding frame's content must not matter
    a = keras.ops.convert_to_numpy(model(clips, mask=mask)["embedding"])
    b = keras.ops.convert_to_numpy(model(padded, mask=mask)["embedding"])
    np.testing.assert_allclose(a, b, rtol=1e-6)
    short = keras.ops.convert_to_numpy(model(clips[1:, :2])["embedding"])  # the same tracklet, unpadded, T=2
    np.testing.assert_allclose(a[1], short[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", ["avg", "attention"])
def test_keras_round_trip_is_exact(pooling, tmp_path):
    model = _video(pooling)
    path = str(tmp_path / f"video_{pooling}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, VideoModel) and loaded.pooling == pooling and loaded.seq_len == T
    assert (loaded.model_name, loaded.input_size, loaded.embedding_dim, loaded.num_classes) == ("tiny", (H, W), 8, 5)
    clips = _clips(3)
    for training in (False, True):
        a, b = model(clips, training=training), loaded(clips, training=training)
        for x, y in zip(keras.tree.flatten(a), keras.tree.flatten(b)):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y))


def test_gradients_reach_image_model_and_temporal_head():
    model = _video("attention")
    clips = tf.constant(_clips(4))
    with tf.GradientTape() as tape:
        out = model(clips, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(np.array([0, 1]), out["identity_logits"][0],
                                                                           from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    named = {v.path: g for v, g in zip(model.trainable_variables, grads)}
    assert all(g is not None and np.isfinite(g.numpy()).all() for g in grads)
    assert any("temporal_pooling" in p and np.abs(g.numpy()).sum() > 0 for p, g in named.items())
    assert any("conv2d" in p and np.abs(g.numpy()).sum() > 0 for p, g in named.items())


def test_build_video_model_and_build_like():
    model = build_video_model("tiny", seq_len=4, pooling="attention", num_classes=3, num_attributes=2,
                              input_shape=(H, W), attribute_names=["a", "b"])
    assert keras_hpnet.build_video_model is build_video_model
    assert model.spec is keras_hpnet.spec("tiny") and model.attribute_names == ["a", "b"]
    assert model(np.zeros((1, 4, H, W, 3), "uint8"))["embedding"].shape == (1, model.embedding_dim)
    fresh = build_like(model)
    assert isinstance(fresh, VideoModel) and fresh.get_config()["seq_len"] == 4 and fresh.pooling == "attention"
    assert fresh.image_model.get_config() | {"name": None} == model.image_model.get_config() | {"name": None}
    params = model.temporal_pooling_params()
    assert params["mode"] == "attention" and np.shape(params["hidden_kernel"]) == (model.embedding_dim, 32)
    assert build_video_model("tiny", seq_len=2, num_classes=0).temporal_pooling_params() == {"mode": "avg"}


def test_bad_input_is_named():
    model = _video("avg")
    with pytest.raises(ValueError, match=r"tracklets \[N, T, H, W, 3\]"):
        model(np.zeros((2, H, W, 3), "uint8"))
    with pytest.raises(ValueError, match="32x16"):
        model(np.zeros((1, 2, 16, 16, 3), "uint8"))
    with pytest.raises(ValueError, match="seq_len"):
        VideoModel(make_tiny_model(input_size=(H, W)), seq_len=0)
    with pytest.raises(ValueError, match="mode"):
        build_video_model("tiny", seq_len=2, pooling="lstm", num_classes=0)
    with pytest.raises(ValueError, match="no input_size"):
        VideoModel(keras.Sequential([keras.layers.Dense(2)]))

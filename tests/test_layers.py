"""Layer tests: shapes, the published initialisation, the sampler against a plain
bilinear crop, gradients against finite differences, config round trips."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_hpnet import layers as L
from keras_hpnet.metadata import IMAGENET_MEAN, IMAGENET_STD


def reference_crop(features, translations, output_size, scale):
    """Straightforward per-pixel bilinear sampling with zero padding (corner-aligned)."""
    n, h, w, c = features.shape
    r = translations.shape[1]
    out_h, out_w = output_size
    out = np.zeros((n * r, out_h, out_w, c), np.float64)
    for b in range(n):
        for k in range(r):
            tx, ty = translations[b, k]
            for i in range(out_h):
                v = -1.0 + 2.0 * i / (out_h - 1) if out_h > 1 else 0.0
                py = (scale[1] * v + ty + 1.0) * (h - 1) / 2.0
                for j in range(out_w):
                    u = -1.0 + 2.0 * j / (out_w - 1) if out_w > 1 else 0.0
                    px = (scale[0] * u + tx + 1.0) * (w - 1) / 2.0
                    y0, x0 = int(np.floor(py)), int(np.floor(px))
                    acc = np.zeros(c)
                    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
                        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
                            if 0 <= yy < h and 0 <= xx < w:
                                acc += wy * wx * features[b, yy, xx]
                    out[b * r + k, i, j] = acc
    return out


def test_sampler_matches_plain_bilinear_crop():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(2, 20, 8, 3))
    # inside, partly outside (zero padding), and the published initial stripes
    trans = np.array([[[0.0, -0.75], [0.3, -0.1], [-0.6, 0.9], [0.13, 0.37]],
                      [[1.2, 0.0], [0.0, -1.3], [-0.05, 0.55], [0.77, -0.42]]])
    sampler = L.AffineRegionSampler((6, 7), scale=(1.0, 0.25), dtype="float64")
    got = sampler([feats, trans]).numpy()
    want = reference_crop(feats, trans, (6, 7), (1.0, 0.25))
    assert got.shape == (8, 6, 7, 3)
    np.testing.assert_allclose(got, want, atol=1e-10)
    # a region entirely outside the map samples zeros
    far = sampler([feats, np.full((2, 4, 2), 3.0)]).numpy()
    assert np.abs(far).max() == 0.0


def test_sampler_identity_and_pixel_shift():
    feats = np.arange(2 * 5 * 4 * 1, dtype="float32").reshape(2, 5, 4, 1)
    sampler = L.AffineRegionSampler((5, 4), scale=(1.0, 1.0))
    np.testing.assert_allclose(sampler([feats, np.zeros((2, 1, 2))]).numpy(), feats, atol=1e-5)
    # shifting by exactly one pixel (t = 2 / (W - 1)) moves the image by one column
    shifted = sampler([feats, np.array([[[2.0 / 3.0, 0.0]]] * 2, "float32")]).numpy()
    np.testing.assert_allclose(shifted[:, :, :3], feats[:, :, 1:], atol=1e-4)
    np.testing.assert_allclose(shifted[:, :, 3], 0.0, atol=1e-5)


def test_hard_attention_published_init():
    layer = L.HardAttention(4)
    out = layer(np.random.default_rng(1).normal(size=(3, 10, 4, 16)).astype("float32")).numpy()
    expected = np.tanh(np.array(L.HARD_ATTENTION_INIT_BIAS)).reshape(4, 2)
    assert out.shape == (3, 4, 2)
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), atol=1e-6)
    assert np.all(layer.fc.kernel.numpy() == 0)


def test_hard_attention_gradients_match_finite_differences():
    """d loss / d (hard-attention weights) through tanh and the sampler."""
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(2, 10, 4, 6)))        # input of the HA block
    source = tf.constant(rng.normal(size=(2, 20, 8, 5)))   # map the regions are sampled from
    proj = tf.constant(rng.normal(size=(8, 6, 7, 5)))
    hard = L.HardAttention(4, dtype="float64")
    sampler = L.AffineRegionSampler((6, 7), (1.0, 0.25), dtype="float64")
    hard(x)
    hard.fc.kernel.assign(rng.normal(scale=0.05, size=(6, 8)))  # move off the zero init

    def loss():
        return tf.reduce_sum(sampler([source, hard(x)]) * proj)

    with tf.GradientTape() as tape:
        value = loss()
    g_kernel, g_bias = tape.gradient(value, [hard.fc.kernel, hard.fc.bias])
    g_bias = g_bias.numpy()
    assert np.all(np.isfinite(g_bias)) and np.all(np.isfinite(g_kernel.numpy()))
    assert np.abs(g_bias).min() > 1e-6 and np.abs(g_kernel.numpy()).max() > 1e-6
    eps = 1e-6
    bias = hard.fc.bias.numpy()
    for idx in range(8):
        d = np.zeros(8)
        d[idx] = eps
        hard.fc.bias.assign(bias + d)
        up = loss().numpy()
        hard.fc.bias.assign(bias - d)
        down = loss().numpy()
        hard.fc.bias.assign(bias)
        np.testing.assert_allclose((up - down) / (2 * eps), g_bias[idx], rtol=1e-4, atol=1e-6)


def test_sampler_gradient_wrt_features_is_the_adjoint():
    rng = np.random.default_rng(3)
    feats = tf.Variable(rng.normal(size=(1, 12, 6, 2)))
    trans = tf.constant([[[0.2, -0.3], [-0.4, 0.6]]], tf.float64)
    sampler = L.AffineRegionSampler((4, 5), (0.8, 0.3), dtype="float64")
    weights = tf.constant(rng.normal(size=(2, 4, 5, 2)))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(sampler([feats, trans]) * weights)
    grad = tape.gradient(value, feats)
    grad = tf.convert_to_tensor(grad).numpy()
    # the sampler is linear in the features: value == <features, gradient>
    np.testing.assert_allclose(np.sum(feats.numpy() * grad), value.numpy(), rtol=1e-10)
    assert np.abs(grad).max() > 0


def test_attention_layers_shapes_and_ranges():
    x = np.random.default_rng(4).normal(size=(2, 10, 4, 32)).astype("float32")
    assert tuple(L.SpatialAttention()(x).shape) == (2, 10, 4, 1)
    assert tuple(L.SpatialAttention()(x[:, :9, :3]).shape) == (2, 9, 3, 1)  # odd sizes
    assert tuple(L.ChannelAttention(32)(x).shape) == (2, 1, 1, 32)
    soft = L.SoftAttention(32)(x).numpy()
    assert soft.shape == x.shape and soft.min() > 0 and soft.max() < 1
    mask, theta = L.HarmoniousAttention(32)(x)
    assert tuple(mask.shape) == x.shape and tuple(theta.shape) == (2, 4, 2)
    with pytest.raises(ValueError, match="expected 16 channels"):
        L.ChannelAttention(16)(x)


def test_inception_blocks_shapes():
    x = np.zeros((2, 40, 16, 32), "float32")
    assert tuple(L.InceptionA(128)(x).shape) == (2, 40, 16, 128)
    assert tuple(L.InceptionB(128)(x).shape) == (2, 20, 8, 128)
    v2 = L.InceptionV2Block(0, 64, 80, 32, 48, 0, pool="max", strides=2)
    x = np.zeros((1, 32, 16, 128), "float32")
    assert tuple(v2(x).shape) == (1, 16, 8, 256)  # 80 + 48 + 128 passed through
    assert tuple(v2.compute_output_shape(x.shape)) == (1, 16, 8, 256)
    with pytest.raises(ValueError, match="divisible by 4"):
        L.InceptionA(30)


def test_image_normalization():
    x = np.array([[[[0, 128, 255]]]], "uint8")
    got = L.ImageNormalization()(x).numpy()
    want = (x.astype("float32") - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_mda_applies_each_map_to_each_level():
    rng = np.random.default_rng(5)
    source = rng.normal(size=(2, 4, 2, 6)).astype("float32")
    level1 = rng.normal(size=(2, 4, 2, 5)).astype("float32")
    level2 = rng.normal(size=(2, 2, 1, 3)).astype("float32")
    tail = [dict(branch_1x1=2, reduce_3x3=2, branch_3x3=2, reduce_double=2, branch_double=2,
                 pool_proj=2)]
    mda = L.MultiDirectionalAttention([tail, []], num_maps=3)
    feats, maps = mda([source, level1, level2])
    assert tuple(maps.shape) == (2, 4, 2, 3)
    assert tuple(feats.shape) == (2, 3 * 8 + 3 * 3)
    maps = maps.numpy()
    # level without tail: per-map GAP of (map_k * features), maps in order
    small = tf.image.resize(maps, (2, 1), method="bilinear").numpy()
    want = np.concatenate([(small[..., k:k + 1] * level2).mean(axis=(1, 2)) for k in range(3)], -1)
    np.testing.assert_allclose(feats.numpy()[:, 24:], want, rtol=1e-5, atol=1e-6)
    # level with tail: map k of sample b went through the shared block
    block = mda.tail_blocks[0][0]
    k = 1
    want1 = block(maps[..., k:k + 1] * level1, training=False).numpy().mean(axis=(1, 2))
    np.testing.assert_allclose(feats.numpy()[:, 8 * k:8 * (k + 1)], want1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make, shape", [
    (lambda: L.ConvBlock(8, 3, strides=2), (1, 8, 6, 4)),
    (lambda: L.InceptionA(8), (1, 8, 6, 4)),
    (lambda: L.InceptionB(8), (1, 8, 6, 4)),
    (lambda: L.InceptionV2Block(4, 4, 4, 4, 4, 4, width=0.5), (1, 8, 6, 4)),
    (lambda: L.SoftAttention(4), (1, 8, 6, 4)),
    (lambda: L.HarmoniousAttention(4), (1, 8, 6, 4)),
    (lambda: L.HardAttention(4), (1, 8, 6, 4)),
    (lambda: L.ImageNormalization(), (1, 8, 6, 3)),
])
def test_layer_config_round_trip(make, shape):
    layer = make()
    x = np.random.default_rng(6).uniform(size=shape).astype("float32")
    y = layer(x)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    y2 = clone(x)
    clone.set_weights(layer.get_weights())
    for a, b in zip(keras.tree.flatten(y), keras.tree.flatten(clone(x))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    assert [tuple(a.shape) for a in keras.tree.flatten(y)] == [tuple(b.shape) for b in keras.tree.flatten(y2)]


def test_sampler_and_mda_config_round_trip():
    s = L.AffineRegionSampler((6, 7), (1.0, 0.25))
    assert L.AffineRegionSampler.from_config(s.get_config()).get_config() == s.get_config()
    m = L.MultiDirectionalAttention([[dict(branch_1x1=2, reduce_3x3=2, branch_3x3=2, reduce_double=2,
                                            branch_double=2, pool_proj=2)], []], num_maps=8)
    assert L.MultiDirectionalAttention.from_config(m.get_config()).get_config() == m.get_config()


@pytest.mark.parametrize("shape", [(8, 5, 3, 4), (16, 6), (3, 1, 1, 5)])
def test_fused_batch_norm_equals_keras_batch_norm(shape):
    """Training step of the fused BN == Keras BN: outputs, gradients, moving statistics."""
    rng = np.random.default_rng(7)
    x = tf.constant(rng.normal(2.0, 3.0, size=shape).astype("float32"))
    w = tf.constant(rng.normal(size=shape).astype("float32"))
    results = []
    for cls in (keras.layers.BatchNormalization, L.FusedBatchNormalization):
        bn = cls(momentum=0.9, epsilon=1e-5)
        bn.build(shape)
        bn.gamma.assign(np.linspace(0.5, 1.5, shape[-1]))
        bn.beta.assign(np.linspace(-1.0, 1.0, shape[-1]))

        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = bn(x, training=True)
                value = tf.reduce_sum(y * w)
            return [y] + tape.gradient(value, [x, bn.gamma, bn.beta])

        out = [t.numpy() for t in step(x)] + [t.numpy() for t in step(x + 1.0)]
        out += [bn.moving_mean.numpy(), bn.moving_variance.numpy(), bn(x, training=False).numpy()]
        results.append(out)
    keras_out, fused_out = results
    assert np.abs(keras_out[-2] - 1.0).max() > 0.1  # the moving variance did move
    for a, b in zip(keras_out, fused_out):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_sampler_places_regions_in_float32_under_mixed_precision():
    # Values = column index - 112 (exact in bfloat16); the 1x1 region's centre is
    # at x = 100 + 100 * 0.123 = 112.3, so the sample is 0.3. With bfloat16
    # coordinates x would round to 112.5 (sample 0.5).
    feats = np.tile((np.arange(201.0) - 112.0)[None, None, :, None], (1, 3, 1, 2)).astype("float32")
    sampler = L.AffineRegionSampler((1, 1), scale=(1.0, 1.0), dtype="mixed_bfloat16")
    out = sampler([feats, np.array([[[0.123, 0.0]]], "float32")])
    assert out.dtype == "bfloat16"
    np.testing.assert_allclose(np.asarray(out, "float32")[0, 0, 0], [0.3, 0.3], atol=0.005)

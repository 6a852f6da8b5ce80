"""Losses against straightforward numpy implementations."""

import numpy as np
import pytest

from keras_hpnet import losses


def _np_smoothed_ce(labels, logits, eps):
    out = []
    for y, z in zip(labels, logits):
        logp = z - np.log(np.sum(np.exp(z - z.max()))) - z.max()
        t = np.full(len(z), eps / len(z))
        t[y] += 1 - eps
        out.append(-(t * logp).sum())
    return np.array(out)


def _np_batch_hard(labels, feats, margin):
    out = []
    for i in range(len(labels)):
        d = np.sqrt(((feats - feats[i]) ** 2).sum(1))
        pos = [d[j] for j in range(len(labels)) if labels[j] == labels[i] and j != i]
        neg = [d[j] for j in range(len(labels)) if labels[j] != labels[i]]
        out.append(max(0.0, max(pos) - min(neg) + margin) if pos and neg else 0.0)
    return np.array(out)


def test_identity_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype("float32") * 3
    labels = rng.integers(0, 5, size=6)
    for eps in (0.0, 0.1):
        got = np.asarray(losses.identity_cross_entropy(labels, logits, eps))
        np.testing.assert_allclose(got, _np_smoothed_ce(labels, logits, eps), rtol=1e-5, atol=1e-6)
    # Smoothing keeps a confident correct prediction from reaching zero loss.
    confident = np.array([[20.0, 0, 0]], "float32")
    assert float(losses.identity_cross_entropy([0], confident, 0.0)[0]) < 1e-6
    assert float(losses.identity_cross_entropy([0], confident, 0.1)[0]) > 0.5
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.identity_cross_entropy([0], confident, 1.0)


def test_batch_hard_triplet_matches_numpy_and_has_finite_gradient():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    labels = np.array([0, 0, 1, 1, 2, 2, 3])  # id 3 has no positive -> 0
    feats = rng.normal(size=(7, 4)).astype("float32")
    got = np.asarray(losses.batch_hard_triplet_loss(labels, feats, 0.3))
    np.testing.assert_allclose(got, _np_batch_hard(labels, feats, 0.3), rtol=1e-4, atol=1e-5)
    assert got[-1] == 0.0
    # duplicate features (zero distances) must not give NaN gradients
    f = tf.Variable(np.concatenate([feats, feats[:1]]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(losses.batch_hard_triplet_loss(np.append(labels, 0), f, 0.3))
    g = tape.gradient(loss, f).numpy()
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0
    # single identity: no negatives -> zero loss
    assert np.all(np.asarray(losses.batch_hard_triplet_loss([1, 1, 1], feats[:3])) == 0)


def test_weighted_attribute_bce():
    rng = np.random.default_rng(2)
    labels = (rng.random((8, 4)) < 0.3).astype("float32")
    logits = rng.normal(size=(8, 4)).astype("float32") * 4
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    plain = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    np.testing.assert_allclose(
        np.asarray(losses.weighted_attribute_bce(labels, logits)), plain.mean(1), rtol=1e-5
    )
    ratio = losses.attribute_positive_ratio(labels)
    np.testing.assert_allclose(ratio, np.clip(labels.mean(0), 1e-3, 1 - 1e-3), rtol=1e-6)
    w = labels * np.exp(1 - ratio) + (1 - labels) * np.exp(ratio)
    np.testing.assert_allclose(
        np.asarray(losses.weighted_attribute_bce(labels, logits, ratio)), (plain * w).mean(1), rtol=1e-5
    )
    # rare positives weigh more than common negatives
    assert np.exp(1 - 0.1) > np.exp(0.1)
    # extreme logits stay finite
    big = np.asarray(losses.weighted_attribute_bce([[1.0, 0.0]], [[-200.0, 200.0]]))
    np.testing.assert_allclose(big, [200.0], rtol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        losses.attribute_positive_ratio(np.zeros((0, 3)))


def test_loss_classes_serialize():
    import keras

    for obj in (
        losses.IdentityCrossEntropy(0.2),
        losses.BatchHardTripletLoss(0.5),
        losses.WeightedAttributeBCE([0.2, 0.5]),
    ):
        clone = keras.losses.deserialize(keras.losses.serialize(obj))
        assert type(clone) is type(obj) and clone.get_config() == obj.get_config()
    loss = losses.IdentityCrossEntropy(0.0)
    assert float(loss(np.array([1]), np.array([[0.0, 0.0]], "float32"))) == pytest.approx(np.log(2), rel=1e-5)


def test_balanced_attribute_weighting():
    rng = np.random.default_rng(3)
    labels = (rng.random((64, 5)) < [0.05, 0.2, 0.5, 0.7, 0.95]).astype("float32")
    ratio = losses.attribute_positive_ratio(labels)
    logits = rng.normal(size=labels.shape).astype("float32")
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    plain = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    w = labels * 0.5 / ratio + (1 - labels) * 0.5 / (1 - ratio)
    np.testing.assert_allclose(np.asarray(losses.weighted_attribute_bce(labels, logits, ratio, scheme="balanced")),
                               (plain * w).mean(1), rtol=1e-5)
    # Positives and negatives of each attribute carry equal total weight ...
    np.testing.assert_allclose((w * labels).sum(0), (w * (1 - labels)).sum(0), rtol=1e-5)
    # ... so a constant predictor's loss is minimised at p = 0.5 whatever the ratio
    # (DeepMAR's weights leave a rare attribute's optimum far below 0.5).
    def best_constant(scheme, j):
        grid = np.linspace(-4, 4, 81).astype("float32")
        y = labels[:, j:j + 1]
        loss = [np.asarray(losses.weighted_attribute_bce(y, np.full_like(y, g), ratio[j:j + 1], scheme=scheme))
                .mean() for g in grid]
        return grid[int(np.argmin(loss))]

    for j in range(labels.shape[1]):
        assert abs(best_constant("balanced", j)) < 1e-6
    assert best_constant("deepmar", 0) < -1.0
    with pytest.raises(ValueError, match="scheme"):
        losses.weighted_attribute_bce(labels, logits, ratio, scheme="nope")


def test_unknown_attribute_entries_are_masked():
    """UNKNOWN_ATTRIBUTE (255) entries contribute 0; the mean is over known entries (hand-computed)."""
    from keras_hpnet.datasets import UNKNOWN_ATTRIBUTE as U

    labels = np.array([[1, 0, U], [U, U, U], [0, 1, 1]], "float32")
    logits = np.zeros((3, 3), "float32")  # every known entry costs log 2
    np.testing.assert_allclose(np.asarray(losses.weighted_attribute_bce(labels, logits)),
                               [np.log(2), 0.0, np.log(2)], rtol=1e-6)
    logits = np.array([[2.0, -1.0, 50.0], [9.0, -9.0, 3.0], [0.0, 0.0, 0.0]], "float32")
    # row 0: (log(1+e^-2) + log(1+e^-1)) / 2, the masked 50 ignored
    want0 = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))) / 2
    got = np.asarray(losses.weighted_attribute_bce(labels, logits))
    np.testing.assert_allclose(got, [want0, 0.0, np.log(2)], rtol=1e-5)
    # positive ratio from known entries only: col 0 1/2, col 1 1/2, col 2 1/1 (clipped), all-unknown -> 0.5
    ratio = losses.attribute_positive_ratio(np.concatenate([labels, [[U], [U], [U]]], axis=1))
    np.testing.assert_allclose(ratio, [0.5, 0.5, 1 - 1e-3, 0.5], rtol=1e-6)
    # weighted: the masked entries' weights do not leak in (balanced weights 1/(2r) = 1 here)
    np.testing.assert_allclose(
        np.asarray(losses.weighted_attribute_bce(labels, logits, ratio[:2].tolist() + [0.5], scheme="balanced")),
        [want0, 0.0, np.log(2)], rtol=1e-5)


def test_identity_cross_entropy_masks_examples_without_identity():
    logits = np.array([[1.0, 0.0], [3.0, -3.0]], "float32")
    got = np.asarray(losses.identity_cross_entropy(np.array([1, -1]), logits, 0.0))
    np.testing.assert_allclose(got, [np.log1p(np.e), 0.0], rtol=1e-5)

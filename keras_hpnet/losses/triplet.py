"""Batch-hard triplet loss (Hermans, Beyer, Leibe, "In Defense of the Triplet
Loss for Person Re-Identification", 2017, Sec. 2).

For every anchor in a P x K batch: the farthest sample of the same identity
(hardest positive) and the closest sample of another identity (hardest
negative), loss ``max(0, margin + d(a, p) - d(a, n))`` with Euclidean ``d``.
Anchors without a positive (K = 1) or without a negative contribute 0.
"""

import keras
from keras import ops


def _pairwise_euclidean(features):
    sq = ops.sum(ops.square(features), axis=1)
    d2 = ops.expand_dims(sq, 1) - 2.0 * ops.matmul(features, ops.transpose(features)) + ops.expand_dims(sq, 0)
    d2 = ops.maximum(d2, 0.0)
    # sqrt has an infinite gradient at 0 (the diagonal): take it on a safe value.
    zero = ops.cast(d2 <= 1e-12, "float32")
    return ops.sqrt(d2 + zero * 1e-12) * (1.0 - zero)


def batch_hard_triplet_loss(labels, features, margin=0.3):
    """Per-anchor batch-hard triplet loss.

    Args:
      labels: int ``[N]`` identities.
      features: float ``[N, D]`` (not normalised here; normalise before if wanted).
      margin: the triplet margin (0.3 in the reference re-id recipes).

    Returns:
      float32 ``[N]``.
    """
    features = ops.cast(features, "float32")
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    dist = _pairwise_euclidean(features)
    n = ops.shape(labels)[0]
    same = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
    not_self = ops.logical_not(ops.cast(ops.eye(n), "bool"))
    pos_mask = ops.cast(ops.logical_and(same, not_self), "float32")
    neg_mask = ops.cast(ops.logical_not(same), "float32")
    hardest_pos = ops.max(dist * pos_mask, axis=1)
    big = ops.max(dist) + 1.0
    hardest_neg = ops.min(dist + (1.0 - neg_mask) * big, axis=1)
    valid = ops.cast(
        ops.logical_and(ops.sum(pos_mask, axis=1) > 0, ops.sum(neg_mask, axis=1) > 0), "float32"
    )
    return ops.relu(hardest_pos - hardest_neg + margin) * valid


@keras.saving.register_keras_serializable(package="keras_hpnet")
class BatchHardTripletLoss(keras.losses.Loss):
    """`keras.losses.Loss` form of :func:`batch_hard_triplet_loss`."""

    def __init__(self, margin=0.3, name="batch_hard_triplet", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = margin

    def call(self, y_true, y_pred):
        return batch_hard_triplet_loss(y_true, y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}

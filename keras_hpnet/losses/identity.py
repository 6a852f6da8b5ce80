"""Identity classification loss: cross-entropy with label smoothing.

HA-CNN (Li, Zhu, Gong, CVPR 2018), Sec. 4 "Implementation details": every
identity head is trained with softmax cross-entropy; the reference recipe uses
label smoothing eps = 0.1 (Szegedy et al. 2016). The smoothed target is
``(1 - eps) * onehot(y) + eps / C``. An example without an identity (label
-1: an attribute-only dataset's image in a multi-dataset run,
keras_hpnet.datasets.combine) has loss 0.
"""

import keras
from keras import ops


def identity_cross_entropy(labels, logits, label_smoothing=0.1):
    """Per-example smoothed cross-entropy.

    Args:
      labels: int ``[N]`` identity indices in ``0..C-1``; -1 (no identity): loss 0.
      logits: float ``[N, C]``.
      label_smoothing: eps in ``[0, 1)``.

    Returns:
      float32 ``[N]``.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    logits = ops.cast(logits, "float32")
    num_classes = ops.shape(logits)[-1]
    log_probs = ops.log_softmax(logits, axis=-1)
    labels = ops.cast(labels, "int32")
    has_identity = ops.cast(ops.greater_equal(labels, 0), "float32")
    onehot = ops.one_hot(ops.maximum(labels, 0), num_classes, dtype="float32")
    targets = (1.0 - label_smoothing) * onehot + label_smoothing / ops.cast(num_classes, "float32")
    return -ops.sum(targets * log_probs, axis=-1) * has_identity


@keras.saving.register_keras_serializable(package="keras_hpnet")
class IdentityCrossEntropy(keras.losses.Loss):
    """`keras.losses.Loss` form of :func:`identity_cross_entropy`."""

    def __init__(self, label_smoothing=0.1, name="identity_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        return identity_cross_entropy(y_true, y_pred, self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}

"""Attribute loss: sigmoid binary cross-entropy, optionally weighted by each
attribute's positive ratio.

HydraPlus-Net (Liu et al., ICCV 2017), Sec. 4: attributes are trained with a
weighted sigmoid cross-entropy that counters the imbalance of pedestrian
attribute labels; the weights follow DeepMAR (Li et al., ACPR 2015): with ``r``
the fraction of positive training samples of an attribute, a positive label is
weighted ``exp((1 - r) / sigma^2)`` and a negative one ``exp(r / sigma^2)``
(sigma = 1), so rare positives count more. HAT-CNN trains its attribute network
with the plain (unweighted) binary cross-entropy: pass ``positive_ratio=None``.

``scheme="balanced"`` weights a positive ``1 / (2r)`` and a negative
``1 / (2(1 - r))``: both classes of every attribute then carry the same total
weight, so the loss is minimised by the posterior of a class-balanced problem
and the 0.5 threshold maximises the expected balanced accuracy, which is
exactly the label-based mA (Li et al. 2015) that pedestrian-attribute work
reports. DeepMAR's exponential weights correct the imbalance at most
``e^(1-2r)`` (< e), which leaves rare attributes mostly called negative.

Entries labelled ``UNKNOWN_ATTRIBUTE`` (255, keras_hpnet.datasets: nobody
labelled them, or the dataset of a multi-dataset run lacks the attribute) are
masked: they contribute 0 to the loss, an example's loss is the mean over its
known entries, and the positive ratios count known entries only.
"""

import keras
import numpy as np
from keras import ops

from keras_hpnet.datasets.base import UNKNOWN_ATTRIBUTE


def attribute_positive_ratio(labels, eps=1e-3):
    """Fraction of positives per attribute among its known entries, from a
    ``[N, A]`` array of 0/1 and ``UNKNOWN_ATTRIBUTE`` (numpy).

    Clipped to ``[eps, 1 - eps]`` so an attribute that is never (or always)
    positive still gets finite weights; an attribute with no known entry gets
    0.5 (its loss is masked everywhere anyway).
    """
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise ValueError(f"labels must be a non-empty [N, A] array, got shape {labels.shape}")
    known = labels != UNKNOWN_ATTRIBUTE
    count = known.sum(axis=0)
    positives = np.where(known, labels, 0.0).sum(axis=0)
    ratio = np.divide(positives, count, out=np.full(labels.shape[1], 0.5), where=count > 0)
    return np.clip(ratio, eps, 1.0 - eps).astype(np.float32)


SCHEMES = ("deepmar", "balanced")


def _check_scheme(scheme):
    if scheme not in SCHEMES:
        raise ValueError(f"scheme={scheme!r}: must be one of {', '.join(SCHEMES)}")
    return scheme


def attribute_weights(labels, positive_ratio, scheme="deepmar", sigma=1.0):
    """Per-element weights ``[N, A]`` of :func:`weighted_attribute_bce`."""
    _check_scheme(scheme)
    r = ops.reshape(ops.cast(ops.convert_to_tensor(positive_ratio), "float32"), (1, -1))
    if scheme == "balanced":
        return labels * (0.5 / r) + (1.0 - labels) * (0.5 / (1.0 - r))
    s2 = float(sigma) ** 2
    return labels * ops.exp((1.0 - r) / s2) + (1.0 - labels) * ops.exp(r / s2)


def weighted_attribute_bce(labels, logits, positive_ratio=None, sigma=1.0, scheme="deepmar"):
    """Per-example attribute loss, mean over the example's known attributes.

    Args:
      labels: float ``[N, A]`` in {0, 1}, or ``UNKNOWN_ATTRIBUTE`` for a masked
        entry (an example with no known entry has loss 0).
      logits: float ``[N, A]`` (pre-sigmoid).
      positive_ratio: ``[A]`` positive ratios from the training set, or None
        for the unweighted binary cross-entropy.
      sigma: DeepMAR's temperature.
      scheme: ``"deepmar"`` (exponential weights) or ``"balanced"``
        (inverse class frequency, see the module docstring).

    Returns:
      float32 ``[N]``.
    """
    labels = ops.cast(labels, "float32")
    logits = ops.cast(logits, "float32")
    known = ops.cast(ops.not_equal(labels, float(UNKNOWN_ATTRIBUTE)), "float32")
    labels = labels * known  # masked entries: any 0/1 value; their terms are zeroed below
    # Numerically stable sigmoid cross-entropy: max(x,0) - x*y + log(1+exp(-|x|)).
    bce = ops.relu(logits) - logits * labels + ops.log1p(ops.exp(-ops.abs(logits)))
    if positive_ratio is not None:
        bce = bce * attribute_weights(labels, positive_ratio, scheme, sigma)
    return ops.sum(bce * known, axis=-1) / ops.maximum(ops.sum(known, axis=-1), 1.0)


@keras.saving.register_keras_serializable(package="keras_hpnet")
class WeightedAttributeBCE(keras.losses.Loss):
    """`keras.losses.Loss` form of :func:`weighted_attribute_bce`."""

    def __init__(self, positive_ratio=None, sigma=1.0, scheme="deepmar", name="weighted_attribute_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scheme = _check_scheme(scheme)
        self.positive_ratio = None if positive_ratio is None else [float(v) for v in np.ravel(positive_ratio)]
        self.sigma = sigma

    def call(self, y_true, y_pred):
        return weighted_attribute_bce(y_true, y_pred, self.positive_ratio, self.sigma, self.scheme)

    def get_config(self):
        return {**super().get_config(), "positive_ratio": self.positive_ratio, "sigma": self.sigma,
                "scheme": self.scheme}

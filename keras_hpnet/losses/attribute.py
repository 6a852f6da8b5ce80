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
"""

import keras
import numpy as np
from keras import ops


def attribute_positive_ratio(labels, eps=1e-3):
    """Fraction of positives per attribute from a ``[N, A]`` 0/1 array (numpy).

    Clipped to ``[eps, 1 - eps]`` so an attribute that is never (or always)
    positive still gets finite weights.
    """
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise ValueError(f"labels must be a non-empty [N, A] array, got shape {labels.shape}")
    return np.clip(labels.mean(axis=0), eps, 1.0 - eps).astype(np.float32)


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
    """Per-example attribute loss, mean over attributes.

    Args:
      labels: float ``[N, A]`` in {0, 1}.
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
    # Numerically stable sigmoid cross-entropy: max(x,0) - x*y + log(1+exp(-|x|)).
    bce = ops.relu(logits) - logits * labels + ops.log1p(ops.exp(-ops.abs(logits)))
    if positive_ratio is not None:
        bce = bce * attribute_weights(labels, positive_ratio, scheme, sigma)
    return ops.mean(bce, axis=-1)


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

"""Training losses (design.md "keras_hpnet/losses").

Each loss is a plain function returning a per-example loss vector ``[N]`` (so a
distributed training loop can average it over the global batch with
``tf.nn.compute_average_loss``) plus a registered ``keras.losses.Loss`` wrapper
for ``model.compile`` users.

- :func:`identity_cross_entropy` — softmax cross-entropy with label smoothing
  (HA-CNN, Li et al. CVPR 2018, Sec. 4: eps = 0.1 on each identity head).
- :func:`batch_hard_triplet_loss` — batch-hard triplet loss on P x K batches
  (Hermans et al. 2017), the optional metric loss.
- :func:`weighted_attribute_bce` — sigmoid binary cross-entropy, optionally
  weighted by each attribute's positive ratio (HydraPlus-Net, Liu et al. ICCV
  2017, Sec. 4: weighted sigmoid cross-entropy), with
  :func:`attribute_positive_ratio` to compute the ratios from training labels.
"""

from keras_hpnet.losses.attribute import (
    WeightedAttributeBCE,
    attribute_positive_ratio,
    weighted_attribute_bce,
)
from keras_hpnet.losses.identity import IdentityCrossEntropy, identity_cross_entropy
from keras_hpnet.losses.triplet import BatchHardTripletLoss, batch_hard_triplet_loss

__all__ = [
    "BatchHardTripletLoss",
    "IdentityCrossEntropy",
    "WeightedAttributeBCE",
    "attribute_positive_ratio",
    "batch_hard_triplet_loss",
    "identity_cross_entropy",
    "weighted_attribute_bce",
]

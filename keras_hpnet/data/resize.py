"""The TensorFlow form of the image rule of :mod:`keras_hpnet.preprocessing`.

Used by the tf.data pipeline and by the exported SavedModel graph, so the
pixels a model is trained on, served with and evaluated on are the same
(bilinear, half-pixel centres, no antialias, float32, round half to even,
clip to uint8).
"""

from __future__ import annotations

import tensorflow as tf


def resize_float(image, height: int, width: int):
    """[..., h, w, 3] uint8/float -> float32 [..., height, width, 3] (before rounding)."""
    image = tf.image.resize(image, [height, width], method="bilinear", antialias=False)
    return tf.cast(image, tf.float32)


def to_uint8(image):
    """Round half to even and clip to uint8 (``tf.round`` rounds half to even)."""
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def resize_uint8(image, height: int, width: int):
    """The whole rule: any RGB image tensor -> uint8 [..., height, width, 3]."""
    return to_uint8(resize_float(image, height, width))

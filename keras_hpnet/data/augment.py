"""Training augmentation on one float32 image [H, W, 3] (0..255), stateless:
every random draw is a function of a `seed` tensor (shape [2], int64) derived
from (seed, epoch, position in the epoch), so a resumed run repeats it exactly.
"""

from __future__ import annotations

import tensorflow as tf

# Sub-streams of one element's seed, one per random op.
_FLIP, _CROP, _ERASE, _ERASE_FILL = 1, 2, 3, 4


def _fold(seed, stream):
    return tf.random.experimental.stateless_fold_in(seed, stream)


def random_flip(image, seed):
    """Horizontal flip with probability 1/2."""
    flip = tf.random.stateless_uniform([], _fold(seed, _FLIP)) < 0.5
    return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)


def pad_and_crop(image, seed, pad):
    """Zero-pad by `pad` pixels on every side, then crop the original size at a
    random offset (the "random crop" of the HA-CNN / torchreid recipe)."""
    if pad <= 0:
        return image
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    offset = tf.random.stateless_uniform([2], _fold(seed, _CROP), minval=0, maxval=2 * pad + 1, dtype=tf.int32)
    return tf.slice(padded, [offset[0], offset[1], 0], [h, w, 3])


def random_erasing(image, seed, probability, area=(0.02, 0.4), aspect=0.3, attempts=10):
    """Random erasing (Zhong, Zheng, Kang, Li, Yang, AAAI 2020, Alg. 1): with
    `probability`, a rectangle of random area fraction in `area` and aspect
    ratio in [aspect, 1/aspect] (log-uniform) is filled with uniform noise
    0..255. The first of `attempts` candidate rectangles that fits is used."""
    if probability <= 0:
        return image
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    u = tf.random.stateless_uniform([attempts + 1, 4], _fold(seed, _ERASE))
    do = u[0, 0] < probability
    s = (area[0] + (area[1] - area[0]) * u[1:, 0]) * hf * wf
    log_r = tf.math.log(aspect) + (tf.math.log(1.0 / aspect) - tf.math.log(aspect)) * u[1:, 1]
    r = tf.exp(log_r)
    eh = tf.cast(tf.round(tf.sqrt(s * r)), tf.int32)
    ew = tf.cast(tf.round(tf.sqrt(s / r)), tf.int32)
    fits = (eh < h) & (ew < w) & (eh > 0) & (ew > 0)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    ok = do & tf.reduce_any(fits)
    eh, ew = eh[first], ew[first]
    y = tf.cast(tf.floor(u[first + 1, 2] * tf.cast(h - eh + 1, tf.float32)), tf.int32)
    x = tf.cast(tf.floor(u[first + 1, 3] * tf.cast(w - ew + 1, tf.float32)), tf.int32)
    rows = tf.range(h)
    cols = tf.range(w)
    in_rows = (rows >= y) & (rows < y + eh)
    in_cols = (cols >= x) & (cols < x + ew)
    mask = (in_rows[:, None] & in_cols[None, :] & ok)[:, :, None]
    noise = tf.random.stateless_uniform(shape, _fold(seed, _ERASE_FILL), minval=0.0, maxval=255.0)
    return tf.where(mask, noise, image)

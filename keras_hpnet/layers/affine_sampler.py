"""Affine region sampler: the spatial transformer of HA-CNN's hard attention.

Li et al. 2018, Sec. 3.1 Eq. (1): region `theta = [[s_w, 0, t_x], [0, s_h, t_y]]`
with fixed scales and learned translations (Jaderberg et al. 2015 sampling).
"""

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_hpnet")
class AffineRegionSampler(keras.layers.Layer):
    """Bilinearly samples R translated regions of a feature map.

    `call([features, translations])` with features `[N, H, W, C]` and translations
    `[N, R, 2]` (`t_x, t_y` in normalised [-1, 1] coordinates) returns
    `[N * R, out_h, out_w, C]` (region-major per sample: row `n * R + r`).
    Output pixel (i, j) samples the source at normalised
    `(x, y) = (s_w * u_j + t_x, s_h * v_i + t_y)` with `u, v` spanning [-1, 1]
    (corner-aligned); outside the map counts as zero.

    Built for TFLite: only FLOOR, CAST, integer ADD/MIN/MAX/compare, GATHER,
    MUL, SUB, RESHAPE (no crop_and_resize / ImageProjectiveTransform), and
    int8-safe: pixel coordinates are a constant grid plus
    `t * (size - 1) / 2`, cast to int32 right after `floor`, with all index math
    in int32. Differentiable w.r.t. the features and the translations.
    Samples directly at the output size (no separate resize).

    Args:
        output_size: (out_h, out_w).
        scale: (s_w, s_h); HA-CNN uses (1, 0.25).
    """

    def __init__(self, output_size, scale=(1.0, 0.25), **kwargs):
        super().__init__(**kwargs)
        # Inputs are cast in `__call__`: Keras' autocast would also turn the
        # translations into bfloat16 under a mixed-precision policy.
        self._convert_input_args = False
        self.output_size = tuple(int(s) for s in output_size)
        self.scale = tuple(float(s) for s in scale)

    def build(self, input_shape):
        feature_shape, _ = input_shape
        height, width = feature_shape[1], feature_shape[2]
        if height is None or width is None:
            raise ValueError(f"{self.name}: needs a static feature height/width, got {feature_shape}")
        out_h, out_w = self.output_size
        sx, sy = self.scale
        u = np.linspace(-1.0, 1.0, out_w) if out_w > 1 else np.zeros(1)
        v = np.linspace(-1.0, 1.0, out_h) if out_h > 1 else np.zeros(1)
        # Constant pixel grids (corner-aligned) for zero translation.
        self._grid_x = (sx * u + 1.0) * (width - 1) / 2.0
        self._grid_y = (sy * v + 1.0) * (height - 1) / 2.0
        self._height, self._width = int(height), int(width)
        self.built = True

    def _coord_dtype(self):
        return "float64" if self.compute_dtype == "float64" else "float32"

    def __call__(self, inputs, **kwargs):
        if isinstance(inputs, (list, tuple)) and len(inputs) == 2:
            inputs = [keras.ops.cast(inputs[0], self.compute_dtype),
                      keras.ops.cast(inputs[1], self._coord_dtype())]
        return super().__call__(inputs, **kwargs)

    @staticmethod
    def _taps(coord, size):
        """Integer taps, clamped, and their bilinear weights (zero outside the map)."""
        lo = tf.cast(tf.floor(coord), tf.int32)
        frac = coord - tf.cast(lo, coord.dtype)
        hi = lo + 1
        zero = tf.zeros_like(lo)
        last = tf.fill(tf.shape(lo), size - 1)
        valid_lo = tf.cast(tf.logical_and(lo >= zero, lo <= last), coord.dtype)
        valid_hi = tf.cast(tf.logical_and(hi >= zero, hi <= last), coord.dtype)
        lo_c = tf.minimum(tf.maximum(lo, zero), last)
        hi_c = tf.minimum(tf.maximum(hi, zero), last)
        return lo_c, hi_c, (1.0 - frac) * valid_lo, frac * valid_hi

    def call(self, inputs):
        features, translations = inputs
        features = tf.cast(features, self.compute_dtype)
        # Coordinates in float32 (float64 for float64 features) even under a
        # mixed-precision policy: bfloat16 would place regions to ~1/8 px.
        coord_dtype = tf.as_dtype(self._coord_dtype())
        translations = tf.cast(translations, coord_dtype)
        out_h, out_w = self.output_size
        num_regions = translations.shape[1]
        channels = features.shape[-1]
        tx = translations[:, :, 0:1]  # [N, R, 1]
        ty = translations[:, :, 1:2]
        px = tf.constant(self._grid_x, coord_dtype)[None, None, :] + tx * ((self._width - 1) / 2.0)   # [N,R,Wo]
        py = tf.constant(self._grid_y, coord_dtype)[None, None, :] + ty * ((self._height - 1) / 2.0)  # [N,R,Ho]
        y0, y1, wy0, wy1 = self._taps(py, self._height)
        x0, x1, wx0, wx1 = self._taps(px, self._width)
        wy0, wy1, wx0, wx1 = (tf.cast(w, features.dtype) for w in (wy0, wy1, wx0, wx1))
        # Rows: gather along H per sample -> [N, R*Ho, W, C].
        y0 = tf.reshape(y0, (-1, num_regions * out_h))
        y1 = tf.reshape(y1, (-1, num_regions * out_h))
        wy0 = tf.reshape(wy0, (-1, num_regions * out_h, 1, 1))
        wy1 = tf.reshape(wy1, (-1, num_regions * out_h, 1, 1))
        rows = (tf.gather(features, y0, axis=1, batch_dims=1) * wy0
                + tf.gather(features, y1, axis=1, batch_dims=1) * wy1)
        rows = tf.reshape(rows, (-1, out_h, self._width, channels))  # [N*R, Ho, W, C]
        # Columns: gather along W per (sample, region) -> [N*R, Ho, Wo, C].
        x0 = tf.reshape(x0, (-1, out_w))
        x1 = tf.reshape(x1, (-1, out_w))
        wx0 = tf.reshape(wx0, (-1, 1, out_w, 1))
        wx1 = tf.reshape(wx1, (-1, 1, out_w, 1))
        return (tf.gather(rows, x0, axis=2, batch_dims=1) * wx0
                + tf.gather(rows, x1, axis=2, batch_dims=1) * wx1)

    def compute_output_shape(self, input_shape):
        feature_shape, translation_shape = input_shape
        n = None if feature_shape[0] is None else feature_shape[0] * translation_shape[1]
        return (n,) + self.output_size + (feature_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(output_size=list(self.output_size), scale=list(self.scale))
        return config


def region_boxes(translations, scale=(1.0, 0.25)):
    """Boxes `[..., 4]` as (y1, x1, y2, x2) in [0, 1] image fractions (unclipped)."""
    t = np.asarray(translations, "float32")
    sx, sy = scale
    cx, cy = (t[..., 0] + 1.0) / 2.0, (t[..., 1] + 1.0) / 2.0
    return np.stack([cy - sy / 2.0, cx - sx / 2.0, cy + sy / 2.0, cx + sx / 2.0], -1)

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

    Separable bilinear sampling as two small matrix products per region,
    `Wy [Ho, H] @ X @ Wx^T [W, Wo]`, whose rows hold the "hat" weights
    `max(0, 1 - |k - coord|)` built from the translation with arithmetic only
    (no floor, cast, compare or gather). Pixel coordinates are a constant grid
    plus `t * (size - 1) / 2`. Equal to floor/gather bilinear sampling within
    float rounding, gradients included (tests); differentiable w.r.t. the
    features and the translations. Samples directly at the output size.
    Why: on CPU the matrix products and their gradients train faster than
    gathers and their scatter-add gradients, and every op is one that TFLite's
    XNNPACK delegate runs in float32 (SUB, MAXIMUM, MINIMUM, MUL, ADD,
    BATCH_MATMUL, RESHAPE), so the int8 export keeps the sampler in float
    inside the one delegate partition (docs/edge.md, "Export").

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
    def _hat_weights(coord, size):
        """Bilinear weights `max(0, 1 - |coord - k|)` of every pixel k < size: `[..., n, size]`.

        Zero beyond one pixel and for taps outside the map (zero padding).
        Written as `min(max(0, 1 - e), max(1 + e, 0))` with `e = coord - k` so
        that, at integer coordinates, TF's tie rules (Minimum/Maximum send the
        gradient to their first argument) give the derivative from the right,
        as `floor`-based bilinear sampling does.
        """
        e = coord[..., None] - tf.range(size, dtype=coord.dtype)
        one = tf.ones((), coord.dtype)
        zero = tf.zeros((), coord.dtype)
        return tf.minimum(tf.maximum(zero, one - e), tf.maximum(one + e, zero))

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
        wy = tf.cast(self._hat_weights(py, self._height), features.dtype)  # [N, R, Ho, H]
        wx = tf.cast(self._hat_weights(px, self._width), features.dtype)   # [N, R, Wo, W]
        # Rows: [N, R*Ho, H] @ [N, H, W*C] -> [N*R, Ho, W, C].
        rows = tf.matmul(tf.reshape(wy, (-1, num_regions * out_h, self._height)),
                         tf.reshape(features, (-1, self._height, self._width * channels)))
        rows = tf.reshape(rows, (-1, out_h, self._width, channels))
        # Columns, per (sample, region) and output row: [Wo, W] @ [W, C].
        wx = tf.reshape(wx, (-1, 1, out_w, self._width))
        return tf.matmul(wx, rows)

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

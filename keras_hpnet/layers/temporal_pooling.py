"""Temporal pooling of frame features `[N, T, D]` -> `[N, D]` (video re-id), the Keras form.

The maths, its papers and the numpy form used by evaluation and the edge are
in `keras_hpnet.temporal` (one rule; tests/test_temporal.py checks the two
forms equal): "avg" (temporal average pooling) or "attention" (softmax over
the valid frames of s_t = v . tanh(W f_t + b); Gao & Nevatia 2018, Liu et al.
CVPR 2017 QAN), with an optional frame mask `[N, T]` (nonzero = real frame)
for padded or short tracklets.
"""

import keras
from keras import ops

from keras_hpnet import temporal


@keras.saving.register_keras_serializable(package="keras_hpnet")
class TemporalPooling(keras.layers.Layer):
    """Pools `[N, T, D]` frame features to `[N, D]` with weights that sum to 1 over the valid frames.

    `mode`: "avg" or "attention"; `units`: the attention's hidden width U
    (W `[D, U]`, b `[U]`, v `[U]`; v starts at zero, so the untrained
    attention is the average). `frame_weights(features, mask)` gives the
    `[N, T]` weights, `weighted_sum(x, weights)` applies them to any `[N, T, ...]`
    tensor (the video model pools all its outputs with the weights of the
    embedding).
    """

    def __init__(self, mode="avg", units=32, **kwargs):
        super().__init__(**kwargs)
        self.mode = temporal.check_mode(mode)
        self.units = int(units)
        if self.units < 1:
            raise ValueError(f"{self.name}: units must be >= 1, got {units}")
        self.supports_masking = True  # takes the frame mask; the pooled output has no T axis to mask

    def build(self, input_shape):
        dim = input_shape[-1]
        if len(input_shape) != 3 or dim is None:
            raise ValueError(f"{self.name}: expected frame features [N, T, D] with a known D, got {input_shape}")
        if self.mode == "attention":
            self.hidden_kernel = self.add_weight(name="hidden_kernel", shape=(dim, self.units),
                                                 initializer="glorot_uniform")
            self.hidden_bias = self.add_weight(name="hidden_bias", shape=(self.units,), initializer="zeros")
            self.score_kernel = self.add_weight(name="score_kernel", shape=(self.units,), initializer="zeros")
        self.built = True

    def frame_weights(self, features, mask=None):
        """`[N, T]` pooling weights of `features` `[N, T, D]` (keras_hpnet.temporal.frame_weights)."""
        f = ops.cast(features, "float32")
        if self.mode == "avg":
            scores = ops.zeros_like(f[..., 0])
        else:
            hidden = ops.tanh(ops.matmul(f, ops.cast(self.hidden_kernel, "float32"))
                              + ops.cast(self.hidden_bias, "float32"))
            scores = ops.sum(hidden * ops.cast(self.score_kernel, "float32"), axis=-1)
        valid = ops.ones_like(scores) if mask is None else ops.cast(ops.not_equal(mask, 0), "float32")
        top = ops.max(ops.where(valid > 0, scores, float("-inf")), axis=-1, keepdims=True)
        top = ops.stop_gradient(ops.where(ops.isfinite(top), top, 0.0))
        e = ops.exp(ops.minimum(scores - top, 0.0)) * valid
        return e / ops.maximum(ops.sum(e, axis=-1, keepdims=True), 1e-30)

    @staticmethod
    def weighted_sum(x, weights):
        """sum_t weights[n, t] * x[n, t, ...] for `x` `[N, T, ...]` and weights `[N, T]`."""
        x = ops.cast(x, "float32")
        w = ops.reshape(weights, tuple(ops.shape(weights)) + (1,) * (len(x.shape) - 2))
        return ops.sum(w * x, axis=1)

    def call(self, features, mask=None):
        return self.weighted_sum(features, self.frame_weights(features, mask))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def numpy_params(self):
        """The attention parameters as numpy arrays for `keras_hpnet.temporal` ({} for "avg")."""
        if self.mode != "attention":
            return {}
        return {name: ops.convert_to_numpy(getattr(self, name)).astype("float32") for name in temporal.PARAM_NAMES}

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, units=self.units)
        return config

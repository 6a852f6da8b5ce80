"""A video re-id model: any registered image model + one temporal head (docs/models.md "Video models").

`VideoModel(image_model, seq_len, pooling)` takes tracklet batches
`[N, T, H, W, 3]`, runs the image model on the `N*T` frames and pools every
output over T with the same `[N, T]` weights (`keras_hpnet.layers.
TemporalPooling` on the per-frame embedding; the rule and its papers are in
`keras_hpnet.temporal`), so it follows the image model contract of
docs/design.md and the losses and training loop run on it unchanged:

- `model(x, training=False)`: `embedding` `[N, D]` (and `attributes`) = the
  weighted average of the per-frame inference outputs: exactly what
  `keras_hpnet.temporal.pool_frames` gives from the frame model's outputs (the
  edge and `keras_hpnet.evaluation.extract_tracklets` compute it that way
  from the per-frame model, `frame_model`, and `temporal_pooling_params()`).
- `model(x, training=True)`: `features`, `identity_logits`, `attribute_logits`
  and `embedding` pooled with the same weights. A linear head on a feature
  commutes with the weighted average (sum_t w_t (A f_t + b) = A (sum_t w_t
  f_t) + b, as sum_t w_t = 1), so where the logits are an affine map of a
  pooled feature (TinyNet's classifier on `features`, its attribute head on
  the pooled map; the classifiers of HA-CNN and HP-Net on their features)
  the pooled logits are *exactly* the logits of the pooled feature. Where a
  nonlinearity sits between (attribute probabilities: the inference
  `attributes` average sigmoids, the training loss sees sigmoid of the
  averaged logits; L2-normalised parts of an embedding) it is the average of
  the per-frame values (late fusion), an approximation of evaluating the
  head on the pooled feature.

BatchNorm in training mode sees batch statistics over all N*T frames.
"""

import keras
import numpy as np
from keras import ops

from keras_hpnet.layers.temporal_pooling import TemporalPooling
from keras_hpnet.models.base import check_rgb_input


@keras.saving.register_keras_serializable(package="keras_hpnet")
class VideoModel(keras.Model):
    """Tracklets `[N, T, H, W, 3]` -> the image model contract, pooled over T (module doc).

    `image_model`: a built keras_hpnet model (or its serialized config);
    `seq_len`: the training tracklet length T (the model takes any T);
    `pooling`: "avg" or "attention"; `attention_units`: the attention's hidden width.
    Call with `mask` `[N, T]` (nonzero = real frame) for padded tracklets.
    """

    def __init__(self, image_model, seq_len=4, pooling="avg", attention_units=32, **kwargs):
        super().__init__(**kwargs)
        if isinstance(image_model, dict):
            image_model = keras.saving.deserialize_keras_object(image_model)
        for attr in ("input_size", "embedding_dim"):
            if not hasattr(image_model, attr):
                raise ValueError(f"VideoModel: image_model {type(image_model).__name__} has no {attr} "
                                 f"(a keras_hpnet model, keras_hpnet.build_model)")
        self.seq_len = int(seq_len)
        if self.seq_len < 1:
            raise ValueError(f"VideoModel: seq_len must be >= 1, got {seq_len}")
        self.image_model = image_model
        self.temporal_pooling = TemporalPooling(pooling, attention_units, name="temporal_pooling")
        self.supports_masking = True  # `mask` is the frame mask; the outputs have no T axis to mask
        self.build((None, self.seq_len, *self.input_size, 3))

    def build(self, input_shape):
        if not self.image_model.weights:
            h, w = self.input_size
            self.image_model(np.zeros((1, h, w, 3), "float32"), training=False)
        self.temporal_pooling.build((None, self.seq_len, int(self.image_model.embedding_dim)))
        self.built = True

    # -- the image model contract (docs/design.md "Models") -------------------------
    @property
    def frame_model(self):
        """The per-frame image model (what the TFLite export and the edge run)."""
        return self.image_model

    @property
    def model_name(self):
        return self.image_model.model_name

    @property
    def spec(self):
        """The image model's `ModelSpec` (a video model is no new network)."""
        return self.image_model.spec

    @property
    def pooling(self):
        return self.temporal_pooling.mode

    @property
    def input_size(self):
        return tuple(self.image_model.input_size)

    @property
    def embedding_dim(self):
        return self.image_model.embedding_dim

    @property
    def num_classes(self):
        return self.image_model.num_classes

    @property
    def num_attributes(self):
        return self.image_model.num_attributes

    @property
    def attribute_names(self):
        return self.image_model.attribute_names

    @property
    def embedding_includes_attributes(self):
        return self.image_model.embedding_includes_attributes

    def attention_maps(self, x):
        """The image model's attention maps of frames `[N, H, W, 3]`."""
        return self.image_model.attention_maps(x)

    def temporal_pooling_params(self) -> dict:
        """The pooling rule as plain data for `keras_hpnet.temporal` and export metadata:
        {"mode": ..., plus the attention arrays as lists for "attention"}."""
        params = {k: v.tolist() for k, v in self.temporal_pooling.numpy_params().items()}
        return {"mode": self.pooling, **params}

    # -- forward --------------------------------------------------------------------
    def call(self, inputs, training=None, mask=None):
        check_rgb_input(f"video {self.model_name}", inputs, self.input_size, "[N, T, H, W, 3]", "tracklets")
        h, w = self.input_size
        steps = inputs.shape[1] if inputs.shape[1] is not None else ops.shape(inputs)[1]
        frames = ops.reshape(inputs, (-1, h, w, 3))
        out = self.image_model(frames, training=training)
        per_frame = keras.tree.map_structure(lambda v: ops.reshape(v, (-1, steps, *v.shape[1:])), out)
        weights = self.temporal_pooling.frame_weights(per_frame["embedding"], mask)
        return keras.tree.map_structure(lambda v: TemporalPooling.weighted_sum(v, weights), per_frame)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "image_model": keras.saving.serialize_keras_object(self.image_model),
                "seq_len": self.seq_len, "pooling": self.pooling,
                "attention_units": self.temporal_pooling.units}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_video_model(name, *, seq_len, pooling="avg", attention_units=32, **image_model_kwargs):
    """`build_model(name, **image_model_kwargs)` wrapped in a built `VideoModel`.

    The video form of every registered network: no spec of its own (its
    `spec` is the image model's); `pooling` in `keras_hpnet.temporal.MODES`.
    """
    from keras_hpnet.models import build_model

    model = VideoModel(build_model(name, **image_model_kwargs), seq_len=seq_len, pooling=pooling,
                       attention_units=attention_units)
    h, w = model.input_size
    model(np.zeros((1, model.seq_len, h, w, 3), "float32"), training=False)
    return model

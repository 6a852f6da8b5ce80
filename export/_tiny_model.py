"""A tiny network following the docs/design.md "Models" contract.

Used by the serving tests and benchmark when a fast stand-in is wanted: it has
the parts that matter for export (normalisation inside, conv + BatchNorm with
non-trivial moving statistics, dict outputs, sigmoid attributes), and nothing
else. Not a paper network.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np

from keras_hpnet.metadata import IMAGENET_MEAN, IMAGENET_STD


@keras.saving.register_keras_serializable(package="keras_hpnet_testing")
class TinyPedNet(keras.Model):
    def __init__(self, input_size=(32, 16), embedding_dim=8, num_classes=5, num_attributes=3, **kwargs):
        super().__init__(**kwargs)
        self.input_size = tuple(int(v) for v in input_size)
        self.embedding_dim = int(embedding_dim)
        self.num_classes = int(num_classes)
        self.num_attributes = int(num_attributes)
        self.conv = keras.layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False)
        self.bn = keras.layers.BatchNormalization()
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.fc = keras.layers.Dense(self.embedding_dim)
        self.attr = keras.layers.Dense(self.num_attributes) if self.num_attributes else None
        self.cls = keras.layers.Dense(self.num_classes) if self.num_classes else None

    def build(self, input_shape=None):
        h, w = self.input_size
        shape = (None, h, w, 3)
        self.conv.build(shape)
        self.bn.build((None, h // 2 + h % 2, w // 2 + w % 2, 6))
        self.fc.build((None, 6))
        if self.attr is not None:
            self.attr.build((None, self.embedding_dim))
        if self.cls is not None:
            self.cls.build((None, self.embedding_dim))
        self.built = True

    def call(self, x, training=False):
        x = keras.ops.cast(x, "float32")
        x = (x - np.asarray(IMAGENET_MEAN, "float32")) / np.asarray(IMAGENET_STD, "float32")
        f = keras.ops.relu(self.bn(self.conv(x), training=training))
        emb = self.fc(self.pool(f))
        out = {"embedding": emb}
        if training:
            out["features"] = [emb]
            if self.cls is not None:
                out["identity_logits"] = [self.cls(emb)]
            if self.attr is not None:
                out["attribute_logits"] = self.attr(emb)
        elif self.attr is not None:
            out["attributes"] = keras.ops.sigmoid(self.attr(emb))
        return out

    def get_config(self):
        return {
            "input_size": list(self.input_size),
            "embedding_dim": self.embedding_dim,
            "num_classes": self.num_classes,
            "num_attributes": self.num_attributes,
            "name": self.name,
        }


def make_tiny_model(input_size=(32, 16), embedding_dim=8, num_attributes=3, seed=0) -> TinyPedNet:
    """A built TinyPedNet whose BatchNorm statistics are far from 0/1.

    With moving statistics at their defaults a training-mode BatchNorm (the
    export trap) could go unnoticed; these make it visible.
    """
    keras.utils.set_random_seed(seed)
    model = TinyPedNet(input_size=input_size, embedding_dim=embedding_dim, num_attributes=num_attributes)
    model.build()
    rng = np.random.default_rng(seed)
    model.bn.moving_mean.assign(rng.normal(0.5, 0.5, 6).astype("float32"))
    model.bn.moving_variance.assign(rng.uniform(2.0, 4.0, 6).astype("float32"))
    model.bn.gamma.assign(rng.uniform(0.5, 1.5, 6).astype("float32"))
    model.bn.beta.assign(rng.normal(0.0, 0.3, 6).astype("float32"))
    return model


def write_tiny_run(run_dir: str, model: TinyPedNet | None = None, attribute_names=None) -> str:
    """Write a minimal training run directory (config.json + model.keras)."""
    model = model or make_tiny_model()
    os.makedirs(run_dir, exist_ok=True)
    names = list(attribute_names) if attribute_names is not None else [f"attr{i}" for i in range(model.num_attributes)]
    config = {
        "model": "tiny",
        "dataset": "synthetic",
        "data_dir": None,
        "input_height": model.input_size[0],
        "input_width": model.input_size[1],
        "num_classes": model.num_classes,
        "attribute_names": names,
        "embedding_dim": model.embedding_dim,
        "seed": 0,
    }
    with open(os.path.join(run_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    model.save(os.path.join(run_dir, "model.keras"))
    return run_dir

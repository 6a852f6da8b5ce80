"""Test support: the tiny stand-in model (keras_hpnet.models.tiny.TinyNet) with
non-trivial BatchNorm statistics, and a minimal training run directory."""

from __future__ import annotations

import json
import os

import keras
import numpy as np

from keras_hpnet.models.tiny import TinyNet


def make_tiny_model(input_size=(32, 16), embedding_dim=8, num_attributes=3, num_classes=5, seed=0,
                    depth=1, width=6) -> TinyNet:
    """A built TinyNet (`embedding_dim` in all: feature + attributes) whose
    BatchNorm statistics are far from 0/1.

    With moving statistics at their defaults a training-mode BatchNorm (the
    export trap) could go unnoticed; these make it visible.
    """
    if embedding_dim <= num_attributes:
        raise ValueError(f"embedding_dim={embedding_dim} must exceed num_attributes={num_attributes}")
    keras.utils.set_random_seed(seed)
    model = TinyNet(num_classes=num_classes, num_attributes=num_attributes, input_shape=input_size,
                    feature_dim=embedding_dim - num_attributes, depth=depth, width=width)
    rng = np.random.default_rng(seed)
    for bn in model.norms:
        n = bn.moving_mean.shape[-1]
        bn.moving_mean.assign(rng.normal(0.5, 0.5, n).astype("float32"))
        bn.moving_variance.assign(rng.uniform(2.0, 4.0, n).astype("float32"))
        bn.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
        bn.beta.assign(rng.normal(0.0, 0.3, n).astype("float32"))
    return model


def write_tiny_run(run_dir: str, model: TinyNet | None = None, attribute_names=None) -> str:
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


def person_crop(rng, colours, h=64, w=32) -> np.ndarray:
    """A synthetic person crop uint8 [h, w, 3]: two coloured body halves, a
    "head" of the third colour, a little jitter and noise."""
    img = np.empty((h, w, 3), np.float32)
    cut = h // 2 + int(rng.integers(-3, 4))
    img[:cut] = colours[0]
    img[cut:] = colours[1]
    img[: h // 5, w // 3: 2 * w // 3] = colours[2]  # "head"
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def bad_size_bmp(path, array) -> str:
    """A BMP that Pillow reads and tf.io.decode_image rejects: 2 bytes more than
    its header says ("Input size should match (header_size + row_size *
    abs_height) but they differ by 2", as in the PETA/VIPeR releases)."""
    from PIL import Image

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path, format="BMP")
    with open(path, "ab") as f:
        f.write(b"\0\0")
    return str(path)

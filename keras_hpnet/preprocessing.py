"""The one image rule every path follows (numpy + Pillow; no TensorFlow).

Rule (docs/design.md, "Image preprocessing"): decode to RGB uint8; resize to
the model's ``input_size`` (H, W) by bilinear interpolation on half-pixel
centres with no antialiasing, in float32 (what ``tf.image.resize(...,
"bilinear", antialias=False)`` and TFLite's ``RESIZE_BILINEAR`` with
``half_pixel_centers`` compute); round half to even and clip to uint8 0..255.
The model normalises internally, so every caller feeds these raw pixels.

This module is the numpy form (edge runtime, calibration images, pictures,
baselines); :mod:`keras_hpnet.data.resize` is the TensorFlow form (tf.data and
the exported SavedModel graph). ``tests`` check that all paths agree.
"""

from __future__ import annotations

import os

import numpy as np


# File names read as images everywhere (dataset folders, edge galleries and
# queries); Pillow reads them all, the pipeline picks the decoder per file.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ImageError(ValueError):
    """An image file that cannot be read or decoded (the message names it)."""


def load_rgb(path: str) -> np.ndarray:
    """Decode `path` with Pillow to an RGB uint8 array [H, W, 3]; ImageError on failure."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"image {path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"image {path}: cannot decode ({type(e).__name__}: {e})") from None
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"image {path}: empty image of shape {arr.shape}")
    return arr


def _weights(in_size: int, out_size: int):
    # Half-pixel centres, as tf.image.resize (TF2) and TFLite RESIZE_BILINEAR
    # with half_pixel_centers=True.
    scale = in_size / out_size
    x = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    x_floor = np.floor(x)
    lerp = (x - x_floor).astype(np.float32)
    lower = np.clip(x_floor, 0, in_size - 1).astype(np.int64)
    upper = np.clip(np.ceil(x), 0, in_size - 1).astype(np.int64)
    return lower, upper, lerp


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of [H, W, C] to [height, width, C] as float32 (the rule, before rounding)."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"expected an [H, W, C] image, got shape {image.shape}")
    h, w = image.shape[:2]
    src = image.astype(np.float32)
    if (h, w) == (height, width):
        return src
    y0, y1, ly = _weights(h, height)
    x0, x1, lx = _weights(w, width)
    top = src[y0]
    bottom = src[y1]
    ly = ly[:, None, None]
    rows = top + (bottom - top) * ly
    left = rows[:, x0]
    right = rows[:, x1]
    return left + (right - left) * lx[None, :, None]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round half to even and clip to uint8 (the rule's last step)."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def prepare(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An RGB (or grey) image resized to the model input by the rule: uint8 [height, width, 3]."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    return to_uint8(resize_bilinear(image, height, width))


def list_images(folder: str, recursive: bool = True) -> list[str]:
    """Image files under `folder` (sorted); ValueError if it is not a folder."""
    if not os.path.isdir(folder):
        raise ValueError(f"image folder {folder}: not a directory")
    found = []
    if recursive:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in files:
                if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                    found.append(os.path.join(root, name))
    else:
        for name in os.listdir(folder):
            p = os.path.join(folder, name)
            if os.path.isfile(p) and name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                found.append(p)
    return sorted(found)

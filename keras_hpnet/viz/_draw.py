"""Drawing helpers shared by the pictures: fonts, colours, colour maps, PNG output.

Numpy and Pillow only (no TensorFlow, no matplotlib).
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from keras_hpnet.fileio import write_bytes_atomic
from keras_hpnet.preprocessing import prepare, resize_bilinear

GREEN = (0, 200, 0)
RED = (230, 0, 0)
BLUE = (30, 90, 230)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (128, 128, 128)
LIGHT_GREY = (225, 225, 225)
# Fixed palette for boxes / series (distinct, readable on photos and white).
PALETTE = (
    (255, 215, 0),
    (0, 255, 255),
    (255, 0, 255),
    (255, 128, 0),
    (0, 255, 0),
    (255, 255, 255),
    (128, 0, 255),
    (255, 0, 0),
)


@functools.lru_cache(maxsize=8)
def font(size: int = 12) -> ImageFont.ImageFont:
    """Pillow's built-in font at `size` pixels (scalable when FreeType is there)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError):  # Pillow built without FreeType
        return ImageFont.load_default()


def text_size(draw: ImageDraw.ImageDraw, text: str, fnt) -> tuple[int, int]:
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=fnt)
    return x1 - x0, y1


def as_uint8_image(image, name: str = "image") -> np.ndarray:
    """An RGB uint8 `[H, W, 3]` copy of `image` (uint8, or float in 0..255)."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"{name}: expected an RGB image [H, W, 3], got shape {a.shape}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.dtype != np.uint8:
        a = np.clip(np.nan_to_num(a.astype(np.float64)), 0, 255).round().astype(np.uint8)
    return a


def resize(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """An RGB uint8 image resized by the image rule (keras_hpnet.preprocessing.prepare:
    bilinear, half-pixel centres, no antialias), so a picture shows the pixels a
    model of that input size is fed."""
    h, w = size_hw
    if image.shape[:2] == (h, w):
        return image
    return prepare(image, h, w)


def resize_map(m: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D float map to `size_hw` (the same interpolation, unrounded)."""
    h, w = size_hw
    m = np.asarray(m, dtype=np.float32)
    if m.shape == (h, w):
        return m
    return resize_bilinear(m[:, :, None], h, w)[:, :, 0]


# A perceptually ordered "jet-like" colour map: dark blue -> cyan -> yellow -> red.
_CMAP_STOPS = np.array(
    [
        [0.00, 0, 0, 130],
        [0.25, 0, 110, 255],
        [0.50, 0, 230, 200],
        [0.75, 255, 230, 0],
        [1.00, 220, 0, 0],
    ],
    dtype=np.float64,
)


def colormap(values: np.ndarray) -> np.ndarray:
    """Map values in 0..1 to RGB uint8 (`[..., 3]`)."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0)
    out = np.empty(v.shape + (3,), dtype=np.float64)
    for c in range(3):
        out[..., c] = np.interp(v, _CMAP_STOPS[:, 0], _CMAP_STOPS[:, c + 1])
    return out.round().astype(np.uint8)


def normalize_map(m: np.ndarray) -> np.ndarray:
    """Scale a map to 0..1 by its own min and max (a flat map becomes 0.5)."""
    m = np.nan_to_num(np.asarray(m, dtype=np.float64))
    lo, hi = float(m.min()), float(m.max())
    if hi - lo < 1e-12:
        return np.full(m.shape, 0.5)
    return (m - lo) / (hi - lo)


def stack_images(images, *, title: str | None = None, gap: int = 4) -> np.ndarray:
    """Stack RGB pictures top to bottom on white (left-aligned), with an optional title."""
    images = [as_uint8_image(im, f"images[{i}]") for i, im in enumerate(images)]
    if not images:
        raise ValueError("stack_images: no images")
    fnt = font(13)
    title_h = 20 if title else 0
    width = max(im.shape[1] for im in images)
    if title:
        width = max(width, 12 + text_size(ImageDraw.Draw(Image.new("RGB", (1, 1))), title, fnt)[0])
    height = title_h + sum(im.shape[0] for im in images) + gap * (len(images) - 1)
    canvas = Image.new("RGB", (width, height), WHITE)
    if title:
        ImageDraw.Draw(canvas).text((6, 3), title, fill=BLACK, font=fnt)
    y = title_h
    for im in images:
        canvas.paste(Image.fromarray(im), (0, y))
        y += im.shape[0] + gap
    return np.asarray(canvas)


def encode_png(image) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(as_uint8_image(image)).save(buf, format="PNG")
    return buf.getvalue()


def save_png(image, path: str) -> str:
    """Write an RGB array as a PNG atomically; returns `path`."""
    write_bytes_atomic(path, encode_png(image))
    return path

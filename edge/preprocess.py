"""Image decoding and resizing for the edge runtime (numpy + Pillow, no TF).

The image rule is :mod:`keras_hpnet.preprocessing` (numpy-only, shared with
training and export): decode to RGB, bilinear resize on half-pixel centres with
no antialiasing, round to uint8. The model normalises internally, so callers
feed raw pixels.
"""

from __future__ import annotations

import os

from keras_hpnet.preprocessing import IMAGE_EXTENSIONS, ImageError, prepare, resize_bilinear
from keras_hpnet.preprocessing import load_rgb as load_image

__all__ = ["IMAGE_EXTENSIONS", "ImageError", "list_images", "load_image", "prepare", "resize_bilinear"]


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

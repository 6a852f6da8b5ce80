"""Image decoding and resizing for the edge runtime (numpy + Pillow, no TF).

The image rule is :mod:`keras_hpnet.preprocessing` (numpy-only, shared with
training and export): decode to RGB, bilinear resize on half-pixel centres with
no antialiasing, round to uint8. The model normalises internally, so callers
feed raw pixels.
"""

from __future__ import annotations

from keras_hpnet.preprocessing import IMAGE_EXTENSIONS, ImageError, list_images, prepare, resize_bilinear
from keras_hpnet.preprocessing import load_rgb as load_image

__all__ = ["IMAGE_EXTENSIONS", "ImageError", "list_images", "load_image", "prepare", "resize_bilinear"]

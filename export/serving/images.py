"""Encoded image bytes -> model pixels, with the pixel limit checked first.

The exported ``serve_image_bytes`` graph (export.saved_model) and the
development server (export.serving.core) use the same two functions: the
image size is read from the encoded header (JPEG, PNG, GIF, BMP, WebP) before
anything is decoded, so a small file claiming a huge image is refused with
INVALID_ARGUMENT without allocating it (issue 12 §4); the decoded uint8 image
is then resized by the image rule (keras_hpnet.data.resize.resize_uint8,
docs/design.md), never cast to float at full size.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from keras_hpnet.data.resize import resize_uint8

FORMATS = "JPEG/PNG/GIF/BMP/WebP"
_HEAD = 32  # bytes of header read; every size field below lies in them


def _field(head, offset: int, size: int, little_endian: bool):
    """Unsigned integer of `size` bytes at `offset` of the 32-byte `head`."""
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(head, offset, size), tf.uint8), tf.int64)
    weights = tf.constant([256**i for i in range(size)], tf.int64)
    return tf.reduce_sum(raw * (weights if little_endian else weights[::-1]))


def _signed32(v):
    return tf.where(v >= 2**31, v - 2**32, v)


def _webp_size(head):
    kind = tf.strings.substr(head, 12, 4)
    lossless = _field(head, 21, 4, True)  # VP8L: 14 bits width-1, 14 bits height-1
    return tf.case(
        [
            (tf.equal(kind, b"VP8 "), lambda: tf.stack([_field(head, 28, 2, True) % 2**14, _field(head, 26, 2, True) % 2**14])),
            (tf.equal(kind, b"VP8L"), lambda: tf.stack([(lossless // 2**14) % 2**14 + 1, lossless % 2**14 + 1])),
            (tf.equal(kind, b"VP8X"), lambda: tf.stack([_field(head, 27, 3, True) + 1, _field(head, 24, 3, True) + 1])),
        ],
        default=lambda: tf.constant([-1, -1], tf.int64),
    )


def _bmp_size(head):
    core = tf.equal(_field(head, 14, 4, True), 12)  # BITMAPCOREHEADER: 16-bit sizes
    return tf.cond(
        core,
        lambda: tf.stack([_field(head, 20, 2, True), _field(head, 18, 2, True)]),
        lambda: tf.abs(tf.stack([_signed32(_field(head, 22, 4, True)), _signed32(_field(head, 18, 4, True))])),
    )


def encoded_image_size(data):
    """int64 ``[height, width]`` of one encoded image, read from its header
    without decoding it; ``[-1, -1]`` for a format not in :data:`FORMATS`."""
    data = tf.convert_to_tensor(data, tf.string)
    head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, _HEAD), b"\0" * _HEAD]), 0, _HEAD)
    magic = lambda n: tf.strings.substr(head, 0, n)  # noqa: E731
    return tf.case(
        [
            (tf.equal(magic(3), b"\xff\xd8\xff"), lambda: tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)),
            (tf.equal(magic(8), b"\x89PNG\r\n\x1a\n"), lambda: tf.stack([_field(head, 20, 4, False), _field(head, 16, 4, False)])),
            (tf.equal(magic(4), b"GIF8"), lambda: tf.stack([_field(head, 8, 2, True), _field(head, 6, 2, True)])),
            (tf.equal(magic(2), b"BM"), lambda: _bmp_size(head)),
            (tf.logical_and(tf.equal(magic(4), b"RIFF"), tf.equal(tf.strings.substr(head, 8, 4), b"WEBP")), lambda: _webp_size(head)),
        ],
        default=lambda: tf.constant([-1, -1], tf.int64),
    )


def check_image_size(size, max_pixels: int):
    """Assert ops: `size` (from :func:`encoded_image_size`) is a known format
    of at most `max_pixels` pixels; fail with InvalidArgument naming both."""
    pixels = size[0] * size[1]
    known = tf.debugging.Assert(
        tf.reduce_all(size >= 0), [f"image_bytes: not a {FORMATS} image (unrecognised header)"]
    )
    small = tf.debugging.Assert(
        pixels <= max_pixels,
        [tf.strings.format(
            "image_bytes: a {}x{} image ({} pixels) is over the limit of {} pixels (max_image_pixels)",
            (size[0], size[1], pixels, tf.constant(max_pixels, tf.int64)),
        )],
    )
    return [known, small]


def decode_for_model(data, height: int, width: int, max_pixels: int):
    """One encoded image -> uint8 ``[height, width, 3]``: size checked from
    the header, then decoded (first frame), then resized by the image rule."""
    with tf.control_dependencies(check_image_size(encoded_image_size(data), max_pixels)):
        image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    return tf.ensure_shape(resize_uint8(image, height, width), (height, width, 3))


@functools.cache
def _size_fn():
    return tf.function(encoded_image_size, input_signature=[tf.TensorSpec([], tf.string)], autograph=False)


def image_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from the header of `data` (eagerly, for the server's
    check before running a model); None if the header cannot be read."""
    try:
        h, w = (int(v) for v in _size_fn()(tf.constant(data, tf.string)).numpy())
    except tf.errors.OpError:  # e.g. a JPEG whose markers are corrupt
        return None
    return None if h < 0 else (h, w)

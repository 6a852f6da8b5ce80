"""The serving contract of an exported model: signature, input and output
names, and the request bounds (docs/serving.md "Signatures", "Bounds").

Shared by the exporter (export.saved_model), the server and the clients;
imports nothing heavy.
"""

from __future__ import annotations

DEFAULT_SIGNATURE = "serving_default"  # images uint8 [N, H, W, 3]
BYTES_SIGNATURE = "serve_image_bytes"  # image_bytes string [N]
METADATA_SIGNATURE = "metadata"  # no inputs -> metadata_json
IMAGES_INPUT = "images"
BYTES_INPUT = "image_bytes"
EMBEDDING_OUTPUT = "embedding"
ATTRIBUTES_OUTPUT = "attributes"
METADATA_OUTPUT = "metadata_json"

# Largest batch a server accepts (checked from the declared shape, before any
# work); the clients' default request size (32) is below it.
DEFAULT_MAX_BATCH_SIZE = 64
# Largest decoded image (height * width) serve_image_bytes accepts, checked
# from the encoded header before decoding: 4096 x 4096 (a 12 MP photo fits).
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
# Largest encoded image, bytes.
DEFAULT_MAX_IMAGE_BYTES = 16 << 20


class ServingError(Exception):
    """A request refused or failed; `code` is a gRPC status name (e.g. "NOT_FOUND")."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

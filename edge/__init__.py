"""Edge runtime: LiteRT only, never TensorFlow.

Runs models exported by `export.tflite` on a device with `ai-edge-litert`
(or `tflite-runtime`), numpy and Pillow: embeddings and attributes of person
crops, a gallery of known people, queries and a stream of crops. See
docs/edge.md.
"""

from edge.gallery import Gallery, Match, build_gallery, parse_identity
from edge.preprocess import ImageError, load_image, prepare
from edge.runtime import EdgeModel, ModelError, make_interpreter
from edge.stream import Assignment, IdentityAssigner

__all__ = [
    "Assignment",
    "EdgeModel",
    "Gallery",
    "IdentityAssigner",
    "ImageError",
    "Match",
    "ModelError",
    "build_gallery",
    "load_image",
    "make_interpreter",
    "parse_identity",
    "prepare",
]

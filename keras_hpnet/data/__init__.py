"""tf.data input pipeline and augmentation (see docs/design.md, "Input pipeline").

`keras_hpnet.data.validate` (the image check) needs no TensorFlow; the
pipeline names below load it on first use.
"""

import importlib

from keras_hpnet.data.validate import PipelineReport, check_image, check_images, clear_check_cache

_PIPELINE = ("clear_image_cache", "epoch_order", "make_dataset", "steps_per_epoch")
_TRACKLETS = ("TrackletReport", "check_tracklets", "chunk_table", "frame_positions", "tracklet_dataset",
              "tracklet_frames")

__all__ = [
    "PipelineReport",
    "check_image",
    "check_images",
    "clear_check_cache",
    *_PIPELINE,
    *_TRACKLETS,
]


def __getattr__(name):
    if name in _PIPELINE:
        return getattr(importlib.import_module("keras_hpnet.data.pipeline"), name)
    if name in _TRACKLETS:
        return getattr(importlib.import_module("keras_hpnet.data.tracklets"), name)
    raise AttributeError(f"module 'keras_hpnet.data' has no attribute {name!r}")

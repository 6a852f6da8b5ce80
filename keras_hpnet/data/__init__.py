"""tf.data input pipeline and augmentation (see docs/design.md, "Input pipeline")."""

from keras_hpnet.data.pipeline import (
    clear_image_cache,
    epoch_order,
    make_dataset,
    steps_per_epoch,
)
from keras_hpnet.data.validate import PipelineReport, check_image, check_images, clear_check_cache

__all__ = [
    "PipelineReport",
    "check_image",
    "check_images",
    "clear_check_cache",
    "clear_image_cache",
    "epoch_order",
    "make_dataset",
    "steps_per_epoch",
]

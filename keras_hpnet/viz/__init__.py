"""keras_hpnet.viz: pictures from arrays (numpy + Pillow only, no TensorFlow).

Pure functions returning RGB uint8 arrays `[H, W, 3]`; `save_png` writes one
atomically. `ranked_list_pictures`, `attention_pictures` and
`attribute_picture` draw a keras_hpnet.evaluation.Evaluation (docs/evaluation.md).
"""

from keras_hpnet.viz._draw import colormap, encode_png, save_png, stack_images
from keras_hpnet.viz.attention_overlay import (attention_overlay_image, attention_pictures, attention_rows, draw_boxes,
                                              overlay_map)
from keras_hpnet.viz.attribute_chart import attribute_bar_chart, attribute_picture
from keras_hpnet.viz.ranked_list import ranked_list_image, ranked_list_pictures

__all__ = [
    "attention_overlay_image",
    "attention_pictures",
    "attention_rows",
    "attribute_bar_chart",
    "attribute_picture",
    "colormap",
    "draw_boxes",
    "encode_png",
    "overlay_map",
    "ranked_list_image",
    "ranked_list_pictures",
    "save_png",
    "stack_images",
]

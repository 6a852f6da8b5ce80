"""keras_hpnet.viz: pictures from arrays (numpy + Pillow only, no TensorFlow).

Pure functions returning RGB uint8 arrays `[H, W, 3]`; `save_png` writes one
atomically.
"""

from keras_hpnet.viz._draw import colormap, encode_png, save_png, stack_images
from keras_hpnet.viz.attention_overlay import attention_overlay_image, draw_boxes, overlay_map
from keras_hpnet.viz.attribute_chart import attribute_bar_chart
from keras_hpnet.viz.ranked_list import ranked_list_image

__all__ = [
    "attention_overlay_image",
    "attribute_bar_chart",
    "colormap",
    "draw_boxes",
    "encode_png",
    "overlay_map",
    "ranked_list_image",
    "save_png",
    "stack_images",
]

"""Attribute-search picture: the top-k crops of a query with its attributes printed (Pillow, numpy)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from keras_hpnet.viz import _draw


def attribute_search_picture(query, images, probabilities, scores, *, relevant=None, tile_hw=(128, 64),
                             per_row: int = 10) -> np.ndarray:
    """RGB uint8 grid of ranked crops for an attribute query.

    `query`: the AttributeQuery; `images`: the ranked crops (RGB);
    `probabilities` `[K, A]` their attribute probabilities; `scores` `[K]`
    their query scores. Under each crop: rank, score, and p of every attribute
    the query names. `relevant` (optional bool `[K]`, e.g. `query.matches(labels)`)
    frames a crop green when its labels satisfy the query, red otherwise.
    """
    images = [_draw.as_uint8_image(im, f"images[{i}]") for i, im in enumerate(images)]
    probs = np.asarray(probabilities, np.float64).reshape(len(images), -1)
    scores = np.asarray(scores, np.float64).ravel()
    if len(scores) != len(images):
        raise ValueError(f"attribute_search_picture: {len(images)} images but {len(scores)} scores")
    names = [query.attribute_names[c] for c in dict.fromkeys(query.columns)]
    cols = list(dict.fromkeys(query.columns))
    th, tw = tile_hw
    border, pad = 3, 6
    fnt = _draw.font(11)
    line_h = 12
    caption_h = line_h * (1 + len(cols))
    cell_w = max(tw + 2 * border, 7 * (max([len(n) for n in names] + [4]) + 5)) + pad  # 'name 0.00'
    cell_h = th + 2 * border + caption_h + pad
    cols_n = max(1, min(per_row, len(images)))
    rows_n = max(1, -(-len(images) // cols_n))
    title = f"query: {query.text}   (top {len(images)})"
    width = max(pad + cols_n * cell_w, 12 + 7 * len(title))
    canvas = Image.new("RGB", (width, 22 + rows_n * cell_h), _draw.WHITE)
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 4), title, fill=_draw.BLACK, font=_draw.font(13))
    for k, im in enumerate(images):
        x = pad + (k % cols_n) * cell_w
        y = 22 + (k // cols_n) * cell_h
        colour = _draw.GREY if relevant is None else (_draw.GREEN if relevant[k] else _draw.RED)
        draw.rectangle([x, y, x + tw + 2 * border - 1, y + th + 2 * border - 1], fill=colour)
        canvas.paste(Image.fromarray(_draw.resize(im, (th, tw))), (x + border, y + border))
        ty = y + th + 2 * border + 1
        draw.text((x, ty), f"{k + 1}. {scores[k]:.3f}", fill=_draw.BLACK, font=fnt)
        for j, (c, n) in enumerate(zip(cols, names)):
            draw.text((x, ty + line_h * (j + 1)), f"{n} {probs[k, c]:.2f}", fill=_draw.GREY, font=fnt)
    return np.asarray(canvas)

"""Attention overlays: where a network looks, drawn over the pedestrian image.

Used for HA-CNN's soft (spatial x channel) attention maps per level and its
hard-attention regions (Li et al., CVPR 2018, Sec. 3.1 and Fig. 5), and for
HydraPlus-Net's multi-directional attention (MDA) maps (Liu et al., ICCV 2017,
Sec. 3.2 and Fig. 4).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from keras_hpnet.viz import _draw


def overlay_map(image, attention, *, alpha: float = 0.5) -> np.ndarray:
    """Blend one attention map (any resolution) over `image` as a heat map.

    The map is resized to the image, scaled to 0..1 by its own min/max
    (attention values are relative), coloured blue (low) to red (high) and
    mixed in with weight `alpha`.
    """
    img = _draw.as_uint8_image(image)
    m = np.asarray(attention, dtype=np.float32)
    m = np.squeeze(m)
    if m.ndim != 2:
        raise ValueError(f"attention map: expected a 2-D map [h, w], got shape {np.shape(attention)}")
    heat = _draw.colormap(_draw.normalize_map(_draw.resize_map(m, img.shape[:2])))
    out = (1.0 - alpha) * img.astype(np.float32) + alpha * heat.astype(np.float32)
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def draw_boxes(image, boxes, *, labels: Sequence[str] | None = None, width: int = 2) -> np.ndarray:
    """Draw boxes `(y1, x1, y2, x2)` given as fractions 0..1 of the image height/width
    (the `tf.image` convention, as `HACNN.attention_maps` returns them).

    Box `i` is outlined in `_draw.PALETTE[i]`; boxes are clipped to the image.
    """
    img = Image.fromarray(_draw.as_uint8_image(image))
    draw = ImageDraw.Draw(img)
    h, w = img.height, img.width
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    fnt = _draw.font(10)
    for i, (y0, x0, y1, x1) in enumerate(b):
        colour = _draw.PALETTE[i % len(_draw.PALETTE)]
        px0 = int(round(np.clip(min(x0, x1), 0, 1) * (w - 1)))
        px1 = int(round(np.clip(max(x0, x1), 0, 1) * (w - 1)))
        py0 = int(round(np.clip(min(y0, y1), 0, 1) * (h - 1)))
        py1 = int(round(np.clip(max(y0, y1), 0, 1) * (h - 1)))
        draw.rectangle([px0, py0, px1, py1], outline=colour, width=width)
        if labels is not None and i < len(labels) and labels[i]:
            tx, ty = px0 + width + 1, py0 + width
            bx0, by0, bx1, by1 = draw.textbbox((tx, ty), str(labels[i]), font=fnt)
            draw.rectangle([bx0 - 1, by0 - 1, bx1 + 1, by1 + 1], fill=_draw.BLACK)
            draw.text((tx, ty), str(labels[i]), fill=colour, font=fnt)
    return np.asarray(img)


def attention_overlay_image(
    image,
    maps=(),
    *,
    map_titles: Sequence[str] | None = None,
    boxes=None,
    box_labels: Sequence[str] | None = None,
    map_boxes=None,
    alpha: float = 0.5,
    scale: float = 2.0,
    columns: int | None = None,
    title: str | None = None,
) -> np.ndarray:
    """One image with its attention: returns RGB uint8 `[H, W, 3]`.

    Panels, left to right then wrapping after `columns`: the input image (with
    `boxes` drawn on it when given), then one heat-map overlay per map.

    Args:
      image: RGB `[h, w, 3]`, uint8 or float 0..255.
      maps: attention maps, a sequence of 2-D arrays or an array `[M, h', w']`
        (any resolution; each is resized to the image and min-max scaled).
      map_titles: one caption per map (e.g. "soft L1").
      boxes: `[R, 4]` regions `(y1, x1, y2, x2)` as fractions of height/width
        (e.g. HA-CNN hard-attention regions); drawn on the input panel.
      box_labels: text drawn inside each box (input panel and `map_boxes`).
      map_boxes: per map, `[R, 4]` regions drawn over that map's overlay
        (or None), e.g. each HA-CNN level's regions over its soft map.
      alpha: heat-map opacity.
      scale: panel magnification (pedestrian crops are small).
      columns: panels per row (default: all in one row).
      title: optional line of text on top.
    """
    img = _draw.as_uint8_image(image)
    maps = [np.squeeze(np.asarray(m, dtype=np.float32)) for m in maps]
    for i, m in enumerate(maps):
        if m.ndim != 2:
            raise ValueError(f"attention_overlay_image: map {i} must be 2-D [h, w], got shape {m.shape}")
    if map_titles is not None and len(map_titles) != len(maps):
        raise ValueError(f"attention_overlay_image: {len(map_titles)} map titles for {len(maps)} maps")
    if map_boxes is not None and len(map_boxes) != len(maps):
        raise ValueError(f"attention_overlay_image: {len(map_boxes)} map_boxes entries for {len(maps)} maps")

    ph = max(8, int(round(img.shape[0] * scale)))
    pw = max(4, int(round(img.shape[1] * scale)))
    big = _draw.resize(img, (ph, pw))
    line = max(1, int(round(scale)))
    first = draw_boxes(big, boxes, labels=box_labels, width=line) if boxes is not None else big
    panels = [(first, "input" + (" + regions" if boxes is not None else ""))]
    for i, m in enumerate(maps):
        panel = overlay_map(big, m, alpha=alpha)
        if map_boxes is not None and map_boxes[i] is not None:
            panel = draw_boxes(panel, map_boxes[i], labels=box_labels, width=line)
        panels.append((panel, map_titles[i] if map_titles is not None else f"map {i}"))

    n = len(panels)
    cols = n if not columns else max(1, min(int(columns), n))
    nrows = (n + cols - 1) // cols
    pad, cap_h = 6, 14
    title_h = 20 if title else 0
    width = pad + cols * (pw + pad)
    if title:  # never clip the title
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        width = max(width, 2 * pad + _draw.text_size(probe, title, _draw.font(13))[0])
    height = title_h + nrows * (cap_h + ph + pad) + pad
    canvas = Image.new("RGB", (width, height), _draw.WHITE)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 3), title, fill=_draw.BLACK, font=_draw.font(13))
    fnt = _draw.font(11)
    for i, (panel, caption) in enumerate(panels):
        r, c = divmod(i, cols)
        x = pad + c * (pw + pad)
        y = title_h + pad + r * (cap_h + ph + pad)
        cw, _ = _draw.text_size(draw, caption, fnt)
        if cw > pw:  # shorten captions that do not fit the panel
            while caption and _draw.text_size(draw, caption + "…", fnt)[0] > pw:
                caption = caption[:-1]
            caption += "…"
            cw, _ = _draw.text_size(draw, caption, fnt)
        draw.text((x + max(0, (pw - cw) // 2), y), caption, fill=_draw.BLACK, font=fnt)
        canvas.paste(Image.fromarray(panel), (x, y + cap_h))
    return np.asarray(canvas)



def attention_rows(maps: dict, n: int) -> list:
    """Rows of panels for image `n` of a `model.attention_maps` output.

    Each row is a dict of `attention_overlay_image` arguments (`maps`,
    `map_titles`, `map_boxes`, `boxes`) plus a `label`:
    - HA-CNN / HAT-CNN: one row, `soft_level{i}` [N, h, w] each with that
      level's `boxes_level{i}` [N, 4, 4] (y1, x1, y2, x2) drawn over it, the
      input panel showing level 1's regions;
    - HP-Net: one row per MDA module, `mda{m}` [N, h, w, K] -> K maps.
    Other [N, h, w] arrays join the first row; other [N, h, w, K] get a row each.
    """
    flat = {"label": "", "maps": [], "map_titles": [], "map_boxes": [], "boxes": None}
    rows = []
    for key in sorted(maps):
        a = np.asarray(maps[key])
        if key.startswith(("boxes_", "translations_")) or a.ndim < 3:
            continue
        if a.ndim == 3:
            level = key[len("soft_level"):] if key.startswith("soft_level") else None
            box = maps.get(f"boxes_level{level}") if level else None
            flat["maps"].append(a[n])
            flat["map_titles"].append(f"soft L{level}" if level else key)
            flat["map_boxes"].append(None if box is None else np.asarray(box)[n])
        elif a.ndim == 4:
            name = key.upper() if key.startswith("mda") else key
            rows.append({"label": f"{name}: {a.shape[-1]} attention maps ({a.shape[1]}x{a.shape[2]})",
                         "maps": [a[n, ..., k] for k in range(a.shape[-1])],
                         "map_titles": [f"{name} #{k + 1}" for k in range(a.shape[-1])],
                         "map_boxes": None, "boxes": None})
    if "boxes_level1" in maps:
        flat["boxes"] = np.asarray(maps["boxes_level1"])[n]
    if not any(b is not None for b in flat["map_boxes"]):
        flat["map_boxes"] = None
    if flat["maps"] or flat["boxes"] is not None:
        rows.insert(0, flat)
    return rows


def attention_pictures(attention_maps, records, *, input_size, count=3, title="attention") -> list:
    """Attention-overlay pictures of the first `count` readable `records`.

    `attention_maps`: the model's `attention_maps` (uint8 images [N, H, W, 3]
    -> dict of arrays, e.g. `HACNN.attention_maps`); images are the model's
    input pixels (keras_hpnet.preprocessing). Empty when nothing is drawable.
    """
    from keras_hpnet import preprocessing

    if count <= 0 or not records:
        return []
    images = []
    for r in records:
        if len(images) >= count:
            break
        try:
            images.append((r, preprocessing.prepare(preprocessing.load_rgb(r.path), *input_size)))
        except preprocessing.ImageError:
            continue
    if not images:
        return []
    maps = attention_maps(np.stack([im for _, im in images]))
    pictures = []
    for n, (r, image) in enumerate(images):
        rows = attention_rows(maps, n)
        if not rows:
            return []
        scale = max(2.0 if len(rows) == 1 else 1.0, 80.0 / input_size[1])
        panels = [attention_overlay_image(
            image, row["maps"], map_titles=row["map_titles"], boxes=row["boxes"], map_boxes=row["map_boxes"],
            box_labels=["1", "2", "3", "4"] if row["boxes"] is not None or row["map_boxes"] else None,
            title=row["label"] or None, scale=scale) for row in rows]
        pictures.append(_draw.stack_images(panels, title=f"{title}: {os.path.basename(r.path)} (id {r.pid})"))
    return pictures

"""Ranked-list picture: each query beside its top-k gallery matches.

The standard re-id qualitative figure (e.g. HA-CNN, CVPR 2018, Fig. 6): one row
per query, the query image on the left (blue frame), then the gallery images in
rank order, framed green when they show the query's identity and red when not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from keras_hpnet.viz import _draw


def ranked_list_image(
    query_images,
    gallery_images,
    correct,
    *,
    query_captions: Sequence[str] | None = None,
    gallery_captions: Sequence[Sequence[str]] | None = None,
    title: str | None = None,
    scale: float = 1.0,
    border: int = 4,
) -> np.ndarray:
    """Draw queries and their ranked gallery matches; returns RGB uint8 `[H, W, 3]`.

    Args:
      query_images: `Q` RGB images (`[Q, h, w, 3]` array or a list), uint8 or
        float 0..255. Every tile is drawn at the first query's size x `scale`.
      gallery_images: for each query, its ranked gallery images (best first);
        an array `[Q, K, h, w, 3]` or a list of lists (rows may be shorter).
      correct: for each query, one bool per gallery image (same identity).
      query_captions / gallery_captions: optional text under each tile
        (e.g. the identity and the distance).
      title: optional line of text on top.
      scale: tile magnification.
      border: frame width in pixels (drawn inside a margin, never over the image).
    """
    queries = [_draw.as_uint8_image(q, f"query_images[{i}]") for i, q in enumerate(query_images)]
    if not queries:
        raise ValueError("ranked_list_image: no query images")
    if len(gallery_images) != len(queries) or len(correct) != len(queries):
        raise ValueError(
            f"ranked_list_image: {len(queries)} queries but {len(gallery_images)} gallery rows "
            f"and {len(correct)} rows of correct flags"
        )
    rows = []
    for i, (row, flags) in enumerate(zip(gallery_images, correct)):
        row = [_draw.as_uint8_image(g, f"gallery_images[{i}][{j}]") for j, g in enumerate(row)]
        flags = [bool(f) for f in np.asarray(flags).reshape(-1)]
        if len(flags) != len(row):
            raise ValueError(f"ranked_list_image: query {i} has {len(row)} gallery images "
                             f"but {len(flags)} correct flags")
        rows.append((row, flags))
    for name, caps in (("query_captions", query_captions), ("gallery_captions", gallery_captions)):
        if caps is not None and len(caps) != len(queries):
            raise ValueError(f"ranked_list_image: {name} has {len(caps)} entries, expected {len(queries)}")
    border = max(1, int(border))

    th = max(8, int(round(queries[0].shape[0] * scale)))
    tw = max(4, int(round(queries[0].shape[1] * scale)))
    k_max = max([len(r) for r, _ in rows] + [1])
    small = _draw.font(11)
    big = _draw.font(13)
    pad = 4
    gap = 14  # between the query and its gallery
    cell_w = tw + 2 * border + pad
    label_h = 14  # rank numbers / "query" above the tiles
    caption_h = 13 if (query_captions is not None or gallery_captions is not None) else 0
    row_h = label_h + th + 2 * border + caption_h + 2 * pad
    title_h = 20 if title else 0
    width = pad + cell_w + gap + k_max * cell_w + pad
    if title:  # never clip the title
        width = max(width, 2 * pad + _draw.text_size(ImageDraw.Draw(Image.new("RGB", (1, 1))), title, big)[0])
    height = title_h + len(queries) * row_h + pad

    canvas = Image.new("RGB", (width, height), _draw.WHITE)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 3), title, fill=_draw.BLACK, font=big)

    def tile(x: int, y: int, img: np.ndarray, colour, label: str, caption: str | None, label_colour=_draw.BLACK):
        lw, _ = _draw.text_size(draw, label, small)
        draw.text((x + (tw + 2 * border - lw) // 2, y), label, fill=label_colour, font=small)
        top = y + label_h
        draw.rectangle([x, top, x + tw + 2 * border - 1, top + th + 2 * border - 1], fill=colour)
        canvas.paste(Image.fromarray(_draw.resize(img, (th, tw))), (x + border, top + border))
        if caption:
            cw, _ = _draw.text_size(draw, caption, small)
            cx = x + max(0, (tw + 2 * border - cw) // 2)
            draw.text((cx, top + th + 2 * border + 1), caption, fill=label_colour, font=small)

    for qi, (q, (row, flags)) in enumerate(zip(queries, rows)):
        y = title_h + qi * row_h + pad
        qcap = query_captions[qi] if query_captions is not None else None
        tile(pad, y, q, _draw.BLUE, "query", qcap, _draw.BLUE)
        sep_x = pad + cell_w + gap // 2 - 1
        draw.line([sep_x, y + label_h, sep_x, y + label_h + th + 2 * border], fill=_draw.GREY, width=1)
        x0 = pad + cell_w + gap
        caps = gallery_captions[qi] if gallery_captions is not None else None
        for k, (g, ok) in enumerate(zip(row, flags)):
            colour = _draw.GREEN if ok else _draw.RED
            cap = caps[k] if caps is not None and k < len(caps) else None
            tile(x0 + k * cell_w, y, g, colour, str(k + 1), cap, (0, 130, 0) if ok else (200, 0, 0))
    return np.asarray(canvas)


def ranked_list_pictures(evaluation, dataset, *, input_size, num_queries=8, per_picture=4, top_k=10,
                         reranked=False) -> list:
    """Ranked-list pictures (RGB arrays) of a keras_hpnet.evaluation.Evaluation with re-id results.

    Queries with a true match (as the protocol counts them), spread over the
    list; their top-`top_k` gallery by the Euclidean distances (the re-ranked
    ones with `reranked`), without the items the protocol ignores. Images are
    the model's input pixels (keras_hpnet.preprocessing).
    """
    from keras_hpnet import preprocessing

    q, g = evaluation.query, evaluation.gallery
    dist = evaluation.distmat_rerank if reranked else evaluation.distmat
    if q is None or dist is None or not len(q["pids"]) or num_queries <= 0:
        return []
    q_recs, g_recs = dataset.splits["query"], dataset.splits["gallery"]
    valid = [i for i in range(len(q["pids"]))
             if np.any((g["pids"] == q["pids"][i]) & (g["camids"] != q["camids"][i]))]
    if not valid:
        return []
    chosen = [valid[int(j)] for j in np.unique(np.linspace(0, len(valid) - 1, min(num_queries, len(valid))).round())]
    rows = []
    for i in chosen:
        order = np.argsort(dist[i], kind="stable")
        same_view = (g["pids"][order] == q["pids"][i]) & (g["camids"][order] == q["camids"][i])
        order = order[~same_view & (g["pids"][order] != -1)][:top_k]  # protocol: ignored items
        rows.append((i, order))

    def image(record):
        return preprocessing.prepare(preprocessing.load_rgb(record.path), *input_size)

    pictures = []
    per_picture = max(1, int(per_picture))
    for start in range(0, len(rows), per_picture):
        part = rows[start:start + per_picture]
        query_images = [image(q_recs[q["index"][i]]) for i, _ in part]
        gallery_images = [[image(g_recs[g["index"][j]]) for j in order] for _, order in part]
        correct = [g["pids"][order] == q["pids"][i] for i, order in part]
        q_caps = [f"id {q['pids'][i]} c{q['camids'][i] + 1}" for i, _ in part]
        g_caps = [[f"id {g['pids'][j]}" for j in order] for _, order in part]
        title = (f"{dataset.name}: top-{top_k} gallery per query ({'re-ranked' if reranked else 'Euclidean'}); "
                 "green = same identity, red = different")
        pictures.append(ranked_list_image(query_images, gallery_images, correct, query_captions=q_caps,
                                          gallery_captions=g_caps, title=title,
                                          scale=max(1.0, 48.0 / input_size[1])))
    return pictures

"""Per-attribute bar chart (e.g. each attribute's mA term and its positive ratio).

mA, the label-based pedestrian-attribute metric used by HydraPlus-Net (Liu et
al., ICCV 2017, Sec. 5.1) and PA-100K, averages (TP/P + TN/N)/2 over the
attributes; the chart shows each attribute's term so weak attributes stand out,
beside how rare the attribute is (its positive ratio).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from keras_hpnet.viz import _draw

SERIES_COLOURS = (_draw.BLUE, (245, 140, 0), (0, 160, 90), (150, 60, 200))


def attribute_bar_chart(
    names: Sequence[str],
    values,
    *,
    series_names: Sequence[str] | None = None,
    title: str | None = None,
    max_value: float = 1.0,
    reference: float | None = None,
    reference_label: str | None = None,
    percent: bool = True,
    bar_length: int = 300,
) -> np.ndarray:
    """Horizontal bars, one group per attribute; returns RGB uint8 `[H, W, 3]`.

    Args:
      names: attribute names (one row each, top to bottom).
      values: `[A]` for one series or `[S, A]` for S series drawn side by side
        (series `s` in `SERIES_COLOURS[s]`). NaN draws no bar and prints "n/a".
      series_names: legend entries, one per series.
      title: text on top.
      max_value: the value that fills `bar_length` pixels (values are clipped).
      reference: draws a vertical grey line at this value (e.g. the mean mA).
      percent: print values as percentages (else with 3 decimals).
    """
    names = [str(n) for n in names]
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2 or v.shape[1] != len(names):
        raise ValueError(f"attribute_bar_chart: values of shape {np.shape(values)} do not match {len(names)} names")
    if v.shape[0] > len(SERIES_COLOURS):
        raise ValueError(f"attribute_bar_chart: at most {len(SERIES_COLOURS)} series, got {v.shape[0]}")
    if series_names is not None and len(series_names) != v.shape[0]:
        raise ValueError(f"attribute_bar_chart: {len(series_names)} series names for {v.shape[0]} series")
    if not max_value > 0:
        raise ValueError(f"attribute_bar_chart: max_value must be positive, got {max_value}")

    fnt = _draw.font(12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max([_draw.text_size(probe, n, fnt)[0] for n in names] + [10])
    n_series = v.shape[0]
    bar_h = 11
    group_h = n_series * bar_h + 7
    pad = 8
    value_w = 46
    title_h = 22 if title else 0
    legend_h = 18 if series_names is not None else 0
    axis_h = 30 if reference_label else 16
    x0 = pad + label_w + 6  # bar origin
    width = x0 + bar_length + value_w + pad
    height = title_h + legend_h + len(names) * group_h + axis_h + pad

    canvas = Image.new("RGB", (width, height), _draw.WHITE)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 4), title, fill=_draw.BLACK, font=_draw.font(14))
    if series_names is not None:
        lx = x0
        for s, name in enumerate(series_names):
            draw.rectangle([lx, title_h + 4, lx + 10, title_h + 14], fill=SERIES_COLOURS[s])
            draw.text((lx + 14, title_h + 2), name, fill=_draw.BLACK, font=fnt)
            lx += 14 + _draw.text_size(draw, name, fnt)[0] + 16
    top = title_h + legend_h
    bottom = top + len(names) * group_h
    # Grid lines at quarters of max_value.
    for q in range(5):
        gx = x0 + int(round(q / 4 * bar_length))
        draw.line([gx, top, gx, bottom], fill=_draw.LIGHT_GREY, width=1)
        tick = q / 4 * max_value
        text = f"{tick:.0%}" if percent else f"{tick:.2g}"
        tw, _ = _draw.text_size(draw, text, _draw.font(10))
        draw.text((gx - tw // 2, bottom + 2), text, fill=_draw.GREY, font=_draw.font(10))

    draw.line([x0 - 1, top, x0 - 1, bottom], fill=_draw.BLACK, width=1)  # axis, left of the bars
    for a, name in enumerate(names):
        gy = top + a * group_h + 3
        nw, _ = _draw.text_size(draw, name, fnt)
        draw.text((x0 - 6 - nw, gy + (n_series * bar_h - 14) // 2), name, fill=_draw.BLACK, font=fnt)
        for s in range(n_series):
            val = v[s, a]
            by = gy + s * bar_h
            if np.isnan(val):
                draw.text((x0 + 2, by - 1), "n/a", fill=_draw.GREY, font=_draw.font(10))
                continue
            length = int(round(np.clip(val / max_value, 0.0, 1.0) * bar_length))
            if length > 0:
                draw.rectangle([x0, by, x0 + length - 1, by + bar_h - 2], fill=SERIES_COLOURS[s])
            text = f"{val:.1%}" if percent else f"{val:.3f}"
            draw.text((x0 + length + 3, by - 1), text, fill=_draw.BLACK, font=_draw.font(10))
    if reference is not None and np.isfinite(reference):
        rx = x0 + int(round(np.clip(reference / max_value, 0.0, 1.0) * bar_length))
        for yy in range(top, bottom, 6):  # dashed
            draw.line([rx, yy, rx, min(yy + 3, bottom)], fill=(90, 90, 90), width=1)
        if reference_label:
            rw, _ = _draw.text_size(draw, reference_label, _draw.font(10))  # under the axis ticks
            draw.text((min(max(rx - rw // 2, 0), width - rw - 2), bottom + 15), reference_label,
                      fill=(90, 90, 90), font=_draw.font(10))
    return np.asarray(canvas)


def attribute_picture(evaluation, dataset_name: str):
    """The per-attribute chart of a keras_hpnet.evaluation.Evaluation (mA term and positive ratio), or None."""
    rows = evaluation.per_attribute
    if not rows:
        return None
    names = [r.get("name", str(r["index"])) for r in rows]
    values = [[r["mA"] for r in rows], [r["pos_ratio"] for r in rows]]
    ma = evaluation.metrics.get("mA")
    return attribute_bar_chart(
        names, values, series_names=["mA term (TP/P + TN/N)/2", "positive ratio"],
        title=f"{dataset_name} ({evaluation.attribute_split}): per-attribute mA",
        reference=ma, reference_label=f"mA {100 * ma:.1f}%" if ma is not None else None)

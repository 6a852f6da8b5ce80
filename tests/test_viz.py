"""keras_hpnet.viz: pictures have the right size and the marks in the right places."""

import numpy as np
import pytest
from PIL import Image

from keras_hpnet import viz
from keras_hpnet.viz import _draw
from keras_hpnet.viz.attribute_chart import SERIES_COLOURS

GREEN, RED, BLUE = np.array(_draw.GREEN), np.array(_draw.RED), np.array(_draw.BLUE)


def solid(rgb, size=(32, 16)):
    return np.full(size + (3,), rgb, np.uint8)


def mask_of(img, colour):
    return np.all(img == np.asarray(colour, np.uint8), axis=-1)


def runs(line):
    """(start, end) of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], line, [False]]).astype(np.int8)
    d = np.diff(padded)
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def bbox(mask):
    ys, xs = np.nonzero(mask)
    return ys.min(), xs.min(), ys.max(), xs.max()


def test_ranked_list_frames_follow_correct_flags():
    correct = [[True, False, False, True, False], [False, True, True, False, False]]
    tiles = [(200, 200, 60), (60, 200, 200)]  # query 0 / query 1 gallery colours
    queries = [solid((90, 90, 90)), solid((150, 150, 150))]
    gallery = [[solid(tiles[q])] * 5 for q in range(2)]
    img = viz.ranked_list_image(queries, gallery, correct, border=3, title="t",
                                query_captions=["a", "b"], gallery_captions=[["x"] * 5, ["y"] * 5])
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    for q in range(2):
        content = mask_of(img, tiles[q])
        y0, _, y1, _ = bbox(content)
        assert y1 - y0 + 1 == 32  # tiles drawn at the query size (scale 1)
        y = (y0 + y1) // 2
        row = img[y]
        # Along the tile row: query frame (blue) first, then one frame per gallery image.
        coloured = [("B", s) for s, _ in runs(mask_of(row[None], BLUE)[0])]
        coloured += [("G", s) for s, _ in runs(mask_of(row[None], GREEN)[0])]
        coloured += [("R", s) for s, _ in runs(mask_of(row[None], RED)[0])]
        seq = [c for c, _ in sorted(coloured, key=lambda t: t[1])]
        expected = ["B", "B"] + [c for ok in correct[q] for c in (("G", "G") if ok else ("R", "R"))]
        assert seq == expected
        # Each frame is `border` pixels wide and the image inside is untouched.
        widths = [e - s for s, e in runs(mask_of(row[None], GREEN)[0]) + runs(mask_of(row[None], RED)[0])]
        assert set(widths) == {3}
        assert content[y].sum() == 5 * 16
    assert mask_of(img, (90, 90, 90)).sum() == 32 * 16  # the query image itself


def test_ranked_list_scale_and_short_rows():
    img = viz.ranked_list_image([solid((1, 2, 3))], [[solid((4, 5, 6))] * 2], [[True, False]], scale=2)
    y0, x0, y1, x1 = bbox(mask_of(img, (1, 2, 3)))
    assert (y1 - y0 + 1, x1 - x0 + 1) == (64, 32)
    # Rows may differ in length (fewer gallery images than top-k).
    img2 = viz.ranked_list_image([solid((1, 2, 3))] * 2, [[solid((4, 5, 6))] * 3, [solid((4, 5, 6))]],
                                 [[1, 0, 0], [1]])
    assert mask_of(img2, (4, 5, 6)).sum() == 4 * 32 * 16
    with pytest.raises(ValueError, match="query 0 has 2 gallery images but 1 correct flags"):
        viz.ranked_list_image([solid((0, 0, 0))], [[solid((0, 0, 0))] * 2], [[True]])
    with pytest.raises(ValueError, match="expected an RGB image"):
        viz.ranked_list_image([np.zeros((4, 4, 5))], [[solid((0, 0, 0))]], [[True]])


def test_attention_overlay_puts_heat_where_the_map_is_high():
    image = solid((97, 131, 53), (40, 20))
    hot = np.zeros((10, 5), np.float32)
    hot[:5, :2] = 1.0  # top-left corner of the map
    img = viz.attention_overlay_image(image, [hot], map_titles=["soft L1"], alpha=1.0, scale=2)
    hi = mask_of(img, _draw.colormap(np.array(1.0)))
    lo = mask_of(img, _draw.colormap(np.array(0.0)))
    assert hi.any() and lo.any()
    panel = bbox(hi | lo)
    h, w = panel[2] - panel[0] + 1, panel[3] - panel[1] + 1
    assert (h, w) == (80, 40)  # image size x scale
    ys, xs = np.nonzero(hi)
    assert (ys - panel[0]).max() < h / 2 and (xs - panel[1]).max() < w / 2  # heat only top-left
    ys, xs = np.nonzero(lo)
    assert (ys - panel[0]).max() == h - 1 and (xs - panel[1]).max() == w - 1
    # The first panel is the untouched (scaled) input.
    assert mask_of(img, (97, 131, 53)).sum() == 80 * 40


def test_attention_boxes_drawn_at_their_place():
    image = solid((97, 131, 53), (40, 20))
    boxes = np.array([[0.5, 0.0, 0.75, 1.0]])  # (y1, x1, y2, x2): third quarter of the height
    img = viz.attention_overlay_image(image, [], boxes=boxes, scale=2)
    colour = _draw.PALETTE[0]
    y0, x0, y1, x1 = bbox(mask_of(img, colour))
    gy0, gx0, gy1, gx1 = bbox(mask_of(img, (97, 131, 53)) | mask_of(img, colour))
    assert (x0, x1) == (gx0, gx1)  # full width
    assert y0 - gy0 == round(0.5 * 79) and y1 - gy0 == round(0.75 * 79)
    # Per-map boxes go over that map's overlay, in the palette order.
    two = np.array([[0.0, 0.0, 0.25, 1.0], [0.25, 0.0, 0.5, 1.0]])
    out = viz.attention_overlay_image(image, [np.ones((4, 2)), np.ones((4, 2))], map_boxes=[None, two],
                                      scale=2, columns=1)
    first, second = mask_of(out, _draw.PALETTE[0]), mask_of(out, _draw.PALETTE[1])
    assert first.any() and second.any()
    assert bbox(first)[0] > 2 * 80  # third panel of a 1-column layout
    assert out.shape[0] > 3 * 80 and out.shape[1] < 2 * 40 + 20


def test_attention_errors():
    with pytest.raises(ValueError, match="map 0 must be 2-D"):
        viz.attention_overlay_image(solid((0, 0, 0)), [np.zeros((2, 3, 4))])
    with pytest.raises(ValueError, match="1 map titles for 2 maps"):
        viz.attention_overlay_image(solid((0, 0, 0)), [np.zeros((2, 3))] * 2, map_titles=["a"])


def test_attribute_bar_chart_bar_lengths():
    names = ["gender", "hat", "backpack", "bag"]
    values = [1.0, 0.5, 0.0, float("nan")]
    img = viz.attribute_bar_chart(names, values, bar_length=200, title="mA")
    blue = mask_of(img, SERIES_COLOURS[0])
    bars = runs(blue.any(1))
    assert len(bars) == 2  # 0.0 and NaN draw nothing
    lengths = [blue[s:e].sum(1).max() for s, e in bars]
    assert lengths == [200, 100]
    assert bars[0][0] < bars[1][0]  # attributes top to bottom in order


def test_attribute_bar_chart_two_series_and_errors():
    img = viz.attribute_bar_chart(["a", "b"], [[0.8, 0.6], [0.25, 0.3]], series_names=["mA", "pos"],
                                  bar_length=100, reference=0.7, reference_label="mA 70%")
    for s, expected in ((0, [80, 60]), (1, [30, 25])):
        m = mask_of(img, SERIES_COLOURS[s])
        lengths = sorted((m[a:b].sum(1).max() for a, b in runs(m.any(1))), reverse=True)
        assert lengths == expected + [11]  # two bars and the 11-px legend swatch
    with pytest.raises(ValueError, match="do not match 3 names"):
        viz.attribute_bar_chart(["a", "b", "c"], [0.1, 0.2])
    with pytest.raises(ValueError, match="1 series names for 2 series"):
        viz.attribute_bar_chart(["a"], [[0.1], [0.2]], series_names=["x"])


def test_save_png_round_trip(tmp_path):
    img = viz.ranked_list_image([solid((1, 2, 3))], [[solid((4, 5, 6))]], [[False]])
    path = viz.save_png(img, str(tmp_path / "sub" / "x.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), img)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.png"]  # no temporary left behind


def test_colormap_endpoints():
    c = _draw.colormap(np.array([-1.0, 0.0, 0.5, 1.0, 7.0, np.nan]))
    assert [tuple(v) for v in c] == [(0, 0, 130), (0, 0, 130), (0, 230, 200), (220, 0, 0), (220, 0, 0), (0, 0, 130)]


def test_stack_images():
    a, b = solid((1, 2, 3), (10, 30)), solid((4, 5, 6), (20, 12))
    out = viz.stack_images([a, b], gap=3)
    assert out.shape == (10 + 3 + 20, 30, 3)
    assert mask_of(out[:10, :30], (1, 2, 3)).all() and mask_of(out[13:, :12], (4, 5, 6)).all()
    assert mask_of(out[13:, 12:], (255, 255, 255)).all()
    titled = viz.stack_images([a], title="a long title that is wider than the image")
    assert titled.shape[0] == 30 and titled.shape[1] > 100


def test_attention_rows_for_hacnn_and_hpnet_outputs():
    boxes = np.tile(np.array([[0, 0, 0.25, 1]], np.float32), (2, 4, 1))
    hacnn = {f"soft_level{i}": np.random.rand(2, 40 // i, 16 // i) for i in (1, 2, 3)}
    hacnn.update({f"boxes_level{i}": boxes + 0.1 * i for i in (1, 2, 3)})
    hacnn.update({f"translations_level{i}": np.zeros((2, 4, 2)) for i in (1, 2, 3)})
    (row,) = viz.attention_rows(hacnn, 1)
    assert row["map_titles"] == ["soft L1", "soft L2", "soft L3"]
    np.testing.assert_array_equal(row["maps"][1], hacnn["soft_level2"][1])
    np.testing.assert_allclose(row["map_boxes"][2], boxes[1] + 0.3)  # each level's own regions
    np.testing.assert_allclose(row["boxes"], boxes[1] + 0.1)  # level 1's on the input panel
    hpnet = {f"mda{m}": np.random.rand(2, 16 // m, 8 // m, 8) for m in (1, 2, 3)}
    rows = viz.attention_rows(hpnet, 0)
    assert [r["label"] for r in rows] == ["MDA1: 8 attention maps (16x8)", "MDA2: 8 attention maps (8x4)",
                                          "MDA3: 8 attention maps (5x2)"]
    np.testing.assert_array_equal(rows[2]["maps"][7], hpnet["mda3"][0, ..., 7])
    assert viz.attention_rows({}, 0) == []


def test_evaluation_pictures_get_the_model_input_pixels(tmp_path):
    """attention_pictures feeds the maps function the image rule's pixels (keras_hpnet.preprocessing),
    not an antialiased PIL resize; unreadable records are skipped."""
    from keras_hpnet import preprocessing
    from keras_hpnet.datasets import Record

    rng = np.random.default_rng(0)
    stripes = np.kron(rng.integers(0, 256, (32, 16, 3)), np.ones((2, 2, 1))).astype(np.uint8)  # 64x32, sharp
    Image.fromarray(stripes).save(tmp_path / "a.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    records = [Record(str(tmp_path / "bad.png"), 1, 0, None), Record(str(tmp_path / "a.png"), 2, 0, None)]
    seen = []

    def maps(images):
        seen.append(images)
        return {"soft_level1": images[..., 0] / 255.0}

    pictures = viz.attention_pictures(maps, records, input_size=(24, 12), count=2, title="t")
    assert len(pictures) == 1 and seen[0].shape == (1, 24, 12, 3)
    want = preprocessing.prepare(stripes, 24, 12)
    np.testing.assert_array_equal(seen[0][0], want)
    pil = np.asarray(Image.fromarray(stripes).resize((12, 24), Image.BILINEAR))
    assert np.abs(pil.astype(int) - want).max() > 1  # the rule differs from what was used before

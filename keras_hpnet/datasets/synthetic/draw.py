"""Anti-aliased raster shapes on the 128x64 canvas and a paint layer.

A shape is `(coverage, slices)` or None (off-image): coverage in [0, 1] from a
signed distance, evaluated only in the shape's bounding box, which keeps a
whole image at ~2-3 ms.
"""

from __future__ import annotations

import numpy as np

H, W = 128, 64
YY, XX = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5  # pixel-centre rows / columns


def _cov(d):
    """Anti-aliased coverage from a signed distance (negative inside), in pixels."""
    return np.clip(0.5 - d, 0.0, 1.0)


def _window(y0, y1, x0, x1):
    """Slices of the pixels a shape with this bounding box can touch (None if off-image)."""
    ya, yb = max(int(np.floor(y0)) - 1, 0), min(int(np.ceil(y1)) + 2, H)
    xa, xb = max(int(np.floor(x0)) - 1, 0), min(int(np.ceil(x1)) + 2, W)
    if ya >= yb or xa >= xb:
        return None
    return (slice(ya, yb), slice(xa, xb))


def rect(y0, y1, x0, x1):
    sl = _window(y0, y1, x0, x1)
    if sl is None:
        return None
    yy, xx = YY[sl], XX[sl]
    return _cov(np.maximum(np.maximum(y0 - yy, yy - y1), np.maximum(x0 - xx, xx - x1))), sl


def ellipse(cy, cx, ry, rx):
    sl = _window(cy - ry, cy + ry, cx - rx, cx + rx)
    if sl is None:
        return None
    d = np.sqrt(((YY[sl] - cy) / ry) ** 2 + ((XX[sl] - cx) / rx) ** 2)
    return _cov((d - 1.0) * min(ry, rx)), sl


def capsule(y0, x0, y1, x1, r):
    """A thick segment (arm, leg, strap) from (y0, x0) to (y1, x1), radius r."""
    sl = _window(min(y0, y1) - r, max(y0, y1) + r, min(x0, x1) - r, max(x0, x1) + r)
    if sl is None:
        return None
    yy, xx = YY[sl], XX[sl]
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-6), 0.0, 1.0)
    return _cov(np.hypot(yy - (y0 + t * dy), xx - (x0 + t * dx)) - r), sl


def trapezoid(y0, y1, x0a, x1a, x0b, x1b):
    """Rows y0..y1; left/right edges go from x0a/x1a (top) to x0b/x1b (bottom)."""
    sl = _window(y0, y1, min(x0a, x0b), max(x1a, x1b))
    if sl is None:
        return None
    yy, xx = YY[sl], XX[sl]
    t = np.clip((yy - y0) / max(y1 - y0, 1e-6), 0.0, 1.0)
    left, right = x0a + t * (x0b - x0a), x1a + t * (x1b - x1a)
    return _cov(np.maximum(np.maximum(y0 - yy, yy - y1), np.maximum(left - xx, xx - right))), sl


def blend(img, shape, colour):
    """Paint `colour` (RGB or an [H, W, 3] texture) into `img` in place under `shape`."""
    if shape is None:
        return
    m, sl = shape
    c = np.asarray(colour, np.float32)
    if c.ndim == 3:
        c = c[sl]
    m3 = m[..., None]
    img[sl] = img[sl] * (1.0 - m3) + c * m3


class PaintLayer:
    """A person drawn back to front: colour and coverage, composited on the scene later."""

    def __init__(self):
        self.rgb = np.zeros((H, W, 3), np.float32)
        self.alpha = np.zeros((H, W), np.float32)

    def paint(self, shape, colour):
        if shape is None:
            return
        blend(self.rgb, shape, colour)
        m, sl = shape
        self.alpha[sl] = np.maximum(self.alpha[sl], m)

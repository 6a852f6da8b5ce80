"""The scene around a person: the camera's background with per-image clutter, and occluders in front."""

from __future__ import annotations

import numpy as np

from keras_hpnet.datasets.synthetic.camera import Camera
from keras_hpnet.datasets.synthetic.draw import XX, YY, H, W, blend, ellipse, rect


def _texture(img, cam: Camera, hz, rng):
    """The camera's wall/floor texture (0 tiles, 1 bars, 2 blotches, 3 bricks)."""
    ph = rng.uniform(0, 16)
    if cam.texture == 0:  # floor tiles
        lines = ((((YY + ph) % 9) < 1) | (((XX + ph) % 11) < 1)) & (YY >= hz)
        return np.where(lines[..., None], img * 0.7, img)
    if cam.texture == 1:  # vertical bars on the wall
        bars = (((XX + ph) % 13) < 4) & (YY < hz)
        return np.where(bars[..., None], cam.clutter[0], img)
    if cam.texture == 2:  # blotches
        for _ in range(4):
            blend(img, ellipse(rng.uniform(0, H), rng.uniform(0, W), rng.uniform(4, 14), rng.uniform(4, 14)),
                  cam.clutter[rng.integers(4)])
        return img
    row = ((YY + ph) // 6).astype(np.int32)  # bricks
    brick = (((YY + ph) % 6) < 1) | (((XX + ph + 5 * (row % 2)) % 12) < 1)
    return np.where((brick & (YY < hz))[..., None], img * 0.6, img)


def render_background(cam: Camera, rng) -> np.ndarray:
    """The camera's scene with per-image clutter."""
    hz = cam.horizon * H + rng.uniform(-4, 4)
    t = (YY / H)[..., None]
    img = np.where((YY < hz)[..., None], cam.wall * (0.85 + 0.3 * t), cam.ground * (1.15 - 0.3 * t)).astype(np.float32)
    img = _texture(img, cam, hz, rng)
    for _ in range(int(rng.integers(0, 4))):  # clutter objects: poles, signs, boxes
        c = cam.clutter[rng.integers(4)] * rng.uniform(0.8, 1.2)
        y0, x0 = rng.uniform(0, H * 0.8), rng.uniform(-8, W)
        blend(img, rect(y0, y0 + rng.uniform(6, 50), x0, x0 + rng.uniform(3, 18)), c)
    return np.clip(img, 0, 1)


def occlude(img, cam: Camera, rng) -> None:
    """With the camera's occlusion rate, paint something in front of the person (in place)."""
    if rng.random() < cam.occlusion:
        c = cam.clutter[rng.integers(4)] * rng.uniform(0.7, 1.1)
        if rng.random() < 0.6:
            top = H * rng.uniform(0.7, 0.85)
            m = rect(top, H + 5, -5, W + 5)
        else:
            w = W * rng.uniform(0.15, 0.3)
            m = rect(-5, H + 5, -5, w) if rng.random() < 0.5 else rect(-5, H + 5, W - w, W + 5)
        blend(img, m, c)

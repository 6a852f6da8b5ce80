"""The camera model: each camera's scene palette, photometry, framing and view mix.

Cameras make cross-camera re-id non-trivial (docs/datasets.md): illumination
gain, colour cast, gamma, desaturation, blur, noise, person scale and offset,
view distribution and occlusion rate differ per camera; scenes are muted so
clothing stays the most salient content.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from keras_hpnet.datasets.synthetic.draw import W

VIEWS = ("front", "back", "side")


@dataclasses.dataclass
class Camera:
    wall: np.ndarray
    ground: np.ndarray
    clutter: np.ndarray  # (4, 3) palette
    horizon: float
    texture: int  # 0 tiles, 1 vertical bars, 2 blotches, 3 bricks
    gain: float
    cast: np.ndarray
    gamma: float
    desat: float
    blur: float
    noise: float
    scale: float
    foot: float
    xoff: float
    views: np.ndarray  # probabilities of front/back/side
    occlusion: float
    light_dir: float


def _muted(rgb, amount):
    rgb = np.asarray(rgb, np.float32)
    return (rgb * (1 - amount) + rgb.mean(axis=-1, keepdims=True) * amount).astype(np.float32)


@functools.lru_cache(maxsize=64)
def make_camera(seed: int, cam: int) -> Camera:
    """Camera `cam`'s scene and photometry, a pure function of (seed, cam)."""
    rng = np.random.default_rng([seed, 2, cam])
    cast = rng.uniform(0.9, 1.1, 3)
    cast = cast / cast.mean()
    # Scenes are muted (colours pulled towards grey) so that clothing, not the
    # background, is the most salient colour content; cameras still differ a lot.
    return Camera(
        wall=_muted(rng.uniform(0.15, 0.85, 3), 0.55), ground=_muted(rng.uniform(0.15, 0.75, 3), 0.6),
        clutter=_muted(rng.uniform(0.1, 0.9, (4, 3)), 0.5), horizon=float(rng.uniform(0.3, 0.75)),
        texture=int(rng.integers(4)), gain=float(rng.uniform(0.8, 1.2)), cast=cast.astype(np.float32),
        gamma=float(rng.uniform(0.75, 1.3)), desat=float(rng.uniform(0.0, 0.15)), blur=float(rng.uniform(0.0, 0.8)),
        noise=float(rng.uniform(0.005, 0.03)), scale=float(rng.uniform(0.84, 0.95)),
        foot=float(rng.uniform(0.93, 0.995)),
        xoff=float(rng.uniform(-4, 4)), views=rng.dirichlet([1.2, 1.2, 1.2]).astype(np.float64),
        occlusion=float(rng.uniform(0.0, 0.15)), light_dir=float(rng.uniform(-0.25, 0.25)))


@functools.lru_cache(maxsize=64)
def _gamma_lut(gamma):
    return (np.arange(1024, dtype=np.float32) / 1023.0) ** gamma


def photometry(img, cam: Camera, rng, gain=None):
    """Camera illumination, colour cast, lighting gradient, gamma, desaturation,
    noise. `gain`: the image's illumination factor around the camera's (drawn
    from `rng`, 0.88..1.12, when None; a tracklet passes a slowly varying one)."""
    gain = cam.gain * (rng.uniform(0.88, 1.12) if gain is None else gain)
    factor = (gain * (1.0 + cam.light_dir * ((np.arange(W, dtype=np.float32) + 0.5 - W / 2) / W)))[None, :, None]
    img = img * (factor * cam.cast)
    img = _gamma_lut(round(cam.gamma, 4))[(np.clip(img, 0.0, 1.0) * 1023.0).astype(np.int16)]
    if cam.desat > 0:
        img = img * (1 - cam.desat) + img.mean(axis=2, keepdims=True) * cam.desat
    img += rng.standard_normal(img.shape, dtype=np.float32) * cam.noise
    return np.clip(img, 0, 1)

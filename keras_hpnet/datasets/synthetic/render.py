"""One synthetic image: a person painted back to front over the camera's scene, then the camera's photometry."""

from __future__ import annotations

import numpy as np

from keras_hpnet.datasets.synthetic import accessories, body, clothes
from keras_hpnet.datasets.synthetic.camera import VIEWS, make_camera, photometry
from keras_hpnet.datasets.synthetic.draw import H, W, PaintLayer
from keras_hpnet.datasets.synthetic.figure import make_figure
from keras_hpnet.datasets.synthetic.person import Person, make_person
from keras_hpnet.datasets.synthetic.scene import occlude, render_background

VERSION = 5  # bump when the renderer changes (part of the cache key)

# Painting order, back to front: each part is drawn over the ones before it.
PARTS = (body.hair_behind, accessories.backpack_behind, body.legs, clothes.lower_garment, clothes.upper_garment,
         accessories.backpack_front, body.arms, accessories.shoulder_bag, accessories.handbag,
         accessories.held_object, body.hair_front, body.head, accessories.glasses, clothes.hat)


def render_person(p: Person, view: str, hp: float, foot: float, cx: float, phase: float) -> PaintLayer:
    """Draw identity `p` seen from `view` (facing right when "side"), person height `hp` px."""
    layer = PaintLayer()
    figure = make_figure(p, view, hp, foot, cx, phase)
    for part in PARTS:
        part(layer, p, figure)
    return layer


def render_image(seed: int, person_key: int, cam_index: int, image_key: int, *, junk: bool = False,
                 view: str | None = None) -> tuple:
    """One 128x64 RGB uint8 image of identity `person_key` in camera `cam_index`.

    Returns (image, view). Junk images (file id -1) are bad detections: a
    fragment of a person filling a wrong box, or mostly background.
    """
    cam = make_camera(seed, cam_index)
    rng = np.random.default_rng([seed, 3, image_key])
    bg = render_background(cam, rng)
    person = make_person(seed, person_key)
    if view is None:
        view = VIEWS[rng.choice(3, p=cam.views)]
    scale = cam.scale * rng.uniform(0.94, 1.06)
    hp = scale * H * person.height
    foot = cam.foot * H + rng.uniform(-3, 3)
    cx = W / 2 + cam.xoff + rng.uniform(-4, 4)
    if junk:  # a badly placed box: far too large/small and off-centre
        hp *= rng.choice([0.45, 1.8])
        foot += rng.uniform(-30, 60)
        cx += rng.uniform(-25, 25)
    layer = render_person(person, view, hp, foot, cx, float(rng.uniform(-1, 1)))
    mirror = view == "side" and rng.random() < 0.5  # facing left
    img = composite(bg, layer, mirror, cam, rng, rng)
    return finish(img, cam.blur * rng.uniform(0.7, 1.3)), view


def composite(bg, layer: PaintLayer, mirror: bool, cam, occluder_rng, photo_rng, gain=None) -> np.ndarray:
    """The person `layer` (mirrored if `mirror`) over `bg`, an occluder drawn
    from `occluder_rng`, then the camera's photometry (`gain`: see `photometry`)."""
    rgb, alpha = layer.rgb, layer.alpha
    if mirror:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    img = bg * (1 - alpha[..., None]) + rgb * alpha[..., None]
    occlude(img, cam, occluder_rng)
    return photometry(img, cam, photo_rng, gain)


def finish(img, blur: float) -> np.ndarray:
    """float [0, 1] image -> uint8, with a Gaussian blur of radius `blur` when it is above 0.25."""
    from PIL import Image, ImageFilter

    out = Image.fromarray((img * 255 + 0.5).astype(np.uint8))
    if blur > 0.25:
        out = out.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(out)

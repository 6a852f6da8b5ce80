"""The embedded synthetic pedestrian dataset (the project's default; nothing downloaded).

A procedural renderer draws pedestrian-like 128x64 images: head, skin tone,
hair (short/long, colour), torso and arms with upper clothing (8 Market colours,
patterns: plain, stripes, plaid, two-tone splice, chest logo), sleeves
(long/short), lower clothing (trousers, shorts, long dress, skirt; 9 Market
colours, optional stripe/check pattern), shoes or boots, hat, glasses,
backpack, shoulder bag, handbag, object held in front, long coat, body height
and build. Identity-level attributes follow the Market-1501 attribute schema
(Lin et al. 2019: 27 fields incl. age, 1/2 coding) and every one is visible.

Cameras make cross-camera re-id non-trivial: each camera has its own scene
(wall/ground colours, horizon, texture, clutter objects), illumination gain,
colour cast, gamma, desaturation, blur, noise, person scale and offset, view
distribution (front/back/side, mirrored facing) and occlusion rate; images add
their own jitter, random clutter and partial occluders. Scenes are muted so
clothing stays the most salient content. Training identities are many (1,000)
with two images each, for attribute diversity. Measured with renderer v5 on the
default split: raw-pixel nearest-neighbour rank-1 0.214 (<= 0.40 required);
the demo (`python -m training.fit --model hatcnn`, 7 epochs) reaches HAT-CNN
rank-1 0.845 and attribute mA 0.860 (`benchmarks/bench_synthetic.py` measures
the raw-pixel floor and a tiny-CNN learnability probe).

Two variants, written to disk in the official formats so the real readers run:
- "market" (`load("synthetic")`): the Market-1501 layout and file names
  (`bounding_box_train`, `query`, `bounding_box_test`, `PPPP_cCsS_FFFFFF_NN.jpg`,
  a few junk `-1` and distractor `0000` gallery images) plus
  `market_attribute.mat` in the official struct format; read by
  :func:`keras_hpnet.datasets.market1501.load_market1501`.
- "pa100k" (`load("synthetic_pa100k")`): `annotation.mat` + `data/000001.jpg...`
  with the 26 PA-100K attributes per image (view, glasses, logo... are image
  level); read by :func:`keras_hpnet.datasets.pa100k.load_pa100k`.

Generation is deterministic by `seed` (independent of the worker count),
parallel over processes, and atomic: it writes into a temporary folder renamed
into place when complete, so a killed run never leaves a dataset that is later
trusted.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

H, W = 128, 64
VERSION = 5  # bump when the renderer changes (part of the cache key)

# Market-1501 attribute colours (names as in market_attribute.mat).
UP_COLOURS = {"black": (0.08, 0.08, 0.09), "white": (0.93, 0.93, 0.92), "red": (0.82, 0.1, 0.1),
              "purple": (0.5, 0.16, 0.62), "yellow": (0.96, 0.84, 0.12), "gray": (0.5, 0.5, 0.5),
              "blue": (0.12, 0.25, 0.78), "green": (0.12, 0.6, 0.2)}
DOWN_COLOURS = {"black": (0.08, 0.08, 0.09), "white": (0.93, 0.93, 0.92), "pink": (0.97, 0.55, 0.72),
                "purple": (0.5, 0.16, 0.62), "yellow": (0.96, 0.84, 0.12), "gray": (0.5, 0.5, 0.5),
                "blue": (0.12, 0.25, 0.78), "green": (0.12, 0.6, 0.2), "brown": (0.45, 0.27, 0.1)}
# Official field order of market_attribute.mat (image_index last).
MARKET_FIELDS = ("age", "backpack", "bag", "handbag", "downblack", "downblue", "downbrown", "downgray",
                 "downgreen", "downpink", "downpurple", "downwhite", "downyellow", "upblack", "upblue",
                 "upgreen", "upgray", "uppurple", "upred", "upwhite", "upyellow", "clothes", "down", "up",
                 "hair", "hat", "gender")
PA100K_ATTRIBUTES = ("Female", "AgeOver60", "Age18-60", "AgeLess18", "Front", "Side", "Back", "Hat", "Glasses",
                     "HandBag", "ShoulderBag", "Backpack", "HoldObjectsInFront", "ShortSleeve", "LongSleeve",
                     "UpperStride", "UpperLogo", "UpperPlaid", "UpperSplice", "LowerStripe", "LowerPattern",
                     "LongCoat", "Trousers", "Shorts", "Skirt&Dress", "boots")
SKIN = np.array([(0.96, 0.8, 0.66), (0.88, 0.68, 0.5), (0.72, 0.52, 0.36), (0.52, 0.35, 0.22), (0.34, 0.22, 0.14)])
HAIR = np.array([(0.06, 0.05, 0.05), (0.3, 0.18, 0.08), (0.75, 0.6, 0.3), (0.55, 0.25, 0.1)])
GREY_HAIR = np.array((0.78, 0.78, 0.76))
ACCESSORY = np.array([(0.1, 0.1, 0.1), (0.55, 0.35, 0.15), (0.8, 0.15, 0.15), (0.15, 0.2, 0.6), (0.85, 0.85, 0.8),
                      (0.2, 0.45, 0.2), (0.9, 0.6, 0.1), (0.4, 0.4, 0.45)])
PATTERNS = ("plain", "stride", "plaid", "splice", "logo")
VIEWS = ("front", "back", "side")
AGE_HEIGHT = (0.7, 0.88, 1.0, 0.96)

_YY, _XX = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5


# ----------------------------------------------------------------------------- specs
@dataclasses.dataclass
class Person:
    """Identity-level appearance (everything that must stay stable across cameras)."""

    female: int
    age: int  # 0 young, 1 teenager, 2 adult, 3 old
    long_hair: int
    hair_colour: np.ndarray
    skin: np.ndarray
    up: str
    up_rgb: np.ndarray
    up2_rgb: np.ndarray
    pattern: str
    short_sleeve: int
    down: str
    down_rgb: np.ndarray
    dress: int
    short_lower: int
    lower_pattern: str  # plain / stripe / pattern
    hat: int
    hat_rgb: np.ndarray
    glasses: int
    backpack: int
    backpack_rgb: np.ndarray
    bag: int
    bag_rgb: np.ndarray
    handbag: int
    handbag_rgb: np.ndarray
    holding: int
    hold_rgb: np.ndarray
    longcoat: int
    boots: int
    shoe_rgb: np.ndarray
    height: float
    build: float
    bag_side: int


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


def _contrasting(rng, avoid, palette=None):
    """An accessory colour far from every colour in `avoid` (so bags, hats... stay visible)."""
    palette = ACCESSORY if palette is None else palette
    dist = np.min([np.abs(palette - np.asarray(c)).sum(1) for c in avoid], axis=0)
    best = np.argsort(-dist)[:3]
    return _jitter(rng, palette[best[rng.integers(3)]], 0.04)


HAT = np.array([(0.85, 0.1, 0.1), (0.1, 0.2, 0.75), (0.95, 0.95, 0.92), (0.95, 0.8, 0.1), (0.1, 0.55, 0.2),
                (0.06, 0.06, 0.06)])


def _jitter(rng, rgb, amount=0.05):
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3), 0.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=4096)
def make_person(seed: int, key: int) -> Person:
    """The identity `key`'s appearance, a pure function of (seed, key)."""
    rng = np.random.default_rng([seed, 1, key])
    female = int(rng.random() < 0.5)
    age = int(rng.choice(4, p=[0.06, 0.14, 0.68, 0.12]))
    long_hair = int(rng.random() < (0.8 if female else 0.1))
    hair = GREY_HAIR if age == 3 and rng.random() < 0.8 else HAIR[rng.integers(len(HAIR))]
    up_names, down_names = list(UP_COLOURS), list(DOWN_COLOURS)
    up = up_names[rng.choice(8, p=[0.16, 0.15, 0.12, 0.1, 0.1, 0.12, 0.13, 0.12])]
    down = down_names[rng.choice(9, p=[0.2, 0.1, 0.08, 0.08, 0.08, 0.12, 0.14, 0.08, 0.12])]
    dress = int(female and rng.random() < 0.45)
    second = rng.choice([c for c in up_names if c != up])
    pattern = PATTERNS[rng.choice(5, p=[0.6, 0.1, 0.08, 0.1, 0.12])]
    longcoat = int(rng.random() < 0.08)
    up_rgb, down_rgb = _jitter(rng, UP_COLOURS[up]), _jitter(rng, DOWN_COLOURS[down])
    hair_rgb = _jitter(rng, hair, 0.04)
    return Person(
        female=female, age=age, long_hair=long_hair, hair_colour=hair_rgb,
        skin=_jitter(rng, SKIN[rng.integers(len(SKIN))], 0.03),
        up=up, up_rgb=up_rgb, up2_rgb=_jitter(rng, UP_COLOURS[second]), pattern=pattern,
        short_sleeve=int(rng.random() < 0.5 and not longcoat),
        down=down, down_rgb=down_rgb, dress=dress,
        short_lower=int(rng.random() < (0.45 if dress else 0.4)),
        lower_pattern=("plain", "stripe", "pattern")[rng.choice(3, p=[0.8, 0.1, 0.1])],
        hat=int(rng.random() < 0.35), hat_rgb=_contrasting(rng, [hair_rgb], HAT),
        glasses=int(rng.random() < 0.15),
        backpack=int(rng.random() < 0.38), backpack_rgb=_contrasting(rng, [up_rgb]),
        bag=int(rng.random() < 0.33), bag_rgb=_contrasting(rng, [up_rgb, down_rgb]),
        handbag=int(rng.random() < 0.3), handbag_rgb=_contrasting(rng, [up_rgb, down_rgb]),
        holding=int(rng.random() < 0.08), hold_rgb=_jitter(rng, ACCESSORY[rng.integers(len(ACCESSORY))]),
        longcoat=longcoat, boots=int(rng.random() < 0.15),
        shoe_rgb=_jitter(rng, ACCESSORY[rng.integers(len(ACCESSORY))]),
        height=AGE_HEIGHT[age] * float(rng.uniform(0.93, 1.05)) * (0.96 if female else 1.0),
        build=float(rng.uniform(0.85, 1.18)) * (0.9 if female else 1.0),
        bag_side=int(rng.integers(2)))


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
        noise=float(rng.uniform(0.005, 0.03)), scale=float(rng.uniform(0.84, 0.95)), foot=float(rng.uniform(0.93, 0.995)),
        xoff=float(rng.uniform(-4, 4)), views=rng.dirichlet([1.2, 1.2, 1.2]).astype(np.float64),
        occlusion=float(rng.uniform(0.0, 0.15)), light_dir=float(rng.uniform(-0.25, 0.25)))


# ----------------------------------------------------------------------------- drawing
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


# Shapes return (coverage window, slices) or None; they are evaluated only in
# their bounding box, which keeps a whole image at ~2-3 ms.
def rect(y0, y1, x0, x1):
    sl = _window(y0, y1, x0, x1)
    if sl is None:
        return None
    yy, xx = _YY[sl], _XX[sl]
    return _cov(np.maximum(np.maximum(y0 - yy, yy - y1), np.maximum(x0 - xx, xx - x1))), sl


def ellipse(cy, cx, ry, rx):
    sl = _window(cy - ry, cy + ry, cx - rx, cx + rx)
    if sl is None:
        return None
    d = np.sqrt(((_YY[sl] - cy) / ry) ** 2 + ((_XX[sl] - cx) / rx) ** 2)
    return _cov((d - 1.0) * min(ry, rx)), sl


def capsule(y0, x0, y1, x1, r):
    """A thick segment (arm, leg, strap) from (y0, x0) to (y1, x1), radius r."""
    sl = _window(min(y0, y1) - r, max(y0, y1) + r, min(x0, x1) - r, max(x0, x1) + r)
    if sl is None:
        return None
    yy, xx = _YY[sl], _XX[sl]
    dy, dx = y1 - y0, x1 - x0
    t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / max(dy * dy + dx * dx, 1e-6), 0.0, 1.0)
    return _cov(np.hypot(yy - (y0 + t * dy), xx - (x0 + t * dx)) - r), sl


def trapezoid(y0, y1, x0a, x1a, x0b, x1b):
    """Rows y0..y1; left/right edges go from x0a/x1a (top) to x0b/x1b (bottom)."""
    sl = _window(y0, y1, min(x0a, x0b), max(x1a, x1b))
    if sl is None:
        return None
    yy, xx = _YY[sl], _XX[sl]
    t = np.clip((yy - y0) / max(y1 - y0, 1e-6), 0.0, 1.0)
    left, right = x0a + t * (x0b - x0a), x1a + t * (x1b - x1a)
    return _cov(np.maximum(np.maximum(y0 - yy, yy - y1), np.maximum(left - xx, xx - right))), sl


def blend(img, shape, colour):
    """Paint `colour` (RGB or an [H, W, 3] texture) into `img` in place under `shape`."""
    if shape is None:
        return img
    m, sl = shape
    c = np.asarray(colour, np.float32)
    if c.ndim == 3:
        c = c[sl]
    m3 = m[..., None]
    img[sl] = img[sl] * (1.0 - m3) + c * m3
    return img


class Layer:
    """A person layer: colour and coverage, painted back to front."""

    def __init__(self):
        self.rgb = np.zeros((H, W, 3), np.float32)
        self.alpha = np.zeros((H, W), np.float32)

    def paint(self, shape, colour):
        if shape is None:
            return
        blend(self.rgb, shape, colour)
        m, sl = shape
        self.alpha[sl] = np.maximum(self.alpha[sl], m)


def _upper_texture(p: Person, y0, cx, hp, view):
    """Upper-clothing colour image (pattern visible where the view shows it)."""
    c1, c2 = p.up_rgb, p.up2_rgb
    period = max(2.0, 0.045 * hp)
    if p.pattern == "stride":
        sel = ((_YY - y0) / period).astype(np.int32) % 2 == 0
    elif p.pattern == "plaid":
        sel = (((_YY - y0) / (1.5 * period)).astype(np.int32) + ((_XX - cx + 50) / (1.5 * period)).astype(np.int32)) % 2 == 0
    elif p.pattern == "splice" and view != "side":
        sel = _XX < cx
    else:
        return c1
    return np.where(sel[..., None], c1, c2)


def render_person(p: Person, view: str, hp: float, foot: float, cx: float, phase: float) -> Layer:
    """Draw identity `p` seen from `view` (facing right when "side"), person height `hp` px."""
    L = Layer()
    y0 = foot - hp
    Y = lambda f: y0 + f * hp  # noqa: E731  (fraction of the person height -> row)
    side = view == "side"
    sw = 0.118 * hp * p.build * (0.62 if side else 1.0) * (0.84 if p.female else 1.06)  # shoulder half-width
    hw = 0.092 * hp * p.build * (0.7 if side else 1.0) * (1.15 if p.female else 0.95)  # hip half-width
    head_r = 0.062 * hp
    head_cx = cx + (0.02 * hp if side else 0.0)
    waist = Y(0.5)
    knee, ankle = Y(0.73), Y(0.95)
    leg_r = 0.037 * hp * p.build
    arm_r = 0.043 * hp * p.build
    # long hair behind the shoulders
    if p.long_hair and view != "front":
        L.paint(rect(Y(0.07), Y(0.37), head_cx - head_r * (0.8 if side else 1.25) - (0.025 * hp if side else 0),
                     head_cx + head_r * (0.3 if side else 1.25)), p.hair_colour)
    elif p.long_hair:
        L.paint(rect(Y(0.07), Y(0.34), head_cx - head_r * 1.3, head_cx + head_r * 1.3), p.hair_colour)
    # backpack behind the body (side view: sticks out at the back)
    if p.backpack and side:
        L.paint(rect(Y(0.17), Y(0.47), cx - sw - 0.13 * hp, cx - sw * 0.4), p.backpack_rgb)
    elif p.backpack and view == "front":
        L.paint(rect(Y(0.2), Y(0.44), cx - sw - 0.04 * hp, cx + sw + 0.04 * hp), p.backpack_rgb)
    # legs / lower garment
    spread = (0.045 * hp) * phase if side else 0.0
    leg_dx = 0.0 if side else hw * 0.5
    skin = p.skin
    legs = [(cx - leg_dx, -spread), (cx + leg_dx, spread)]
    shoe = p.shoe_rgb
    for lx, s in legs:
        foot_x = lx + s
        L.paint(capsule(waist + 2, lx, ankle, foot_x, leg_r), skin)
        if p.boots:
            L.paint(capsule(Y(0.84), lx + 0.6 * s, Y(0.975), foot_x, leg_r * 1.15), shoe)
        else:
            sx = foot_x + (0.03 * hp if side else 0.0)
            L.paint(ellipse(Y(0.975), sx, 0.025 * hp, 0.045 * hp if side else 0.035 * hp), shoe)
    if p.dress:
        bottom = Y(0.7) if p.short_lower else Y(0.9)
        flare = 0.11 * hp
        L.paint(trapezoid(waist - 2, bottom, cx - hw, cx + hw, cx - hw - flare, cx + hw + flare), p.down_rgb)
    else:
        bottom_f = 0.63 if p.short_lower else 0.95
        for lx, s in legs:
            t = (bottom_f - 0.5) / 0.45
            L.paint(capsule(waist, lx, waist + (ankle - waist) * t, lx + s * t, leg_r * 1.35), p.down_rgb)
        L.paint(rect(waist - 1, Y(0.57), cx - hw, cx + hw), p.down_rgb)
        if p.lower_pattern != "plain":
            tex = np.where((((_YY / 3).astype(np.int32) + (_XX / 3).astype(np.int32)) % 2 == 0)[..., None],
                           p.up2_rgb, p.down_rgb) if p.lower_pattern == "pattern" else p.up2_rgb
            for lx, s in legs:
                m = capsule(Y(0.58), lx, waist + (ankle - waist) * (bottom_f - 0.5) / 0.45, lx + s, leg_r * (0.45 if p.lower_pattern == "stripe" else 0.9))
                L.paint(m, tex)
    # torso
    coat_bottom = Y(0.8) if p.longcoat else Y(0.54)
    tex = _upper_texture(p, y0, cx, hp, view)
    L.paint(trapezoid(Y(0.16), coat_bottom, cx - sw, cx + sw, cx - hw * (1.25 if p.longcoat else 1.0),
                      cx + hw * (1.25 if p.longcoat else 1.0)), tex)
    if p.pattern == "logo" and view == "front":
        L.paint(rect(Y(0.24), Y(0.33), cx - 0.05 * hp, cx + 0.05 * hp), p.up2_rgb)
    # backpack on the back / straps on the front
    if p.backpack and view == "back":
        L.paint(rect(Y(0.19), Y(0.44), cx - sw * 0.8, cx + sw * 0.8), p.backpack_rgb)
    elif p.backpack and view == "front":
        for sx in (-0.55, 0.55):
            L.paint(capsule(Y(0.17), cx + sx * sw, Y(0.42), cx + sx * sw * 0.9, 0.022 * hp), p.backpack_rgb)
    # arms
    arm_x = [cx] if side else [cx - sw - arm_r * 0.6, cx + sw + arm_r * 0.6]
    swing = 0.05 * hp * phase if side else 0.0
    hand_y = Y(0.52)
    for ax in arm_x:
        hx = ax + swing + (0 if side else (-0.01 * hp if ax < cx else 0.01 * hp))
        L.paint(capsule(Y(0.18), ax, hand_y, hx, arm_r), skin)
        if p.short_sleeve:
            L.paint(capsule(Y(0.18), ax, Y(0.27), ax + swing * 0.3, arm_r * 1.2), p.up_rgb)
        else:
            L.paint(capsule(Y(0.18), ax, Y(0.49), hx - swing * 0.05, arm_r * 1.15), p.up_rgb)
        L.paint(ellipse(hand_y + 1, hx, arm_r * 1.1, arm_r * 1.05), skin)
    # shoulder bag: strap across the body and the bag at the hip
    if p.bag:
        bs = 1 if p.bag_side else -1
        if not side:
            L.paint(capsule(Y(0.17), cx - bs * sw * 0.7, Y(0.47), cx + bs * (sw + 0.01 * hp), 0.018 * hp), p.bag_rgb)
        bx = cx + (bs * (sw + 0.035 * hp) if not side else -0.02 * hp)
        L.paint(rect(Y(0.42), Y(0.62), bx - 0.085 * hp, bx + 0.085 * hp), p.bag_rgb)
    if p.handbag:
        hx = (arm_x[-1] if not p.bag_side or side else arm_x[0]) + (swing if side else 0.0)
        L.paint(capsule(hand_y, hx, Y(0.58), hx, 0.008 * hp), p.handbag_rgb)
        L.paint(rect(Y(0.56), Y(0.72), hx - 0.075 * hp, hx + 0.075 * hp), p.handbag_rgb)
    if p.holding and view != "back":
        L.paint(rect(Y(0.38), Y(0.52), cx - 0.07 * hp + (0.06 * hp if side else 0), cx + 0.07 * hp + (0.06 * hp if side else 0)), p.hold_rgb)
    # long hair seen from the front falls over the shoulders
    if p.long_hair and view == "front":
        for sx in (-1, 1):
            L.paint(rect(Y(0.08), Y(0.34), head_cx + sx * head_r * 0.55 - (head_r * 0.75 if sx < 0 else 0),
                         head_cx + sx * head_r * 0.55 + (head_r * 0.75 if sx > 0 else 0)), p.hair_colour)
    # neck, head, face, hair, hat
    L.paint(rect(Y(0.12), Y(0.18), head_cx - 0.025 * hp, head_cx + 0.025 * hp), skin)
    hc = Y(0.075)
    L.paint(ellipse(hc, head_cx, head_r, head_r * (0.82 if side else 0.8)), skin)
    if view == "back":
        L.paint(ellipse(hc - 0.1 * head_r, head_cx, head_r * 0.98, head_r * 0.82), p.hair_colour)
    elif side:
        L.paint(ellipse(hc - 0.35 * head_r, head_cx - 0.25 * head_r, head_r * 0.72, head_r * 0.72), p.hair_colour)
    else:
        L.paint(ellipse(hc - 0.55 * head_r, head_cx, head_r * 0.55, head_r * 0.82), p.hair_colour)
    if p.glasses and view != "back":
        gx = head_cx + (0.35 * head_r if side else 0.0)
        L.paint(rect(hc - 0.12 * head_r, hc + 0.12 * head_r, gx - 0.62 * head_r, gx + 0.62 * head_r), (0.03, 0.03, 0.03))
    if p.hat:
        L.paint(rect(hc - 1.8 * head_r, hc - 0.4 * head_r, head_cx - 1.0 * head_r, head_cx + 1.0 * head_r), p.hat_rgb)
        L.paint(rect(hc - 0.65 * head_r, hc - 0.25 * head_r, head_cx - 1.6 * head_r, head_cx + (2.0 if side else 1.6) * head_r), p.hat_rgb)
    return L


def render_background(cam: Camera, rng) -> np.ndarray:
    """The camera's scene with per-image clutter."""
    hz = cam.horizon * H + rng.uniform(-4, 4)
    t = (_YY / H)[..., None]
    img = np.where((_YY < hz)[..., None], cam.wall * (0.85 + 0.3 * t), cam.ground * (1.15 - 0.3 * t)).astype(np.float32)
    ph = rng.uniform(0, 16)
    if cam.texture == 0:  # floor tiles
        lines = ((((_YY + ph) % 9) < 1) | (((_XX + ph) % 11) < 1)) & (_YY >= hz)
        img = np.where(lines[..., None], img * 0.7, img)
    elif cam.texture == 1:  # vertical bars on the wall
        bars = (((_XX + ph) % 13) < 4) & (_YY < hz)
        img = np.where(bars[..., None], cam.clutter[0], img)
    elif cam.texture == 2:  # blotches
        for _ in range(4):
            blend(img, ellipse(rng.uniform(0, H), rng.uniform(0, W), rng.uniform(4, 14), rng.uniform(4, 14)),
                  cam.clutter[rng.integers(4)])
    else:  # bricks
        row = ((_YY + ph) // 6).astype(np.int32)
        brick = (((_YY + ph) % 6) < 1) | (((_XX + ph + 5 * (row % 2)) % 12) < 1)
        img = np.where((brick & (_YY < hz))[..., None], img * 0.6, img)
    for _ in range(int(rng.integers(0, 4))):  # clutter objects: poles, signs, boxes
        c = cam.clutter[rng.integers(4)] * rng.uniform(0.8, 1.2)
        y0, x0 = rng.uniform(0, H * 0.8), rng.uniform(-8, W)
        blend(img, rect(y0, y0 + rng.uniform(6, 50), x0, x0 + rng.uniform(3, 18)), c)
    return np.clip(img, 0, 1)


def photometry(img, cam: Camera, rng):
    """Camera illumination, colour cast, lighting gradient, gamma, desaturation, noise."""
    gain = cam.gain * rng.uniform(0.88, 1.12)
    factor = (gain * (1.0 + cam.light_dir * ((np.arange(W, dtype=np.float32) + 0.5 - W / 2) / W)))[None, :, None]
    img = img * (factor * cam.cast)
    img = _gamma_lut(round(cam.gamma, 4))[(np.clip(img, 0.0, 1.0) * 1023.0).astype(np.int16)]
    if cam.desat > 0:
        img = img * (1 - cam.desat) + img.mean(axis=2, keepdims=True) * cam.desat
    img += rng.standard_normal(img.shape, dtype=np.float32) * cam.noise
    return np.clip(img, 0, 1)


@functools.lru_cache(maxsize=64)
def _gamma_lut(gamma):
    return (np.arange(1024, dtype=np.float32) / 1023.0) ** gamma


def render_image(seed: int, person_key: int, cam_index: int, image_key: int, *, junk: bool = False,
                 view: str | None = None) -> tuple:
    """One 128x64 RGB uint8 image of identity `person_key` in camera `cam_index`.

    Returns (image, view). Junk images (file id -1) are bad detections: a
    fragment of a person filling a wrong box, or mostly background.
    """
    from PIL import Image, ImageFilter

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
    rgb, alpha = layer.rgb, layer.alpha
    if view == "side" and rng.random() < 0.5:  # facing left
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    img = bg * (1 - alpha[..., None]) + rgb * alpha[..., None]
    if rng.random() < cam.occlusion:  # partial occluder: something in front of the person
        c = cam.clutter[rng.integers(4)] * rng.uniform(0.7, 1.1)
        if rng.random() < 0.6:
            top = H * rng.uniform(0.7, 0.85)
            m = rect(top, H + 5, -5, W + 5)
        else:
            w = W * rng.uniform(0.15, 0.3)
            m = rect(-5, H + 5, -5, w) if rng.random() < 0.5 else rect(-5, H + 5, W - w, W + 5)
        blend(img, m, c)
    img = photometry(img, cam, rng)
    out = Image.fromarray((img * 255 + 0.5).astype(np.uint8))
    blur = cam.blur * rng.uniform(0.7, 1.3)
    if blur > 0.25:
        out = out.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(out), view


# ----------------------------------------------------------------------------- plans
def _cache_key(config, variant: str) -> str:
    """Short hash of a size config, the variant and the renderer version (cache folder name)."""
    text = json.dumps({"v": VERSION, "variant": variant, **dataclasses.asdict(config)}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes of the synthetic dataset (all deterministic by `seed`)."""

    seed: int = 0
    num_train_ids: int = 1000
    num_test_ids: int = 150
    num_cameras: int = 6
    min_cameras: int = 2  # cameras each identity appears in: min_cameras..max_cameras
    max_cameras: int = 5
    min_images: int = 2  # images per identity per camera (test identities: at least 2)
    max_images: int = 4
    # Training identities: many identities with few images each (attributes
    # generalise with attribute diversity, not with more views of the same
    # person: 1,000 identities x 2 cameras x 1 image give the demo's attribute
    # network +1.9 points mA over 500 x 2-3 x 1-2 with max pooling, docs/training.md);
    # 0 = as the test split. Capped by max_cameras / max_images.
    train_max_cameras: int = 2
    train_min_images: int = 1
    train_max_images: int = 1
    num_distractors: int = 40  # gallery images "0000"
    num_junk: int = 20  # gallery images "-1"
    jpeg_quality: int = 90

    def key(self, variant: str) -> str:
        return _cache_key(self, variant)


@dataclasses.dataclass(frozen=True)
class Config100k:
    """Sizes of the PA-100K-style variant (images per split)."""

    seed: int = 0
    num_train: int = 2400
    num_val: int = 300
    num_test: int = 300
    num_cameras: int = 6
    jpeg_quality: int = 90

    def key(self, variant: str) -> str:
        return _cache_key(self, variant)


def market_plan(cfg: Config):
    """[(relative path, person key, camera, image key, junk)] and {pid: person key} per split."""
    if cfg.num_cameras < 2 or cfg.num_cameras > 9:
        raise ValueError(f"num_cameras must be in 2..9 (one digit in the file name), got {cfg.num_cameras}")
    if not (1 <= cfg.min_cameras <= cfg.max_cameras <= cfg.num_cameras):
        raise ValueError("need 1 <= min_cameras <= max_cameras <= num_cameras")
    if not (1 <= cfg.min_images <= cfg.max_images):
        raise ValueError("need 1 <= min_images <= max_images")
    if min(cfg.train_max_cameras, cfg.train_min_images, cfg.train_max_images) < 0:
        raise ValueError("train_max_cameras, train_min_images and train_max_images must be >= 0 (0 = as the test split)")
    if cfg.num_train_ids < 1 or cfg.num_test_ids < 1:
        raise ValueError("num_train_ids and num_test_ids must be >= 1")
    rng = np.random.default_rng([cfg.seed, 4])
    total = cfg.num_train_ids + cfg.num_test_ids
    if total > 9998:
        raise ValueError("at most 9998 identities (4-digit ids)")
    ids = rng.permutation(np.arange(1, total + 1))
    train_ids = sorted(ids[: cfg.num_train_ids].tolist())
    test_ids = sorted(ids[cfg.num_train_ids:].tolist())
    frame = np.zeros(cfg.num_cameras, np.int64)
    plan = []

    def name(pid_text, cam):
        frame[cam] += rng.integers(5, 60)
        seq = 1 + min(int(frame[cam] // 40000), 5)
        return f"{pid_text}_c{cam + 1}s{seq}_{int(frame[cam]):06d}_{int(rng.integers(1, 4)):02d}.jpg"

    for split_ids, test in ((train_ids, False), (test_ids, True)):
        if test:
            min_c, max_c = max(cfg.min_cameras, 2), cfg.max_cameras
            min_i, max_i = max(cfg.min_images, 2), max(cfg.max_images, 2)
        else:
            min_c = cfg.min_cameras
            max_c = max(min_c, min(cfg.train_max_cameras or cfg.max_cameras, cfg.max_cameras))
            max_i = min(cfg.train_max_images or cfg.max_images, cfg.max_images)
            min_i = min(cfg.train_min_images or cfg.min_images, max_i)
        for pid in split_ids:
            ncam = int(rng.integers(min_c, max_c + 1))
            cams = sorted(rng.choice(cfg.num_cameras, ncam, replace=False).tolist())
            for cam in cams:
                n = int(rng.integers(min_i, max_i + 1))
                for k in range(n):
                    folder = ("query" if k == 0 else "bounding_box_test") if test else "bounding_box_train"
                    plan.append((f"{folder}/{name(f'{pid:04d}', cam)}", pid, cam, False))
    for i in range(cfg.num_distractors):
        cam = int(rng.integers(cfg.num_cameras))
        plan.append((f"bounding_box_test/{name('0000', cam)}", 20000 + i, cam, False))
    for i in range(cfg.num_junk):
        cam = int(rng.integers(cfg.num_cameras))
        plan.append((f"bounding_box_test/{name('-1', cam)}", 30000 + i, cam, True))
    jobs = [(rel, key, cam, idx, junk) for idx, (rel, key, cam, junk) in enumerate(plan)]
    return jobs, train_ids, test_ids


def _market_mat_struct(seed, pids):
    persons = [make_person(seed, p) for p in pids]
    cols = {}
    for f in MARKET_FIELDS:
        if f == "age":
            v = [p.age + 1 for p in persons]
        elif f in ("backpack", "bag", "handbag", "hat"):
            v = [getattr(p, f) + 1 for p in persons]
        elif f.startswith("up") and f != "up":
            v = [2 if p.up == f[2:] else 1 for p in persons]
        elif f.startswith("down") and f != "down":
            v = [2 if p.down == f[4:] else 1 for p in persons]
        elif f == "clothes":
            v = [1 if p.dress else 2 for p in persons]
        elif f == "down":
            v = [2 if p.short_lower else 1 for p in persons]
        elif f == "up":
            v = [2 if p.short_sleeve else 1 for p in persons]
        elif f == "hair":
            v = [2 if p.long_hair else 1 for p in persons]
        elif f == "gender":
            v = [2 if p.female else 1 for p in persons]
        else:  # pragma: no cover
            raise AssertionError(f)
        cols[f] = np.asarray(v, np.float64).reshape(1, -1)  # MATLAB double row vector
    idx = np.empty((1, len(pids)), dtype=object)
    for i, p in enumerate(pids):
        idx[0, i] = f"{p:04d}"
    cols["image_index"] = idx  # cell array of char
    return cols


def write_market_attribute_mat(path, seed, train_ids, test_ids):
    """`market_attribute.mat` in the official struct format (1/2 coding, per identity)."""
    import scipy.io

    scipy.io.savemat(path, {"market_attribute": {"train": _market_mat_struct(seed, train_ids),
                                                 "test": _market_mat_struct(seed, test_ids)}},
                     do_compression=False, oned_as="row")


def pa100k_labels(p: Person, view: str) -> np.ndarray:
    """The 26 PA-100K attributes of one image (view-dependent ones as drawn)."""
    v = {"Female": p.female, "AgeOver60": p.age == 3, "Age18-60": p.age == 2, "AgeLess18": p.age < 2,
         "Front": view == "front", "Side": view == "side", "Back": view == "back", "Hat": p.hat,
         "Glasses": p.glasses and view != "back", "HandBag": p.handbag, "ShoulderBag": p.bag,
         "Backpack": p.backpack, "HoldObjectsInFront": p.holding and view != "back",
         "ShortSleeve": p.short_sleeve, "LongSleeve": not p.short_sleeve, "UpperStride": p.pattern == "stride",
         "UpperLogo": p.pattern == "logo" and view == "front", "UpperPlaid": p.pattern == "plaid",
         "UpperSplice": p.pattern == "splice" and view != "side",
         "LowerStripe": p.lower_pattern == "stripe" and not p.dress,
         "LowerPattern": p.lower_pattern == "pattern" and not p.dress, "LongCoat": p.longcoat,
         "Trousers": not p.dress and not p.short_lower, "Shorts": not p.dress and p.short_lower,
         "Skirt&Dress": p.dress, "boots": p.boots}
    return np.asarray([int(bool(v[n])) for n in PA100K_ATTRIBUTES], np.uint8)


def pa100k_plan(cfg: Config100k):
    rng = np.random.default_rng([cfg.seed, 5])
    jobs = []
    n = cfg.num_train + cfg.num_val + cfg.num_test
    for i in range(n):
        cam = int(rng.integers(cfg.num_cameras))
        view = VIEWS[int(rng.integers(3))]
        jobs.append((f"data/{i + 1:06d}.jpg", 40000 + i, cam, 100000 + i, False, view))
    return jobs


# ----------------------------------------------------------------------------- writing
def _render_jobs(seed, quality, out_dir, jobs):
    from PIL import Image

    for job in jobs:
        rel, key, cam, idx, junk = job[:5]
        view = job[5] if len(job) > 5 else None
        img, _ = render_image(seed, key, cam, idx, junk=junk, view=view)
        Image.fromarray(img).save(os.path.join(out_dir, rel), format="JPEG", quality=quality)


def _plan(variant, cfg):
    return market_plan(cfg)[0] if variant == "market" else pa100k_plan(cfg)


def _run_jobs(variant, cfg, out_dir, workers):
    """Render every image of the plan; job i goes to worker i % workers.

    Extra workers are fresh `python -m keras_hpnet.datasets.synthetic` processes
    that recompute the (deterministic) plan: no fork of a parent that may run
    TensorFlow threads, no re-import of the caller's __main__.
    """
    import subprocess
    import sys

    jobs = _plan(variant, cfg)
    if workers is None:
        workers = min(os.cpu_count() or 1, 2) if len(jobs) >= 400 else 1
    procs = []
    for w in range(1, workers):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "keras_hpnet.datasets.synthetic", variant,
             json.dumps(dataclasses.asdict(cfg)), out_dir, str(w), str(workers)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    try:
        _render_jobs(cfg.seed, cfg.jpeg_quality, out_dir, jobs[0::workers])
    finally:
        errors = []
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                errors.append(err.decode(errors="replace")[-2000:])
    if errors:
        raise RuntimeError(f"synthetic generation worker failed:\n{errors[0]}")
    return jobs


def _worker_main(argv):
    variant, cfg_json, out_dir, w, workers = argv
    cfg = (Config if variant == "market" else Config100k)(**json.loads(cfg_json))
    jobs = _plan(variant, cfg)
    _render_jobs(cfg.seed, cfg.jpeg_quality, out_dir, jobs[int(w)::int(workers)])


def cache_dir() -> str:
    """`$KERAS_HPNET_CACHE` or `~/.cache/keras_hpnet`."""
    return os.environ.get("KERAS_HPNET_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "keras_hpnet")


MARKER = "synthetic.json"


def _atomic_generate(final: str, build) -> str:
    """Run `build(tmp_dir)` and rename the finished folder to `final` (if absent)."""
    if os.path.isfile(os.path.join(final, MARKER)):
        return final
    parent = os.path.dirname(os.path.abspath(final))
    os.makedirs(parent, exist_ok=True)
    if os.path.isdir(final):  # not ours / unfinished by another tool: never trusted, never deleted
        raise FileExistsError(f"{final} exists but has no {MARKER}: not a finished synthetic dataset; remove it")
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-" + os.path.basename(final) + "-")
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isfile(os.path.join(final, MARKER)):  # lost a race to a finished copy? else re-raise
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def generate_market(root: str | None = None, *, workers: int | None = None, **sizes) -> str:
    """Write the Market-1501-layout synthetic dataset; returns its folder.

    The folder is `root/synthetic_market_<key>` (root defaults to the cache
    directory), `key` a hash of the sizes, seed and renderer version, so other
    sizes never reuse a mismatching copy. An existing finished copy is reused.
    """
    cfg = Config(**sizes)
    final = os.path.join(root or cache_dir(), f"synthetic_market_{cfg.key('market')}")

    def build(tmp):
        jobs, train_ids, test_ids = market_plan(cfg)
        for folder in ("bounding_box_train", "bounding_box_test", "query"):
            os.makedirs(os.path.join(tmp, folder))
        _run_jobs("market", cfg, tmp, workers)
        write_market_attribute_mat(os.path.join(tmp, "market_attribute.mat"), cfg.seed, train_ids, test_ids)
        with open(os.path.join(tmp, MARKER), "w") as f:
            json.dump({"variant": "market", "version": VERSION, "images": len(jobs), **dataclasses.asdict(cfg)}, f,
                      indent=1)

    return _atomic_generate(final, build)


def generate_pa100k(root: str | None = None, *, workers: int | None = None, **sizes) -> str:
    """Write the PA-100K-style variant (`annotation.mat` + `data/`); returns its folder."""
    import scipy.io

    cfg = Config100k(**sizes)
    if min(cfg.num_train, cfg.num_val, cfg.num_test) < 1:
        raise ValueError("num_train, num_val and num_test must be >= 1")
    final = os.path.join(root or cache_dir(), f"synthetic_pa100k_{cfg.key('pa100k')}")

    def build(tmp):
        os.makedirs(os.path.join(tmp, "data"))
        jobs = _run_jobs("pa100k", cfg, tmp, workers)
        labels = np.stack([pa100k_labels(make_person(cfg.seed, j[1]), j[5]) for j in jobs]).astype(np.float64)
        names = np.array([os.path.basename(j[0]) for j in jobs], dtype=object)
        a, b = cfg.num_train, cfg.num_train + cfg.num_val
        cell = lambda x: x.reshape(-1, 1)  # noqa: E731  (N x 1 cell array, as in the official file)
        scipy.io.savemat(os.path.join(tmp, "annotation.mat"), {
            "attributes": cell(np.array(PA100K_ATTRIBUTES, dtype=object)),
            "train_images_name": cell(names[:a]), "val_images_name": cell(names[a:b]),
            "test_images_name": cell(names[b:]),
            "train_label": labels[:a], "val_label": labels[a:b], "test_label": labels[b:]})
        with open(os.path.join(tmp, MARKER), "w") as f:
            json.dump({"variant": "pa100k", "version": VERSION, "images": len(jobs), **dataclasses.asdict(cfg)}, f,
                      indent=1)

    return _atomic_generate(final, build)


def load_synthetic(root=None, *, age="drop", workers=None, **sizes):
    """Make (first use) and load the Market-layout synthetic dataset with the real reader.

    `sizes`: fields of :class:`Config` (seed, num_train_ids, num_test_ids,
    num_cameras, min/max_cameras, min/max_images, num_distractors, num_junk).
    """
    from keras_hpnet.datasets.market1501 import load_market_layout

    folder = generate_market(root, workers=workers, **sizes)
    ds = load_market_layout(folder, name="synthetic", num_cameras=Config(**sizes).num_cameras,
                            attribute_file=os.path.join(folder, "market_attribute.mat"),
                            attribute_struct="market_attribute", age=age)
    return ds


def load_synthetic_pa100k(root=None, *, workers=None, **sizes):
    """Make (first use) and load the PA-100K-style synthetic variant with the real reader."""
    from keras_hpnet.datasets.pa100k import load_pa100k

    return load_pa100k(generate_pa100k(root, workers=workers, **sizes), name="synthetic_pa100k")


if __name__ == "__main__":  # a generation worker (see _run_jobs)
    import sys

    _worker_main(sys.argv[1:])

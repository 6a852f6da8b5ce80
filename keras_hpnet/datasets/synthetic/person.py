"""Identity-level appearance: what stays the same for one person across cameras.

Attribute colours and fields follow the Market-1501 attribute schema (Lin et
al. 2019, docs/datasets.md); every attribute drawn is visible in the image.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

# Market-1501 attribute colours (names as in market_attribute.mat).
UP_COLOURS = {"black": (0.08, 0.08, 0.09), "white": (0.93, 0.93, 0.92), "red": (0.82, 0.1, 0.1),
              "purple": (0.5, 0.16, 0.62), "yellow": (0.96, 0.84, 0.12), "gray": (0.5, 0.5, 0.5),
              "blue": (0.12, 0.25, 0.78), "green": (0.12, 0.6, 0.2)}
DOWN_COLOURS = {"black": (0.08, 0.08, 0.09), "white": (0.93, 0.93, 0.92), "pink": (0.97, 0.55, 0.72),
                "purple": (0.5, 0.16, 0.62), "yellow": (0.96, 0.84, 0.12), "gray": (0.5, 0.5, 0.5),
                "blue": (0.12, 0.25, 0.78), "green": (0.12, 0.6, 0.2), "brown": (0.45, 0.27, 0.1)}
SKIN = np.array([(0.96, 0.8, 0.66), (0.88, 0.68, 0.5), (0.72, 0.52, 0.36), (0.52, 0.35, 0.22), (0.34, 0.22, 0.14)])
HAIR = np.array([(0.06, 0.05, 0.05), (0.3, 0.18, 0.08), (0.75, 0.6, 0.3), (0.55, 0.25, 0.1)])
GREY_HAIR = np.array((0.78, 0.78, 0.76))
ACCESSORY = np.array([(0.1, 0.1, 0.1), (0.55, 0.35, 0.15), (0.8, 0.15, 0.15), (0.15, 0.2, 0.6), (0.85, 0.85, 0.8),
                      (0.2, 0.45, 0.2), (0.9, 0.6, 0.1), (0.4, 0.4, 0.45)])
HAT = np.array([(0.85, 0.1, 0.1), (0.1, 0.2, 0.75), (0.95, 0.95, 0.92), (0.95, 0.8, 0.1), (0.1, 0.55, 0.2),
                (0.06, 0.06, 0.06)])
PATTERNS = ("plain", "stride", "plaid", "splice", "logo")
AGE_HEIGHT = (0.7, 0.88, 1.0, 0.96)


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


def _jitter(rng, rgb, amount=0.05):
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3), 0.0, 1.0).astype(np.float32)


def _contrasting(rng, avoid, palette=None):
    """An accessory colour far from every colour in `avoid` (so bags, hats... stay visible)."""
    palette = ACCESSORY if palette is None else palette
    dist = np.min([np.abs(palette - np.asarray(c)).sum(1) for c in avoid], axis=0)
    best = np.argsort(-dist)[:3]
    return _jitter(rng, palette[best[rng.integers(3)]], 0.04)


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

"""Carried items and glasses of a drawn person: backpack, shoulder bag, handbag, held object."""

from __future__ import annotations

from keras_hpnet.datasets.synthetic.draw import PaintLayer, capsule, rect
from keras_hpnet.datasets.synthetic.figure import Figure
from keras_hpnet.datasets.synthetic.person import Person

GLASSES_RGB = (0.03, 0.03, 0.03)


def backpack_behind(L: PaintLayer, p: Person, f: Figure):
    """The part of a backpack hidden by the body: sticks out at the back (side), edges (front)."""
    if not p.backpack:
        return
    cx, sw, hp = f.cx, f.sw, f.hp
    if f.side:
        L.paint(rect(f.y(0.17), f.y(0.47), cx - sw - 0.13 * hp, cx - sw * 0.4), p.backpack_rgb)
    elif f.view == "front":
        L.paint(rect(f.y(0.2), f.y(0.44), cx - sw - 0.04 * hp, cx + sw + 0.04 * hp), p.backpack_rgb)


def backpack_front(L: PaintLayer, p: Person, f: Figure):
    """A backpack over the torso seen from the back, or its straps seen from the front."""
    if not p.backpack:
        return
    cx, sw = f.cx, f.sw
    if f.view == "back":
        L.paint(rect(f.y(0.19), f.y(0.44), cx - sw * 0.8, cx + sw * 0.8), p.backpack_rgb)
    elif f.view == "front":
        for sx in (-0.55, 0.55):
            L.paint(capsule(f.y(0.17), cx + sx * sw, f.y(0.42), cx + sx * sw * 0.9, 0.022 * f.hp), p.backpack_rgb)


def shoulder_bag(L: PaintLayer, p: Person, f: Figure):
    """Strap across the body (not in side view) and the bag at the hip."""
    if not p.bag:
        return
    cx, sw, hp, side = f.cx, f.sw, f.hp, f.side
    bs = 1 if p.bag_side else -1
    if not side:
        L.paint(capsule(f.y(0.17), cx - bs * sw * 0.7, f.y(0.47), cx + bs * (sw + 0.01 * hp), 0.018 * hp), p.bag_rgb)
    bx = cx + (bs * (sw + 0.035 * hp) if not side else -0.02 * hp)
    L.paint(rect(f.y(0.42), f.y(0.62), bx - 0.085 * hp, bx + 0.085 * hp), p.bag_rgb)


def handbag(L: PaintLayer, p: Person, f: Figure):
    """A handbag hanging from one hand (the bag side's other hand when a shoulder bag is worn)."""
    if not p.handbag:
        return
    hp, side = f.hp, f.side
    hx = (f.arm_x[-1] if not p.bag_side or side else f.arm_x[0]) + (f.swing if side else 0.0)
    L.paint(capsule(f.hand_y, hx, f.y(0.58), hx, 0.008 * hp), p.handbag_rgb)
    L.paint(rect(f.y(0.56), f.y(0.72), hx - 0.075 * hp, hx + 0.075 * hp), p.handbag_rgb)


def held_object(L: PaintLayer, p: Person, f: Figure):
    """An object held in front of the body (hidden from the back)."""
    if not p.holding or f.view == "back":
        return
    cx, hp, side = f.cx, f.hp, f.side
    L.paint(rect(f.y(0.38), f.y(0.52), cx - 0.07 * hp + (0.06 * hp if side else 0),
                 cx + 0.07 * hp + (0.06 * hp if side else 0)), p.hold_rgb)


def glasses(L: PaintLayer, p: Person, f: Figure):
    """Dark glasses across the face (not seen from the back)."""
    if not p.glasses or f.view == "back":
        return
    hc, head_r = f.head_cy, f.head_r
    gx = f.head_cx + (0.35 * head_r if f.side else 0.0)
    L.paint(rect(hc - 0.12 * head_r, hc + 0.12 * head_r, gx - 0.62 * head_r, gx + 0.62 * head_r), GLASSES_RGB)

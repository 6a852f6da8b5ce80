"""Body parts of a drawn person: hair, legs with shoes, arms with sleeves, neck and head."""

from __future__ import annotations

from keras_hpnet.datasets.synthetic.draw import PaintLayer, capsule, ellipse, rect
from keras_hpnet.datasets.synthetic.figure import Figure
from keras_hpnet.datasets.synthetic.person import Person


def hair_behind(L: PaintLayer, p: Person, f: Figure):
    """Long hair behind the shoulders (painted first)."""
    if not p.long_hair:
        return
    hp, side, head_cx, head_r = f.hp, f.side, f.head_cx, f.head_r
    if f.view != "front":
        L.paint(rect(f.y(0.07), f.y(0.37), head_cx - head_r * (0.8 if side else 1.25) - (0.025 * hp if side else 0),
                     head_cx + head_r * (0.3 if side else 1.25)), p.hair_colour)
    else:
        L.paint(rect(f.y(0.07), f.y(0.34), head_cx - head_r * 1.3, head_cx + head_r * 1.3), p.hair_colour)


def legs(L: PaintLayer, p: Person, f: Figure):
    """Bare legs with shoes or boots (covered later by the lower garment)."""
    hp, side = f.hp, f.side
    for lx, s in f.legs:
        foot_x = lx + s
        L.paint(capsule(f.waist + 2, lx, f.ankle, foot_x, f.leg_r), p.skin)
        if p.boots:
            L.paint(capsule(f.y(0.84), lx + 0.6 * s, f.y(0.975), foot_x, f.leg_r * 1.15), p.shoe_rgb)
        else:
            sx = foot_x + (0.03 * hp if side else 0.0)
            L.paint(ellipse(f.y(0.975), sx, 0.025 * hp, 0.045 * hp if side else 0.035 * hp), p.shoe_rgb)


def arms(L: PaintLayer, p: Person, f: Figure):
    """Arms (one in side view, swinging with the walk) with short or long sleeves and hands."""
    hp, side, cx, swing, arm_r = f.hp, f.side, f.cx, f.swing, f.arm_r
    for ax in f.arm_x:
        hx = ax + swing + (0 if side else (-0.01 * hp if ax < cx else 0.01 * hp))
        L.paint(capsule(f.y(0.18), ax, f.hand_y, hx, arm_r), p.skin)
        if p.short_sleeve:
            L.paint(capsule(f.y(0.18), ax, f.y(0.27), ax + swing * 0.3, arm_r * 1.2), p.up_rgb)
        else:
            L.paint(capsule(f.y(0.18), ax, f.y(0.49), hx - swing * 0.05, arm_r * 1.15), p.up_rgb)
        L.paint(ellipse(f.hand_y + 1, hx, arm_r * 1.1, arm_r * 1.05), p.skin)


def hair_front(L: PaintLayer, p: Person, f: Figure):
    """Long hair seen from the front falls over the shoulders."""
    if not (p.long_hair and f.view == "front"):
        return
    head_cx, head_r = f.head_cx, f.head_r
    for sx in (-1, 1):
        L.paint(rect(f.y(0.08), f.y(0.34), head_cx + sx * head_r * 0.55 - (head_r * 0.75 if sx < 0 else 0),
                     head_cx + sx * head_r * 0.55 + (head_r * 0.75 if sx > 0 else 0)), p.hair_colour)


def head(L: PaintLayer, p: Person, f: Figure):
    """Neck, head and the hair on it (seen from the back, the side or the front)."""
    hp, side, head_cx, head_r, hc = f.hp, f.side, f.head_cx, f.head_r, f.head_cy
    L.paint(rect(f.y(0.12), f.y(0.18), head_cx - 0.025 * hp, head_cx + 0.025 * hp), p.skin)
    L.paint(ellipse(hc, head_cx, head_r, head_r * (0.82 if side else 0.8)), p.skin)
    if f.view == "back":
        L.paint(ellipse(hc - 0.1 * head_r, head_cx, head_r * 0.98, head_r * 0.82), p.hair_colour)
    elif side:
        L.paint(ellipse(hc - 0.35 * head_r, head_cx - 0.25 * head_r, head_r * 0.72, head_r * 0.72), p.hair_colour)
    else:
        L.paint(ellipse(hc - 0.55 * head_r, head_cx, head_r * 0.55, head_r * 0.82), p.hair_colour)

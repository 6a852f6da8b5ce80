"""Clothing of a drawn person: lower garment (dress/skirt or trousers/shorts, patterns), upper garment, hat."""

from __future__ import annotations

import numpy as np

from keras_hpnet.datasets.synthetic.draw import XX, YY, PaintLayer, capsule, rect, trapezoid
from keras_hpnet.datasets.synthetic.figure import Figure
from keras_hpnet.datasets.synthetic.person import Person


def _dress(L: PaintLayer, p: Person, f: Figure):
    """A long dress or a skirt (short_lower), flared towards the hem."""
    bottom = f.y(0.7) if p.short_lower else f.y(0.9)
    flare = 0.11 * f.hp
    cx, hw = f.cx, f.hw
    L.paint(trapezoid(f.waist - 2, bottom, cx - hw, cx + hw, cx - hw - flare, cx + hw + flare), p.down_rgb)


def _trousers(L: PaintLayer, p: Person, f: Figure):
    """Trousers or shorts (short_lower), with an optional stripe / check pattern down the legs."""
    waist, ankle, cx, hw = f.waist, f.ankle, f.cx, f.hw
    bottom_f = 0.63 if p.short_lower else 0.95
    for lx, s in f.legs:
        t = (bottom_f - 0.5) / 0.45
        L.paint(capsule(waist, lx, waist + (ankle - waist) * t, lx + s * t, f.leg_r * 1.35), p.down_rgb)
    L.paint(rect(waist - 1, f.y(0.57), cx - hw, cx + hw), p.down_rgb)
    if p.lower_pattern == "plain":
        return
    tex = np.where((((YY / 3).astype(np.int32) + (XX / 3).astype(np.int32)) % 2 == 0)[..., None],
                   p.up2_rgb, p.down_rgb) if p.lower_pattern == "pattern" else p.up2_rgb
    width = f.leg_r * (0.45 if p.lower_pattern == "stripe" else 0.9)
    for lx, s in f.legs:
        L.paint(capsule(f.y(0.58), lx, waist + (ankle - waist) * (bottom_f - 0.5) / 0.45, lx + s, width), tex)


def lower_garment(L: PaintLayer, p: Person, f: Figure):
    (_dress if p.dress else _trousers)(L, p, f)


def _upper_texture(p: Person, y0, cx, hp, view):
    """Upper-clothing colour image (pattern visible where the view shows it)."""
    c1, c2 = p.up_rgb, p.up2_rgb
    period = max(2.0, 0.045 * hp)
    if p.pattern == "stride":
        sel = ((YY - y0) / period).astype(np.int32) % 2 == 0
    elif p.pattern == "plaid":
        rows = ((YY - y0) / (1.5 * period)).astype(np.int32)
        sel = (rows + ((XX - cx + 50) / (1.5 * period)).astype(np.int32)) % 2 == 0
    elif p.pattern == "splice" and view != "side":
        sel = XX < cx
    else:
        return c1
    return np.where(sel[..., None], c1, c2)


def upper_garment(L: PaintLayer, p: Person, f: Figure):
    """Torso in the upper clothing (to the knees for a long coat), its pattern and a chest logo (front)."""
    cx, sw, hw = f.cx, f.sw, f.hw
    coat_bottom = f.y(0.8) if p.longcoat else f.y(0.54)
    tex = _upper_texture(p, f.top, cx, f.hp, f.view)
    L.paint(trapezoid(f.y(0.16), coat_bottom, cx - sw, cx + sw, cx - hw * (1.25 if p.longcoat else 1.0),
                      cx + hw * (1.25 if p.longcoat else 1.0)), tex)
    if p.pattern == "logo" and f.view == "front":
        L.paint(rect(f.y(0.24), f.y(0.33), cx - 0.05 * f.hp, cx + 0.05 * f.hp), p.up2_rgb)


def hat(L: PaintLayer, p: Person, f: Figure):
    """A cap: crown and brim (longer towards the face in side view)."""
    if not p.hat:
        return
    hc, head_cx, head_r = f.head_cy, f.head_cx, f.head_r
    L.paint(rect(hc - 1.8 * head_r, hc - 0.4 * head_r, head_cx - 1.0 * head_r, head_cx + 1.0 * head_r), p.hat_rgb)
    L.paint(rect(hc - 0.65 * head_r, hc - 0.25 * head_r, head_cx - 1.6 * head_r,
                 head_cx + (2.0 if f.side else 1.6) * head_r), p.hat_rgb)

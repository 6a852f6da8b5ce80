"""Body proportions and pose of one drawn person: where every body part goes.

All lengths are in pixels, derived from the person height `hp`, the identity's
build and sex, the view and the walking phase; the part painters (body,
clothes, accessories) read them from one :class:`Figure`.
"""

from __future__ import annotations

import dataclasses

from keras_hpnet.datasets.synthetic.person import Person


@dataclasses.dataclass(frozen=True)
class Figure:
    view: str
    side: bool  # side view, facing right
    hp: float  # person height
    top: float  # row of the top of the head
    cx: float  # body centre column
    sw: float  # shoulder half-width
    hw: float  # hip half-width
    head_r: float
    head_cx: float
    head_cy: float
    waist: float
    ankle: float
    leg_r: float
    arm_r: float
    legs: tuple  # ((hip column, stride offset of the foot), ...) left, right
    arm_x: tuple  # shoulder columns (one in side view)
    swing: float  # arm swing of the hand
    hand_y: float

    def y(self, f):
        """Row at fraction `f` of the person height below the top of the head."""
        return self.top + f * self.hp


def make_figure(p: Person, view: str, hp: float, foot: float, cx: float, phase: float) -> Figure:
    """Proportions of `p` seen from `view`, feet at row `foot`, walking phase in [-1, 1]."""
    y0 = foot - hp
    side = view == "side"
    sw = 0.118 * hp * p.build * (0.62 if side else 1.0) * (0.84 if p.female else 1.06)
    hw = 0.092 * hp * p.build * (0.7 if side else 1.0) * (1.15 if p.female else 0.95)
    head_r = 0.062 * hp
    arm_r = 0.043 * hp * p.build
    spread = (0.045 * hp) * phase if side else 0.0
    leg_dx = 0.0 if side else hw * 0.5
    return Figure(
        view=view, side=side, hp=hp, top=y0, cx=cx, sw=sw, hw=hw, head_r=head_r,
        head_cx=cx + (0.02 * hp if side else 0.0), head_cy=y0 + 0.075 * hp,
        waist=y0 + 0.5 * hp, ankle=y0 + 0.95 * hp, leg_r=0.037 * hp * p.build, arm_r=arm_r,
        legs=((cx - leg_dx, -spread), (cx + leg_dx, spread)),
        arm_x=(cx,) if side else (cx - sw - arm_r * 0.6, cx + sw + arm_r * 0.6),
        swing=0.05 * hp * phase if side else 0.0, hand_y=y0 + 0.52 * hp)

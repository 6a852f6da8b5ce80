"""One synthetic tracklet: a run of frames of one person walking through one camera.

The scene, view, framing, blur and any occluder are drawn once per tracklet
(`render_image`'s draws, from the tracklet's own stream); across frames the
person walks (the walking phase advances, the box drifts in the facing
direction and grows or shrinks slightly), the detector box jitters by a few
pixels, the illumination drifts slowly and the sensor noise is new: the
motion, pose and lighting changes of a real tracker's crops. Frames are of
unequal quality, as a tracker's are, which is what pooling a tracklet (and
weighting its frames, attention) is for: some tracklets have a passer-by (a
dark upright band) crossing the box for a few frames, and a `HARD_FRAME_RATE`
share of the frames is a bad crop (box misplaced, motion blur, an occluder,
a flash or a shadow).
"""

from __future__ import annotations

import math

import numpy as np

from keras_hpnet.datasets.synthetic.camera import VIEWS, make_camera
from keras_hpnet.datasets.synthetic.draw import H, W, blend, rect
from keras_hpnet.datasets.synthetic.person import make_person
from keras_hpnet.datasets.synthetic.render import composite, finish, render_person
from keras_hpnet.datasets.synthetic.scene import render_background

VERSION = 2  # bump when the tracklet motion model changes (part of the video cache key)
_TRACKLET, _FRAME, _OCCLUDER = 7, 8, 9  # random streams (render_image uses 3)
PASSER_RATE = 0.3  # tracklets with a passer-by crossing for a few frames
HARD_FRAME_RATE = 0.2  # frames that are a bad crop (HARD_FRAMES)
HARD_FRAMES = ("misplaced", "blurred", "occluded", "lighting")


def render_tracklet(seed: int, person_key: int, cam_index: int, tracklet_key: int, num_frames: int, *,
                    junk: bool = False) -> list:
    """`num_frames` 128x64 RGB uint8 frames of identity `person_key` in camera
    `cam_index`; a pure function of its arguments. Junk tracklets (file id
    00-1) are badly placed boxes, as junk images of `render_image`."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    cam = make_camera(seed, cam_index)
    rng = np.random.default_rng([seed, _TRACKLET, tracklet_key])
    bg = render_background(cam, rng)
    person = make_person(seed, person_key)
    view = VIEWS[rng.choice(3, p=cam.views)]
    mirror = view == "side" and rng.random() < 0.5  # facing left
    hp = cam.scale * rng.uniform(0.94, 1.06) * H * person.height
    foot = cam.foot * H + rng.uniform(-3, 3)
    cx = W / 2 + cam.xoff + rng.uniform(-4, 4)
    if junk:
        hp *= rng.choice([0.45, 1.8])
        foot += rng.uniform(-30, 60)
        cx += rng.uniform(-25, 25)
    phase, step = rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 0.9)  # walking cycle, radians per frame
    drift = rng.uniform(-0.6, 0.6)  # box drift, pixels per frame
    if view == "side":  # walking the way the person faces
        drift = abs(drift) * (-1.0 if mirror else 1.0)
    growth = rng.uniform(-0.004, 0.004)  # walking towards / away from the camera
    gain, gain_rate = rng.uniform(0.88, 1.12), rng.uniform(-0.01, 0.01)  # slow lighting drift
    blur = cam.blur * rng.uniform(0.7, 1.3)
    occluder = int(rng.integers(2**31))  # one occluder draw for the whole tracklet: it stays put
    passer = None
    if rng.random() < PASSER_RATE:  # (start column, speed px/frame, half-width, colour)
        speed = rng.uniform(5, 9) * rng.choice([-1, 1])
        start = rng.uniform(-40, W + 40) - speed * rng.uniform(0, 12)
        passer = (start, speed, rng.uniform(6, 12), cam.clutter[rng.integers(4)] * 0.5)
    frames = []
    for f in range(num_frames):
        frame_rng = np.random.default_rng([seed, _FRAME, tracklet_key, f])
        jx, jy, jh = frame_rng.uniform(-1, 1, 3) * (3, 2, 0.03)  # detector box jitter: px, px, height
        hard = HARD_FRAMES[frame_rng.integers(len(HARD_FRAMES))] if frame_rng.random() < HARD_FRAME_RATE else ""
        if hard == "misplaced":  # the detector box slipped
            jx += frame_rng.choice([-1, 1]) * frame_rng.uniform(8, 14)
            jy += frame_rng.uniform(-12, 12)
        layer = render_person(person, view, hp * (1 + growth * f) * (1 + jh), foot + jy,
                              cx + drift * f + jx, math.sin(phase + step * f))
        light = gain * (1 + gain_rate * f) * frame_rng.uniform(0.98, 1.02)
        if hard == "lighting":  # a flash or a shadow
            light *= frame_rng.choice([0.6, 1.4])
        img = composite(bg, layer, mirror, cam, np.random.default_rng([seed, _OCCLUDER, occluder]), frame_rng,
                        gain=light)
        if passer is not None:
            x = passer[0] + passer[1] * f
            blend(img, rect(-5, H + 5, x - passer[2], x + passer[2]), passer[3])
        if hard == "occluded":  # something between camera and person for this frame
            top = H * frame_rng.uniform(0.3, 0.6)
            blend(img, rect(top, H + 5, -5, W + 5), cam.clutter[frame_rng.integers(4)] * frame_rng.uniform(0.5, 1.0))
        frames.append(finish(img, max(blur, 1.8) if hard == "blurred" else blur))
    return frames

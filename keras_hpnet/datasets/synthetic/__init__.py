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
"market" (`load("synthetic")`, :mod:`.market`) and "pa100k"
(`load("synthetic_pa100k")`, :mod:`.pa100k`). Generation is deterministic by
`seed` (independent of the worker count), parallel over processes
(:mod:`.workers`, :mod:`.__main__`) and atomic (:mod:`.cache`).

Modules: :mod:`.person` (identity appearance), :mod:`.camera` (camera model,
photometry), :mod:`.scene` (background, occluders), :mod:`.draw` (raster
shapes), :mod:`.figure` (body proportions and pose), :mod:`.body`,
:mod:`.clothes`, :mod:`.accessories` (the parts of a person),
:mod:`.render` (one image; the renderer VERSION).
"""

from keras_hpnet.datasets.synthetic.cache import MARKER, cache_dir
from keras_hpnet.datasets.synthetic.market import Config, generate_market, load_synthetic, market_plan
from keras_hpnet.datasets.synthetic.pa100k import (
    PA100K_ATTRIBUTES, Config100k, load_synthetic_pa100k, pa100k_labels, pa100k_plan)
from keras_hpnet.datasets.synthetic.person import make_person
from keras_hpnet.datasets.synthetic.render import render_image

__all__ = ["MARKER", "PA100K_ATTRIBUTES", "Config", "Config100k", "cache_dir", "generate_market", "load_synthetic",
           "load_synthetic_pa100k", "make_person", "market_plan", "pa100k_labels", "pa100k_plan", "render_image"]

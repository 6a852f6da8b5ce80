"""A generation worker: `python -m keras_hpnet.datasets.synthetic VARIANT CONFIG_JSON OUT_DIR W WORKERS`.

Recomputes the variant's (deterministic) plan and renders jobs W, W + WORKERS, ...
(started by :func:`keras_hpnet.datasets.synthetic.workers.run_jobs`).
"""

import json
import sys

from keras_hpnet.datasets.synthetic.market import Config, market_plan
from keras_hpnet.datasets.synthetic.mars import VideoConfig, mars_jobs, mars_plan, render_tracklet_jobs
from keras_hpnet.datasets.synthetic.pa100k import Config100k, pa100k_plan
from keras_hpnet.datasets.synthetic.workers import render_jobs

VARIANTS = {"market": (Config, lambda cfg: market_plan(cfg)[0], render_jobs),
            "pa100k": (Config100k, pa100k_plan, render_jobs),
            "mars": (VideoConfig, lambda cfg: mars_jobs(mars_plan(cfg)), render_tracklet_jobs)}


def main(argv):
    if len(argv) != 5 or argv[0] not in VARIANTS:
        raise SystemExit(f"usage: python -m keras_hpnet.datasets.synthetic {{{','.join(VARIANTS)}}} "
                         "CONFIG_JSON OUT_DIR W WORKERS (a generation worker)")
    variant, cfg_json, out_dir, w, workers = argv
    config, plan, render = VARIANTS[variant]
    cfg = config(**json.loads(cfg_json))
    render(cfg.seed, cfg.jpeg_quality, out_dir, plan(cfg)[int(w)::int(workers)])


if __name__ == "__main__":
    main(sys.argv[1:])

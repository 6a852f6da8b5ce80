"""Rendering a plan of jobs to .jpg files, in this process and in worker processes.

A job is `(relative path, person key, camera, image key, junk[, view])` (a
tracklet job of the video variant: see :mod:`.mars`). Job i
goes to worker i % workers; the output does not depend on the worker count.
"""

from __future__ import annotations

import dataclasses
import json
import os

from keras_hpnet.datasets.synthetic.render import render_image


def render_jobs(seed, quality, out_dir, jobs):
    """Render `jobs` and write each as a JPEG of `quality` under `out_dir`."""
    from PIL import Image

    for job in jobs:
        rel, key, cam, idx, junk = job[:5]
        view = job[5] if len(job) > 5 else None
        img, _ = render_image(seed, key, cam, idx, junk=junk, view=view)
        Image.fromarray(img).save(os.path.join(out_dir, rel), format="JPEG", quality=quality)


def run_jobs(variant, cfg, jobs, out_dir, workers, render=render_jobs, size=None):
    """Render every image of the plan `jobs` of `cfg` with `render(seed, quality,
    out_dir, jobs)` (workers None: 2 processes from 400 images; `size`: the
    number of images, default one per job).

    Extra workers are fresh `python -m keras_hpnet.datasets.synthetic` processes
    (see its __main__) that recompute the (deterministic) plan: no fork of a
    parent that may run TensorFlow threads, no re-import of the caller's __main__.
    """
    import subprocess
    import sys

    if workers is None:
        workers = min(os.cpu_count() or 1, 2) if (len(jobs) if size is None else size) >= 400 else 1
    procs = []
    for w in range(1, workers):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "keras_hpnet.datasets.synthetic", variant,
             json.dumps(dataclasses.asdict(cfg)), out_dir, str(w), str(workers)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    try:
        render(cfg.seed, cfg.jpeg_quality, out_dir, jobs[0::workers])
    finally:
        errors = []
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                errors.append(err.decode(errors="replace")[-2000:])
    if errors:
        raise RuntimeError(f"synthetic generation worker failed:\n{errors[0]}")

"""Benchmark: tf.data pipeline images/s (decode + resize + augment), with and
without the in-memory cache, on generated 128x64 JPEGs.

    python benchmarks/bench_data.py [--num_images 3000 --input_size 160,64 --batch_size 32]

Prints one row per configuration: the up-front Pillow check, eval decode, the
training epoch (flip + pad-crop + random erasing), P x K sampling, and cached
epochs. Compare with the fastest model's training speed (~40-80 img/s on 2
cores): the pipeline must be at least 2x faster.
"""

import argparse
import os
import shutil
import tempfile
import time
from collections import namedtuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from keras_hpnet.data import check_images, clear_check_cache, clear_image_cache, make_dataset  # noqa: E402

Rec = namedtuple("Rec", "path pid camid attributes")


def make_images(root, n, seed=0):
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        small = rng.integers(0, 256, (8, 4, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((64, 128), Image.BILINEAR)
        noise = rng.integers(-20, 20, (128, 64, 3))
        image = Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))
        path = os.path.join(root, f"{i // 6:04d}_c{i % 6}_{i:06d}.jpg")
        image.save(path, quality=90)
        records.append(Rec(path, i // 6, i % 6, rng.integers(0, 2, 26).astype(np.uint8)))
    return records


def run(ds):
    t = time.perf_counter()
    n = 0
    for images, _ in ds:
        n += int(images.shape[0])
    return n, time.perf_counter() - t


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=3000)
    parser.add_argument("--input_size", default="160,64")
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.input_size.split(","))
    root = tempfile.mkdtemp(prefix="bench_data_")
    try:
        t = time.perf_counter()
        records = make_images(root, args.num_images)
        print(f"generated {len(records)} 128x64 JPEGs in {time.perf_counter() - t:.1f} s under {root}")
        rows = []
        clear_check_cache()
        t = time.perf_counter()
        check_images(records)
        dt = time.perf_counter() - t
        rows.append(("Pillow check (first time)", len(records), dt))
        t = time.perf_counter()
        check_images(records)
        rows.append(("Pillow check (cached)", len(records), time.perf_counter() - t))
        bs = args.batch_size
        common = dict(input_size=size, batch_size=bs)
        aug = dict(training=True, erasing_probability=0.5)
        configs = [
            ("eval: decode + resize", dict(training=False)),
            ("train: + flip, pad-crop, erasing", aug),
            ("train P x K (K=4)", dict(aug, pk=4)),
            ("train, cache (first epoch: fill)", dict(aug, cache=True)),
            ("train, cache (later epoch)", dict(aug, cache=True, epoch=1)),
        ]
        clear_image_cache()
        run(make_dataset(records[:256], **common, **aug))  # warm-up: thread pools, tracing
        for name, kw in configs:
            n, dt = run(make_dataset(records, **common, **kw))
            rows.append((name, n, dt))
        print(f"\n{'configuration':36s} {'images':>7s} {'seconds':>8s} {'img/s':>8s}")
        for name, n, dt in rows:
            print(f"{name:36s} {n:7d} {dt:8.2f} {n / dt:8.0f}")
        print(f"\nimage size {size}, batch {bs}, {os.cpu_count()} CPUs")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

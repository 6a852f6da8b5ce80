"""Benchmark the embedded synthetic dataset (run on demand, prints a table).

    python benchmarks/bench_synthetic.py                 # generator speed + raw-pixel baseline
    python benchmarks/bench_synthetic.py --probe_epochs=10   # + a tiny-CNN learnability probe
    python benchmarks/bench_synthetic.py --num_train_ids=20 --num_test_ids=10 --speed_images=50  # a quick check

Measures: generator images/s (wall and CPU), the generated dataset's raw-pixel
nearest-neighbour rank-1/mAP (Market protocol; must stay <= 0.40), the
attribute mA of a linear probe on raw pixels (balanced ridge per attribute on
32x16 pixels, train split -> gallery; issue #14: a renderer change must not
raise it by more than 2 points, docs/models.md has today's value), and
optionally how learnable it is: a 4-conv CNN (~0.2M params, 64x32 input) trained
from scratch with identity CE + weighted attribute BCE, its rank-1/mAP and attribute mA on
the test split. The real demo (HA-CNN/HAT-CNN) is tuned by training/.
"""

import os
import shutil
import sys
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("root", None, "where to generate (default: a fresh temp dir, removed afterwards)")
flags.DEFINE_integer("workers", None, "generator processes (default: min(2, cpus))")
flags.DEFINE_integer("seed", 0, "dataset seed")
flags.DEFINE_integer("probe_epochs", 0, "epochs of the tiny-CNN probe (0: skip)")
flags.DEFINE_integer("speed_images", 300, "images rendered in-process for the single-core speed row")
flags.DEFINE_integer("num_train_ids", None, "train identities (default: the generator's, 1000)")
flags.DEFINE_integer("num_test_ids", None, "test identities (default: the generator's, 150)")


def tiny_cnn_probe(ds, epochs, seed=0, size=(64, 32)):
    """Train a tiny CNN on ds.train (identity CE + positive-ratio weighted
    attribute BCE, inputs downsized to `size` for speed); returns
    (train_seconds, images_seen, re-id metrics, attribute metrics on the gallery)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    from keras import ops

    from keras_hpnet.datasets.baseline import load_pixels
    from keras_hpnet.metrics import attribute_metrics, euclidean_distance, reid_metrics

    keras.utils.set_random_seed(seed)
    x = load_pixels(ds.train, size)[0].reshape(-1, *size, 3) * 255.0  # generated: all readable
    y = np.array([r.pid for r in ds.train])
    a = np.stack([r.attributes for r in ds.train]).astype("float32")
    pos_w, neg_w = np.exp(1 - a.mean(0)).astype("float32"), np.exp(a.mean(0)).astype("float32")

    def weighted_bce(yt, logits):  # DeepMAR-style weights (positive ratio per attribute)
        w = yt * pos_w + (1 - yt) * neg_w
        ce = ops.maximum(logits, 0) - logits * yt + ops.log1p(ops.exp(-ops.abs(logits)))
        return ops.mean(w * ce, axis=-1)

    inp = keras.Input((*size, 3))
    h = keras.layers.Rescaling(1 / 127.5, -1)(inp)
    for f in (32, 64, 96, 128):
        h = keras.layers.Conv2D(f, 3, padding="same", use_bias=False)(h)
        h = keras.layers.BatchNormalization(momentum=0.9)(h)  # few steps: let the moving stats keep up
        h = keras.layers.ReLU()(h)
        h = keras.layers.MaxPooling2D()(h)
    emb = keras.layers.GlobalAveragePooling2D()(h)
    ids = keras.layers.Dense(ds.num_train_pids)(emb)
    att = keras.layers.Dense(a.shape[1])(emb)
    model = keras.Model(inp, [ids, att])
    model.compile(keras.optimizers.Adam(2e-3),
                  loss=[keras.losses.SparseCategoricalCrossentropy(from_logits=True), weighted_bce])
    flip = np.random.default_rng(seed)
    t0 = time.time()
    for _ in range(epochs):
        xf = np.where(flip.random(len(x))[:, None, None, None] < 0.5, x[:, :, ::-1], x)
        model.fit(xf, [y, a], batch_size=64, epochs=1, shuffle=True, verbose=0)
    train_s = time.time() - t0
    feat = keras.Model(inp, [emb, att])

    def embed(recs):
        e, p = feat.predict(load_pixels(recs, size)[0].reshape(-1, *size, 3) * 255.0, batch_size=128, verbose=0)
        return e / np.linalg.norm(e, axis=1, keepdims=True), 1 / (1 + np.exp(-p))

    qe, _ = embed(ds.query)
    ge, gp = embed(ds.gallery)
    reid = reid_metrics(euclidean_distance(qe, ge), np.array([r.pid for r in ds.query]),
                        np.array([r.pid for r in ds.gallery]), np.array([r.camid for r in ds.query]),
                        np.array([r.camid for r in ds.gallery]))
    keep = [i for i, r in enumerate(ds.gallery) if r.attributes is not None]
    attr = attribute_metrics(gp[keep], np.stack([ds.gallery[i].attributes for i in keep]))
    return train_s, epochs * len(x), reid, attr


def raw_pixel_linear_probe(ds):
    """Attribute mA on the gallery of the raw-pixel linear probe
    (keras_hpnet.datasets.raw_pixel_attribute_baseline: balanced ridge per
    attribute on 32x16 pixels), fitted on the train split; the ridge strength
    is chosen on the train split (the Market layout has no val)."""
    from keras_hpnet.datasets import raw_pixel_attribute_baseline
    from keras_hpnet.datasets.base import PedestrianDataset

    view = PedestrianDataset(ds.name, {"train": ds.train, "test": ds.gallery}, kind="attribute",
                             attribute_names=ds.attribute_names)
    return raw_pixel_attribute_baseline(view)["mA"]


def main(_):
    from keras_hpnet.datasets import raw_pixel_baseline, synthetic
    from keras_hpnet.datasets.market1501 import load_market_layout

    rows = []
    t = time.process_time()
    tw = time.time()
    for i in range(FLAGS.speed_images):
        synthetic.render_image(FLAGS.seed, 1 + i % 50, i % 6, i)
    rows.append(("render only, 1 process (img/s wall | cpu)",
                 f"{FLAGS.speed_images / (time.time() - tw):.0f} | {FLAGS.speed_images / (time.process_time() - t):.0f}"))

    root = FLAGS.root or tempfile.mkdtemp(prefix="bench_synthetic_")
    try:
        t0 = time.time()
        existing = os.path.isdir(root) and any(f.startswith("synthetic_market_") for f in os.listdir(root))
        sizes = {k: getattr(FLAGS, k) for k in ("num_train_ids", "num_test_ids") if getattr(FLAGS, k) is not None}
        folder = synthetic.generate_market(root, workers=FLAGS.workers, seed=FLAGS.seed, **sizes)
        gen_s = time.time() - t0
        n = sum(len(os.listdir(os.path.join(folder, d))) for d in ("bounding_box_train", "query", "bounding_box_test"))
        if existing:
            rows.append(("dataset", f"reused from {folder} ({n} images)"))
        else:
            rows.append(("dataset: generation s wall (images)", f"{gen_s:.1f} ({n})"))
            rows.append(("dataset: generator img/s wall (jpeg written)", f"{n / gen_s:.0f}"))
        ds = load_market_layout(folder, name="synthetic", num_cameras=6,
                                attribute_file=os.path.join(folder, "market_attribute.mat"),
                                attribute_struct="market_attribute")
        rows.append(("train / query / gallery images",
                     f"{len(ds.train)} / {len(ds.query)} / {len(ds.gallery)} ({ds.num_train_pids} train ids)"))
        for size in ((128, 64), (64, 32)):
            m = raw_pixel_baseline(ds, input_size=size)
            rows.append((f"raw-pixel NN {size[0]}x{size[1]}: rank-1 / rank-5 / mAP",
                         f"{m['rank1']:.3f} / {m['rank5']:.3f} / {m['mAP']:.3f}"))
        rows.append(("raw-pixel linear probe 32x16: attribute mA (gallery)", f"{raw_pixel_linear_probe(ds):.3f}"))
        if FLAGS.probe_epochs:
            train_s, seen, reid, attr = tiny_cnn_probe(ds, FLAGS.probe_epochs, FLAGS.seed)
            rows.append((f"tiny CNN probe: {FLAGS.probe_epochs} epochs, {seen} images, s", f"{train_s:.0f}"))
            rows.append(("tiny CNN probe: rank-1 / rank-5 / mAP",
                         f"{reid['rank1']:.3f} / {reid['rank5']:.3f} / {reid['mAP']:.3f}"))
            rows.append(("tiny CNN probe: attribute mA (gallery)", f"{attr['mA']:.3f}"))
    finally:
        if not FLAGS.root:
            shutil.rmtree(root, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{width}} | value\n{'-' * width}-+------")
    for k, v in rows:
        print(f"{k:<{width}} | {v}")


if __name__ == "__main__":
    sys.exit(app.run(main))

"""HAT-CNN's attribute network alone on the synthetic data (run on demand, prints a table).

    python benchmarks/bench_attributes.py                                  # the demo's settings
    python benchmarks/bench_attributes.py --epochs=10 --policy=float32
    python benchmarks/bench_attributes.py --weighting=deepmar --epochs=4  # an earlier preset
    python benchmarks/bench_attributes.py --pooling=avg                   # the released GAP
    python benchmarks/bench_attributes.py --epochs=7 --half_res_epochs=4  # the warm-up's attribute part

Trains only `AttributeNetwork` (HAT-CNN's separate attribute branch) with the
demo's data, augmentation, batches, optimizer and schedule, and prints the test
mA, steps and seconds, then per attribute the test and train balanced accuracy.
The attribute network is independent of HA-CNN in HAT-CNN (separate weights,
Adam per parameter), so this reproduces the demo's attribute mA (within ~0.5
point measured) at about half the cost of a full run; docs/training.md has the
figures measured with it.
"""

import json
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "synthetic dataset folder (default: the generator's cache)")
flags.DEFINE_string("sizes", "{}", 'synthetic size options as JSON, e.g. \'{"num_train_ids": 1000}\'')
flags.DEFINE_integer("epochs", 7, "epochs")
flags.DEFINE_integer("batch_size", 32, "batch size")
flags.DEFINE_float("lr", 0.003, "AdamW learning rate (1-epoch warm-up, x0.1 at 75%)")
flags.DEFINE_float("weight_decay", 5e-4, "AdamW weight decay")
flags.DEFINE_enum("weighting", "balanced", ["none", "deepmar", "balanced"], "attribute BCE weighting")
flags.DEFINE_enum("pooling", "max", ["avg", "max", "avgmax"], "attribute network pooling (demo: max)")
flags.DEFINE_enum("policy", "mixed_bfloat16", ["float32", "mixed_bfloat16"], "Keras dtype policy")
flags.DEFINE_integer("pad", 10, "pad-and-crop augmentation (0: off)")
flags.DEFINE_float("erasing", 0.0, "random-erasing probability")
flags.DEFINE_integer("seed", 0, "seed")
flags.DEFINE_integer("half_res_epochs", 0, "first epochs on 2x2-average-pooled images (HAT-CNN's attribute "
                     "warm-up, --attribute_warmup of training.fit); the rest and the test at full resolution")


def main(argv):
    del argv
    import keras
    import tensorflow as tf

    from keras_hpnet import datasets, losses
    from keras_hpnet.data import make_dataset, steps_per_epoch
    from keras_hpnet.layers import ImageNormalization
    from keras_hpnet.metrics import attribute_metrics
    from keras_hpnet.models.hatcnn import AttributeNetwork
    from training.schedule import WarmupMultiStep

    try:
        sizes = json.loads(FLAGS.sizes)
    except json.JSONDecodeError as e:
        raise app.UsageError(f"--sizes={FLAGS.sizes!r}: not JSON ({e})") from None
    keras.mixed_precision.set_global_policy(FLAGS.policy)
    keras.utils.set_random_seed(FLAGS.seed)
    ds = datasets.load("synthetic", FLAGS.data_dir, **sizes)
    train = ds.splits["train"]
    # The labelled query + gallery images, as keras_hpnet.evaluation scores attributes.
    test = [r for r in ds.splits["query"] + ds.splits["gallery"] if r.attributes is not None]
    names = list(ds.attribute_names)
    ratio = losses.attribute_positive_ratio(np.stack([r.attributes for r in train]))
    size = (160, 64)  # HAT-CNN's input

    inputs = keras.Input((None, None, 3))  # the attribute network is fully convolutional
    model = keras.Model(inputs, AttributeNetwork(len(names), pooling=FLAGS.pooling)(ImageNormalization()(inputs)))
    spe = steps_per_epoch(train, FLAGS.batch_size)
    total = FLAGS.epochs * spe
    optimizer = keras.optimizers.AdamW(WarmupMultiStep(FLAGS.lr, [round(0.75 * total)], 0.1, spe),
                                       weight_decay=FLAGS.weight_decay)
    positive_ratio = None if FLAGS.weighting == "none" else ratio
    scheme = "deepmar" if FLAGS.weighting == "none" else FLAGS.weighting

    def step_fn(images, labels, pool):
        if pool:  # the normalisation is per pixel, so pooling before it equals HATCNN's pooling after it
            images = keras.ops.average_pool(keras.ops.cast(images, "float32"), 2, 2)
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(losses.weighted_attribute_bce(labels, logits, positive_ratio, scheme=scheme))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    steps = {pool: tf.function(lambda i, l, pool=pool: step_fn(i, l, pool)) for pool in (False, True)}

    def predict(records):
        probs, index = [], []
        for images, labels in make_dataset(records, input_size=size, batch_size=64, training=False):
            probs.append(tf.sigmoid(tf.cast(model(images, training=False), tf.float32)).numpy())
            index.append(labels["index"].numpy())
        order = np.concatenate(index)
        return np.concatenate(probs), np.stack([records[i].attributes for i in order]).astype(np.float64)

    t0 = time.perf_counter()
    for epoch in range(FLAGS.epochs):
        for images, labels in make_dataset(train, input_size=size, batch_size=FLAGS.batch_size, training=True,
                                           seed=FLAGS.seed, epoch=epoch, cache=True, pad=FLAGS.pad,
                                           erasing_probability=FLAGS.erasing):
            loss = steps[epoch < FLAGS.half_res_epochs](images, tf.cast(labels["attributes"], tf.float32))
        print(f"epoch {epoch + 1}/{FLAGS.epochs}: loss {float(loss):.4f}, {time.perf_counter() - t0:.0f} s", flush=True)
    seconds = time.perf_counter() - t0
    test_p, test_y = predict(test)
    train_p, train_y = predict(train)

    print(f"\nweighting {FLAGS.weighting}, pooling {FLAGS.pooling}, policy {FLAGS.policy}, {FLAGS.epochs} epochs, "
          f"lr {FLAGS.lr}, batch {FLAGS.batch_size}, half-resolution epochs {FLAGS.half_res_epochs}, {len(train)} train images / {ds.num_train_pids} identities")
    test_m, train_m = attribute_metrics(test_p, test_y), attribute_metrics(train_p, train_y)
    print("| test mA | train mA | steps | train s |\n|---|---|---|---|")
    print(f"| {test_m['mA']:.4f} | {train_m['mA']:.4f} | {total} | {seconds:.0f} |")
    # per attribute: its term of mA, (TP/P + TN/N) / 2, the balanced accuracy
    print("\n| attribute | train ratio | test bal. acc | train bal. acc |\n|---|---|---|---|")
    for j, name in enumerate(names):
        print(f"| {name} | {ratio[j]:.2f} | {test_m['per_attribute'][j]['mA']:.3f} "
              f"| {train_m['per_attribute'][j]['mA']:.3f} |")


if __name__ == "__main__":
    app.run(main)

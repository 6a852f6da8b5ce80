"""The tf.data input pipeline: records -> (uint8 images, labels) batches.

One epoch's batches are a pure function of (seed, epoch): the sample order is
computed in numpy (`sampler`), and every augmentation draw uses a stateless
seed made of (seed, epoch, position in the epoch). Bad files are found up front
(`validate.check_images`), skipped, counted and named in a warning.
"""

from __future__ import annotations

import collections
import os
import threading

import numpy as np
import tensorflow as tf

from keras_hpnet.data import augment, resize, sampler, validate
from keras_hpnet.data.validate import check_images
from keras_hpnet.preprocessing import ImageError, load_rgb

AUTOTUNE = tf.data.AUTOTUNE

_IMAGE_CACHE: collections.OrderedDict = collections.OrderedDict()
_IMAGE_CACHE_LOCK = threading.Lock()
_IMAGE_CACHE_ENTRIES = 4


def _input_size(input_size):
    try:
        h, w = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be (height, width), got {input_size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"input_size must be positive, got {input_size!r}")
    return h, w


def _labels_of(records, good):
    pids = np.array([int(records[i].pid) for i in good], np.int32)
    camids = np.array([int(getattr(records[i], "camid", -1)) for i in good], np.int32)
    attrs = [getattr(records[i], "attributes", None) for i in good]
    have = [a is not None for a in attrs]
    if not any(have):
        return pids, camids, None
    if not all(have):
        missing = good[have.index(False)]
        raise ValueError(f"records[{missing}] ({records[missing].path}): has no attributes while others do")
    lengths = {len(a) for a in attrs}
    if len(lengths) != 1:
        raise ValueError(f"records: attribute vectors have different lengths {sorted(lengths)}")
    return pids, camids, np.stack([np.asarray(a, np.float32) for a in attrs])


def _pil_decode(path):
    """The numpy side's reader (keras_hpnet.preprocessing.load_rgb) for a TF path (bytes)."""
    return load_rgb(os.fsdecode(path))


def _decode_resize(path, use_pillow, height, width):
    """Read one file (path: bytes, any encoding) -> float32 [height, width, 3] (0..255), the resize rule."""

    def native():
        contents = tf.io.read_file(path)
        # JPEG with the accurate integer IDCT: the same pixels as Pillow (the
        # edge runtime's decoder), not TF's default fast IDCT (off by up to ~7).
        return tf.cond(
            tf.io.is_jpeg(contents),
            lambda: tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(contents, channels=3, expand_animations=False, dtype=tf.uint8),
        )

    def pillow():
        return tf.numpy_function(_pil_decode, [path], tf.uint8, stateful=False)

    image = tf.cond(use_pillow, pillow, native)
    image.set_shape([None, None, 3])
    image = resize.resize_float(image, height, width)
    image.set_shape([height, width, 3])
    return image


def _tf_paths(paths) -> np.ndarray:
    """File names as bytes for TF (os.fsencode: names that are not UTF-8 too)."""
    return np.array([os.fsencode(p) for p in paths], dtype=object)


def _decode_all(paths, flags, height, width, num_parallel_calls):
    """uint8 [len(paths), H, W, 3] and a bool mask of the files that decoded."""
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64), _tf_paths(paths), flags))
    ds = ds.map(lambda i, p, f: (i, resize.to_uint8(_decode_resize(p, f, height, width))),
                num_parallel_calls=num_parallel_calls)
    ds = ds.ignore_errors()  # failures are found below (missing positions) and retried with Pillow
    out = np.zeros((len(paths), height, width, 3), np.uint8)
    done = np.zeros(len(paths), bool)
    for index, batch in ds.batch(256).prefetch(2):
        out[index.numpy()] = batch.numpy()
        done[index.numpy()] = True
    return out, done


def _cached_images(records, report, height, width, num_parallel_calls):
    """Decoded + resized uint8 images of the good records, [num_good, H, W, 3],
    kept per process (a few entries, least recently used dropped), and the
    report they follow. A file TF's decoder rejects although the check passed
    is decoded with Pillow, or skipped when Pillow fails too; both are written
    back to the check cache (`validate.mark_*`) and the returned report is the
    re-check, so the cached and the uncached pipeline read the same files."""
    key = (tuple(records[i].path for i in report.good), height, width)
    with _IMAGE_CACHE_LOCK:
        if key in _IMAGE_CACHE:
            _IMAGE_CACHE.move_to_end(key)
            return _IMAGE_CACHE[key], report
    paths = [records[i].path for i in report.good]
    pillow = set(report.pillow_decoded)
    out, done = _decode_all(paths, np.array([i in pillow for i in report.good], bool),
                            height, width, num_parallel_calls)
    failed = np.flatnonzero(~done)
    if len(failed):
        for pos in failed:
            try:
                out[pos] = resize.resize_uint8(_pil_decode(paths[pos]), height, width).numpy()
                validate.mark_pillow(paths[pos], "TF's decoder rejected it, Pillow read it")
                done[pos] = True
            except ImageError as e:
                validate.mark_unreadable(paths[pos], str(e))
        out = out[done]
        report = check_images(records, warn=True)
        key = (tuple(records[i].path for i in report.good), height, width)
    tensor = tf.constant(out)
    with _IMAGE_CACHE_LOCK:
        _IMAGE_CACHE[key] = tensor
        while len(_IMAGE_CACHE) > _IMAGE_CACHE_ENTRIES:
            _IMAGE_CACHE.popitem(last=False)
    return tensor, report


def clear_image_cache() -> None:
    """Drop the decoded images kept by `make_dataset(..., cache=True)`."""
    with _IMAGE_CACHE_LOCK:
        _IMAGE_CACHE.clear()


def epoch_order(records_or_pids, *, batch_size, training, seed=0, epoch=0, pk=None, drop_remainder=None,
                num_shards=1, shard_index=0):
    """Positions (into the given sequence) of one epoch, in batch order, for
    this shard. Pure function of its arguments; used by `make_dataset`."""
    pids = np.asarray(
        [int(r.pid) if hasattr(r, "pid") else int(r) for r in records_or_pids], np.int64
    )
    n = len(pids)
    if drop_remainder is None:
        drop_remainder = training
    positions = np.arange(n, dtype=np.int64)
    if training and pk:
        order = sampler.pk_order(positions, pids, batch_size, int(pk), seed, epoch)
    elif training:
        order = sampler.shuffled_order(positions, seed, epoch)
    else:
        order = positions
    batches = sampler.num_batches(len(order), batch_size, drop_remainder)
    if num_shards > 1:
        if not 0 <= shard_index < num_shards:
            raise ValueError(f"shard_index {shard_index} not in [0, {num_shards})")
        if drop_remainder:
            batches -= batches % num_shards
        keep = np.arange(batches)[shard_index::num_shards]
        starts = keep * batch_size
        order = np.concatenate([order[s : s + batch_size] for s in starts]) if len(starts) else order[:0]
    else:
        order = order[: batches * batch_size] if drop_remainder else order
    return order


def steps_per_epoch(records, batch_size, *, pk=None, drop_remainder=True, num_shards=1):
    """Batches one shard yields per epoch. `records` is a sequence of records
    (counted as they are; pass the good ones from `check_images` to exclude bad
    files) or an int. P x K epochs have the same length as plain ones."""
    n = records if isinstance(records, (int, np.integer)) else len(records)
    batches = sampler.num_batches(int(n), int(batch_size), drop_remainder)
    if num_shards > 1:
        batches = batches // num_shards if drop_remainder else -(-batches // num_shards)
    return batches


def make_dataset(
    records,
    *,
    input_size,
    batch_size,
    training,
    seed=0,
    epoch=0,
    pk=None,
    flip=True,
    pad=10,
    erasing_probability=0.0,
    drop_remainder=None,
    cache=False,
    deterministic=True,
    num_parallel_calls=AUTOTUNE,
    prefetch=AUTOTUNE,
    num_shards=1,
    shard_index=0,
    num_check_workers=None,
):
    """A `tf.data.Dataset` of `(images, labels)` for one epoch.

    images: uint8 `[N, H, W, 3]`, `input_size=(H, W)`, bilinear resize in the
    pipeline (grayscale and alpha decode to RGB). labels: `pid`, `camid` int32
    `[N]`, `attributes` float32 `[N, A]` (when the records have them: 0/1,
    and 255 = `keras_hpnet.datasets.UNKNOWN_ATTRIBUTE` kept as the mask the
    attribute loss reads), `index` int64 `[N]` (position in `records`).

    training=True: order shuffled per (seed, epoch) (or identity-balanced
    P x K with `pk=K`), random horizontal `flip`, zero-pad by `pad` and crop
    back, random erasing with `erasing_probability`, last partial batch
    dropped (`drop_remainder`). training=False: no augmentation, record order,
    last partial batch kept. No repeat: iterate epochs by calling again with
    `epoch=e`; `steps_per_epoch` gives the length. `cache=True` keeps the
    decoded, resized images in memory for the process (augmentation still
    runs every epoch). `num_shards`/`shard_index` split the batches between
    input pipelines (multi-worker). Unreadable files are skipped: the dataset
    has `.report` (a `PipelineReport`), and a warning names them.
    """
    height, width = _input_size(input_size)
    batch_size = _batch_size(batch_size)
    _check_erasing(erasing_probability)
    records = list(records)
    if not records:
        raise ValueError("make_dataset: no records")
    report = check_images(records, num_workers=num_check_workers)
    if cache and report.good:
        images, report = _cached_images(records, report, height, width, num_parallel_calls)
    if not report.good:
        raise ValueError(f"make_dataset: none of the {len(records)} images is readable ({report.summary(5)})")
    good = report.good
    pids, camids, attributes = _labels_of(records, good)
    label_table = _label_table(pids, camids, attributes, good)
    if drop_remainder is None:
        drop_remainder = bool(training)
    order = epoch_order(
        pids, batch_size=batch_size, training=training, seed=seed, epoch=epoch, pk=pk,
        drop_remainder=drop_remainder, num_shards=num_shards, shard_index=shard_index,
    )  # positions into `good`

    columns = {
        "good_pos": order,
        "element": element_ids(len(order), batch_size, num_shards, shard_index),
    }
    if not cache:
        pillow = set(report.pillow_decoded)
        paths = _tf_paths([records[i].path for i in good])
        flags = np.array([i in pillow for i in good], bool)
        columns["path"] = paths[order]
        columns["pillow"] = flags[order]

    augmenter = training_augmenter(training=training, flip=flip, pad=pad, erasing_probability=erasing_probability,
                                   seed=seed, epoch=epoch)

    def load(item):
        pos = item["good_pos"]
        if cache:
            image = tf.cast(tf.gather(images, pos), tf.float32)
        else:
            image = _decode_resize(item["path"], item["pillow"], height, width)
        if augmenter is not None:
            image = augmenter(image, item["element"])
        image = resize.to_uint8(image)
        image.set_shape([height, width, 3])
        labels = {k: tf.gather(v, pos) for k, v in label_table.items()}
        return image, labels

    ds = tf.data.Dataset.from_tensor_slices(columns)
    ds = ds.map(load, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    return batched(ds, batch_size, drop_remainder=drop_remainder, prefetch=prefetch, deterministic=deterministic,
                   report=report)


# -- pieces shared with the tracklet pipeline (keras_hpnet.data.tracklets) ---------------------

def _batch_size(batch_size) -> int:
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return batch_size


def _check_erasing(erasing_probability):
    if not 0.0 <= erasing_probability <= 1.0:
        raise ValueError(f"erasing_probability must be in [0, 1], got {erasing_probability}")


def _label_table(pids, camids, attributes, good) -> dict:
    """The label tensors gathered per element: pid, camid, index (position in the input), attributes."""
    table = {"pid": tf.constant(pids), "camid": tf.constant(camids), "index": tf.constant(np.asarray(good, np.int64))}
    if attributes is not None:
        table["attributes"] = tf.constant(attributes)
    return table


def element_ids(num_elements: int, batch_size: int, num_shards: int = 1, shard_index: int = 0) -> np.ndarray:
    """Each element's position in the global epoch order (the second half of
    its augmentation seed); with sharding the positions are those of the
    unsharded epoch, so shards draw independently."""
    if num_shards > 1:
        batch_ids = np.arange(num_elements) // batch_size * num_shards + shard_index
        return (batch_ids * batch_size + np.arange(num_elements) % batch_size).astype(np.int64)
    return np.arange(num_elements, dtype=np.int64)


def training_augmenter(*, training, flip, pad, erasing_probability, seed, epoch):
    """`fn(image float32 [H, W, 3], element int64) -> image`: random flip, pad
    and crop, random erasing, drawn from the stateless seed (seed, epoch,
    element); None when nothing applies (evaluation)."""
    do_flip = bool(training and flip)
    pad = int(pad) if training else 0
    erase = float(erasing_probability) if training else 0.0
    if not (do_flip or pad or erase):
        return None
    base = np.int64((int(seed) & 0x7FFFFFFF) * 1_000_003 + int(epoch))

    def apply(image, element):
        element_seed = tf.stack([tf.constant(base, tf.int64), element])
        if do_flip:
            image = augment.random_flip(image, element_seed)
        if pad:
            image = augment.pad_and_crop(image, element_seed, pad)
        if erase:
            image = augment.random_erasing(image, element_seed, erase)
        return image

    return apply


def batched(ds, batch_size, *, drop_remainder, prefetch, deterministic, report):
    """The end of an input pipeline: drop elements that fail anyway, batch, prefetch, determinism, `.report`."""
    # Last line of defence: a file that went bad after the check is dropped,
    # not fatal (the up-front check makes this rare).
    ds = ds.ignore_errors(log_warning=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if prefetch:
        ds = ds.prefetch(prefetch)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    ds = ds.with_options(options)
    ds.report = report
    return ds

"""The tf.data pipeline: decoding, bad files, order, P x K, augmentation, resume."""

import collections
import os
import warnings

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_hpnet.data import check_images, clear_check_cache, epoch_order, make_dataset, steps_per_epoch
from support import bad_size_bmp

Rec = collections.namedtuple("Rec", "path pid camid attributes")
H, W = 32, 16


def save(path, array, mode=None, **kw):
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    image.save(path, **kw)
    return str(path)


def smooth_image(rng, h=H, w=W):
    """A smooth random picture (JPEG-friendly)."""
    small = rng.integers(0, 256, (4, 2, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


def collect(ds):
    images, labels = [], collections.defaultdict(list)
    for x, y in ds:
        images.append(x.numpy())
        for k, v in y.items():
            labels[k].append(v.numpy())
    return np.concatenate(images), {k: np.concatenate(v) for k, v in labels.items()}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """24 good JPEGs (6 ids x 4) with attributes, plus every kind of bad file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    good = []
    for i in range(24):
        p = save(root / f"{i:03d}.jpg", smooth_image(rng, H + 8 * (i % 3), W + 4 * (i % 2)), quality=95)
        good.append(Rec(p, i // 4, i % 3, np.array([i % 2, (i // 2) % 2, 1], np.uint8)))
    bad = {}
    valid = open(good[0].path, "rb").read()
    (root / "truncated.jpg").write_bytes(valid[: len(valid) // 2])
    bad["truncated"] = str(root / "truncated.jpg")
    (root / "zero.jpg").write_bytes(b"")
    bad["zero"] = str(root / "zero.jpg")
    (root / "text.png").write_text("this is not an image\n")
    bad["text"] = str(root / "text.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    bad["corrupt"] = str(root / "corrupt.png")
    bad["missing"] = str(root / "missing.jpg")
    return root, good, bad


def test_formats_decode_to_rgb_and_resize_bilinear(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, rng.integers(0, 256, (H, W, 1), dtype=np.uint8)], axis=-1)
    gray = rgb[:, :, 0]
    files = [
        (save(tmp_path / "rgb.png", rgb), rgb),
        (save(tmp_path / "rgba.png", rgba), rgb),  # alpha dropped
        (save(tmp_path / "gray.png", gray), np.repeat(gray[:, :, None], 3, -1)),
        (save(tmp_path / "rgb.bmp", rgb), rgb),
        (save(tmp_path / "palette.bmp", gray, mode="P"), np.repeat(gray[:, :, None], 3, -1)),  # Pillow path
        (save(tmp_path / "gray.jpg", smooth_image(rng)[:, :, 1], quality=98), None),
        (save(tmp_path / "big.png", rng.integers(0, 256, (3 * H, 2 * W, 3), dtype=np.uint8)), None),
    ]
    records = [Rec(p, i, 0, None) for i, (p, _) in enumerate(files)]
    ds = make_dataset(records, input_size=(H, W), batch_size=3, training=False)
    assert ds.report.num_skipped == 0 and ds.report.pillow_decoded == [4]
    images, labels = collect(ds)
    assert images.dtype == np.uint8 and images.shape == (len(files), H, W, 3)
    assert "attributes" not in labels
    for i, (path, want) in enumerate(files[:5]):
        np.testing.assert_array_equal(images[i], want, err_msg=path)
    jpeg = np.asarray(Image.open(files[5][0]).convert("RGB")).astype(int)
    assert np.abs(images[5].astype(int) - jpeg).max() <= 1  # same IDCT as Pillow (the edge decoder)
    big = np.asarray(Image.open(files[6][0]))
    want = tf.cast(tf.round(tf.image.resize(big, (H, W), method="bilinear")), tf.uint8).numpy()
    np.testing.assert_array_equal(images[6], want)


def test_bad_files_are_skipped_counted_and_named(folder):
    _, good, bad = folder
    clear_check_cache()
    records = list(good[:10])
    for k, (name, path) in enumerate(bad.items()):
        records.insert(2 * k + 1, Rec(path, 0, 0, np.zeros(3, np.uint8)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = make_dataset(records, input_size=(H, W), batch_size=4, training=False)
    message = " ".join(str(w.message) for w in caught)
    for path in bad.values():
        assert os.path.basename(path) in message
    report = ds.report
    assert report.num_records == 15 and report.num_good == 10 and report.num_skipped == 5
    reasons = {os.path.basename(p): r for _, p, r in report.skipped}
    assert reasons["zero.jpg"] == "empty file"
    assert reasons["truncated.jpg"].startswith("corrupt or truncated")
    assert reasons["text.png"].startswith("not an image")
    assert "missing.jpg" in reasons
    images, labels = collect(ds)
    assert len(images) == 10
    np.testing.assert_array_equal(labels["index"], [i for i, r in enumerate(records) if r.path not in bad.values()])
    # training never dies either: 10 good images -> 2 full batches of 4
    train = make_dataset(records, input_size=(H, W), batch_size=4, training=True, seed=3)
    assert sum(1 for _ in train) == 2 == steps_per_epoch(report.good, 4)
    with pytest.raises(ValueError, match="none of the 2 images is readable"):
        make_dataset([Rec(bad["zero"], 0, 0, None), Rec(bad["text"], 0, 0, None)],
                     input_size=(H, W), batch_size=2, training=False)


def test_eval_keeps_order_labels_and_last_batch(folder):
    _, good, _ = folder
    ds = make_dataset(good[:11], input_size=(H, W), batch_size=4, training=False)
    sizes = [int(x.shape[0]) for x, _ in ds]
    assert sizes == [4, 4, 3] and steps_per_epoch(11, 4, drop_remainder=False) == 3
    images, labels = collect(ds)
    np.testing.assert_array_equal(labels["index"], np.arange(11))
    np.testing.assert_array_equal(labels["pid"], [r.pid for r in good[:11]])
    np.testing.assert_array_equal(labels["camid"], [r.camid for r in good[:11]])
    np.testing.assert_array_equal(labels["attributes"], np.stack([r.attributes for r in good[:11]]))
    assert labels["pid"].dtype == np.int32 and labels["attributes"].dtype == np.float32
    assert labels["index"].dtype == np.int64
    # UNKNOWN_ATTRIBUTE entries reach the loss as 255 (its mask)
    from keras_hpnet.datasets import UNKNOWN_ATTRIBUTE

    masked = [r._replace(attributes=np.where(np.arange(len(r.attributes)) == 0, UNKNOWN_ATTRIBUTE, r.attributes)
                         .astype(np.uint8)) for r in good[:3]]
    _, mlabels = collect(make_dataset(masked, input_size=(H, W), batch_size=4, training=False))
    np.testing.assert_array_equal(mlabels["attributes"][:, 0], [255.0] * 3)
    np.testing.assert_array_equal(mlabels["attributes"][:, 1:], np.stack([r.attributes[1:] for r in good[:3]]))
    # deterministic eval: a second pass, and the in-memory cache, give the same pixels
    again, _ = collect(make_dataset(good[:11], input_size=(H, W), batch_size=4, training=False, cache=True))
    np.testing.assert_array_equal(images, again)


def test_epochs_are_pure_functions_of_seed_and_epoch(folder):
    _, good, _ = folder
    kw = dict(input_size=(H, W), batch_size=4, training=True, erasing_probability=0.5)
    a_img, a_lab = collect(make_dataset(good, seed=7, epoch=2, **kw))
    b_img, b_lab = collect(make_dataset(good, seed=7, epoch=2, cache=True, num_parallel_calls=1, **kw))
    np.testing.assert_array_equal(a_lab["index"], b_lab["index"])
    np.testing.assert_array_equal(a_img, b_img)  # same augmentation draws, with or without cache
    # a resumed run rebuilds the epoch and skips what it has trained on
    resumed = collect(make_dataset(good, seed=7, epoch=2, **kw).skip(3))
    np.testing.assert_array_equal(resumed[0], a_img[12:])
    c_img, c_lab = collect(make_dataset(good, seed=7, epoch=3, **kw))
    assert not np.array_equal(a_lab["index"], c_lab["index"])
    assert sorted(a_lab["index"]) == sorted(c_lab["index"]) == list(range(24))
    assert len(a_img) == 24 == steps_per_epoch(good, 4) * 4


def test_pk_batches_are_identity_balanced(folder):
    _, good, _ = folder
    ds = make_dataset(good, input_size=(H, W), batch_size=6, training=True, pk=2, seed=1, flip=False, pad=0)
    batches = [y["pid"].numpy() for _, y in ds]
    assert len(batches) == steps_per_epoch(good, 6, pk=2) == 4
    for pids in batches:
        values, counts = np.unique(pids, return_counts=True)
        assert len(values) == 3 and (counts == 2).all()
        assert (pids[::2] == pids[1::2]).all()  # K consecutive images of one identity
    with pytest.raises(ValueError, match="P=4 identities"):
        epoch_order(good[:8], batch_size=8, training=True, pk=2)


def test_pk_order_invariants_on_many_identities():
    rng = np.random.default_rng(0)
    pids = rng.integers(0, 40, 500)
    order = epoch_order(pids, batch_size=32, training=True, pk=4, seed=5, epoch=1)
    assert len(order) == 500 // 32 * 32
    np.testing.assert_array_equal(order, epoch_order(pids, batch_size=32, training=True, pk=4, seed=5, epoch=1))
    for batch in order.reshape(-1, 32):
        _, counts = np.unique(pids[batch], return_counts=True)
        assert len(counts) == 8 and (counts == 4).all()
    # shards split the batches of an epoch between input pipelines
    kw = dict(batch_size=8, training=True, seed=2, epoch=0)
    full = epoch_order(pids, **kw).reshape(-1, 8)
    s0 = epoch_order(pids, num_shards=2, shard_index=0, **kw).reshape(-1, 8)
    s1 = epoch_order(pids, num_shards=2, shard_index=1, **kw).reshape(-1, 8)
    np.testing.assert_array_equal(s0, full[0::2][: len(s0)])
    np.testing.assert_array_equal(s1, full[1::2][: len(s1)])
    assert len(s0) == len(s1) == steps_per_epoch(500, 8, num_shards=2)


def test_augmentations(folder):
    _, good, _ = folder
    records = good[:8]
    base, _ = collect(make_dataset(records, input_size=(H, W), batch_size=8, training=False))

    def train(**kw):
        images, labels = collect(
            make_dataset(records, input_size=(H, W), batch_size=8, training=True, seed=0, **kw))
        return images, base[labels["index"]]

    images, ref = train(flip=False, pad=0)
    np.testing.assert_array_equal(images, ref)  # no augmentation: same pixels, shuffled
    images, ref = train(flip=True, pad=0)
    flipped = [not np.array_equal(x, r) and np.array_equal(x, r[:, ::-1]) for x, r in zip(images, ref)]
    same = [np.array_equal(x, r) for x, r in zip(images, ref)]
    assert all(f or s for f, s in zip(flipped, same)) and any(flipped) and any(same)
    images, ref = train(flip=False, pad=10)
    for x, r in zip(images, ref):  # a zero-padded shift of at most 10 pixels
        padded = np.pad(r, ((10, 10), (10, 10), (0, 0)))
        assert any(np.array_equal(x, padded[dy : dy + H, dx : dx + W]) for dy in range(21) for dx in range(21))
    images, ref = train(flip=False, pad=0, erasing_probability=1.0)
    changed = (images != ref).any(-1).mean(axis=(1, 2))
    assert (changed > 0.01).all() and (changed < 0.5).all()


def test_bad_arguments_are_named(folder):
    _, good, _ = folder
    with pytest.raises(ValueError, match="input_size"):
        make_dataset(good, input_size=32, batch_size=4, training=False)
    with pytest.raises(ValueError, match="no records"):
        make_dataset([], input_size=(H, W), batch_size=4, training=False)
    with pytest.raises(ValueError, match="has no attributes"):
        make_dataset([good[0], good[1]._replace(attributes=None)], input_size=(H, W), batch_size=4, training=False)
    with pytest.raises(TypeError, match=r"records\[0\]"):
        check_images([object()])


def test_bmp_tf_rejects_and_16_bit_png_are_read_with_pillow_cached_or_not(tmp_path):
    from keras_hpnet.preprocessing import load_rgb

    clear_check_cache()
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    bmp = bad_size_bmp(tmp_path / "peta.bmp", rgb)
    with pytest.raises(tf.errors.InvalidArgumentError, match="differ by 2"):
        tf.io.decode_image(tf.io.read_file(bmp), channels=3)  # what TF does with it
    png16 = str(tmp_path / "deep.png")
    Image.fromarray((rng.integers(0, 256, (H, W)) * 200).astype(np.uint16)).save(png16)
    good = save(tmp_path / "plain.png", rgb[::-1])
    records = [Rec(good, 0, 0, None), Rec(bmp, 1, 0, None), Rec(png16, 2, 0, None)]
    for cache in (False, True):
        ds = make_dataset(records, input_size=(H, W), batch_size=3, training=False, cache=cache)
        images, labels = collect(ds)  # main: cache=True raised at the first batch, False dropped the BMP
        np.testing.assert_array_equal(labels["index"], [0, 1, 2])
        np.testing.assert_array_equal(images[1], rgb)
        np.testing.assert_array_equal(images[2], load_rgb(png16))  # Pillow's pixels, as the numpy side
        assert ds.report.pillow_decoded == [1, 2]
        counts = ds.report.counts()["decoded_with_pillow"]
        assert counts["BMP that TF's decoder rejects"]["count"] == 1
        assert "peta.bmp" in counts["BMP that TF's decoder rejects"]["examples"][0]
        assert counts["PNG I;16: not read the same by TF"]["count"] == 1


def test_cache_retries_what_tf_rejects_after_the_check(tmp_path):
    """A file the check passes as TF-readable but TF rejects: the cached path
    decodes it with Pillow (or skips it when Pillow fails too), writes that back
    to the check, so the uncached path and the report agree."""
    from keras_hpnet.data import validate

    clear_check_cache()
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    bmp = bad_size_bmp(tmp_path / "late.bmp", rgb)
    broken = str(tmp_path / "broken.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    good = save(tmp_path / "ok.png", rgb)
    for path in (bmp, broken):  # pretend the check had passed both as TF-native
        validate._remember(path, validate.ImageCheck(True))
    records = [Rec(good, 0, 0, None), Rec(bmp, 1, 0, None), Rec(broken, 2, 0, None)]
    ds = make_dataset(records, input_size=(H, W), batch_size=3, training=False, cache=True)
    images, labels = collect(ds)
    np.testing.assert_array_equal(labels["index"], [0, 1])
    np.testing.assert_array_equal(images[1], rgb)
    counts = ds.report.counts()
    assert counts["decoded_with_pillow"]["rejected by TF's decoder"]["count"] == 1
    assert counts["skipped"]["corrupt or truncated"]["count"] == 1
    assert "broken.png" in counts["skipped"]["corrupt or truncated"]["examples"][0]
    uncached = make_dataset(records, input_size=(H, W), batch_size=3, training=False)
    again, labels = collect(uncached)
    np.testing.assert_array_equal(labels["index"], [0, 1])
    np.testing.assert_array_equal(again, images)


def test_file_names_that_are_not_utf8(tmp_path):
    rgb = np.random.default_rng(6).integers(0, 256, (H, W, 3), dtype=np.uint8)
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.png")  # Latin-1 name
    Image.fromarray(rgb).save(raw, format="PNG")
    bmp = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"na\xefve.bmp"))
    bad_size_bmp(bmp, rgb[:, ::-1])  # decoded with Pillow: the name goes through numpy_function
    empty = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"vide\xe9.jpg"))
    open(empty, "wb").close()
    records = [Rec(os.fsdecode(raw), 0, 0, None), Rec(bmp, 1, 0, None), Rec(empty, 2, 0, None)]
    clear_check_cache()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for cache in (False, True):
            ds = make_dataset(records, input_size=(H, W), batch_size=2, training=False, cache=cache)
            images, labels = collect(ds)  # main: UnicodeEncodeError naming no file
            np.testing.assert_array_equal(labels["index"], [0, 1])
            np.testing.assert_array_equal(images[0], rgb)
            np.testing.assert_array_equal(images[1], rgb[:, ::-1])
            assert ds.report.num_skipped == 1 and "vide\\xe9.jpg (empty file)" in ds.report.summary()
    assert any("vide\\xe9.jpg (empty file)" in str(w.message) for w in caught)  # named, printable

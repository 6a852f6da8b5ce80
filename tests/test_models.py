"""Model contract tests for hacnn, hatcnn, mnet, hpnet (docs/design.md "Models"), and the
model specs and registry every network (tiny and a throwaway fifth one too) goes through."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_hpnet
from keras_hpnet.layers import HARD_ATTENTION_INIT_BIAS

NUM_CLASSES = 5
# Small, contract-conforming variants keep the suite fast; HA-CNN is fixed at 160x64.
CONFIGS = {
    "hacnn": dict(num_classes=NUM_CLASSES),
    "hatcnn": dict(num_classes=NUM_CLASSES, num_attributes=26),
    "mnet": dict(num_classes=NUM_CLASSES, num_attributes=4, input_shape=(64, 32), width=0.25),
    "hpnet": dict(num_classes=NUM_CLASSES, num_attributes=4, input_shape=(64, 32), width=0.25),
}
EXPECTED = {  # (input size, embedding dim, identity heads)
    "hacnn": ((160, 64), 1024, 2),
    "hatcnn": ((160, 64), 1050, 2),
    "mnet": ((64, 32), 512, 1),
    "hpnet": ((64, 32), 512, 1),
}


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    return {name: keras_hpnet.build_model(name, **cfg) for name, cfg in CONFIGS.items()}


def images(model, n=2, seed=0):
    h, w = model.input_size
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3)).astype("uint8")


def test_registry():
    assert keras_hpnet.available_models() == ["hacnn", "hatcnn", "hpnet", "mnet", "tiny"]  # tiny: registered too
    assert keras_hpnet.models.available_models() == keras_hpnet.available_models()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_contract(models, name):
    model = models[name]
    size, dim, heads = EXPECTED[name]
    a = CONFIGS[name].get("num_attributes", 0)
    assert model.input_size == size and model.embedding_dim == dim
    assert model.num_classes == NUM_CLASSES and model.num_attributes == a
    x = images(model, 3)
    out = model(x, training=False)
    assert set(out) == ({"embedding", "attributes"} if a else {"embedding"})
    emb = out["embedding"].numpy()
    assert emb.dtype == np.float32 and emb.shape == (3, dim) and np.all(np.isfinite(emb))
    if a:
        p = out["attributes"].numpy()
        assert p.shape == (3, a) and p.min() >= 0 and p.max() <= 1
    # uint8 and float 0..255 inputs are the same
    np.testing.assert_allclose(model(x.astype("float32"), training=False)["embedding"], emb,
                               rtol=1e-5, atol=1e-6)
    train = model(x, training=True)
    assert {"identity_logits", "features", "embedding"} <= set(train)
    assert len(train["identity_logits"]) == heads
    assert all(tuple(t.shape) == (3, NUM_CLASSES) for t in train["identity_logits"])
    assert len(train["features"]) == heads and all(f.shape[0] == 3 for f in train["features"])
    if a:
        assert tuple(train["attribute_logits"].shape) == (3, a)
        np.testing.assert_allclose(tf.sigmoid(train["attribute_logits"]).numpy().shape, (3, a))
    else:
        assert "attribute_logits" not in train


def test_hacnn_ranking_feature_is_two_unit_vectors(models):
    emb = models["hacnn"](images(models["hacnn"]), training=False)["embedding"].numpy()
    np.testing.assert_allclose(np.linalg.norm(emb[:, :512], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb[:, 512:], axis=1), 1.0, rtol=1e-5)


def test_hatcnn_ranking_feature_1050(models):
    model = models["hatcnn"]
    x = images(model)
    out = model(x, training=True)
    emb = model(x, training=False)["embedding"].numpy()
    assert emb.shape == (2, 1050)
    for lo, hi in ((0, 512), (512, 1024), (1024, 1050)):
        np.testing.assert_allclose(np.linalg.norm(emb[:, lo:hi], axis=1), 1.0, rtol=1e-5)
    logits = model._forward(x, training=False)[0]["attribute_logits"].numpy()
    np.testing.assert_allclose(emb[:, 1024:], logits / np.linalg.norm(logits, axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-6)
    assert tuple(out["attribute_logits"].shape) == (2, 26)


def test_parameter_counts(models):
    hacnn = models["hacnn"]
    classifiers = hacnn.global_classifier.count_params() + hacnn.local_classifier.count_params()
    assert abs(hacnn.count_params() - classifiers - 2.93e6) / 2.93e6 < 0.10
    attribute_net = models["hatcnn"].attribute_net.count_params()
    assert 0.7e6 < attribute_net < 0.9e6  # "about 0.8M"


def test_attention_maps(models):
    hacnn = models["hacnn"]
    maps = hacnn.attention_maps(images(hacnn, 2))
    for i, (h, w) in enumerate(((40, 16), (20, 8), (10, 4)), start=1):
        assert maps[f"soft_level{i}"].shape == (2, h, w)
        assert 0 < maps[f"soft_level{i}"].min() and maps[f"soft_level{i}"].max() < 1
        boxes = maps[f"boxes_level{i}"]
        assert boxes.shape == (2, 4, 4)
        # untrained: the published stripe initialisation (kernel 0, bias -> tanh)
        ty = np.tanh(np.array(HARD_ATTENTION_INIT_BIAS[1::2]))
        np.testing.assert_allclose(boxes[0, :, 0], (ty + 1) / 2 - 0.125, atol=1e-6)
        np.testing.assert_allclose(boxes[0, :, 2] - boxes[0, :, 0], 0.25, atol=1e-6)
        np.testing.assert_allclose(boxes[0, :, 3] - boxes[0, :, 1], 1.0, atol=1e-6)
    hpnet = models["hpnet"]
    maps = hpnet.attention_maps(images(hpnet, 2))
    assert sorted(maps) == ["mda1", "mda2", "mda3"]
    assert maps["mda1"].shape == (2, 4, 2, 8) and maps["mda3"].shape == (2, 2, 1, 8)
    assert models["mnet"].attention_maps(images(models["mnet"])) == {}


def test_hacnn_hard_attention_gradients_in_the_model(models):
    model = models["hacnn"]
    x = images(model, 2, seed=3)
    y = np.array([1, 3])
    hard = [model.ha_blocks[i].hard.fc for i in range(3)]
    variables = [v for layer in hard for v in (layer.kernel, layer.bias)]
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = sum(tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, l, from_logits=True))
                   for l in out["identity_logits"])
    grads = tape.gradient(loss, variables)
    for v, g in zip(variables, grads):
        g = tf.convert_to_tensor(g).numpy()
        assert np.all(np.isfinite(g)), v.path
        assert np.abs(g).max() > 0, v.path
    # the global branch receives gradient from the local branch (cross-attention)
    with tf.GradientTape() as tape:
        local = tf.reduce_sum(model(x, training=True)["features"][1] * np.arange(512.0))
    g = tape.gradient(local, model.levels[0][0].trainable_variables[0])
    assert g is not None and np.abs(tf.convert_to_tensor(g).numpy()).max() > 0


def test_heads_follow_counts():
    model = keras_hpnet.build_model("mnet", num_classes=0, num_attributes=3,
                                    input_shape=(64, 32, 3), width=0.25)
    x = np.zeros((1, 64, 32, 3), "uint8")
    out = model(x, training=True)
    assert "identity_logits" not in out and tuple(out["attribute_logits"].shape) == (1, 3)
    assert set(model(x)) == {"embedding", "attributes"}


def test_hatcnn_attribute_pooling(models, tmp_path):
    """The attribute network pools its last map by average (the released HAT-CNN,
    default), max, or their sum, with the same weights; the HA-CNN part is untouched."""
    from keras_hpnet.layers._util import run_chain

    from keras_hpnet.models.hatcnn import AttributeNetwork
    from keras_hpnet.model_spec import flag_options

    ATTRIBUTE_POOLINGS = flag_options()["attribute_pooling"].choices  # the CLI's choices (from the spec)

    assert set(ATTRIBUTE_POOLINGS) == set(AttributeNetwork.POOLINGS)
    model = models["hatcnn"]
    assert model.attribute_pooling == "avg"
    net = model.attribute_net
    x = images(model, 3, seed=2)
    fmap = run_chain(net.blocks, model.normalize(x), False)
    mean, peak = keras.ops.mean(fmap, axis=(1, 2)), keras.ops.max(fmap, axis=(1, 2))

    def head(pooled):
        return net.classifier(keras.ops.relu(net.bn(net.fc(pooled), training=False))).numpy()

    def logits(m):
        return m._forward(x, training=False)[0]["attribute_logits"].numpy()

    np.testing.assert_allclose(logits(model), head(mean), rtol=1e-4, atol=1e-4)
    reference = model(x, training=False)["embedding"].numpy()
    for pooling, pooled in (("max", peak), ("avgmax", mean + peak)):
        other = keras_hpnet.build_model("hatcnn", **CONFIGS["hatcnn"], attribute_pooling=pooling)
        other(x[:1])
        other.set_weights(model.get_weights())
        np.testing.assert_allclose(logits(other), head(pooled), rtol=1e-4, atol=1e-4)
        assert np.abs(logits(other) - logits(model)).max() > 1e-2
        np.testing.assert_allclose(other(x, training=False)["embedding"].numpy()[:, :1024], reference[:, :1024],
                                   rtol=1e-5, atol=1e-6)
        path = str(tmp_path / f"{pooling}.keras")
        other.save(path)
        loaded = keras.saving.load_model(path)
        assert loaded.attribute_pooling == pooling
        np.testing.assert_array_equal(logits(loaded), logits(other))


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="resnet", num_classes=3), "unknown model"),
    (dict(name="hatcnn", num_classes=3), "num_attributes > 0"),
    (dict(name="hacnn", num_classes=3, num_attributes=4), "hatcnn"),
    (dict(name="hatcnn", num_classes=3, num_attributes=4, attribute_pooling="gem"), "attribute_pooling"),
    (dict(name="hacnn", num_classes=3, input_shape=(128, 64)), "160x64"),
    (dict(name="hacnn", num_classes=-1), "num_classes"),
    (dict(name="mnet", num_classes=3, input_shape=(16, 16)), "at least 32x32"),
    (dict(name="mnet", num_classes=3, input_shape=(64, 32, 1)), "input_shape"),
    (dict(name="mnet", num_classes=3, no_such_option=1), "unknown option.*no_such_option.*width"),
])
def test_bad_arguments(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=match):
        keras_hpnet.build_model(name, **kwargs)


def test_wrong_image_size_is_a_clear_error(models):
    with pytest.raises(ValueError, match="expected images of 160x64"):
        models["hacnn"](np.zeros((1, 128, 64, 3), "uint8"))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        models["mnet"](np.zeros((1, 64, 32), "uint8"))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_keras_file_round_trip(models, name, tmp_path):
    model = models[name]
    x = images(model, 2, seed=5)
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    a, b = model(x, training=False), loaded(x, training=False)
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    assert loaded.input_size == model.input_size and loaded.embedding_dim == model.embedding_dim


def test_hacnn_under_mixed_bfloat16(models):
    """Opt-in mixed precision (faster on AMX CPUs): float32 outputs, float32 region
    placement, inference close to the float32 model with the same weights."""
    reference = models["hacnn"]
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = keras_hpnet.build_model("hacnn", **CONFIGS["hacnn"])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.stem.conv.compute_dtype == "bfloat16" and model.stem.conv.kernel.dtype == "float32"
    assert model.ha_blocks[0].hard.compute_dtype == "float32"
    model.set_weights(reference.get_weights())
    rng = np.random.default_rng(8)
    for i, block in enumerate(reference.ha_blocks):  # move the regions off the published init
        kernel = rng.normal(0, 0.05, block.hard.fc.kernel.shape).astype("float32")
        block.hard.fc.kernel.assign(kernel)
        model.ha_blocks[i].hard.fc.kernel.assign(kernel)
    x = images(model, 2, seed=4)
    got, want = model(x, training=False)["embedding"], reference(x, training=False)["embedding"]
    assert got.dtype == "float32"
    cosine = np.sum(got.numpy() * want.numpy(), -1) / 2.0  # two unit vectors per row
    assert cosine.min() > 0.999, cosine
    maps, ref_maps = model.attention_maps(x), reference.attention_maps(x)
    for i in (1, 2, 3):
        t = maps[f"translations_level{i}"]
        assert t.dtype == np.float32 and np.abs(t - ref_maps[f"translations_level{i}"]).max() < 1e-2
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = sum(tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(np.array([0, 1]), l, from_logits=True))
                   for l in out["identity_logits"])
    assert all(l.dtype == "float32" for l in out["identity_logits"])
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(tf.convert_to_tensor(g).numpy())) for g in grads)


# -- specs: what each model tells the rest of the code (keras_hpnet.model_spec) ----------------

def _constructor_options(cls):
    """{name: default} of the model-specific keyword options of `cls` and its bases."""
    import inspect

    from keras_hpnet.models import PedestrianModel

    found = {}
    for klass in reversed(cls.__mro__):
        if issubclass(klass, PedestrianModel) and klass is not PedestrianModel and "__init__" in vars(klass):
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is not p.empty:
                    found[p.name] = p.default
    return {k: v for k, v in found.items() if k not in ("num_classes", "num_attributes", "input_shape")}


@pytest.mark.parametrize("name", ["hacnn", "hatcnn", "hpnet", "mnet", "tiny"])
def test_spec_matches_the_class(name):
    spec = keras_hpnet.spec(name)
    cls = spec.model_class()
    assert cls.model_name == name
    assert {o.name: o.default for o in spec.options} == _constructor_options(cls)
    assert bool(spec.stages) == (name == "hpnet")
    assert spec.embedding_ends_with_attributes == (name == "hatcnn")
    assert spec.fixed_input_size == (name in ("hacnn", "hatcnn"))
    with pytest.raises(ValueError, match="unknown option.*nope"):
        spec.options_with_defaults(nope=1)


def test_spec_lookup_needs_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys, keras_hpnet; s = keras_hpnet.spec('hatcnn'); "
            "print(s.default_input_size, keras_hpnet.available_models(), 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip() == "(160, 64) ['hacnn', 'hatcnn', 'hpnet', 'mnet', 'tiny'] False"


def test_spec_flags_and_ranking_split(models):
    assert models["hatcnn"].embedding_includes_attributes and not models["mnet"].embedding_includes_attributes
    assert keras_hpnet.spec("hacnn").attributes == "none" and keras_hpnet.spec("hatcnn").attributes == "required"
    with pytest.raises(ValueError, match="hacnn has a fixed 160x64 input"):
        keras_hpnet.spec("hacnn").input_size((128, 64))
    assert keras_hpnet.spec("mnet").input_size(None) == (256, 128)
    assert keras_hpnet.spec("mnet").input_size((96, 48)) == (96, 48)


def test_tiny_is_registered_like_the_others(tmp_path):
    from keras_hpnet.models import TinyNet, build_like

    model = keras_hpnet.build_model("tiny", num_classes=3, num_attributes=2, input_shape=(32, 16),
                                    attribute_names=["hat", "bag"], feature_dim=6)
    assert isinstance(model, TinyNet) and isinstance(model, keras_hpnet.models.PedestrianModel)
    assert model.input_size == (32, 16) and model.embedding_dim == 8 and model.attribute_names == ["hat", "bag"]
    assert keras_hpnet.build_model("tiny", num_classes=1).input_size == keras_hpnet.spec("tiny").default_input_size
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.attribute_names == ["hat", "bag"] and loaded.get_config() == model.get_config()
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 16, 3)).astype("uint8")
    np.testing.assert_array_equal(loaded(x)["embedding"].numpy(), model(x)["embedding"].numpy())
    twin = build_like(model)  # same architecture and options, new weights
    assert type(twin) is TinyNet and twin.get_config() == {**model.get_config(), "name": twin.name}
    assert [w.shape for w in twin.weights] == [w.shape for w in model.weights]
    with pytest.raises(ValueError, match="2 attribute_names for num_attributes=3"):
        keras_hpnet.build_model("tiny", num_classes=0, num_attributes=3, attribute_names=["a", "b"])


def test_a_fifth_model_is_one_class_and_its_registration(tmp_path):
    """A throwaway network registered from here (no edit in training/) goes
    through config validation, the run plan and build, like the built-ins."""
    from types import SimpleNamespace

    from keras_hpnet.model_spec import ModelSpec, Option, register, unregister
    from keras_hpnet.models.base import PedestrianModel, check_input_shape
    from training import fit
    from training.config import ConfigError, resolve_config, validate_config

    @keras.saving.register_keras_serializable(package="keras_hpnet_test")
    class Throwaway(PedestrianModel):
        model_name = "throwaway"

        def __init__(self, num_classes, num_attributes=0, input_shape=None, width=4, **kwargs):
            super().__init__(num_classes, num_attributes, check_input_shape("throwaway", input_shape, (32, 16, 3)),
                             **kwargs)
            self.width = int(width)
            self.conv = keras.layers.Conv2D(self.width, 3, strides=4)
            self.head = keras.layers.Dense(num_attributes) if num_attributes else None

        @property
        def embedding_dim(self):
            return self.width + self._num_attributes

        def _forward(self, x, training=False):
            feature = keras.ops.mean(self.conv(keras.ops.cast(x, "float32") / 255.0), axis=(1, 2))
            out = {"embedding": feature, "features": [feature]}
            if self.head is not None:
                out["attribute_logits"] = self.head(feature)
                out["embedding"] = keras.ops.concatenate([feature, keras.ops.sigmoid(out["attribute_logits"])], -1)
            return out, {}

        def get_config(self):
            return {**super().get_config(), "width": self.width}

    register(ModelSpec(name="throwaway", builder=Throwaway, default_input_shape=(32, 16, 3), fixed_input_size=True,
                       options=(Option("width", 4),), embedding_ends_with_attributes=True, title="Throwaway"))
    try:
        assert "throwaway" in keras_hpnet.available_models()
        cfg = resolve_config({"model": "throwaway", "out_dir": str(tmp_path / "run")})
        validate_config(cfg)
        for change, message in (({"input_height": 64, "input_width": 32}, "throwaway has a fixed 32x16 input"),
                                ({"attribute_pooling": "max"}, "only hatcnn has an attribute network"),
                                ({"stagewise": True, "stage_epochs": [3, 3, 1]}, "--model=throwaway trains end to end")):
            bad = resolve_config({"model": "throwaway", "out_dir": str(tmp_path / "run"), **change})
            with pytest.raises(ConfigError, match=message):
                validate_config(bad)
        record = SimpleNamespace(attributes=np.zeros(2, np.uint8))
        ds = SimpleNamespace(splits={"train": [record] * 4}, kind="reid", num_train_pids=3,
                             attribute_names=["hat", "bag"], root=str(tmp_path))
        plan = fit.make_plan(cfg, ds, replicas=1, steps_per_epoch=2)
        assert (plan.model, plan.input_size, plan.options("model_options")) == ("throwaway", (32, 16), {"width": 4})
        model = fit.build_model(plan)
        assert isinstance(model, Throwaway) and model.attribute_names == ["hat", "bag"]
        assert model.embedding_includes_attributes and model.embedding_dim == 6
        wide = keras_hpnet.build_model("throwaway", num_classes=0, width=5)
        assert wide.embedding_dim == 5 and tuple(wide(np.zeros((1, 32, 16, 3)))["embedding"].shape) == (1, 5)
        with pytest.raises(ValueError, match="unknown option.*depth.*accepted: width"):
            keras_hpnet.build_model("throwaway", num_classes=0, depth=2)
    finally:
        unregister("throwaway")
    assert "throwaway" not in keras_hpnet.available_models()

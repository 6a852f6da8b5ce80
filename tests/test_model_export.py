"""Export tests: SavedModel outputs equal Keras inference (guards the BatchNorm
export trap) and full-int8 TFLite with builtin ops only (HA-CNN, HP-Net)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType

import keras_hpnet

CONFIGS = {
    "hacnn": dict(num_classes=4),
    "hatcnn": dict(num_classes=4, num_attributes=26),
    "mnet": dict(num_classes=4, num_attributes=3, input_shape=(64, 32), width=0.25),
    # Two maps per MDA module instead of 8: the same graph structure, a quarter
    # of the attentive branches' cost in the int8 conversion.
    "hpnet": dict(num_classes=4, num_attributes=3, input_shape=(64, 32), width=0.25, num_maps=2),
}
INT8_MODELS = ("hacnn", "hpnet")


def images(model, n, seed=1):
    h, w = model.input_size
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3)).astype("float32")


def trained_like(name, seed=0):
    """A model whose BatchNorm statistics and hard attention are off their init:
    BN statistics are set from one batch (momentum 0 for one training-mode pass),
    the hard-attention kernels are random, so exporting BN in training mode or
    degenerate quantization ranges would show."""
    keras.utils.set_random_seed(seed)
    model = keras_hpnet.build_model(name, **CONFIGS[name])
    bns = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    for bn in bns:
        bn.momentum = 0.0
    model(images(model, 4, seed=100), training=True)
    for bn in bns:
        bn.momentum = 0.9
    rng = np.random.default_rng(seed)
    for layer in getattr(model, "ha_blocks", []):
        fc = layer.hard.fc
        fc.kernel.assign(rng.normal(0.0, 0.05, fc.kernel.shape).astype("float32"))
    return model


def int8_converter(converter, calibration):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (list(sample) for sample in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]  # no Flex
    return converter.convert()


def interpreter_for(flat, delegates=True):
    resolver = (OpResolverType.AUTO if delegates
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter = Interpreter(model_content=flat, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


@pytest.mark.parametrize("name", list(CONFIGS))
def test_export_matches_keras(name, tmp_path):
    model = trained_like(name)
    x = images(model, 3)
    want = model(x, training=False)
    weights = model.get_weights()
    train_out = model(x, training=True)["embedding"].numpy()
    model.set_weights(weights)  # training=True updated the BatchNorm statistics
    assert np.abs(train_out - want["embedding"].numpy()).max() > 1e-3  # the trap would show
    path = str(tmp_path / name)
    model.export(path, verbose=False)
    loaded = tf.saved_model.load(path)  # keep a reference: it owns the variables
    got = loaded.serve(tf.constant(x))
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=1e-5, rtol=0)
    if name not in INT8_MODELS:
        return

    # Full-int8 TFLite from the same SavedModel: builtin int8 ops only (no Flex).
    flat = int8_converter(tf.lite.TFLiteConverter.from_saved_model(path),
                          [(images(model, 1, seed=s),) for s in range(4)])
    interpreter = interpreter_for(flat)  # default delegates (XNNPACK) accept it
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    tensors = {d["index"]: d for d in interpreter.get_tensor_details()}
    convs = [op for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D"]
    assert convs and all(tensors[op["inputs"][0]]["dtype"] == np.int8 for op in convs)
    if name == "hacnn":
        assert "GATHER" in ops  # the region sampler stays a builtin gather
    runner = interpreter.get_signature_runner()
    for seed in (10, 11):
        x1 = images(model, 1, seed=seed)
        got = runner(**{runner.get_input_details().popitem()[0]: x1})
        want = model(x1, training=False)
        for key in want:
            a, b = got[key].ravel(), want[key].numpy().ravel()
            cosine = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
            # Untrained weights and noise images: int8 keeps the direction of the
            # output (0.8-0.97 measured for HA-CNN); a layout or op bug gives ~0.
            assert cosine > 0.7, (key, cosine)


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



# --- The SavedModel of export.saved_model under TF-Serving's loader --------------------------

def v1_session_outputs(version_dir, requests):
    """Load `version_dir` the way tensorflow_model_server does (the TF1 session
    loader, variables restored by the saver) in a fresh graph, and run each
    ``(signature, {input_name: array})`` of `requests` by tensor name."""
    results = []
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], version_dir)
        for signature, feeds in requests:
            sd = meta.signature_def[signature]
            assert set(sd.inputs) == set(feeds), (signature, set(sd.inputs))
            fetches = {k: v.name for k, v in sd.outputs.items()}
            results.append(sess.run(fetches, {sd.inputs[k].name: v for k, v in feeds.items()}))
    return results


def _export_model(name):
    from support import make_tiny_model

    from keras_hpnet.runs import metadata_from

    model = make_tiny_model() if name == "tiny" else trained_like(name)
    names = [f"a{i}" for i in range(getattr(model, "num_attributes", 0))]
    h, w = model.input_size
    cfg = {"model": name, "input_height": h, "input_width": w, "attribute_names": names}
    return model, metadata_from(model, cfg)


@pytest.mark.parametrize("name", ["tiny", *CONFIGS])
def test_saved_model_runs_under_tf1_session_loader(name, tmp_path):
    """issue 12 §1: every signature of every model runs under the loader of
    tensorflow_model_server, outputs equal to Keras inference within 1e-5."""
    import json

    from keras_hpnet.data.resize import resize_uint8

    from export.saved_model import export_saved_model

    model, md = _export_model(name)
    export_saved_model(model, str(tmp_path), md, model_name=name)  # version 1
    res = export_saved_model(model, str(tmp_path), md, model_name=name)  # version 2
    h, w = model.input_size
    x = images(model, 3, seed=5).astype(np.uint8)
    other = np.random.default_rng(6).integers(0, 256, (2, h + 13, w - 5, 3)).astype(np.uint8)
    blobs = [tf.io.encode_png(other[0]).numpy(), tf.io.encode_jpeg(other[1], quality=90).numpy()]
    decoded = np.stack([tf.io.decode_image(b, channels=3).numpy() for b in blobs])
    pixels = resize_uint8(decoded, h, w).numpy()  # the image rule, keras_hpnet.data.resize
    plain, from_bytes, meta = v1_session_outputs(res.path, [
        ("serving_default", {"images": x}),
        ("serve_image_bytes", {"image_bytes": np.array(blobs, dtype=object)}),
        ("metadata", {}),
    ])
    for got, inputs in ((plain, x), (from_bytes, pixels)):
        want = model(inputs.astype(np.float32), training=False)
        assert set(got) == ({"embedding", "attributes"} if md.attribute_names else {"embedding"})
        for key in got:
            assert got[key].dtype == np.float32 and got[key].shape == tuple(want[key].shape)
            np.testing.assert_allclose(got[key], want[key].numpy(), atol=1e-5, rtol=0)
    record = json.loads(meta["metadata_json"])
    assert record["version"] == 2 and record["model_name"] == name
    assert record["attribute_names"] == md.attribute_names


def test_saved_model_cli_run(tmp_path):
    """The check docs/serving.md gives users: saved_model_cli (TF1 loader) runs it."""
    import os
    import subprocess
    import sys

    from export.saved_model import export_saved_model

    model, md = _export_model("tiny")
    res = export_saved_model(model, str(tmp_path / "models"), md)
    h, w = model.input_size
    np.save(tmp_path / "zeros.npy", np.zeros((1, h, w, 3), np.uint8))
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    r = subprocess.run(
        [cli, "run", "--dir", res.path, "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"images={tmp_path / 'zeros.npy'}", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    got = np.load(tmp_path / "out" / "embedding.npy")
    want = model(np.zeros((1, h, w, 3), np.float32), training=False)["embedding"].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)

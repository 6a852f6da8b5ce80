"""training.fit --precision=mixed_bfloat16: the run trains in bfloat16 and
saves a float32 model that evaluates and exports (in process, `--model tiny`)."""

import json
import os

import numpy as np
import pytest

import keras
from test_training_cli import write_csv_dataset  # the small CSV-manifest dataset
from training import fit, loop
from training.config import resolve_config


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    data_dir = write_csv_dataset(tmp_path_factory.mktemp("csvdata"))
    out_dir = str(tmp_path_factory.mktemp("run") / "bf16")
    cfg = resolve_config(dict(model="tiny", dataset="custom", data_dir=data_dir, out_dir=out_dir, batch_size=16,
                              epochs=5, lr=0.05, input_height=64, input_width=32, seed=3,
                              precision="mixed_bfloat16"))
    trainer, ds = fit.train(cfg, verbose=0)
    trained = {"policy": trainer.model.dtype_policy.name,
               "layer_policies": {layer.dtype_policy.name for layer in trainer.model._flatten_layers()},
               "weights": [(v.path, str(v.dtype), np.asarray(v)) for v in trainer.model.weights],
               "optimizer_dtypes": {str(v.dtype) for v in trainer.optimizer.variables if v.dtype.startswith("float")},
               "policy_after_train": keras.mixed_precision.global_policy().name}
    metrics = fit.finish(cfg, trainer, ds, 0.0, verbose=0)
    return out_dir, trainer, trained, metrics


def test_trains_in_bfloat16_with_float32_variables(bf16_run):
    out_dir, trainer, trained, _ = bf16_run
    assert trained["policy"] == "mixed_bfloat16"
    assert "mixed_bfloat16" in trained["layer_policies"]
    assert {dtype for _, dtype, _ in trained["weights"]} == {"float32"}  # master weights
    assert trained["optimizer_dtypes"] == {"float32"}
    assert trained["policy_after_train"] == "float32"  # the global policy is restored
    with open(os.path.join(out_dir, "config.json")) as f:
        assert json.load(f)["precision"] == "mixed_bfloat16"
    rows = trainer.history.rows
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) == 5 and all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses
    # speed columns: steady-state images/s and the one-time first step apart
    assert float(rows[0]["first_step_seconds"]) > 0 and float(rows[1]["first_step_seconds"]) == 0
    assert all(float(r["images_per_sec"]) > 0 and 0 <= float(r["input_wait"]) < 1 for r in rows)


def test_saved_model_is_float32_and_matches_the_trained_weights(bf16_run):
    out_dir, trainer, trained, metrics = bf16_run
    model = keras.saving.load_model(os.path.join(out_dir, "model.keras"))
    assert model.dtype_policy.name == "float32"
    assert {layer.dtype_policy.name for layer in model._flatten_layers()} == {"float32"}
    assert [str(v.dtype) for v in model.weights] == ["float32"] * len(trained["weights"])
    for v, (path, _, value) in zip(model.weights, trained["weights"]):
        np.testing.assert_array_equal(np.asarray(v), value, err_msg=path)
    x = np.random.default_rng(0).integers(0, 256, (4, 64, 32, 3)).astype("float32")
    out = model(x, training=False)
    assert {keras.backend.standardize_dtype(t.dtype) for t in out.values()} == {"float32"}
    # The bfloat16 model's inference embedding agrees with the float32 one up to bfloat16 rounding.
    ref = np.asarray(trainer.model(x, training=False)["embedding"], np.float32)
    emb = np.asarray(out["embedding"])
    cos = np.sum(ref * emb, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(emb, axis=1))
    assert cos.min() > 0.99, cos
    # metrics.json from the saved float32 model
    with open(os.path.join(out_dir, "metrics.json")) as f:
        on_disk = json.load(f)
    assert 0 <= on_disk["rank1"] <= 1 and on_disk == json.loads(json.dumps(metrics))


def test_bf16_run_exports(bf16_run, tmp_path):
    out_dir = bf16_run[0]
    model = keras.saving.load_model(os.path.join(out_dir, "model.keras"))
    x = np.random.default_rng(1).integers(0, 256, (3, 64, 32, 3)).astype("float32")
    expected = np.asarray(model(x)["embedding"])  # (Keras exports only a model that has been called)
    model.export(str(tmp_path / "saved"), verbose=False)
    import tensorflow as tf

    loaded = tf.saved_model.load(str(tmp_path / "saved"))  # keep a reference: it owns the variables
    served = loaded.serve(tf.constant(x))
    np.testing.assert_allclose(np.asarray(served["embedding"]), expected, atol=1e-5)
    from export import tflite

    exported, report = tflite.convert_run(out_dir, ["float32"], out=str(tmp_path / "tfl"), verbose=False)
    assert os.path.getsize(exported[0].path) > 0
    assert report["variants"]["float32"]["cosine_min"] > 0.9999


def test_dtype_policy_rejects_unknown_and_restores():
    before = keras.mixed_precision.global_policy().name
    with pytest.raises(ValueError, match="precision 'float16'"):
        with loop.dtype_policy("float16"):
            pass
    with pytest.raises(RuntimeError):
        with loop.dtype_policy("mixed_bfloat16"):
            assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
            raise RuntimeError("inside")
    assert keras.mixed_precision.global_policy().name == before

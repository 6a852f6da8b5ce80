"""training.fit: flags resolve into one config; bad flags and data fail fast."""

import json
import os
import subprocess
import sys
import time

import pytest

from training.config import ConfigError, TrainConfig, resolve_config, validate_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fit(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "training.fit", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - t0


def test_presets_and_overrides():
    cfg = resolve_config({"model": "hatcnn"})
    assert cfg.dataset == "synthetic" and cfg.out_dir == os.path.join("runs", "hatcnn-synthetic")
    market = resolve_config({"model": "hacnn", "dataset": "market1501", "data_dir": "/x"})
    # the paper recipe (Li et al. 2018, Sec. 4; docs/training.md)
    assert (market.epochs, market.batch_size, market.lr, market.momentum, market.weight_decay) == (
        300, 32, 0.03, 0.9, 5e-4)
    assert market.lr_milestones == (0.5, 0.75) and market.label_smoothing == 0.1
    given = resolve_config({"model": "mnet", "dataset": "market1501", "epochs": 3, "lr": 0.5, "lr_milestones": [0.3]})
    assert (given.epochs, given.lr, given.lr_milestones) == (3, 0.5, (0.3,))
    # the synthetic preset's attribute pooling applies to HAT-CNN only; the paper presets keep GAP
    assert cfg.attribute_pooling == "max" and market.attribute_pooling == "avg"
    assert resolve_config({"model": "hacnn"}).attribute_pooling == "avg"
    # stage-wise HP-Net: --epochs split 40/40/20 %, or the stages' epochs set the run's length
    staged = resolve_config({"model": "hpnet", "stagewise": True})
    assert (staged.epochs, staged.stage_epochs) == (7, [3, 3, 1])
    staged = resolve_config({"model": "hpnet", "stagewise": True, "stage_epochs": ["4", "2", "2"]})
    assert (staged.epochs, staged.stage_epochs) == (8, [4, 2, 2])
    assert resolve_config({"model": "hpnet"}).stage_epochs == []
    with pytest.raises(ConfigError, match="--stage_epochs=3,x,1: epochs must be integers"):
        resolve_config({"model": "hpnet", "stagewise": True, "stage_epochs": ["3", "x", "1"]})
    assert TrainConfig.from_dict(json.loads(staged.to_json())) == staged
    # round trip through config.json
    assert TrainConfig.from_dict(json.loads(given.to_json())) == given


@pytest.mark.parametrize("change, message", [
    ({"epochs": 0}, "--epochs=0"),
    ({"lr": -1.0}, "--lr=-1.0"),
    ({"label_smoothing": 1.0}, "--label_smoothing"),
    ({"lr_milestones": (0.8, 0.2)}, "--lr_milestones"),
    ({"pk": 3}, "--pk=3: must divide --batch_size=32"),
    ({"triplet_weight": 1.0}, "--triplet_weight > 0 needs P x K"),
    ({"model": "resnet"}, "--model='resnet'"),
    ({"strategy": "tpu"}, "--strategy='tpu'"),
    ({"attribute_pooling": "gem"}, "--attribute_pooling='gem'"),
    ({"model": "hacnn", "attribute_pooling": "max"}, "--attribute_pooling=max: only hatcnn"),
    ({"stagewise": True}, "--stagewise: stage-wise training is HP-Net's"),
    ({"model": "hpnet", "stage_epochs": [2, 2, 1]}, "--stage_epochs needs --stagewise"),
    ({"model": "hpnet", "stagewise": True, "stage_epochs": [2, 2, 1]}, "sum to 5 epochs, --epochs=7"),
    ({"model": "hpnet", "stagewise": True, "stage_epochs": [3, 4]}, "--stage_epochs=3,4: 3 stages"),
    ({"model": "hpnet", "stagewise": True, "stage_epochs": [], "epochs": 2}, "--epochs=2 is too short"),
    ({"input_height": 128}, "--input_height and --input_width"),
    ({"model": "hacnn", "input_height": 128, "input_width": 64}, "fixed 160x64"),
    ({"dataset": "market1501"}, "--data_dir is required"),
    ({"dataset": "pa100k", "data_dir": "/no/such/dir"}, "--data_dir=/no/such/dir: no such directory"),
])
def test_validate_names_the_bad_flag(change, message):
    cfg = resolve_config({"model": change.get("model", "hatcnn")})
    for k, v in change.items():
        setattr(cfg, k, v)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("+", r"\+")):
        validate_config(cfg)


def test_cli_fails_fast_before_any_model(tmp_path):
    out = tmp_path / "run"
    proc, seconds = _fit("--model=hacnn", "--dataset=market1501", f"--data_dir={tmp_path / 'nope'}",
                         f"--out_dir={out}")
    assert proc.returncode == 2, proc.stderr
    assert f"--data_dir={tmp_path / 'nope'}: no such directory" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    assert seconds < 30  # no TensorFlow import, let alone a model

    proc, _ = _fit("--model=tiny", "--epochs=-2", f"--out_dir={out}")
    assert proc.returncode == 2 and "--epochs=-2: must be >= 1" in proc.stderr
    proc, _ = _fit("--model=nosuchnet")  # absl enum check
    assert proc.returncode != 0 and "--model" in proc.stderr and not out.exists()


def test_cli_bad_dataset_directory_is_named(tmp_path):
    data = tmp_path / "market"
    data.mkdir()  # exists, but holds no Market-1501 folders
    out = tmp_path / "run"
    proc, _ = _fit("--model=tiny", "--dataset=market1501", f"--data_dir={data}", f"--out_dir={out}")
    assert proc.returncode == 2, proc.stderr
    assert str(data) in proc.stderr and "Traceback" not in proc.stderr
    assert not (out / "config.json").exists() and not (out / "model.keras").exists()


def test_precision_auto_follows_the_cpu(tmp_path, monkeypatch):
    from training import config

    with_amx = tmp_path / "amx"
    with_amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
    without = tmp_path / "plain"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert config.cpu_has_native_bfloat16(str(with_amx))
    assert not config.cpu_has_native_bfloat16(str(without))
    assert not config.cpu_has_native_bfloat16(str(tmp_path / "missing"))
    for has, expected in ((True, "mixed_bfloat16"), (False, "float32")):
        monkeypatch.setattr(config, "cpu_has_native_bfloat16", lambda has=has: has)
        cfg = config.resolve_config({"dataset": "synthetic"})
        assert cfg.precision == expected
        assert config.resolve_config({"dataset": "synthetic", "precision": "float32"}).precision == "float32"
        assert config.resolve_config({"dataset": "market1501"}).precision == "float32"  # paper recipe


def _dataset(tmp_path, labelled=True):
    from types import SimpleNamespace

    import numpy as np

    record = SimpleNamespace(attributes=np.zeros(2, np.uint8) if labelled else None)
    return SimpleNamespace(splits={"train": [record] * 4}, kind="reid", num_train_pids=3,
                           attribute_names=["hat", "bag"] if labelled else [], root=str(tmp_path))


def test_plan_follows_the_model_spec(tmp_path):
    """The run plan takes the input size, options and attribute use from the model's spec."""
    from training import fit

    plan = fit.make_plan(resolve_config({"model": "hacnn"}), _dataset(tmp_path), replicas=1, steps_per_epoch=5)
    # HA-CNN has no attribute head: a dataset's attribute labels are not used (not an error)
    assert plan.attribute_names == () and plan.num_classes == 3 and plan.input_size == (160, 64)
    assert plan.options("model_options") == {"channels": [128, 256, 384], "feature_dim": 512}
    plan = fit.make_plan(resolve_config({"model": "hatcnn"}), _dataset(tmp_path), replicas=1, steps_per_epoch=5)
    assert plan.attribute_names == ("hat", "bag") and plan.options("model_options")["attribute_pooling"] == "max"
    assert plan.options("schedule")["steps_per_epoch"] == 5 and plan.options("settings")["out_dir"]
    with pytest.raises(ConfigError, match="--model=hatcnn: HAT-CNN needs attribute labels"):
        fit.make_plan(resolve_config({"model": "hatcnn"}), _dataset(tmp_path, labelled=False), replicas=1,
                      steps_per_epoch=5)
    plan = fit.make_plan(resolve_config({"model": "mnet", "input_height": 96, "input_width": 48}),
                         _dataset(tmp_path), replicas=2, steps_per_epoch=5)
    assert plan.input_size == (96, 48) and plan.options("schedule")["strategy_replicas"] == 2


def test_cpu_description_names_the_isa(tmp_path, monkeypatch):
    """Benchmarks' header line: the ISA flags figures depend on, and kernel overrides."""
    from keras_hpnet import cpu

    avx2 = tmp_path / "avx2"
    avx2.write_text("model name\t: Some EPYC\nflags\t\t: fpu sse avx2 fma\n")
    amx = tmp_path / "amx"
    amx.write_text("model name\t: Some Xeon\nflags\t\t: avx2 fma avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8\n")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    line = cpu.describe(str(avx2))
    assert "Some EPYC" in line and "ISA: AVX2 FMA;" in line and "TF_ENABLE_ONEDNN_OPTS=0" in line
    assert cpu.isa_summary(str(amx)) == "AVX2 FMA AVX-512 AVX512-VNNI AVX512-BF16 AMX-BF16 AMX-INT8"
    assert cpu.has_native_bfloat16(str(amx)) and not cpu.has_native_bfloat16(str(avx2))
    assert cpu.isa_summary(str(tmp_path / "missing")) == "unknown"


def test_attribute_warmup_preset_flags_and_errors():
    from keras_hpnet.model_catalog import HATCNN_WARMUP
    from training import fit

    demo = resolve_config({"model": "hatcnn"})  # the synthetic preset warms HAT-CNN's attribute network up
    assert demo.attribute_warmup > 0 and len(demo.stage_epochs) == len(HATCNN_WARMUP)
    assert sum(demo.stage_epochs) == demo.epochs and fit.make_stages(demo)[0].name == "attributes"
    validate_config(demo)
    for model in ("hacnn", "mnet", "hpnet"):  # models without a separate attribute network: end to end
        cfg = resolve_config({"model": model})
        assert cfg.attribute_warmup == 0 and not cfg.stage_epochs and fit.make_stages(cfg) is None
    assert resolve_config({"model": "hatcnn", "epochs": 1}).attribute_warmup == 0  # no joint epoch left
    cfg = resolve_config({"model": "hatcnn", "epochs": 10, "attribute_warmup": 0.3})
    assert cfg.stage_epochs == [3, 7]
    assert resolve_config({"model": "hatcnn", "attribute_warmup": 0}).stage_epochs == []
    for given, message in [
        ({"model": "hacnn", "attribute_warmup": 0.5}, "--attribute_warmup=0.5: only HAT-CNN has a separate"),
        ({"model": "hatcnn", "attribute_warmup": 1.0}, r"a share of the epochs, in \[0, 1\)"),
        ({"model": "hatcnn", "attribute_warmup": 0.5, "epochs": 1}, "2 stages .attributes, joint. of at least one"),
        ({"model": "hatcnn", "stage_epochs": [1, 1, 1], "attribute_warmup": 0.5}, "2 stages"),
        ({"model": "hacnn", "stage_epochs": [1, 1]}, "--stage_epochs needs --stagewise or --attribute_warmup"),
        ({"model": "hpnet", "stagewise": True, "attribute_warmup": 0.5}, "only HAT-CNN"),
    ]:
        with pytest.raises(ConfigError, match=message):
            validate_config(resolve_config(given))

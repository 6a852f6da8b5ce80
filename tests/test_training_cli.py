"""training.fit end to end in subprocesses: MirroredStrategy over 2 logical
CPUs, 2-worker MultiWorkerMirroredStrategy on 127.0.0.1, kill -9 + resume.

Uses `--model tiny` on a small CSV-manifest (`custom`) dataset written here,
so each run takes seconds."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATTRS = ["upred", "upblue", "hat"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_csv_dataset(tmp_path_factory.mktemp("csvdata"))


def write_csv_dataset(root):
    """12 identities x 3 cameras x 3 images (train) and 8 test identities; an
    identity is a colour pair + a hat, cameras tint and shift the picture."""
    import pathlib

    from PIL import Image

    root = pathlib.Path(root)
    rng = np.random.default_rng(0)

    def person(key):
        r = np.random.default_rng(key)
        return r.integers(0, 256, 3), r.integers(0, 256, 3), int(r.integers(0, 2))

    def draw(key, cam, k):
        up, low, hat = person(key)
        img = np.full((64, 32, 3), 90, np.float64) + rng.normal(0, 12, (64, 32, 3))
        y = int(rng.integers(0, 5))
        img[8 + y:34 + y, 6:26] = up
        img[34 + y:60, 8:24] = low
        if hat:
            img[0:8, 10:22] = (20, 200, 20)
        img *= (0.75 + 0.2 * cam, 1.0, 1.15 - 0.15 * cam)
        return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))

    def split(name, keys, cams, per):
        lines = ["path,pid,camid," + ",".join(ATTRS)]
        os.makedirs(root / name, exist_ok=True)
        for key in keys:
            up, _, hat = person(key)
            for cam in cams:
                for k in range(per):
                    rel = f"{name}/{key:03d}_{cam}_{k}.png"
                    draw(key, cam, k).save(root / rel)
                    lines.append(f"{rel},{key},{cam},{int(up[0] > 128)},{int(up[2] > 128)},{hat}")
        (root / f"{name}.csv").write_text("\n".join(lines) + "\n")

    split("train", range(1, 13), (0, 1, 2), 3)
    split("query", range(100, 108), (0,), 1)
    split("gallery", range(100, 108), (1, 2), 2)
    return str(root)


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _fit_args(data_dir, out_dir, *extra):
    return [sys.executable, "-m", "training.fit", "--model=tiny", "--dataset=custom", f"--data_dir={data_dir}",
            f"--out_dir={out_dir}", "--batch_size=16", "--epochs=4", "--lr=0.05", "--input_height=64",
            "--input_width=32", "--seed=3", *extra]


def _weights(path):
    import keras

    import keras_hpnet.models.tiny  # noqa: F401  (registers TinyNet for loading)

    return [np.asarray(w) for w in keras.saving.load_model(path).weights]


def test_kill_and_resume_matches_uninterrupted(data_dir, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    args = ["--epochs=6", "--checkpoint_every=2"]
    # The uninterrupted reference runs alongside the run that gets killed.
    reference = subprocess.Popen(_fit_args(data_dir, full, *args), env=_env(), cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Same command, killed with SIGKILL once a mid-run checkpoint exists.
    killed = subprocess.Popen(_fit_args(data_dir, part, *args), env=_env(), cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pointer = part / "checkpoints" / "latest.json"
    deadline = time.time() + 240
    step = 0
    try:
        while time.time() < deadline and killed.poll() is None:
            if pointer.exists():
                step = json.loads(pointer.read_text())["step"]
                if step >= 4:
                    break
            time.sleep(0.05)
        os.kill(killed.pid, signal.SIGKILL)
    finally:
        killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL, "run ended before it could be killed"
    assert step >= 4 and not (part / "model.keras").exists()
    _, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err[-3000:]

    proc = subprocess.run(_fit_args(data_dir, part, *args), env=_env(), cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resuming from ckpt-" in proc.stdout
    m_full = json.loads((full / "metrics.json").read_text())
    m_part = json.loads((part / "metrics.json").read_text())
    assert m_part["resumed_from_step"] >= 4 and m_part["steps"] == m_full["steps"]
    for a, b in zip(_weights(full / "model.keras"), _weights(part / "model.keras")):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    for key in ("rank1", "mAP", "mA"):
        assert abs(m_full[key] - m_part[key]) < 0.02, (key, m_full[key], m_part[key])
    # the run directory contract (docs/design.md)
    cfg = json.loads((part / "config.json").read_text())
    for key in ("model", "dataset", "data_dir", "input_height", "input_width", "num_classes", "attribute_names",
                "embedding_dim", "seed"):
        assert key in cfg
    assert cfg["num_classes"] == 12 and cfg["attribute_names"] == ATTRS and cfg["input_height"] == 64
    history = (part / "history.csv").read_text().splitlines()
    assert len(history) == 7 and history[0].startswith("epoch,step,loss,id,attr")
    assert os.listdir(part / "logs" / "train")
    for key in ("rank1", "rank5", "rank10", "mAP", "mINP", "mA", "acc", "prec", "rec", "f1", "raw_pixel_rank1"):
        assert 0.0 <= m_part[key] <= 1.0, key


MIRRORED = r"""
import json, sys
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from training import fit
from training.config import resolve_config
cfg = resolve_config(json.loads(sys.argv[1]))
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
trainer, ds = fit.train(cfg, strategy, verbose=0)
diff = 0.0
for v in trainer.model.weights:
    vals = [np.asarray(x) for x in v.value.values]
    assert len(vals) == 2, v.path
    diff = max(diff, float(np.max(np.abs(vals[0] - vals[1]))))
print("RESULT " + json.dumps({"replicas": strategy.num_replicas_in_sync, "max_replica_diff": diff,
                              "losses": [float(r["loss"]) for r in trainer.history.rows]}))
"""


def _result(stdout):
    lines = [l for l in stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, stdout[-2000:]
    return json.loads(lines[-1][7:])


def test_mirrored_two_replicas(data_dir, tmp_path):
    cfg = dict(model="tiny", dataset="custom", data_dir=data_dir, out_dir=str(tmp_path / "run"), batch_size=16,
               epochs=5, lr=0.05, input_height=64, input_width=32, seed=1, strategy="mirrored", pk=4,
               triplet_weight=1.0)  # P x K batches + batch-hard triplet per replica
    proc = subprocess.run([sys.executable, "-c", MIRRORED, json.dumps(cfg)], env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = _result(proc.stdout)
    assert r["replicas"] == 2
    assert r["max_replica_diff"] == 0.0  # incl. BatchNorm moving statistics
    assert r["losses"][-1] < 0.8 * r["losses"][0], r["losses"]


WORKER = r"""
import json, sys
import numpy as np
from training import fit, loop
from training.config import resolve_config
cfg = resolve_config(json.loads(sys.argv[1]))
strategy = loop.make_strategy("multi_worker")
trainer, ds = fit.train(cfg, strategy, verbose=0)
np.savez(sys.argv[2], *[np.asarray(w) for w in trainer.model.weights])
print("RESULT " + json.dumps({"replicas": strategy.num_replicas_in_sync, "chief": loop.is_chief(strategy),
                              "losses": [float(r["loss"]) for r in trainer.history.rows]}))
"""


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_multi_worker_two_processes(data_dir, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    out = tmp_path / "run"
    cfg = dict(model="tiny", dataset="custom", data_dir=data_dir, out_dir=str(out), batch_size=16, epochs=5,
               lr=0.05, input_height=64, input_width=32, seed=1, strategy="multi_worker", checkpoint_every=3)
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(cfg), str(tmp_path / f"w{i}.npz")],
            env=_env(TF_CONFIG=tf_config), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=300))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-3000:]
    r0, r1 = _result(outputs[0][0]), _result(outputs[1][0])
    assert r0["replicas"] == r1["replicas"] == 2 and r0["chief"] and not r1["chief"]
    assert r0["losses"][-1] < 0.8 * r0["losses"][0], r0["losses"]
    w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert len(w0.files) == len(w1.files) > 0
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k])
    # only the chief wrote the run directory
    assert (out / "checkpoints" / "latest.json").exists() and (out / "history.csv").exists()


def test_real_model_and_attribute_only_runs(data_dir, tmp_path):
    """A short M-net (real paper model, the smallest graph) run through the whole command, and an attribute-only
    dataset (pid -1: attribute heads only, positive-ratio weighted BCE)."""
    attr = tmp_path / "attr"
    attr.mkdir()
    for name, src in (("train", "train"), ("val", "query"), ("test", "gallery")):
        lines = open(os.path.join(data_dir, f"{src}.csv")).read().splitlines()
        rows = [",".join([os.path.join(data_dir, r.split(",")[0]), "-1", "-1", *r.split(",")[3:]])
                for r in lines[1:]]
        (attr / f"{name}.csv").write_text("\n".join([lines[0], *rows]) + "\n")
    real = subprocess.Popen(
        [sys.executable, "-m", "training.fit", "--model=mnet", "--dataset=custom", f"--data_dir={data_dir}",
         f"--out_dir={tmp_path / 'real'}", "--batch_size=8", "--epochs=1", "--max_steps=2", "--input_height=96",
         "--input_width=48"],
        env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    attr_only = subprocess.run(_fit_args(attr, tmp_path / "attr_run", "--epochs=10"), env=_env(), cwd=REPO,
                               capture_output=True, text=True, timeout=300)
    out, err = real.communicate(timeout=400)
    assert real.returncode == 0, err[-3000:]
    assert attr_only.returncode == 0, attr_only.stderr[-3000:]

    cfg = json.loads((tmp_path / "real" / "config.json").read_text())
    assert (cfg["model"], cfg["input_height"], cfg["input_width"]) == ("mnet", 96, 48)
    metrics = json.loads((tmp_path / "real" / "metrics.json").read_text())
    assert metrics["steps"] == 2 and {"rank1", "mAP", "mA", "raw_pixel_rank1"} <= set(metrics)
    assert "img/s" in out and "lr:" in out  # the progress bar
    import keras

    import keras_hpnet.models  # noqa: F401  (registers the model classes)

    model = keras.saving.load_model(tmp_path / "real" / "model.keras")
    assert model.num_classes == 12 and model.num_attributes == 3 and model.embedding_dim == cfg["embedding_dim"]

    cfg = json.loads((tmp_path / "attr_run" / "config.json").read_text())
    assert cfg["num_classes"] == 0 and cfg["attribute_names"] == ATTRS
    metrics = json.loads((tmp_path / "attr_run" / "metrics.json").read_text())
    assert {"mA", "acc", "prec", "rec", "f1"} <= set(metrics) and "rank1" not in metrics
    assert metrics["mA"] > 0.6, metrics
    history = (tmp_path / "attr_run" / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,step,loss,attr,") and ",id," not in history[0]


# -- resume safety: a run resumes only into a directory with the same plan -----------------------

def _recorded_run(root, plan):
    os.makedirs(root / "checkpoints")
    (root / "checkpoints" / "latest.json").write_text('{"step": 1}')
    (root / "config.json").write_text(plan.to_json())
    return str(root)


def _tiny_plan(**change):
    from keras_hpnet.runs import RunPlan

    fields = dict(model="tiny", model_options={"width": 16, "feature_dim": 32, "depth": 3}, input_size=(64, 32),
                  num_classes=12, attribute_names=ATTRS, dataset="custom", data_dir="/d", precision="float32",
                  seed=3, schedule={"epochs": 4, "lr": 0.05}, settings={"max_steps": 0})
    fields.update(change)
    return RunPlan.make(**fields)


@pytest.mark.parametrize("change, message", [
    ({"model_options": {"width": 8, "feature_dim": 32, "depth": 3}}, "model_options.width: recorded 16, this run 8"),
    ({"input_size": (32, 16)}, "input_size: recorded [64, 32], this run [32, 16]"),
    ({"schedule": {"epochs": 6, "lr": 0.05}}, "epochs: recorded 4, this run 6"),
    ({"dataset_options": {"num_train_ids": 4}}, "dataset_options.num_train_ids: recorded None, this run 4"),
    ({"precision": "mixed_bfloat16"}, "precision: recorded 'float32', this run 'mixed_bfloat16'"),
    ({"seed": 0}, "seed: recorded 3, this run 0"),
])
def test_resume_refuses_a_different_plan(tmp_path, change, message):
    from training import fit
    from training.config import ConfigError

    out = _recorded_run(tmp_path / "run", _tiny_plan())
    with pytest.raises(ConfigError, match="holds a run with a different plan") as e:
        fit.check_resumable(_tiny_plan(**change), out)
    assert message in str(e.value) and f"--out_dir={out}" in str(e.value)
    fit.check_resumable(_tiny_plan(settings={"max_steps": 5}), out)  # same weights-deciding plan: resumes


def test_resume_refuses_an_unreadable_record(tmp_path):
    from training import fit
    from training.config import ConfigError

    out = _recorded_run(tmp_path / "run", _tiny_plan())
    (tmp_path / "run" / "config.json").write_text('{"model": "tiny"')
    with pytest.raises(ConfigError, match="its config.json is unusable.*not valid JSON"):
        fit.check_resumable(_tiny_plan(), out)


def test_cli_resume_only_with_the_same_plan(data_dir, tmp_path):
    out = tmp_path / "run"
    first = subprocess.run(_fit_args(data_dir, out, "--max_steps=2", "--noevaluate"), env=_env(), cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    recorded = (out / "config.json").read_text()
    other = subprocess.run(_fit_args(data_dir, out, "--max_steps=4", "--noevaluate", "--seed=4", "--lr=0.01"),
                           env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert other.returncode == 2, other.stderr[-3000:]
    assert "lr: recorded 0.05, this run 0.01; seed: recorded 3, this run 4" in other.stderr
    assert "Traceback" not in other.stderr and (out / "config.json").read_text() == recorded
    same = subprocess.run(_fit_args(data_dir, out, "--max_steps=3", "--noevaluate"), env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert same.returncode == 0, same.stderr[-3000:]
    assert "Resuming from ckpt-" in same.stdout
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step"] == 3


def test_fit_and_evaluate_on_prid2011_tracklets(tmp_path):
    """A video reader through both CLIs: PRID-2011 multi-shot fakes (split 1 of the
    torchreid split file), [N, seq_len, H, W, 3] training, tracklet evaluation."""
    from test_datasets_prid2011 import make_prid

    data, out = make_prid(str(tmp_path / "prid2011")), tmp_path / "run"
    args = [sys.executable, "-m", "training.fit", "--model=tiny", "--dataset=prid2011", f"--data_dir={data}",
            f"--out_dir={out}", "--dataset_option=split=1", "--seq_len=2", "--batch_size=4", "--epochs=2",
            "--input_height=32", "--input_width=16", "--seed=3"]
    fit = subprocess.run(args, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert fit.returncode == 0, fit.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "prid2011" and config["dataset_options"] == {"split": 1}
    assert config["seq_len"] == 2 and config["num_classes"] == 3
    frames = {k: v["num_records"] for k, v in json.loads((out / "data_report.json").read_text())["images"].items()}
    assert frames == {"train": 16, "query": 6, "gallery": 7}  # split 1: persons 2, 4, 6 train; 1, 3, 5 test
    metrics = json.loads((out / "metrics.json").read_text())
    scores = {k: metrics[k] for k in ("rank1", "mAP", "mINP", "frame_rank1", "frame_mAP")}
    assert all(0.0 <= v <= 1.0 for v in scores.values()) and metrics["rank5"] == 1.0  # 3 gallery tracklets
    ev = subprocess.run([sys.executable, "-m", "training.evaluate", f"--run_dir={out}", "--nopictures"], env=_env(),
                        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert ev.returncode == 0, ev.stderr[-3000:]
    again = json.loads((out / "eval" / "metrics.json").read_text())
    assert {k: again[k] for k in scores} == pytest.approx(scores, abs=1e-6)  # the recorded split, same scores

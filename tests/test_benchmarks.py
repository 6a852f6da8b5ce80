"""benchmarks/bench_training.py --reference: alternation with a command, its
`img_per_s=` line, the ratio table (on `--models tiny`, a tiny synthetic set)."""

import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import bench_training  # noqa: E402

SIZES = dict(num_train_ids=16, num_test_ids=3, num_cameras=2, max_cameras=2, max_images=2, num_distractors=1,
             num_junk=1)


@pytest.mark.parametrize("text, value", [("img_per_s=12.0", 12.0), ("warm-up\nimg_per_s=3 x=1\nimg_per_s=7.5e1", 75.0),
                                         ("cpu=2 img_per_s=0.25 threads=2", 0.25)])
def test_parse_reference_takes_the_last_value(text, value):
    assert bench_training.parse_reference(text) == value


@pytest.mark.parametrize("text", ["", "img_per_s=", "img/s 12", "ref_img_per_s=3", "img_per_s=abc"])
def test_parse_reference_without_the_line_says_so(text):
    with pytest.raises(ValueError, match="img_per_s="):
        bench_training.parse_reference(text)


def test_parse_env():
    assert bench_training.parse_env("") == {}
    assert bench_training.parse_env("TF_ENABLE_ONEDNN_OPTS=0 ONEDNN_MAX_CPU_ISA=AVX2 X='a b'") == {
        "TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "AVX2", "X": "a b"}
    with pytest.raises(SystemExit, match="'ONEDNN_MAX_CPU_ISA' is not NAME=VALUE"):
        bench_training.parse_env("ONEDNN_MAX_CPU_ISA AVX2")


def test_intra_op_threads():
    assert bench_training.intra_op_threads({"TF_NUM_INTRAOP_THREADS": "3"}) == 3
    assert bench_training.intra_op_threads({}) == len(os.sched_getaffinity(0))


def _bench(tmp_path, *args):
    cmd = [sys.executable, os.path.join(REPO, "benchmarks", "bench_training.py"), "--models", "tiny",
           "--steps", "2", "--batch_size", "8", "--data_dir", str(tmp_path), "--data_sizes", json.dumps(SIZES), *args]
    return subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=REPO), cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_reference_alternated_with_ours(tmp_path):
    # The reference reports img/s = 10 x its variant's X and echoes what the bench passed it.
    ref = ("python -c \"import os; print('warm-up'); print('img_per_s=%s threads=%s batch=%s' % "
           "(10 * int(os.environ['X']), os.environ['BENCH_THREADS'], os.environ['BENCH_BATCH_SIZE']))\"")
    proc = _bench(tmp_path, "--reference", ref, "--rounds", "1", "--env", "X=1", "--env", "X=4 TF_NUM_INTRAOP_THREADS=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert out.startswith("CPU: ") and "ISA: " in out.splitlines()[0]
    rows = re.findall(r"^\| 1 \| (X=\S+(?: TF_NUM_INTRAOP_THREADS=1)?) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \|",
                      out, re.M)
    assert [r[0] for r in rows] == ["X=1", "X=4 TF_NUM_INTRAOP_THREADS=1"], out
    (_, ours1, ref1, ratio1, threads1), (_, ours4, ref4, ratio4, threads4) = rows
    assert (float(ref1), float(ref4)) == (10.0, 40.0)
    assert float(ours1) > 0 and float(ratio1) == pytest.approx(float(ours1) / 10.0, abs=0.01)
    assert float(ratio4) == pytest.approx(float(ours4) / 40.0, abs=0.01)
    assert int(threads1) == len(os.sched_getaffinity(0)) and int(threads4) == 1
    summary = re.findall(r"^\| (X=\S+(?: TF_NUM_INTRAOP_THREADS=1)?) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| [\d.]+-[\d.]+ \|$",
                         out, re.M)
    assert [(s[0], float(s[2])) for s in summary] == [("X=1", 10.0), ("X=4 TF_NUM_INTRAOP_THREADS=1", 40.0)], out


def test_reference_failures_name_the_command(tmp_path):
    silent = _bench(tmp_path, "--reference", "python -c \"print('no figure')\"", "--rounds", "1")
    assert silent.returncode != 0 and "printed no 'img_per_s=<number>' line" in silent.stderr
    assert "no figure" in silent.stderr
    two = _bench(tmp_path, "--reference", "true", "--models", "tiny,hacnn")
    assert two.returncode != 0 and "one model, strategy and precision" in two.stderr

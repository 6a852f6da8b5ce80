"""The oneDNN policy of the entry points (keras_hpnet.cpu; docs/models.md, "oneDNN on AVX2")."""

import subprocess
import sys

from keras_hpnet import cpu


def _cpuinfo(tmp_path, flags):
    path = tmp_path / "cpuinfo"
    path.write_text(f"model name\t: Some CPU\nflags\t\t: {flags}\n")
    return str(path)


def test_kernels_follow_the_variable_then_tensorflows_default(tmp_path):
    (tmp_path / "avx2").mkdir()
    avx2 = _cpuinfo(tmp_path / "avx2", "avx2 fma")
    vnni = _cpuinfo(tmp_path, "avx2 fma avx512f avx512_vnni")
    assert cpu.onednn_kernels(avx2, {}) == "Eigen"  # TF leaves oneDNN off on AVX2
    assert cpu.onednn_kernels(vnni, {}) == "oneDNN"
    assert cpu.onednn_kernels(avx2, {"TF_ENABLE_ONEDNN_OPTS": "1"}) == "oneDNN"
    assert cpu.onednn_kernels(vnni, {"TF_ENABLE_ONEDNN_OPTS": "0"}) == "Eigen"
    assert cpu.onednn_kernels(vnni, {"TF_ENABLE_ONEDNN_OPTS": "False"}) == "Eigen"


def test_prefer_onednn_keeps_the_users_value():
    env = {}
    assert cpu.prefer_onednn(env) is ("tensorflow" not in sys.modules)
    user = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert cpu.prefer_onednn(user) is False and user == {"TF_ENABLE_ONEDNN_OPTS": "0"}


def test_prefer_onednn_sets_it_before_tensorflow_only():
    """In a fresh process: set (TF not loaded yet), then reported by describe(); after
    TensorFlow is imported it no longer changes anything."""
    code = ("import os, sys; os.environ.pop('TF_ENABLE_ONEDNN_OPTS', None); from keras_hpnet import cpu; "
            "assert cpu.prefer_onednn() and os.environ['TF_ENABLE_ONEDNN_OPTS'] == '1'; "
            "assert 'kernels: oneDNN' in cpu.describe(); "
            "os.environ.pop('TF_ENABLE_ONEDNN_OPTS'); sys.modules['tensorflow'] = sys; "
            "assert not cpu.prefer_onednn() and 'TF_ENABLE_ONEDNN_OPTS' not in os.environ")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_library_does_not_set_it():
    code = ("import os; os.environ.pop('TF_ENABLE_ONEDNN_OPTS', None); import keras_hpnet; "
            "keras_hpnet.build_model('tiny', num_classes=3, num_attributes=0); "
            "assert 'TF_ENABLE_ONEDNN_OPTS' not in os.environ")
    subprocess.run([sys.executable, "-c", code], check=True)

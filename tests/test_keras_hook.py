"""`import keras_hpnet` is enough for `keras.saving.load_model` (issue 12, section 5),
and it does not import TensorFlow. Fresh interpreters (subprocesses)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code, *args):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    proc = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A HAT-CNN (the issue's case) and the tiny test net, saved as .keras."""
    folder = tmp_path_factory.mktemp("saved")
    _python("import sys, keras_hpnet\n"
            "sys.path.insert(0, 'tests')\n"
            "from support import make_tiny_model\n"
            "keras_hpnet.build_model('hatcnn', num_classes=3, num_attributes=4).save(sys.argv[1])\n"
            "make_tiny_model().save(sys.argv[2])\n", str(folder / "hatcnn.keras"), str(folder / "tiny.keras"))
    return {"hatcnn": (str(folder / "hatcnn.keras"), (160, 64)), "tiny": (str(folder / "tiny.keras"), (32, 16))}


def test_import_keras_hpnet_does_not_import_tensorflow():
    out = _python("import sys, keras_hpnet, keras_hpnet.datasets, keras_hpnet.metrics, keras_hpnet.data\n"
                  "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    assert out.strip() == "[]"


@pytest.mark.parametrize("model, imports", [
    ("hatcnn", "import keras_hpnet\nimport keras"),  # main: Could not locate class 'HATCNN'
    ("tiny", "import keras_hpnet\nimport keras"),
    ("tiny", "import keras\nimport keras_hpnet"),
    ("tiny", "import keras_hpnet.losses\nimport keras"),  # keras imported by a keras_hpnet module
])
def test_load_model_after_import_keras_hpnet(saved, model, imports):
    path, (h, w) = saved[model]
    out = _python(imports + "\nimport sys, numpy as np\n"
                  "m = keras.saving.load_model(sys.argv[1])\n"
                  f"print(type(m).__name__, m(np.zeros((1, {h}, {w}, 3), 'float32'))['embedding'].shape)", path)
    assert out.split()[0] == {"hatcnn": "HATCNN", "tiny": "TinyNet"}[model]

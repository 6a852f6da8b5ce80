"""benchmarks/xnnpack_isa.py: XNNPACK capped at AVX2 picks AVX2 kernels and computes the same outputs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import xnnpack_isa
from keras_hpnet.cpu import cpu_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
x86_avx2 = pytest.mark.skipif(not {"avx2", "fma"} <= cpu_flags(), reason="needs an x86 CPU with AVX2+FMA")

# Runs a .tflite file in a fresh process (the cap is process-wide and cannot be undone).
RUNNER = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from benchmarks import xnnpack_isa
line = xnnpack_isa.cap_to_avx2() if sys.argv[3] == "avx2" else None
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[2], num_threads=1)
it.allocate_tensors()
d = it.get_input_details()[0]
it.set_tensor(d["index"], np.linspace(-1, 1, int(np.prod(d["shape"])), dtype=np.float32).reshape(d["shape"]))
it.invoke()
out = it.get_tensor(it.get_output_details()[0]["index"])
flags = xnnpack_isa.check_capped() if line else None
print(json.dumps({"line": line, "flags": flags, "out": out.ravel().tolist()}))
"""


def _run(model_path, isa):
    res = subprocess.run([sys.executable, "-c", RUNNER, ROOT, model_path, isa], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def conv_tflite(tmp_path_factory):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 8, 3)), keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
                              keras.layers.Conv2D(8, 1), keras.layers.GlobalAveragePooling2D()])
    path = str(tmp_path_factory.mktemp("xnn") / "conv.tflite")
    with open(path, "wb") as f:
        f.write(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


@x86_avx2
def test_capped_xnnpack_has_only_avx2_flags_and_same_outputs(conv_tflite):
    native = _run(conv_tflite, "native")
    capped = _run(conv_tflite, "avx2")
    assert capped["flags"] & ~xnnpack_isa.AVX2_ARCH_FLAGS == 0 and capped["flags"] & 0x80  # AVX2 bit on, none above
    assert capped["line"].startswith("XNNPACK ISA capped at AVX2+FMA")
    if "avx512f" in cpu_flags():
        assert "avx512f" in capped["line"]
    np.testing.assert_allclose(capped["out"], native["out"], rtol=1e-5, atol=1e-6)


def test_refuses_a_cpu_without_avx2():
    with pytest.raises(xnnpack_isa.CapError, match="no AVX2"):
        xnnpack_isa.cap_to_avx2(cpu_flags={"sse2"})


def test_elf_symbols_reads_a_symbol_table(tmp_path):
    found = xnnpack_isa.elf_symbols(xnnpack_isa.litert_library(), {"cpuinfo_isa", "no_such_symbol_here"})
    assert set(found) <= {"cpuinfo_isa"}  # a stripped build has none; then cap_to_avx2 refuses, naming them
    with pytest.raises(xnnpack_isa.CapError, match="not an ELF64"):
        (tmp_path / "x.so").write_bytes(b"not elf")
        xnnpack_isa.elf_symbols(str(tmp_path / "x.so"), {"a"})
    with pytest.raises(xnnpack_isa.CapError, match="x.so: truncated or malformed"):
        (tmp_path / "x.so").write_bytes(b"\x7fELF\x02" + b"\0" * 20)
        xnnpack_isa.elf_symbols(str(tmp_path / "x.so"), {"a"})

"""What CPU a figure came from: ISA flags and thread settings (no TensorFlow).

Speed differs by ISA (docs/models.md): TensorFlow runs oneDNN kernels by
default only with AVX-512 VNNI/BF16 or AMX and Eigen kernels elsewhere;
bf16 is native only with AMX-BF16 / AVX512-BF16; XNNPACK int8 gains most with
VNNI. Benchmarks print :func:`describe` in their header.

The project's oneDNN policy (docs/models.md, "oneDNN on AVX2"): its entry points
(training.fit, training.evaluate, the benchmarks) call :func:`prefer_onednn`
before TensorFlow is imported, so AVX2 CPUs run oneDNN kernels too; a value
the user set is kept. The library itself never calls it.
"""

from __future__ import annotations

import os
import platform
import sys

# /proc/cpuinfo flag -> the name figures use, in the order they are printed.
ISA_FLAGS = (("avx2", "AVX2"), ("fma", "FMA"), ("avx512f", "AVX-512"), ("avx512_vnni", "AVX512-VNNI"),
             ("avx_vnni", "AVX-VNNI"), ("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX-BF16"),
             ("amx_int8", "AMX-INT8"), ("asimd", "NEON"), ("asimddp", "NEON-dotprod"))
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
# TensorFlow turns oneDNN on by itself only with one of these (tsl IsMKLEnabled).
ONEDNN_DEFAULT_FLAGS = frozenset({"avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"})
# Environment variables that change which kernels and how many threads run.
KERNEL_ENV = ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
              "TF_NUM_INTEROP_THREADS")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (x86 `flags`, ARM `Features`); empty if unknown."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def has_native_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """AMX-BF16 or AVX512-BF16: oneDNN runs bf16 convolutions natively (elsewhere
    bf16 is emulated and slower than float32)."""
    return bool(cpu_flags(cpuinfo) & {"amx_bf16", "avx512_bf16"})


def isa_summary(cpuinfo: str = "/proc/cpuinfo") -> str:
    flags = cpu_flags(cpuinfo)
    return " ".join(name for flag, name in ISA_FLAGS if flag in flags) or "unknown"


def onednn_kernels(cpuinfo: str = "/proc/cpuinfo", environ=None) -> str:
    """Which CPU kernels TensorFlow runs in this process: "oneDNN" or "Eigen".

    `TF_ENABLE_ONEDNN_OPTS` decides when set ("1"/"true" on, "0"/"false" off);
    otherwise TensorFlow's own default (on only with AVX-512 VNNI/BF16, AVX-VNNI
    or AMX). Only x86 Linux builds have oneDNN kernels on by choice.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(ONEDNN_ENV, "").strip().lower()
    if value in ("1", "true"):
        return "oneDNN"
    if value in ("0", "false"):
        return "Eigen"
    return "oneDNN" if cpu_flags(cpuinfo) & ONEDNN_DEFAULT_FLAGS else "Eigen"


def prefer_onednn(environ=None) -> bool:
    """Entry points only: set `TF_ENABLE_ONEDNN_OPTS=1` unless the user set it.

    oneDNN trains HA-CNN/HAT-CNN faster than Eigen on AVX2 CPUs too, where
    TensorFlow leaves it off (docs/models.md has the measurement). Must run
    before TensorFlow is imported (it reads the variable once); returns False
    and changes nothing when TensorFlow is already loaded or the user chose.
    """
    environ = os.environ if environ is None else environ
    if ONEDNN_ENV in environ or "tensorflow" in sys.modules:
        return False
    environ[ONEDNN_ENV] = "1"
    return True


def describe(cpuinfo: str = "/proc/cpuinfo") -> str:
    """One header line: model, cores, ISA, kernels and the kernel/thread environment."""
    env = ", ".join(f"{k}={os.environ[k]}" for k in KERNEL_ENV if k in os.environ) or "no kernel/thread overrides"
    return (f"CPU: {cpu_model(cpuinfo)}, {os.cpu_count()} cores; ISA: {isa_summary(cpuinfo)}; "
            f"kernels: {onednn_kernels(cpuinfo)}; {env}")

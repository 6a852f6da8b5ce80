"""What CPU a figure came from: ISA flags and thread settings (no TensorFlow).

Speed differs by ISA (docs/models.md): TensorFlow runs oneDNN kernels by
default only with AVX-512 VNNI/BF16 or AMX and Eigen kernels elsewhere;
bf16 is native only with AMX-BF16 / AVX512-BF16; XNNPACK int8 gains most with
VNNI. Benchmarks print :func:`describe` in their header.
"""

from __future__ import annotations

import os
import platform

# /proc/cpuinfo flag -> the name figures use, in the order they are printed.
ISA_FLAGS = (("avx2", "AVX2"), ("fma", "FMA"), ("avx512f", "AVX-512"), ("avx512_vnni", "AVX512-VNNI"),
             ("avx_vnni", "AVX-VNNI"), ("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX-BF16"),
             ("amx_int8", "AMX-INT8"), ("asimd", "NEON"), ("asimddp", "NEON-dotprod"))
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


def describe(cpuinfo: str = "/proc/cpuinfo") -> str:
    """One header line: model, cores, ISA and the kernel/thread environment."""
    env = ", ".join(f"{k}={os.environ[k]}" for k in KERNEL_ENV if k in os.environ) or "no kernel/thread overrides"
    return f"CPU: {cpu_model(cpuinfo)}, {os.cpu_count()} cores; ISA: {isa_summary(cpuinfo)}; {env}"

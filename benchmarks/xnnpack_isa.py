"""Make LiteRT's XNNPACK pick the kernels of an AVX2-only CPU on a bigger x86 CPU.

oneDNN has `ONEDNN_MAX_CPU_ISA` and PyTorch `ATEN_CPU_CAPABILITY`; XNNPACK has
no such switch: it asks the bundled cpuinfo library once per process and keeps
the answer. To measure what an AVX2 CPU without AVX-512 or VNNI runs (issue
#14) on a machine that has them, :func:`cap_to_avx2` initialises that cpuinfo
copy itself and clears its AVX-512 and AVX-VNNI fields before XNNPACK reads
them, so XNNPACK selects its AVX2 + FMA kernels and runs them natively (same
code as on an AVX2 CPU, this CPU's cores and caches).

This is a benchmark tool, not library code: it writes into the memory of
`ai_edge_litert`'s shared library, found through the library's ELF symbol
table (`cpuinfo_initialize`, `cpuinfo_isa`, `hardware_config`). It refuses
(:class:`CapError`) unless the layout is proven first: cpuinfo's fields must
agree with /proc/cpuinfo on every flag checked, and after the first
interpreter :func:`check_capped` confirms XNNPACK's architecture flags have no
bit above AVX2. It must run before any LiteRT interpreter is created in the
process, and cannot be undone.
"""

from __future__ import annotations

import ctypes
import os
import struct

# struct cpuinfo_x86_isa on x86-64 (cpuinfo.h): byte offset of each bool checked or cleared.
FIELD_OFFSETS = {"sse4a": 0x14, "avx": 0x16, "avx_vnni": 0x17, "fma": 0x18, "f16c": 0x1B, "avx2": 0x1C,
                 "avx512f": 0x1D, "avx512cd": 0x20, "avx512dq": 0x21, "avx512bw": 0x22, "avx512vl": 0x23,
                 "avx512ifma": 0x24, "avx512vbmi": 0x25, "avx512_vbmi2": 0x26, "avx512_bitalg": 0x27,
                 "avx512_vpopcntdq": 0x28, "avx512_vnni": 0x29, "avx512_bf16": 0x2A, "avx512_fp16": 0x2B}
# Cleared: every AVX-512 field (0x1D..0x2E, the 4VNNIW/4FMAPS/VP2INTERSECT ones included) and AVX-VNNI.
CLEARED = (0x17,) + tuple(range(0x1D, 0x2F))
# XNNPACK arch_flags bits 0-7: SSE2, SSE3 (always on x86-64), SSSE3, SSE4.1, AVX, F16C, FMA3, AVX2.
AVX2_ARCH_FLAGS = 0xFF
_NEEDED = {"cpuinfo_initialize", "cpuinfo_isa", "hardware_config"}
_state: dict = {}


class CapError(RuntimeError):
    """The cap cannot be applied safely here (the message says why)."""


def litert_library() -> str:
    import ai_edge_litert

    return os.path.join(os.path.dirname(ai_edge_litert.__file__), "libpywrap_litert_common.so")


def elf_symbols(path: str, names: set[str]) -> dict[str, tuple[int, int]]:
    """{name: (value, size)} of the wanted symbols in an ELF64 file's .symtab (empty when stripped)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise CapError(f"{path}: not an ELF64 file")
    found = {}
    try:
        (shoff,) = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
        for sec in sections:
            if sec[1] != 2:  # SHT_SYMTAB
                continue
            strtab_off = sections[sec[6]][4]
            for off in range(sec[4], sec[4] + sec[5], 24):
                name_off, _, _, _, value, size = struct.unpack_from("<IBBHQQ", data, off)
                start = strtab_off + name_off
                name = data[start:data.index(b"\0", start)].decode("ascii", "replace")
                if name in names:
                    found[name] = (value, size)
    except (struct.error, IndexError, ValueError) as e:
        raise CapError(f"{path}: truncated or malformed ELF section/symbol table ({e})") from None
    return found


def load_base(path: str, maps: str = "/proc/self/maps") -> int | None:
    """Address where `path` is mapped from file offset 0 in this process, if loaded."""
    real = os.path.realpath(path)
    with open(maps) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and int(parts[2], 16) == 0 and os.path.realpath(parts[5]) == real:
                return int(parts[0].split("-")[0], 16)
    return None


def cap_to_avx2(cpu_flags: set[str] | None = None) -> str:
    """Clear AVX-512/AVX-VNNI in XNNPACK's view of the CPU; returns a line for a benchmark header."""
    from ai_edge_litert import interpreter  # noqa: F401  (loads the shared library)

    from keras_hpnet.cpu import cpu_flags as read_flags

    if _state.get("capped"):
        return _state["line"]
    flags = read_flags() if cpu_flags is None else cpu_flags
    if "avx2" not in flags or "fma" not in flags:
        raise CapError("this CPU has no AVX2+FMA: nothing to emulate")
    lib = litert_library()
    syms = elf_symbols(lib, _NEEDED)
    if set(syms) != _NEEDED:
        raise CapError(f"{lib}: no symbol table entries for {sorted(_NEEDED - set(syms))} (stripped build?)")
    base = load_base(lib)
    if base is None:
        raise CapError(f"{lib} is not mapped in this process")
    hw_flags = ctypes.c_uint64.from_address(base + syms["hardware_config"][0] + 8)
    if hw_flags.value != 0:
        raise CapError("XNNPACK already read the CPU's features in this process: cap before any interpreter")
    if not ctypes.CFUNCTYPE(ctypes.c_bool)(base + syms["cpuinfo_initialize"][0])():
        raise CapError("cpuinfo_initialize failed")
    value, size = syms["cpuinfo_isa"]
    isa = (ctypes.c_uint8 * size).from_address(base + value)
    wrong = [name for name, off in FIELD_OFFSETS.items() if off >= size or isa[off] != (name in flags)]
    if wrong:
        raise CapError(f"cpuinfo's fields disagree with /proc/cpuinfo on {wrong}: unknown layout, not patched")
    cleared = [name for name, off in FIELD_OFFSETS.items() if off in CLEARED and isa[off]]
    for off in CLEARED:
        isa[off] = 0
    _state.update(capped=True, hw_flags=hw_flags,
                  line=f"XNNPACK ISA capped at AVX2+FMA (cleared: {', '.join(cleared) or 'none'}; "
                       f"benchmarks/xnnpack_isa.py)")
    return _state["line"]


def check_capped() -> int:
    """After an interpreter exists: XNNPACK's arch flags, which must have no bit above AVX2."""
    if not _state.get("capped"):
        raise CapError("cap_to_avx2() was not called")
    value = _state["hw_flags"].value
    if value == 0 or value & ~AVX2_ARCH_FLAGS:
        raise CapError(f"XNNPACK arch flags 0x{value:x} after the cap: not an AVX2-only view")
    return value

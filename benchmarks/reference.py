"""A reference measurement from any command (e.g. torchreid's HA-CNN in PyTorch), for ratios in one run.

The command runs in a shell and prints its batch-1 median latency as a line
`p50_ms=<number>` (the last such line counts; anything else it prints is
ignored). `benchmarks/reference_torch_hacnn.py` is an example
(benchmarks/README.md, "A reference command").
"""

from __future__ import annotations

import re
import subprocess

_P50_LINE = re.compile(r"^\s*p50_ms\s*=\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")


class ReferenceCommandError(RuntimeError):
    """The reference command failed or printed no `p50_ms=` line (the message names the command)."""


def parse_p50(stdout: str) -> float | None:
    """The value of the last `p50_ms=<number>` line of `stdout`, else None."""
    value = None
    for line in stdout.splitlines():
        m = _P50_LINE.match(line)
        if m:
            value = float(m.group(1))
    return value


def run_reference(command: str, timeout: float = 600.0) -> float:
    """Run `command` in a shell once; its p50 in ms. ReferenceCommandError when it fails or prints no p50 line."""
    try:
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ReferenceCommandError(f"reference command {command!r}: no result after {timeout:.0f} s") from None
    if done.returncode != 0:
        last = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
        raise ReferenceCommandError(f"reference command {command!r} exited with {done.returncode}"
                             + (f": {last[-1]}" if last else ""))
    value = parse_p50(done.stdout)
    if value is None:
        raise ReferenceCommandError(f"reference command {command!r} printed no 'p50_ms=<number>' line")
    return value

"""benchmarks/bench_edge.py --reference: a command's `p50_ms=` line, run between the timing rounds."""

import shlex
import sys

import pytest

from benchmarks import bench_edge
from benchmarks.reference import ReferenceCommandError, parse_p50, run_reference


def python_c(code: str) -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def test_parse_p50_takes_the_last_p50_line():
    assert parse_p50("loading\np50_ms=12.5\nwarm\n  p50_ms = 46.8 \n") == 46.8
    assert parse_p50("p50_ms=1e1") == 10.0
    assert parse_p50("p50 46.8 ms\np50_ms=fast\n") is None


def test_run_reference_reads_the_command_and_names_it_on_failure():
    assert run_reference(python_c("print('torch 2.x'); print('p50_ms=46.8')")) == 46.8
    with pytest.raises(ReferenceCommandError, match=r"exited with 3: torchreid is not installed"):
        run_reference(python_c("import sys; sys.stderr.write('torchreid is not installed\\n'); sys.exit(3)"))
    with pytest.raises(ReferenceCommandError, match=r"printed no 'p50_ms=<number>' line"):
        run_reference(python_c("print('46.8 ms')"))


def test_reference_runs_between_the_rounds():
    events = []
    fns = {"a": lambda: events.append("a"), "b": lambda: events.append("b")}
    timed = bench_edge._interleaved(fns, runs=4, warmup=0, rounds=4, between=lambda: events.append("ref"),
                                    between_count=2)
    assert set(timed) == {"a", "b"} and all(len(v) == 2 for v in timed.values())
    assert events == ["a", "b", "ref", "a", "b", "a", "b", "a", "b", "ref"]
    rows = [("savedmodel", 1, 30.0, 31.0, "tf"), ("tflite int8", 1, 3.0, 3.5, "xnn 1/1 p1")]
    lines = bench_edge.reference_lines("hacnn", "cmd", [40.0, 46.8, 50.0], rows)
    assert "p50 46.80 ms (median of 3 run(s)" in lines[0] and "savedmodel 1.6x, tflite int8 15.6x" in lines[1]


def test_cli_stops_with_the_reference_error_before_converting(capsys):
    assert bench_edge.main(["--models", "hacnn", "--reference", python_c("print('no number')")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: reference command") and "p50_ms" in err

"""training.rundir: one training run per --out_dir (a second exits 2 naming
the holder's pid; the lock dies with its process), and a full disk or a
read-only --out_dir are exit-2 messages naming the path, with no temporary
files left.

Tests run as root, whom chmod does not stop, so "read-only" is injected:
``os.open`` (what the lock file and ``tempfile.mkstemp`` open with) raises
EROFS for paths under the run directory; a full disk is a ``write`` that
raises ENOSPC."""

import errno
import json
import os
import subprocess
import sys
import time

import pytest

from test_training_cli import REPO, _env, _fit_args, write_csv_dataset
from training.rundir import RunDirError, RunLock


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_csv_dataset(tmp_path_factory.mktemp("csvdata"))


def test_lock_is_exclusive_and_names_the_holder(tmp_path):
    with RunLock(str(tmp_path)):
        with pytest.raises(RunDirError, match=rf"in use by another training run \(pid {os.getpid()} on "):
            RunLock(str(tmp_path)).acquire()
    with RunLock(str(tmp_path)):  # released
        pass


HOLD = "import sys, time; from training.rundir import RunLock; RunLock(sys.argv[1]).acquire(); print('held', " \
       "flush=True); time.sleep(600)"


def test_lock_dies_with_its_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], env=_env(), cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"pid {holder.pid} "):
            RunLock(str(tmp_path)).acquire()
    finally:
        holder.kill()  # SIGKILL: no clean-up ran
        holder.wait(timeout=30)
    with RunLock(str(tmp_path)):  # a stale lock file does not block the next run
        pass


def test_second_run_into_the_same_out_dir_exits_2(data_dir, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(_fit_args(data_dir, out, "--epochs=300"), env=_env(), cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and first.poll() is None and not (out / "config.json").exists():
            time.sleep(0.1)
        assert first.poll() is None, first.communicate()[1][-3000:]
        second = subprocess.run(_fit_args(data_dir, out, "--seed=1"), env=_env(), cwd=REPO, capture_output=True,
                                text=True, timeout=300)
        assert first.poll() is None  # the first run is still training
    finally:
        first.kill()
        first.wait(timeout=30)
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"is in use by another training run (pid {first.pid} on " in second.stderr
    assert "Traceback" not in second.stderr
    assert json.loads((out / "config.json").read_text())["seed"] == 3  # the first run's outputs only


READ_ONLY = r"""
import errno, os, sys
out = sys.argv[1]
real_open = os.open

def read_only(path, flags, *args, **kwargs):
    if os.fspath(path).startswith(out) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
    return real_open(path, flags, *args, **kwargs)

os.open = read_only
from absl import app
from training import fit
sys.argv = ["training.fit", *sys.argv[2:]]
app.run(fit.main)
"""


def test_read_only_out_dir_exits_2(data_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", READ_ONLY, str(out), *_fit_args(data_dir, out)[3:]], env=_env(),
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"training.fit: error: cannot write {out}/.lock: the file system is read-only" in proc.stderr
    assert "Traceback" not in proc.stderr and os.listdir(out) == []


class _FullDisk:
    """A file whose writes fail as on a full disk (no file name in the error)."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_writing_history_is_a_run_dir_error(data_dir, tmp_path, monkeypatch):
    from keras_hpnet import fileio
    from training import fit
    from training.config import resolve_config

    out = tmp_path / "run"
    cfg = resolve_config(dict(model="tiny", dataset="custom", data_dir=data_dir, out_dir=str(out), batch_size=16,
                              epochs=1, lr=0.05, input_height=64, input_width=32, seed=3))

    def open_on_full_disk(path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)
        return _FullDisk(f) if "history.csv" in os.fspath(path) and "w" in mode else f

    monkeypatch.setattr(fileio, "open", open_on_full_disk, raising=False)
    with pytest.raises(RunDirError, match=rf"cannot write {out}/history.csv: the disk is full") as caught:
        fit.run(cfg, verbose=0)
    assert caught.value.errno == errno.ENOSPC
    assert not [f for f in os.listdir(out) if f.startswith(".tmp-")], os.listdir(out)
    assert not [f for f in os.listdir(out / "checkpoints") if f.endswith("_temp")]
    with RunLock(str(out)):  # the failed run let go of the directory
        pass


def test_only_the_run_directory_s_storage_errors_are_its_own(tmp_path):
    from training.rundir import claim

    out = tmp_path / "run"
    with pytest.raises(RunDirError, match=rf"cannot write {out}/metrics.json: the disk is full"):
        with claim(str(out)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "metrics.json"))
    # a data set file that cannot be read is not a run-directory problem: raised as it is
    with pytest.raises(PermissionError) as caught:
        with claim(str(out)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "data" / "0001.jpg"))
    assert not isinstance(caught.value, RunDirError)

"""The run directory: one run at a time, storage failures as clear errors.

- :class:`RunLock`: an exclusive ``fcntl.flock`` on ``<out_dir>/.lock``
  (the file holds the holder's pid, host and start time). A second run into
  the same directory fails at once, naming the holder; the kernel drops the
  lock when the holder's process ends, however it ends (kill -9 included),
  so a stale lock never blocks a resume. The file itself stays: unlinking a
  flock'ed file lets two processes lock two different inodes of one name.
- :func:`storage_error`: a full disk, a quota, a read-only or unwritable
  directory (an ``OSError`` or the TensorFlow error wrapping the same errno)
  becomes a :class:`RunDirError` naming the path.
- :func:`claim`: both around a whole run (``training.fit.run``).

Standard library only; TensorFlow errors are recognised when TensorFlow is
already loaded.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys

LOCK_NAME = ".lock"

# errno -> (what the user is told, what to do); os.strerror(errno) is also
# how TensorFlow words the same failure ("<path>; No space left on device").
_FULL = "free space and run the same command again: it resumes from the last complete checkpoint"
_READ_ONLY = "use a writable --out_dir"
STORAGE_ERRNOS = {
    errno.ENOSPC: ("the disk is full", _FULL),
    errno.EDQUOT: ("the disk quota is exceeded", _FULL),
    errno.EROFS: ("the file system is read-only", _READ_ONLY),
    errno.EACCES: ("permission denied", _READ_ONLY),
    errno.EPERM: ("operation not permitted", _READ_ONLY),
}


class RunDirError(OSError):
    """The run directory cannot be used: another run holds it, it is not
    writable or full, or none of its checkpoints restores (exit status 2)."""

    def __str__(self):
        return self.strerror or super().__str__()  # the message, without "[Errno N]"


def storage_error(error: BaseException, path: str) -> RunDirError | None:
    """A :class:`RunDirError` naming `path` if `error` is a storage failure, else None."""
    code = error.errno if isinstance(error, OSError) else _tensorflow_errno(error)
    if code not in STORAGE_ERRNOS:
        return None
    what, todo = STORAGE_ERRNOS[code]
    return RunDirError(code, f"cannot write {getattr(error, 'filename', None) or path}: {what}; {todo}")


def _tensorflow_errno(error: BaseException):
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, tf.errors.OpError):
        return None
    text = str(error.message)
    for code in STORAGE_ERRNOS:
        if os.strerror(code) in text:
            return code
    return None


class RunLock:
    """Exclusive lock on a run directory (see the module docstring)."""

    def __init__(self, directory: str, what: str = "training run"):
        self.directory = directory
        self.path = os.path.join(directory, LOCK_NAME)
        self.what = what
        self._fd = None

    def acquire(self) -> "RunLock":
        try:
            os.makedirs(self.directory, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise storage_error(e, self.path) or e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirError(errno.EBUSY, f"{self.directory} is in use by another {self.what} ({holder}); "
                                           "wait for it to end or use another --out_dir") from None
        try:
            stamp = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(stamp) + "\n").encode(), 0)
        except OSError as e:
            os.close(fd)
            raise storage_error(e, self.path) or e
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _names_file_in(error, directory) -> bool:
    """Whether `error` is about a file inside `directory` (its ``filename``,
    or the message of a TensorFlow error, which has no such field)."""
    root = os.path.abspath(directory)
    filename = getattr(error, "filename", None)
    if filename is not None:
        path = os.path.abspath(os.fsdecode(filename))
        return os.path.commonpath([path, root]) == root
    return root in str(error) or os.path.normpath(directory) in str(error)


def _read_holder(fd) -> str:
    try:
        stamp = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        stamp = {}
    if "pid" not in stamp:
        return "pid unknown: it is starting"
    return f"pid {stamp['pid']} on {stamp.get('host', '?')}, started {stamp.get('started', '?')}"


@contextlib.contextmanager
def claim(directory: str, *, lock: bool = True):
    """Hold the run directory for the block (``lock``: False on the non-chief
    workers of a multi-worker run, which do not write it); a storage failure
    inside the block on a file of the directory is re-raised as a
    :class:`RunDirError` (one elsewhere, e.g. reading the data set, is not
    the run directory's)."""
    held = RunLock(directory).acquire() if lock else None
    try:
        yield
    except Exception as e:
        converted = None if isinstance(e, RunDirError) else storage_error(e, directory)
        if converted is None or not _names_file_in(e, directory):
            raise
        raise converted from e
    finally:
        if held is not None:
            held.release()

"""Atomic file and folder writes: readers see the old one or the new one, never half of it.

Standard library only (the edge runtime uses it too).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path beside `path`; rename it over `path` on success.

    On any exception the temporary file is removed and `path` is untouched;
    an ``OSError`` that names no file (a full disk on ``write``) is raised
    again naming `path`.
    """
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix="-" + os.path.basename(path))
    os.close(fd)
    # mkstemp creates 0600; give the file the mode a plain open() would.
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, path) from e
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once at import: os.umask is process-wide, so toggling it per write could
# race with other threads creating files.
_UMASK = _read_umask()


def write_bytes_atomic(path: str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text_atomic(path: str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def atomic_folder(final: str, build, *, marker: str, what: str) -> str:
    """Run `build(tmp_dir)` (which writes the file `marker` last) and rename the
    finished folder to `final`, unless `final` already holds `marker`: a killed
    run never leaves a folder that is later trusted (the generated datasets,
    the CUHK03 extraction cache). `what` names the folder in errors."""
    if os.path.isfile(os.path.join(final, marker)):
        return final
    parent = os.path.dirname(os.path.abspath(final))
    os.makedirs(parent, exist_ok=True)
    if os.path.isdir(final):  # not ours / unfinished by another tool: never trusted, never deleted
        raise FileExistsError(f"{final} exists but has no {marker}: not a finished {what}; remove it")
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-" + os.path.basename(final) + "-")
    try:
        build(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isfile(os.path.join(final, marker)):  # lost a race to a finished copy? else re-raise
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return final

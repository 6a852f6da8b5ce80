"""Checkpoints of a run directory: written, read back, committed, pruned;
restored from the newest one that is intact.

A save of step N (``ckpt-0000000N``) goes

1. the TensorFlow files (``.index``, ``.data-*``; TensorFlow writes them
   through ``ckpt-..._temp/``; a failed write leaves nothing behind);
2. read back: every tensor is read again, which checks the index and each
   tensor's CRC32C;
3. the record ``ckpt-0000000N.json`` (step, data position, file sizes): the
   commit point; a checkpoint without its record does not exist;
4. the pointer ``latest.json`` (a copy of the record) replaced atomically;
5. pruning: the newest ``keep`` committed checkpoints stay, the just written
   one always; older ones and uncommitted leftovers go. So the last good
   checkpoint is never deleted before a newer one is known to read back.

A restore tries the committed checkpoints newest first and takes the first
that reads back; one with a missing or truncated file, a bad index or a
checksum mismatch, or an unreadable ``latest.json``, is reported
(:attr:`CheckpointStore.skipped`) and its files are moved to ``damaged/``.
When none restores, :class:`CheckpointError`.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile

import tensorflow as tf

from keras_hpnet.fileio import write_text_atomic
from training.rundir import RunDirError, storage_error

LATEST = "latest.json"
DAMAGED = "damaged"
_FILE = re.compile(r"^(ckpt-\d{8})(\.index|\.data-\d{5}-of-\d{5}|\.json|_temp)$")


def checkpoint_variables(variables):
    """The variables as a flat, ordered checkpoint layout ({"00000": var, ...}).

    Keras 3 attributes that are Python lists of layers are not in TensorFlow's
    object graph, so ``tf.train.Checkpoint(model=model)`` silently skips their
    weights; and Keras variable paths carry process-dependent name suffixes
    (``conv2d_3``). The order of ``model.weights`` / ``optimizer.variables`` is
    fixed by the model code, so positions are stable keys.
    """
    return {f"{i:05d}": (v.value if hasattr(v, "value") else v) for i, v in enumerate(variables)}


class CheckpointError(RunDirError, FileNotFoundError):
    """No checkpoint of the run directory can be used (none restores, or a
    fresh one did not read back)."""


class CheckpointStore:
    """Committed, verified checkpoints in ``directory`` (see the module docstring).

    ``chief``: False on the other workers of a multi-worker run: they write
    (saving may need collectives) into a temporary directory that is removed.
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: str, *, chief=True, keep=2):
        self.checkpoint = checkpoint
        self.directory = directory
        self.chief = chief
        self.keep = max(1, int(keep))
        self.skipped = []  # (name, reason) of the checkpoints the last restore passed over

    # -- restore ------------------------------------------------------------
    def restore(self):
        """Restore the newest intact checkpoint; returns its record, or None
        when the directory holds none (a fresh run)."""
        candidates, skipped = self._candidates()
        if not candidates and not skipped:
            return None
        for name, record in candidates:
            reason = self._damage(name, record)
            if reason is None:
                try:
                    self.checkpoint.read(self._prefix(name)).assert_existing_objects_matched()
                except Exception as e:  # any failure: this checkpoint does not restore
                    reason = _describe(e)
            if reason is None:
                self.skipped = skipped
                self._set_aside([n for n, _ in skipped if n != LATEST])
                return record
            skipped.append((name, reason))
        raise CheckpointError(errno.ENOENT, f"{self.directory}: no checkpoint restores ("
                              + "; ".join(f"{n}: {r}" for n, r in skipped)
                              + "). Delete the directory (or use another --out_dir) to start afresh")

    def _candidates(self):
        """(committed checkpoints newest first, problems met listing them)."""
        skipped, records = [], {}
        for name, files in self._files().items():
            if name + ".json" in files:
                try:
                    records[name] = _read_record(os.path.join(self.directory, name + ".json"))
                except (OSError, ValueError, KeyError) as e:
                    skipped.append((name, f"its record does not read ({_describe(e)})"))
        pointer = os.path.join(self.directory, LATEST)
        if os.path.exists(pointer):
            try:
                record = _read_record(pointer)
                records.setdefault(record["prefix"], record)  # a run from before the records: the pointer only
            except (OSError, ValueError, KeyError) as e:
                skipped.append((LATEST, f"does not read ({_describe(e)})"))
        elif records:
            skipped.append((LATEST, "is missing"))
        newest_first = sorted(records.items(), key=lambda item: item[1]["step"], reverse=True)
        return newest_first, skipped

    def _damage(self, name, record):
        """Why checkpoint `name` cannot be used, or None."""
        prefix = self._prefix(name)
        sizes = record.get("files")
        if sizes is None and not os.path.exists(prefix + ".index"):
            return f"{LATEST} points to {prefix} but its .index file is missing"
        for file, size in (sizes or {}).items():
            path = os.path.join(self.directory, file)
            if not os.path.exists(path):
                return f"{file} is missing"
            if os.path.getsize(path) != size:
                return f"{file} is {os.path.getsize(path)} bytes, {size} were written (truncated or overwritten)"
        return _read_back(prefix)

    def _set_aside(self, names):
        """Move the files of damaged checkpoints to ``damaged/`` (chief only)."""
        if not self.chief or not names:
            return
        target = os.path.join(self.directory, DAMAGED)
        os.makedirs(target, exist_ok=True)
        for name in names:
            for file in self._files().get(name, []):
                os.replace(os.path.join(self.directory, file), os.path.join(target, file))

    # -- save -----------------------------------------------------------------
    def save(self, step: int, **info) -> None:
        """Write, read back, commit and prune checkpoint `step` (``info``: the
        data position, kept in the record). A storage failure raises
        :class:`~training.rundir.RunDirError` and leaves no partial files."""
        name = f"ckpt-{step:08d}"
        if not self.chief:
            tmp = tempfile.mkdtemp(prefix="keras_hpnet-worker-ckpt-")
            try:
                self.checkpoint.write(os.path.join(tmp, name))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return
        prefix = self._prefix(name)
        committed = False
        try:
            os.makedirs(self.directory, exist_ok=True)
            self._remove(name)  # a leftover of the same step (uncommitted, or set aside already)
            self.checkpoint.write(prefix)
            problem = _read_back(prefix)
            if problem:
                raise CheckpointError(errno.EIO, f"{prefix} was written but does not read back ({problem}); "
                                                 "the previous checkpoints are kept")
            files = {f: os.path.getsize(os.path.join(self.directory, f)) for f in self._files().get(name, [])}
            record = json.dumps({"prefix": name, "step": int(step), **info, "files": files}, indent=1)
            write_text_atomic(prefix + ".json", record)
            committed = True
            write_text_atomic(os.path.join(self.directory, LATEST), record)
        except Exception as e:
            if not committed:
                self._remove(name)
            converted = None if isinstance(e, RunDirError) else storage_error(e, prefix)
            if converted is None:
                raise
            raise converted from e
        self._prune(keep_name=name)

    def _prune(self, keep_name):
        files = self._files()
        committed = sorted(n for n, fs in files.items() if n + ".json" in fs and n + ".index" in fs)
        kept = set(committed[-self.keep:]) | {keep_name}
        for name in files:
            if name not in kept:
                self._remove(name)

    def _remove(self, name):
        for file in self._files().get(name, []):
            path = os.path.join(self.directory, file)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)

    # -- names --------------------------------------------------------------
    def _prefix(self, name):
        return os.path.join(self.directory, name)

    def _files(self):
        """{checkpoint name: its files and temporary directory} in the directory."""
        found = {}
        if os.path.isdir(self.directory):
            for file in sorted(os.listdir(self.directory)):
                m = _FILE.match(file)
                if m:
                    found.setdefault(m.group(1), []).append(file)
        return found


def _read_record(path):
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    if not isinstance(record, dict) or not isinstance(record.get("prefix"), str):
        raise ValueError(f"{path}: no checkpoint prefix")
    record["step"] = int(record["step"])  # KeyError / ValueError when missing or not a number
    return record


def _read_back(prefix):
    """None if every tensor of checkpoint `prefix` reads (index, sizes and
    CRC32C checked by TensorFlow), else why not."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)
    except Exception as e:  # DataLossError, OpError ("bad magic number"), IndexError ("Read less bytes")
        return _describe(e)
    return None


def _describe(error):
    text = re.sub(r"\{\{.*?\}\}\s*", "", str(getattr(error, "message", None) or error)).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first[:300]}"

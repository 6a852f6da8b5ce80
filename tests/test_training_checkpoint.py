"""training.checkpoint: a damaged latest checkpoint (truncated .data, bad
.index magic, checksum mismatch, truncated latest.json) falls back to the
newest intact one, says so, and the resumed run equals an uninterrupted one;
a checkpoint that does not read back, or a full disk, never costs the last
good one nor leaves partial files."""

import errno
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from test_training_loop import _trainer, _weights  # the tiny in-process trainer (6 steps/epoch, every 4)
from training.checkpoint import CheckpointError, CheckpointStore
from training.rundir import RunDirError

CKPT10 = "ckpt-00000010"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted 3-epoch run and one stopped at step 10 (kept: ckpt-8, ckpt-10)."""
    root = tmp_path_factory.mktemp("runs")
    full = _trainer(root / "full")
    full.fit()
    _trainer(root / "part", max_steps=10).fit()
    kept = sorted(f for f in os.listdir(root / "part" / "checkpoints") if f.endswith(".index"))
    assert kept == ["ckpt-00000008.index", CKPT10 + ".index"]
    return _weights(full.model), root / "part"


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _truncate(path, keep):
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * keep))


DAMAGE = {  # kind: (damage(checkpoints dir), step resumed from, what the message says)
    "data_truncated": (lambda d: _truncate(d / f"{CKPT10}.data-00000-of-00001", 0.5), 8, "bytes"),
    "index_bad_magic": (lambda d: _flip(d / f"{CKPT10}.index", os.path.getsize(d / f"{CKPT10}.index") - 2), 8,
                        "bad magic number"),
    "checksum_mismatch": (lambda d: _flip(d / f"{CKPT10}.data-00000-of-00001", 100), 8, "Checksum does not match"),
    "latest_truncated": (lambda d: _truncate(d / "latest.json", 0.4), 10, "latest.json skipped"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_latest_checkpoint_falls_back(kind, runs, tmp_path, capsys):
    reference, part = runs
    run = tmp_path / "run"
    shutil.copytree(part, run)
    damage, resumed_from, said = DAMAGE[kind]
    damage(run / "checkpoints")
    capsys.readouterr()
    trainer = _trainer(run)
    rows = trainer.fit()
    err = capsys.readouterr().err
    assert trainer.resumed_from == resumed_from
    assert said in err and "resuming from the newest intact checkpoint" in err, err
    # same data order from the older checkpoint on: the result of the uninterrupted run
    for a, b in zip(reference, _weights(trainer.model)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    files = os.listdir(run / "checkpoints")
    assert sorted(f for f in files if f.endswith(".index")) == ["ckpt-00000016.index", "ckpt-00000018.index"]
    if resumed_from == 8:  # the damaged checkpoint is kept aside, out of the way
        assert sorted(os.listdir(run / "checkpoints" / "damaged")) == [
            f"{CKPT10}.data-00000-of-00001", f"{CKPT10}.index", f"{CKPT10}.json"]


def test_no_intact_checkpoint_is_a_clear_error(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs[1], run)
    for name in ("ckpt-00000008", CKPT10):
        _flip(run / "checkpoints" / f"{name}.data-00000-of-00001", 100)
    with pytest.raises(CheckpointError, match=r"no checkpoint restores \(ckpt-00000010: .*Checksum does not match"
                                              r".*ckpt-00000008: .*Checksum does not match.*start afresh"):
        _trainer(run).fit()
    assert not os.path.exists(run / "checkpoints" / "damaged")  # nothing moved when nothing restored


def _store(directory, keep=2):
    v = tf.Variable(np.zeros(1000, "float32"))
    return v, CheckpointStore(tf.train.Checkpoint(v=v), str(directory), keep=keep)


def test_a_checkpoint_that_does_not_read_back_costs_no_older_one(tmp_path, monkeypatch):
    v, store = _store(tmp_path)
    for step in (1, 2):
        v.assign(np.full(1000, step, "float32"))
        store.save(step)
    real_write = tf.train.Checkpoint.write

    def write_then_lose_half(self, prefix, options=None):
        path = real_write(self, prefix, options)
        _truncate(f"{prefix}.data-00000-of-00001", 0.5)  # e.g. a disk that lost the end of the file
        return path

    monkeypatch.setattr(tf.train.Checkpoint, "write", write_then_lose_half)
    v.assign(np.full(1000, 3, "float32"))
    with pytest.raises(CheckpointError, match="ckpt-00000003 was written but does not read back"):
        store.save(3)
    monkeypatch.undo()
    # both older checkpoints kept (keep=2 would have pruned ckpt-1), nothing of step 3 left
    assert sorted(os.listdir(tmp_path)) == ["ckpt-00000001.data-00000-of-00001", "ckpt-00000001.index",
                                            "ckpt-00000001.json", "ckpt-00000002.data-00000-of-00001",
                                            "ckpt-00000002.index", "ckpt-00000002.json", "latest.json"]
    assert store.restore()["step"] == 2 and float(v.numpy()[0]) == 2.0


def test_leftovers_of_a_killed_write_are_pruned(tmp_path):
    v, store = _store(tmp_path)
    store.save(1)
    # a kill inside TensorFlow's write leaves its temporary directory; a kill
    # before the record, the files without the record (not a checkpoint)
    os.makedirs(tmp_path / "ckpt-00000002_temp")
    open(tmp_path / "ckpt-00000002_temp" / "part-00000-of-00001.data-00000-of-00001", "w").close()
    tf.train.Checkpoint(v=v).write(str(tmp_path / "ckpt-00000003"))
    assert store.restore()["step"] == 1  # the unrecorded ckpt-3 is not used
    store.save(4)
    assert sorted(f for f in os.listdir(tmp_path) if not f.endswith(".json")) == [
        "ckpt-00000001.data-00000-of-00001", "ckpt-00000001.index",
        "ckpt-00000004.data-00000-of-00001", "ckpt-00000004.index"]


def test_full_disk_while_checkpointing(tmp_path, monkeypatch):
    """ENOSPC injected into the checkpoint write (TensorFlow raises it as
    ResourceExhaustedError "...; No space left on device", after creating its
    ckpt-..._temp directory): a RunDirError naming the checkpoint, no partial
    files, the previous checkpoint still the latest and usable."""
    real_write = tf.train.Checkpoint.write

    def full_disk(self, prefix, options=None):
        if not prefix.endswith("ckpt-00000008"):
            return real_write(self, prefix, options)
        part = f"{prefix}_temp/part-00000-of-00001.data-00000-of-00001"
        os.makedirs(os.path.dirname(part))
        open(part, "wb").close()
        raise tf.errors.ResourceExhaustedError(None, None, f"{part}; No space left on device")

    monkeypatch.setattr(tf.train.Checkpoint, "write", full_disk)
    with pytest.raises(RunDirError, match=r"cannot write .*ckpt-00000008: the disk is full") as caught:
        _trainer(tmp_path).fit()
    assert caught.value.errno == errno.ENOSPC
    monkeypatch.undo()
    files = os.listdir(tmp_path / "checkpoints")
    assert not [f for f in files if f.startswith("ckpt-00000008")], files
    assert json.load(open(tmp_path / "checkpoints" / "latest.json"))["step"] == 6
    resumed = _trainer(tmp_path)
    resumed.fit()
    assert resumed.resumed_from == 6 and int(resumed.step.numpy()) == 18

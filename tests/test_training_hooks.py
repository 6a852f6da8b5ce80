"""training.hooks: a custom hook gets the loop's events in order, with the
logs documented there; on_train_end also when training stops with an error."""

import os

import pytest

from test_training_loop import _trainer  # the tiny in-process trainer (6 steps per epoch, checkpoint every 4)
from training.hooks import Hook


class Recorder(Hook):
    def __init__(self, fail_at=None):
        self.events = []
        self.fail_at = fail_at

    def on_train_begin(self, logs):
        self.events.append(("train_begin", logs["step"], logs["total"]))

    def on_epoch_begin(self, epoch, logs):
        self.events.append(("epoch_begin", epoch, logs["step"], logs["step_in_epoch"], logs["end"]))

    def on_train_batch_end(self, step, logs):
        assert set(logs) == {"losses", "lr", "fetch_seconds", "step_seconds", "cpu_seconds", "first_step"}
        assert set(logs["losses"]) == {"loss", "id"} and logs["step_seconds"] >= logs["fetch_seconds"] >= 0
        self.events.append(("batch_end", step, logs["first_step"]))
        if step == self.fail_at:
            raise RuntimeError("hook failed")

    def on_epoch_end(self, epoch, logs):
        # the built-in hooks ran before: the epoch's checkpoint is committed and its history row written
        row = self.trainer.history.rows[-1]
        assert list(row) == list(logs) and row["epoch"] == epoch + 1 == logs["epoch"]
        assert os.path.exists(os.path.join(self.trainer.store.directory, f"ckpt-{logs['step']:08d}.json"))
        assert {"loss", "id", "lr", "images_per_sec", "input_wait", "cpu_seconds_per_step", "first_step_seconds",
                "seconds"} <= set(logs) and logs["seconds"] > 0
        self.events.append(("epoch_end", epoch, logs["step"]))

    def on_train_end(self, logs):
        self.events.append(("train_end", logs["step"], type(logs["error"]).__name__))


def test_custom_hook_receives_the_events_in_order(tmp_path):
    first = Recorder()
    rows = _trainer(tmp_path, epochs=2, hooks=[first]).fit()
    assert first.events == [
        ("train_begin", 0, 12),
        ("epoch_begin", 0, 0, 0, 6),
        ("batch_end", 1, True), *[("batch_end", s, False) for s in range(2, 7)],
        ("epoch_end", 0, 6),
        ("epoch_begin", 1, 6, 0, 12),
        *[("batch_end", s, False) for s in range(7, 13)],
        ("epoch_end", 1, 12),
        ("train_end", 12, "NoneType")]
    assert list(rows[0])[:3] == ["epoch", "step", "loss"]

    # The next process resumes at the checkpoint's position (step 12: epoch 3, stopped at 16) ...
    second = Recorder()
    _trainer(tmp_path, epochs=3, max_steps=16, hooks=[second]).fit()
    assert second.events == [("train_begin", 12, 16), ("epoch_begin", 2, 12, 0, 16), ("batch_end", 13, True),
                             ("batch_end", 14, False), ("batch_end", 15, False), ("batch_end", 16, False),
                             ("epoch_end", 2, 16), ("train_end", 16, "NoneType")]
    # ... and the one after mid-epoch; a failing hook stops training, on_train_end still sees the error.
    third = Recorder(fail_at=17)
    trainer = _trainer(tmp_path, epochs=3, hooks=[third])
    with pytest.raises(RuntimeError, match="hook failed"):
        trainer.fit()
    assert third.events == [("train_begin", 16, 18), ("epoch_begin", 2, 16, 4, 18), ("batch_end", 17, True),
                            ("train_end", 17, "RuntimeError")]
    assert trainer._releases and not any(t.is_alive() for t in trainer._releases)  # iterator releases joined

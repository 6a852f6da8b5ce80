"""Hooks of the training loop: every concern besides the step is one hook.

A hook has the shape of a ``keras.callbacks.Callback`` (``on_train_begin``,
``on_epoch_begin``, ``on_train_batch_end``, ``on_epoch_end``,
``on_train_end``) and is called by :class:`training.loop.Trainer` in list
order, the built-in ones first (:meth:`Trainer.default_hooks`), then the
``hooks=`` given to the trainer. The events and their ``logs``:

- ``on_train_begin(logs)``: ``step`` (where this process starts: 0, or the
  resumed checkpoint's step), ``total`` (the step it stops at);
- ``on_epoch_begin(epoch, logs)``: ``epoch`` 0-based; ``step``,
  ``step_in_epoch`` (non-zero when resumed mid-epoch), ``end`` (the step
  this epoch stops at);
- ``on_train_batch_end(step, logs)``: ``step`` = the global step just done
  (1-based); ``losses`` ({"loss": total, term: value}), ``lr``,
  ``fetch_seconds`` (waiting for input), ``step_seconds`` (fetch + step),
  ``cpu_seconds``, ``first_step`` (this step traced the step function);
- ``on_epoch_end(epoch, logs)``: ``epoch`` (1-based, as in history.csv),
  ``step``. The logs dict is shared: hooks add to it for the ones after them
  (:class:`StageSwitch` adds ``stage``, :class:`EpochStats` the means and
  speed; :class:`History` writes the row, :class:`TensorBoard` plots it);
- ``on_train_end(logs)``: ``step``, ``error`` (the exception training stopped
  with, else None): called however training ends, so hooks release there.
"""

from __future__ import annotations

import csv
import io
import os
import time

import tensorflow as tf

from keras_hpnet.fileio import write_text_atomic


class Hook:
    """Base class: every event does nothing."""

    trainer = None

    def set_trainer(self, trainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, logs):
        pass

    def on_epoch_begin(self, epoch, logs):
        pass

    def on_train_batch_end(self, step, logs):
        pass

    def on_epoch_end(self, epoch, logs):
        pass

    def on_train_end(self, logs):
        pass


class HookList(Hook):
    """The hooks of a run, called in order."""

    def __init__(self, hooks, trainer):
        self.hooks = list(hooks)
        for hook in self.hooks:
            hook.set_trainer(trainer)

    def on_train_begin(self, logs):
        for hook in self.hooks:
            hook.on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs):
        for hook in self.hooks:
            hook.on_epoch_begin(epoch, logs)

    def on_train_batch_end(self, step, logs):
        for hook in self.hooks:
            hook.on_train_batch_end(step, logs)

    def on_epoch_end(self, epoch, logs):
        for hook in self.hooks:
            hook.on_epoch_end(epoch, logs)

    def on_train_end(self, logs):
        for hook in self.hooks:
            hook.on_train_end(logs)


class StageSwitch(Hook):
    """Stage-wise training (training.stages): each epoch runs under its stage;
    a change of stage freezes other parts, so the step function is retraced.
    The model is released (all trainable) when training ends."""

    def __init__(self, stages, verbose=True):
        self.stages = list(stages)
        self.verbose = verbose
        self.stage = None  # the stage applied to the model

    def on_epoch_begin(self, epoch, logs):
        from training.stages import stage_at

        stage = stage_at(self.stages, epoch)
        if stage is self.stage:
            return
        stage.apply(self.trainer.model)
        self.stage = stage
        self.trainer.retrace()  # other trainable variables: trace anew
        if self.verbose:
            print(f"Stage {self.stages.index(stage) + 1}/{len(self.stages)} {stage.describe()} (epochs "
                  f"{stage.first_epoch + 1}-{stage.first_epoch + stage.epochs})", flush=True)

    def on_epoch_end(self, epoch, logs):
        logs["stage"] = self.stage.name

    def on_train_end(self, logs):
        if self.stage is not None:
            self.stage.release(self.trainer.model)
            self.stage = None


class ProgressBar(Hook):
    """``Epoch i/n`` and a Keras progress bar (losses, lr, img/s) per epoch."""

    def __init__(self):
        self.bar = None

    def on_epoch_begin(self, epoch, logs):
        import keras

        print(f"Epoch {epoch + 1}/{self.trainer.epochs}", flush=True)
        self.bar = keras.utils.Progbar(self.trainer.steps_per_epoch, stateful_metrics=["lr", "img/s"])
        if logs["step_in_epoch"]:
            self.bar.update(logs["step_in_epoch"])

    def on_train_batch_end(self, step, logs):
        images_per_sec = self.trainer.global_batch / max(logs["step_seconds"], 1e-9)
        self.bar.update((step - 1) % self.trainer.steps_per_epoch + 1,
                        [*logs["losses"].items(), ("lr", logs["lr"]), ("img/s", images_per_sec)])


class Checkpointing(Hook):
    """A checkpoint every ``every`` steps and at each epoch end (the data
    position, epoch and step in epoch, goes into its record)."""

    def __init__(self, store, every):
        self.store = store
        self.every = int(every)
        self.end = None

    def on_epoch_begin(self, epoch, logs):
        self.end = logs["end"]

    def on_train_batch_end(self, step, logs):
        if step % self.every == 0 and step < self.end:  # the epoch end saves anyway
            self.save(step)

    def on_epoch_end(self, epoch, logs):
        self.save(logs["step"])

    def save(self, step):
        spe = self.trainer.steps_per_epoch
        self.store.save(step, steps_per_epoch=spe, epoch=step // spe, step_in_epoch=step % spe)


class EpochStats(Hook):
    """The epoch's means of the losses, the LR at its end, and its speed.

    images/s is over the steps after the first of the process (fetch + step
    wall time; the whole epoch when every step was a first one, i.e. traced),
    ``input_wait`` the fraction of it spent waiting for input,
    ``cpu_seconds_per_step`` process CPU per step (robust to other jobs on the
    machine), ``first_step_seconds`` the trace + graph optimisation, ``seconds``
    the epoch's wall time including its checkpoint.
    """

    def on_epoch_begin(self, epoch, logs):
        self.sums, self.steps, self.start = {}, 0, time.perf_counter()
        self.timed = {"images": 0, "steps": 0, "wait": 0.0, "wall": 0.0, "cpu": 0.0}
        self.first_step_seconds = 0.0

    def on_train_batch_end(self, step, logs):
        for k, v in logs["losses"].items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += 1
        if logs["first_step"]:
            self.first_step_seconds = logs["step_seconds"]
            return
        self.timed["images"] += self.trainer.global_batch
        self.timed["steps"] += 1
        self.timed["wait"] += logs["fetch_seconds"]
        self.timed["wall"] += logs["step_seconds"]
        self.timed["cpu"] += logs["cpu_seconds"]

    def on_epoch_end(self, epoch, logs):
        elapsed = time.perf_counter() - self.start
        logs.update({k: v / max(self.steps, 1) for k, v in self.sums.items()})
        logs["lr"] = self.trainer.current_lr()
        logs.update(self._speed(self.trainer.global_batch * self.steps, elapsed))
        logs["first_step_seconds"] = round(self.first_step_seconds, 2)
        logs["seconds"] = elapsed

    def _speed(self, images, elapsed):
        timed = self.timed
        if timed["steps"]:
            return {"images_per_sec": timed["images"] / max(timed["wall"], 1e-9),
                    "input_wait": timed["wait"] / max(timed["wall"], 1e-9),
                    "cpu_seconds_per_step": timed["cpu"] / timed["steps"]}
        return {"images_per_sec": images / max(elapsed, 1e-9), "input_wait": 0.0, "cpu_seconds_per_step": 0.0}


ROW_START = ("epoch", "stage", "step")  # the first columns of history.csv


class History(Hook):
    """history.csv: one row per epoch (the epoch logs), rewritten atomically;
    the rows of an earlier process are read back, so it survives resume.
    ``path`` None: rows in memory only."""

    def __init__(self, path=None):
        self.path = path
        self.rows = []
        if path and os.path.exists(path):
            with open(path, newline="", encoding="utf-8") as f:
                self.rows = list(csv.DictReader(f))

    def on_epoch_end(self, epoch, logs):
        row = {k: logs[k] for k in ROW_START if k in logs}
        row.update({k: v for k, v in logs.items() if k not in row})
        self.add(row)

    def add(self, row: dict):
        self.rows = [r for r in self.rows if int(r["epoch"]) != int(row["epoch"])] + [row]
        if not self.path:
            return
        keys = []
        for r in self.rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.path, buf.getvalue())


def _scalar_metadata():
    from tensorflow.core.framework import summary_pb2

    md = summary_pb2.SummaryMetadata()
    md.plugin_data.plugin_name = "scalars"  # what TensorBoard's scalar dashboard reads
    return md


def write_scalar(tag, value, step):
    """A TensorBoard scalar without the `tensorboard` package (tf.summary.scalar needs it)."""
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=_scalar_metadata())


class TensorBoard(Hook):
    """Scalars for TensorBoard (``logs/train``): the losses and LR every
    ``every`` steps, the epoch row as ``epoch/*`` at each epoch end."""

    def __init__(self, logdir=None, every=10):
        self.writer = tf.summary.create_file_writer(logdir) if logdir else tf.summary.create_noop_writer()
        self.every = every

    def on_train_batch_end(self, step, logs):
        if step % self.every:
            return
        with self.writer.as_default(step=step):
            for k, v in logs["losses"].items():
                write_scalar(f"loss/{k}" if k != "loss" else "loss", v, step)
            write_scalar("lr", logs["lr"], step)

    def on_epoch_end(self, epoch, logs):
        step = logs["step"]
        with self.writer.as_default(step=step):
            for k, v in logs.items():
                if k not in ROW_START:
                    write_scalar(f"epoch/{k}", v, step)
        self.writer.flush()

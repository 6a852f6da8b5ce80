"""One custom training loop for every tf.distribute strategy.

Keras 3 ``model.fit`` fails under ``MultiWorkerMirroredStrategy``
(keras-team/keras#20585), so training runs ``strategy.run`` on a distributed
dataset inside a ``tf.function`` step; the same code runs under the default
strategy, ``MirroredStrategy`` and ``MultiWorkerMirroredStrategy``.

- Losses are per-example vectors averaged over the GLOBAL batch
  (``tf.nn.compute_average_loss``); Keras optimizers all-reduce (sum) the
  gradients of the replicas, so every replica applies the same update.
- Each input pipeline (one per worker) builds its own shard of an epoch from
  ``dataset_fn(input_context, epoch)``: deterministic in (seed, epoch), so the
  data position of a checkpoint is just (epoch, step in epoch) and a resumed
  run skips the batches already seen.
- Checkpoints (every model and optimizer variable, incl. the optimizer's iteration count and so the LR
  schedule position, the global step) are written every ``checkpoint_every`` steps
  and at each epoch end: the files are written first, then the pointer
  ``checkpoints/latest.json`` is replaced atomically, so a kill at any moment
  leaves the previous checkpoint usable. Under multi-worker training every
  worker writes (saving may need collectives) but only the chief writes into
  ``out_dir``; the others write to a temporary directory that is removed.
- A non-finite loss stops training with :class:`NonFiniteLossError`; no
  checkpoint is written after it, so the last good one stays the latest.
- Precision: build the model inside :func:`dtype_policy` (e.g.
  ``mixed_bfloat16``: bfloat16 compute, float32 variables). Losses are summed
  in float32 and the optimizer updates the float32 variables; checkpoints hold
  float32 values whatever the policy. :func:`float32_copy` gives the float32
  model that is saved, evaluated and exported.
- Speed: the first step traces and optimises the step graph (~30 s for
  HAT-CNN on 2 cores, the Keras optimizer's per-variable update is half of
  the trace); ``history.csv`` reports it as ``first_step_seconds`` and gives
  ``images_per_sec`` over the other steps, plus the time spent waiting for the
  input pipeline (``input_wait``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
import threading
import time

import numpy as np
import tensorflow as tf

from keras_hpnet.fileio import write_text_atomic
from training.config import PRECISIONS

LATEST = "latest.json"


def _scalar_metadata():
    from tensorflow.core.framework import summary_pb2

    md = summary_pb2.SummaryMetadata()
    md.plugin_data.plugin_name = "scalars"  # what TensorBoard's scalar dashboard reads
    return md


def write_scalar(tag, value, step):
    """A TensorBoard scalar without the `tensorboard` package (tf.summary.scalar needs it)."""
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=_scalar_metadata())


def checkpoint_variables(variables):
    """The variables as a flat, ordered checkpoint layout ({"00000": var, ...}).

    Keras 3 attributes that are Python lists of layers are not in TensorFlow's
    object graph, so ``tf.train.Checkpoint(model=model)`` silently skips their
    weights; and Keras variable paths carry process-dependent name suffixes
    (``conv2d_3``). The order of ``model.weights`` / ``optimizer.variables`` is
    fixed by the model code, so positions are stable keys.
    """
    return {f"{i:05d}": (v.value if hasattr(v, "value") else v) for i, v in enumerate(variables)}


@contextlib.contextmanager
def dtype_policy(name: str = "float32"):
    """Keras global dtype policy ``name`` inside the block, the previous one after.

    Build the model (and run the loop, which traces the step) inside it:
    layers take their policy when they are created. ``mixed_bfloat16`` keeps
    float32 variables and computes in bfloat16 (AMX / AVX512-BF16 CPUs, TPUs);
    no loss scaling is needed for bfloat16.
    """
    import keras

    if name not in PRECISIONS:
        raise ValueError(f"precision {name!r}: must be one of {', '.join(PRECISIONS)}")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def float32_copy(model, build_fn):
    """``model`` itself when its policy is float32, else a float32 model with its weights.

    ``build_fn()`` builds a fresh model of the same architecture; it runs under
    the float32 policy. The variables of a mixed-precision model are float32
    already, so the copy is exact; the copy saves to a ``.keras`` file that
    loads, evaluates and exports in float32.
    """
    if getattr(model.dtype_policy, "name", "float32") == "float32":
        return model
    with dtype_policy("float32"):
        copy = build_fn()
    source, target = model.weights, copy.weights
    if len(source) != len(target) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(source, target)):
        raise ValueError(f"float32_copy: the rebuilt {type(copy).__name__} does not have the trained model's "
                         f"variables ({len(target)} vs {len(source)})")
    for a, b in zip(target, source):
        a.assign(np.asarray(b).astype("float32"))
    return copy


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Create the distribution strategy. Call before any other TensorFlow use
    (MultiWorkerMirroredStrategy sets up collective ops on the eager context).

    ``auto``: multi-worker when ``TF_CONFIG`` names more than one task, mirrored
    over all GPUs when there are several, else the default strategy.
    """
    if name == "auto":
        tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        n_tasks = sum(len(v) for v in tf_config.get("cluster", {}).values())
        if n_tasks > 1:
            name = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    raise ValueError(f"unknown strategy {name!r}")


def is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)


class CheckpointStore:
    """Atomic checkpoints in ``directory`` with a ``latest.json`` pointer."""

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: str, *, chief=True, keep=2):
        self.checkpoint = checkpoint
        self.directory = directory
        self.chief = chief
        self.keep = keep

    def latest(self):
        """(prefix, info dict) of the latest complete checkpoint, or None."""
        pointer = os.path.join(self.directory, LATEST)
        if not os.path.exists(pointer):
            return None
        with open(pointer, encoding="utf-8") as f:
            info = json.load(f)
        prefix = os.path.join(self.directory, info["prefix"])
        if not os.path.exists(prefix + ".index"):
            raise FileNotFoundError(f"{pointer} points to {prefix} but its .index file is missing")
        return prefix, info

    def restore(self):
        found = self.latest()
        if found is None:
            return None
        prefix, info = found
        self.checkpoint.read(prefix).assert_existing_objects_matched()
        return info

    def save(self, step: int, **info) -> None:
        name = f"ckpt-{step:08d}"
        if not self.chief:
            tmp = tempfile.mkdtemp(prefix="keras_hpnet-worker-ckpt-")
            try:
                self.checkpoint.write(os.path.join(tmp, name))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return
        os.makedirs(self.directory, exist_ok=True)
        self.checkpoint.write(os.path.join(self.directory, name))
        write_text_atomic(
            os.path.join(self.directory, LATEST), json.dumps({"prefix": name, "step": step, **info}, indent=1)
        )
        self._prune(keep_name=name)

    def _prune(self, keep_name):
        names = sorted({f.split(".")[0] for f in os.listdir(self.directory) if f.startswith("ckpt-")})
        for old in [n for n in names if n != keep_name][: max(0, len(names) - self.keep)]:
            for f in os.listdir(self.directory):
                if f.split(".")[0] == old:
                    os.unlink(os.path.join(self.directory, f))


class History:
    """history.csv: one row per epoch, rewritten atomically (survives resume)."""

    def __init__(self, path):
        self.path = path
        self.rows = []
        if path and os.path.exists(path):
            with open(path, newline="", encoding="utf-8") as f:
                self.rows = list(csv.DictReader(f))

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


def _release_in_background(holder: list) -> threading.Thread:
    """Drop the objects in `holder` (its caller's last references) on another thread.

    Destroying a tf.data iterator joins its worker threads; at some epoch
    boundaries of the demo that blocked the training thread for 12-53 s
    (faulthandler stacks: the line replacing the previous epoch's iterator).
    Not a daemon: a thread killed at exit inside TensorFlow aborts the process;
    the loop joins it before returning.
    """
    thread = threading.Thread(target=holder.clear, name="release-epoch-iterator")
    thread.start()
    return thread


class Trainer:
    """The training loop.

    Args:
      strategy: the tf.distribute strategy; ``model`` and ``optimizer`` must
        have been created under its scope.
      model: a model following the model contract.
      optimizer: a Keras optimizer.
      loss_fn: ``loss_fn(outputs, labels) -> {name: per-example loss [n]}``;
        the total loss is their sum.
      dataset_fn: ``dataset_fn(input_context, epoch) -> tf.data.Dataset`` of
        ``(images, labels)`` batched with the PER-REPLICA batch size,
        deterministic for a given epoch.
      per_replica_batch_size: that batch size (for images/s).
      steps_per_epoch, epochs: the schedule.
      out_dir: run directory (checkpoints/, history.csv, logs/), or None for
        no files at all.
      checkpoint_every: steps between checkpoints (also at each epoch end).
      max_steps: stop after this global step (0 = no limit); used to cut runs.
      verbose: 1 = progress bar on the chief.
      stages: optional ``training.stages.TrainingStage`` list (stage-wise
        training): each epoch runs under the stage it falls in (the stage
        freezes parts of the model; the step function is retraced at each
        change); the model is released (all trainable) when ``fit`` returns.
    """

    def __init__(self, *, strategy, model, optimizer, loss_fn, dataset_fn, per_replica_batch_size,
                 steps_per_epoch, epochs,
                 out_dir=None, checkpoint_every=200, keep_checkpoints=2, max_steps=0, verbose=1,
                 summary_every=10, stages=None):
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.dataset_fn = dataset_fn
        self.per_replica_batch_size = int(per_replica_batch_size)
        self.steps_per_epoch = int(steps_per_epoch)
        self.epochs = int(epochs)
        self.out_dir = out_dir
        self.checkpoint_every = int(checkpoint_every)
        self.max_steps = int(max_steps)
        self.verbose = verbose
        self.summary_every = summary_every
        self.stages = list(stages or [])
        self.stage = None  # the stage applied to the model
        self.chief = is_chief(strategy)
        if self.steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1 (is the training split smaller than one batch?)")
        with strategy.scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            optimizer.build(model.trainable_variables)
        self._synced = [v for v in model.non_trainable_variables
                        if v.dtype in ("float32", "float16", "bfloat16", "float64")]
        self.checkpoint = tf.train.Checkpoint(model=checkpoint_variables(model.weights),
                                              optimizer=checkpoint_variables(optimizer.variables),
                                              step=self.step)
        self.store = None
        self.history = History(None)
        self.writer = tf.summary.create_noop_writer()
        if out_dir:
            self.store = CheckpointStore(self.checkpoint, os.path.join(out_dir, "checkpoints"),
                                         chief=self.chief, keep=keep_checkpoints)
            if self.chief:
                self.history = History(os.path.join(out_dir, "history.csv"))
                self.writer = tf.summary.create_file_writer(os.path.join(out_dir, "logs", "train"))
        self._batch_step_fn = tf.function(self._batch_step)
        self._traced = False  # the loop's step function has run once (traced) in this process
        self.resumed_from = None

    # -- one step ---------------------------------------------------------
    def _replica_step(self, images, labels):
        with tf.GradientTape() as tape:
            outputs = self.model(images, training=True)
            terms = self.loss_fn(outputs, labels)
            scaled = {k: tf.nn.compute_average_loss(tf.cast(v, tf.float32)) for k, v in terms.items()}
            loss = tf.add_n(list(scaled.values()))
            if self.model.losses:  # bfloat16 under mixed precision: summed in float32
                loss += tf.nn.scale_regularization_loss(tf.add_n([tf.cast(v, tf.float32) for v in self.model.losses]))
        variables = self.model.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        self._sync_replica_state()
        return loss, scaled

    def _sync_replica_state(self):
        """Average BatchNorm moving statistics over replicas.

        Keras 3 creates them as MirroredVariables with aggregation NONE and each
        replica assigns its own batch statistics, so replicas (and workers)
        silently drift apart; averaging after every step keeps them identical
        (the same value a synchronized update of the moving averages gives).
        """
        if self.strategy.num_replicas_in_sync == 1 or not self._synced:
            return
        ctx = tf.distribute.get_replica_context()
        local = [tf.convert_to_tensor(v) for v in self._synced]
        flat = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, tf.concat([tf.reshape(t, [-1]) for t in local], 0))
        offset = 0
        for v, t in zip(self._synced, local):
            size = int(np.prod(t.shape))
            v.assign(tf.reshape(flat[offset:offset + size], t.shape))
            offset += size

    def _batch_step(self, images, labels):
        loss, terms = self.strategy.run(self._replica_step, args=(images, labels))
        reduce = lambda t: self.strategy.reduce(tf.distribute.ReduceOp.SUM, t, axis=None)  # noqa: E731
        return reduce(loss), {k: reduce(v) for k, v in terms.items()}

    def _train_step_on(self, images, labels):
        return self._batch_step_fn(images, labels)

    def step_on_batch(self, images, labels):
        """One training step on an already fetched distributed batch (what the
        loop runs; benchmarks time the fetch and the step separately with
        it); returns the reduced loss."""
        self._traced = True
        return self._train_step_on(images, labels)[0]

    def epoch_iterator(self, epoch=0, skip_steps=0):
        """Iterator over the distributed batches of `epoch` (repeating)."""
        return self._epoch_iterator(epoch, skip_steps)

    # -- data ---------------------------------------------------------------
    def _epoch_iterator(self, epoch, skip_steps):
        def fn(ctx):
            ds = self.dataset_fn(ctx, epoch).repeat()
            local_replicas = ctx.num_replicas_in_sync // ctx.num_input_pipelines
            if skip_steps:
                ds = ds.skip(skip_steps * local_replicas)
            return ds

        return iter(self.strategy.distribute_datasets_from_function(fn))

    def current_lr(self):
        lr = self.optimizer.learning_rate
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)

    # -- the loop ---------------------------------------------------------
    def fit(self):
        """Train (resuming from the latest checkpoint if any); returns the history rows."""
        if self.store is not None:
            info = self.store.restore()
            if info is not None:
                if info.get("steps_per_epoch", self.steps_per_epoch) != self.steps_per_epoch:
                    raise ValueError(
                        f"{self.store.directory}: checkpoint made with steps_per_epoch={info['steps_per_epoch']}, "
                        f"this run has {self.steps_per_epoch}; use a new --out_dir")
                self.resumed_from = int(self.step.numpy())
                if self.verbose and self.chief:
                    print(f"Resuming from {info['prefix']} (step {self.resumed_from}, "
                          f"epoch {self.resumed_from // self.steps_per_epoch + 1})", flush=True)
        total = self.epochs * self.steps_per_epoch
        if self.max_steps:
            total = min(total, self.max_steps)
        global_batch = self.per_replica_batch_size * self.strategy.num_replicas_in_sync
        step = int(self.step.numpy())
        releases = []
        try:
            return self._fit_epochs(step, total, global_batch, releases)
        finally:
            if self.stage is not None:
                self.stage.release(self.model)
                self.stage = None
            for thread in releases:
                thread.join()

    def _enter_stage(self, epoch):
        """Apply the stage of `epoch` if it is not the current one (new step function)."""
        from training.stages import stage_at

        stage = stage_at(self.stages, epoch)
        if stage is self.stage:
            return
        stage.apply(self.model)
        self.stage = stage
        self._batch_step_fn = tf.function(self._batch_step)  # other trainable variables: trace anew
        self._traced = False
        if self.verbose and self.chief:
            index = self.stages.index(stage) + 1
            print(f"Stage {index}/{len(self.stages)} {stage.describe()} (epochs {stage.first_epoch + 1}-"
                  f"{stage.first_epoch + stage.epochs})", flush=True)

    def _fit_epochs(self, step, total, global_batch, releases):
        import keras

        iterator = None
        while step < total:
            epoch, in_epoch = divmod(step, self.steps_per_epoch)
            if self.stages:
                self._enter_stage(epoch)
            previous, iterator = [iterator], None
            iterator = self._epoch_iterator(epoch, in_epoch)
            releases.append(_release_in_background(previous))
            end = min((epoch + 1) * self.steps_per_epoch, total)
            bar = None
            if self.verbose and self.chief:
                print(f"Epoch {epoch + 1}/{self.epochs}", flush=True)
                bar = keras.utils.Progbar(self.steps_per_epoch, stateful_metrics=["lr", "img/s"])
                if in_epoch:
                    bar.update(in_epoch)
            sums, n, t_epoch = {}, 0, time.perf_counter()
            timed = {"images": 0, "steps": 0, "wait": 0.0, "wall": 0.0, "cpu": 0.0}
            first_step_seconds = 0.0
            while step < end:
                t0, c0 = time.perf_counter(), time.process_time()
                # Fetched outside the step function so the time blocked on the
                # input pipeline is measured (history.csv input_wait).
                images, labels = next(iterator)
                t1 = time.perf_counter()
                loss, terms = self._train_step_on(images, labels)
                loss = float(loss)  # the host waits for the step here (NaN check)
                t2 = time.perf_counter()
                if not self._traced:  # trace + graph optimisation: not training speed
                    self._traced = True
                    first_step_seconds = t2 - t0
                else:
                    timed["images"] += global_batch
                    timed["steps"] += 1
                    timed["wait"] += t1 - t0
                    timed["wall"] += t2 - t0
                    timed["cpu"] += time.process_time() - c0
                if not np.isfinite(loss):
                    raise NonFiniteLossError(
                        f"loss is {loss} at step {step + 1} (epoch {epoch + 1}); training stopped. "
                        "The last good checkpoint is kept"
                        + (f" in {self.store.directory}" if self.store else "")
                        + ". Try a lower --lr.")
                step += 1
                self.step.assign(step)
                values = {"loss": loss, **{k: float(v) for k, v in terms.items()}}
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
                lr = self.current_lr()
                if bar is not None:
                    bar.update(step - epoch * self.steps_per_epoch,
                               [*values.items(), ("lr", lr), ("img/s", global_batch / max(t2 - t0, 1e-9))])
                if step % self.summary_every == 0:
                    with self.writer.as_default(step=step):
                        for k, v in values.items():
                            write_scalar(f"loss/{k}" if k != "loss" else "loss", v, step)
                        write_scalar("lr", lr, step)
                if self.store and step % self.checkpoint_every == 0 and step < end:
                    self._save(step)
            if self.store:
                self._save(step)
            elapsed = time.perf_counter() - t_epoch
            row = {"epoch": epoch + 1, **({"stage": self.stage.name} if self.stage else {}), "step": step,
                   **{k: v / max(n, 1) for k, v in sums.items()},
                   "lr": self.current_lr(), **self._speed(timed, global_batch * n, elapsed),
                   "first_step_seconds": round(first_step_seconds, 2), "seconds": elapsed}
            self.history.add(row)
            with self.writer.as_default(step=step):
                for k, v in row.items():
                    if k not in ("epoch", "step", "stage"):
                        write_scalar(f"epoch/{k}", v, step)
            self.writer.flush()
        return self.history.rows

    @staticmethod
    def _speed(timed, images, elapsed):
        """Training speed of an epoch: images/s over the steps after the first of
        the process (fetch + step wall time; the whole epoch when every step
        was a first one), the fraction of it spent waiting for input, and
        process CPU seconds per step (robust to other jobs on the machine)."""
        if timed["steps"]:
            return {"images_per_sec": timed["images"] / max(timed["wall"], 1e-9),
                    "input_wait": timed["wait"] / max(timed["wall"], 1e-9),
                    "cpu_seconds_per_step": timed["cpu"] / timed["steps"]}
        return {"images_per_sec": images / max(elapsed, 1e-9), "input_wait": 0.0, "cpu_seconds_per_step": 0.0}

    def _save(self, step):
        self.store.save(step, steps_per_epoch=self.steps_per_epoch, epoch=step // self.steps_per_epoch,
                        step_in_epoch=step % self.steps_per_epoch)

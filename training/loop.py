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
- The loop itself is the step and the epoch (:meth:`Trainer._run`); every
  other concern is a hook (training.hooks: stages, progress bar,
  checkpointing, epoch statistics, history.csv, TensorBoard), and a new
  concern is a new hook (``Trainer(hooks=...)``).
- Checkpoints (every model and optimizer variable, incl. the optimizer's
  iteration count and so the LR schedule position, the global step) are
  written every ``checkpoint_every`` steps and at each epoch end, read back
  and committed before older ones are pruned; a resume takes the newest
  intact one (training.checkpoint). Under multi-worker training every
  worker writes (saving may need collectives) but only the chief writes into
  ``out_dir``; the others write to a temporary directory that is removed.
- A non-finite loss stops training with :class:`NonFiniteLossError`; no
  checkpoint is written after it, so the last good one stays the latest.
- Precision: build the model inside :func:`dtype_policy` (e.g.
  ``mixed_bfloat16``: bfloat16 compute, float32 variables). Losses are summed
  in float32 and the optimizer updates the float32 variables; checkpoints hold
  float32 values whatever the policy. :func:`float32_copy` gives the float32
  model that is saved, evaluated and exported.
- Speed: the first step traces and optimises the step graph (~17 s for
  HAT-CNN on 2 cores with the fused optimizer update of training.optimizers;
  ~50 s with Keras's per-variable one); ``history.csv`` reports it as ``first_step_seconds`` and gives
  ``images_per_sec`` over the other steps, plus the time spent waiting for the
  input pipeline (``input_wait``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time

import numpy as np
import tensorflow as tf

from training import hooks as hooks_lib
from training.checkpoint import CheckpointStore, checkpoint_variables
from training.config import PRECISIONS


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
      hooks: more ``training.hooks.Hook`` s, called after the built-in ones
        (:meth:`default_hooks`).
    """

    def __init__(self, *, strategy, model, optimizer, loss_fn, dataset_fn, per_replica_batch_size,
                 steps_per_epoch, epochs,
                 out_dir=None, checkpoint_every=200, keep_checkpoints=2, max_steps=0, verbose=1,
                 summary_every=10, stages=None, hooks=None):
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
        self.chief = is_chief(strategy)
        if self.steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1 (is the training split smaller than one batch?)")
        self.global_batch = self.per_replica_batch_size * strategy.num_replicas_in_sync
        with strategy.scope():
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            optimizer.build(model.trainable_variables)
        self._synced = [v for v in model.non_trainable_variables
                        if v.dtype in ("float32", "float16", "bfloat16", "float64")]
        self.checkpoint = tf.train.Checkpoint(model=checkpoint_variables(model.weights),
                                              optimizer=checkpoint_variables(optimizer.variables),
                                              step=self.step)
        self.store = None
        if out_dir:
            self.store = CheckpointStore(self.checkpoint, os.path.join(out_dir, "checkpoints"),
                                         chief=self.chief, keep=keep_checkpoints)
        writes = bool(out_dir) and self.chief
        self.history = hooks_lib.History(os.path.join(out_dir, "history.csv") if writes else None)
        self.tensorboard = hooks_lib.TensorBoard(os.path.join(out_dir, "logs", "train") if writes else None,
                                                 every=summary_every)
        self.hooks = self.default_hooks() + list(hooks or [])
        self._batch_step_fn = tf.function(self._batch_step)
        self._traced = False  # the loop's step function has run once (traced) in this process
        self.resumed_from = None
        self._iterator = None  # the current epoch's (see _next_epoch_iterator)
        self._releases = []  # threads dropping finished epochs' iterators, joined when fit returns

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

    def retrace(self):
        """Use a new step function (traced at its first step): after a change of
        the trainable variables (training.hooks.StageSwitch)."""
        self._batch_step_fn = tf.function(self._batch_step)
        self._traced = False

    # -- the loop ---------------------------------------------------------
    def default_hooks(self) -> list:
        """The loop's concerns, in the order they are called (training.hooks)."""
        talk = bool(self.verbose) and self.chief
        return [*([hooks_lib.StageSwitch(self.stages, verbose=talk)] if self.stages else []),
                *([hooks_lib.ProgressBar()] if talk else []),
                *([hooks_lib.Checkpointing(self.store, self.checkpoint_every)] if self.store else []),
                hooks_lib.EpochStats(), self.history, self.tensorboard]

    def fit(self):
        """Train (resuming from the newest intact checkpoint if any); returns the history rows."""
        step = self._resume()
        total = self.epochs * self.steps_per_epoch
        if self.max_steps:
            total = min(total, self.max_steps)
        hooks = hooks_lib.HookList(self.hooks, self)
        hooks.on_train_begin({"step": step, "total": total})
        error = None
        try:
            self._run(step, total, hooks)
        except BaseException as e:
            error = e
            raise
        finally:
            self._iterator = None
            hooks.on_train_end({"step": int(self.step.numpy()), "error": error})
            for thread in self._releases:
                thread.join()
        return self.history.rows

    def _run(self, step, total, hooks):
        """The epochs from global step `step` to `total`."""
        while step < total:
            epoch, in_epoch = divmod(step, self.steps_per_epoch)
            end = min((epoch + 1) * self.steps_per_epoch, total)
            self._next_epoch_iterator(epoch, in_epoch)
            hooks.on_epoch_begin(epoch, {"step": step, "step_in_epoch": in_epoch, "end": end})
            while step < end:
                logs = self._timed_step(step, epoch)
                step += 1
                self.step.assign(step)
                hooks.on_train_batch_end(step, logs)
            hooks.on_epoch_end(epoch, {"epoch": epoch + 1, "step": step})

    def _next_epoch_iterator(self, epoch, in_epoch):
        """Replace the iterator by epoch `epoch`'s (from step `in_epoch` on);
        the old one is dropped on a helper thread (see _release_in_background):
        ``self._iterator`` is its only reference."""
        previous, self._iterator = [self._iterator], None
        self._iterator = self._epoch_iterator(epoch, in_epoch)
        self._releases.append(_release_in_background(previous))

    def _timed_step(self, step, epoch) -> dict:
        """One step on the next batch; its losses and timing (training.hooks)."""
        t0, c0 = time.perf_counter(), time.process_time()
        # Fetched outside the step function so the time blocked on the
        # input pipeline is measured (history.csv input_wait).
        images, labels = next(self._iterator)
        t1 = time.perf_counter()
        loss, terms = self._train_step_on(images, labels)
        loss = float(loss)  # the host waits for the step here (NaN check)
        t2 = time.perf_counter()
        first_step = not self._traced  # trace + graph optimisation: not training speed
        self._traced = True
        if not np.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss} at step {step + 1} (epoch {epoch + 1}); training stopped. "
                "The last good checkpoint is kept"
                + (f" in {self.store.directory}" if self.store else "")
                + ". Try a lower --lr.")
        return {"losses": {"loss": loss, **{k: float(v) for k, v in terms.items()}}, "lr": self.current_lr(),
                "fetch_seconds": t1 - t0, "step_seconds": t2 - t0, "cpu_seconds": time.process_time() - c0,
                "first_step": first_step}

    def _resume(self) -> int:
        """Restore the newest intact checkpoint (if any); the global step to start at."""
        if self.store is None:
            return int(self.step.numpy())
        info = self.store.restore()
        if info is None:
            return int(self.step.numpy())
        if info.get("steps_per_epoch", self.steps_per_epoch) != self.steps_per_epoch:
            raise ValueError(
                f"{self.store.directory}: checkpoint made with steps_per_epoch={info['steps_per_epoch']}, "
                f"this run has {self.steps_per_epoch}; use a new --out_dir")
        self.resumed_from = int(self.step.numpy())
        if self.chief and self.store.skipped:  # whatever verbose: the user must learn of damage
            for name, reason in self.store.skipped:
                print(f"training: {name} skipped: {reason}", file=sys.stderr, flush=True)
            print(f"training: resuming from the newest intact checkpoint, {info['prefix']}; damaged files "
                  f"are kept in {os.path.join(self.store.directory, 'damaged')}", file=sys.stderr, flush=True)
        if self.verbose and self.chief:
            print(f"Resuming from {info['prefix']} (step {self.resumed_from}, "
                  f"epoch {self.resumed_from // self.steps_per_epoch + 1})", flush=True)
        return self.resumed_from

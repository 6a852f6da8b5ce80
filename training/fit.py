"""Train a keras-hpnet model: ``python -m training.fit --model hatcnn``.

With no data flags it trains on the embedded synthetic dataset (generated on
first use). Flags resolve into one :class:`training.config.TrainConfig`
(per-dataset presets fill what is not given) and are checked, together with
the data directory, before any model is built. Training runs the distributed
custom loop of :mod:`training.loop` under ``--strategy`` and resumes from the
latest checkpoint in ``--out_dir`` when re-run. See docs/training.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from absl import app, flags

from keras_hpnet.datasets.combine import TEST_OPTION
from keras_hpnet.model_spec import flag_options, spec
from training.config import (ATTRIBUTE_WEIGHTINGS, DATASETS, GENERATED, LR_SCHEDULES, MODELS, OPTIMIZERS,
                             PRECISION_CHOICES, STRATEGIES, TEMPORAL_POOLINGS, ConfigError, TrainConfig,
                             resolve_config, stage_plan, validate_config)

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "hatcnn", MODELS, "Network to train: " + "; ".join(
    f"{name}: {spec(name).summary}" for name in MODELS) + ".")
flags.DEFINE_string("dataset", "synthetic", f"Dataset ({', '.join(DATASETS)}); synthetic is generated on first "
                    "use. Several as one training set: a+b (e.g. market1501+dukemtmc; docs/datasets.md).")
flags.DEFINE_string("data_dir", None, "Dataset root (synthetic: where to generate/reuse it; default a cache dir); "
                    "with --dataset a+b one per dataset: A,B (empty for generated data).")
flags.DEFINE_string("test_dataset", None, "With --dataset a+b: the dataset evaluated on (default the first).")
flags.DEFINE_string("out_dir", None, "Run directory (default runs/<model>-<dataset>).")
flags.DEFINE_integer("epochs", None, "Epochs (default: the dataset preset).")
flags.DEFINE_integer("batch_size", None, "GLOBAL batch size, split over replicas.")
flags.DEFINE_float("lr", None, "Base learning rate.")
flags.DEFINE_enum("optimizer", None, OPTIMIZERS, "sgd (momentum, the papers) or adam.")
flags.DEFINE_float("momentum", None, "SGD momentum.")
flags.DEFINE_float("weight_decay", None, "Weight decay.")
flags.DEFINE_enum("lr_schedule", None, LR_SCHEDULES, "multistep: linear warm-up, x --lr_decay at "
                  "--lr_milestones; cosine: linear warm-up, then cosine to 0; onecycle: warm-up over 30% of the "
                  "run from lr/25, then cosine (training/schedule.py).")
flags.DEFINE_list("lr_milestones", None, "LR decay points as fractions of the run, e.g. 0.5,0.75 (multistep).")
flags.DEFINE_float("lr_decay", None, "LR factor at each milestone.")
flags.DEFINE_integer("warmup_epochs", None, "Linear LR warm-up epochs.")
flags.DEFINE_float("label_smoothing", None, "Label smoothing of the identity cross-entropy.")
flags.DEFINE_float("triplet_weight", None, "Weight of the batch-hard triplet loss (needs --pk).")
flags.DEFINE_float("triplet_margin", None, "Triplet margin.")
flags.DEFINE_integer("pk", None, "K images per identity for P x K batches (0 = random batches).")
flags.DEFINE_float("attribute_weight", None, "Weight of the attribute loss.")
flags.DEFINE_enum("attribute_weighting", None, ATTRIBUTE_WEIGHTINGS,
                  "Attribute BCE weights. ratio: DeepMAR positive-ratio weights (HP-Net); balanced: positives "
                  "1/(2r), negatives 1/(2(1-r)) (optimises mA); none: plain; auto: ratio on attribute-only "
                  "datasets, plain otherwise.")
for _option in flag_options().values():  # model options (their specs'), e.g. --attribute_pooling
    flags.DEFINE_enum(_option.name, None, _option.choices, _option.help)
flags.DEFINE_boolean("stagewise", None, "hpnet: train stage-wise as the paper (M-net alone, then the AF-net on "
                     "the fixed M-net, then the fusion layers); default end to end. See training/stages.py.")
flags.DEFINE_float("attribute_warmup", None, "hatcnn: share of the epochs in which the separate attribute "
                   "network trains alone on half-resolution images before both networks train at full "
                   "resolution (synthetic preset: 0.75; 0 = end to end). See docs/training.md.")
flags.DEFINE_list("stage_epochs", None, "With --stagewise: epochs of the M-net, AF-net and fusion stages, e.g. "
                  "3,3,2 (default: --epochs split 40/40/20%); with --attribute_warmup: of the attributes and "
                  "joint stages.")
flags.DEFINE_enum("strategy", None, STRATEGIES, "tf.distribute strategy (auto: multi_worker if TF_CONFIG, "
                  "mirrored if several GPUs, else default).")
flags.DEFINE_enum("precision", None, PRECISION_CHOICES, "Keras dtype policy for training: float32, "
                  "mixed_bfloat16 (bf16 compute, float32 weights; fast on AMX/AVX512-BF16 CPUs and TPUs), or "
                  "auto (mixed_bfloat16 where the CPU has native bf16, else float32; synthetic preset).")
flags.DEFINE_integer("seed", None, "Random seed (weights, data order, augmentation).")
flags.DEFINE_integer("checkpoint_every", None, "Steps between checkpoints (also at every epoch end).")
flags.DEFINE_integer("keep_checkpoints", None, "Checkpoints kept.")
flags.DEFINE_integer("max_steps", None, "Stop after this many steps in total (0 = no limit).")
flags.DEFINE_float("time_budget", None, "Seconds of training (setup, traces, steps, checkpoints; not the final "
                   "evaluation): epochs and steps are planned from the speed measured in a few probe steps "
                   "(training/budget.py) and recorded in config.json; a resume keeps the plan.")
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (0 = training images // batch size).")
flags.DEFINE_integer("input_height", None, "Input height (hpnet/mnet/tiny; 0 = model default).")
flags.DEFINE_integer("input_width", None, "Input width (hpnet/mnet/tiny; 0 = model default).")
flags.DEFINE_boolean("cache_images", None, "Keep decoded, resized training images in memory.")
flags.DEFINE_integer("eval_batch_size", None, "Batch size of the final evaluation.")
flags.DEFINE_boolean("evaluate", None, "Evaluate at the end and write metrics.json.")
flags.DEFINE_integer("synthetic_ids", None, "Synthetic dataset: train and test identities each "
                     "(synthetic_pa100k: training images); 0 = generator default.")
flags.DEFINE_integer("synthetic_cameras", None, "Synthetic dataset: cameras (0 = generator default).")
flags.DEFINE_integer("synthetic_max_images", None, "Synthetic dataset: images per identity and camera, at most.")
flags.DEFINE_integer("seq_len", None, "Video datasets (mars, prid2011, synthetic_mars): frames per training "
                     "tracklet (default 4); evaluation pools all frames of a tracklet.")
flags.DEFINE_enum("temporal_pooling", None, TEMPORAL_POOLINGS, "Video datasets: the video model's temporal "
                  "pooling of frame features: avg (the baseline) or attention (learned frame weights).")
flags.DEFINE_multi_string("dataset_option", None, "Reader option key=value, repeatable (e.g. split=identity for "
                          "peta, merge_val=false for msmt17; docs/datasets.md); recorded in config.json. With "
                          "--dataset a+b: NAME.key=value for one dataset, key=value for every reader that has it.")

CONFIG_FLAGS = [f.name for f in dataclasses.fields(TrainConfig)]


def config_from_flags() -> TrainConfig:
    given = {}
    for name in CONFIG_FLAGS:
        if name in ("model", "dataset"):
            given[name] = FLAGS[name].value
        elif FLAGS[name].present or FLAGS[name].value is not None:
            given[name] = FLAGS[name].value
    if given.get("lr_milestones") is not None:
        try:
            given["lr_milestones"] = [float(v) for v in given["lr_milestones"]]
        except ValueError as e:
            raise ConfigError(f"--lr_milestones={','.join(given['lr_milestones'])}: {e}") from None
    return resolve_config(given)


# -- pieces ---------------------------------------------------------------------------

VIDEO_KEYS = ("seq_len", "temporal_pooling")  # in the plan's objective of a video run only


def dataset_options(cfg: TrainConfig) -> dict:
    """The `keras_hpnet.datasets.load` options of the run's dataset (recorded in
    config.json as `dataset_options`, so readers load exactly this data)."""
    # Generated data: fixed (seed 0) whatever --seed, sized by the --synthetic_* flags;
    # any reader: the --dataset_option key=value pairs.
    parts = cfg.dataset_parts
    if len(parts) > 1:  # keras_hpnet.datasets.combine: {dataset: options}, test_dataset
        routed = cfg.part_reader_options()
        options = {name: {**(dataclasses.replace(cfg, dataset=name).synthetic_sizes if name in GENERATED else {}),
                          **routed[name]} for name, _ in parts}
        return {**{k: v for k, v in options.items() if v}, TEST_OPTION: cfg.test_dataset or parts[0][0]}
    options = dict(cfg.synthetic_sizes) if cfg.dataset in GENERATED else {}
    options.update(cfg.reader_options)
    return options


def load_dataset(cfg: TrainConfig):
    """Read (or generate) the dataset and check it can train this config."""
    from keras_hpnet import datasets

    ds = datasets.load(cfg.dataset, cfg.data_dir, **dataset_options(cfg))
    train = ds.splits.get("train") or []
    if len(train) < cfg.batch_size:
        what = "tracklets" if ds.kind == "video" else "images"
        raise ConfigError(f"{cfg.data_dir or cfg.dataset}: {len(train)} training {what}, fewer than "
                          f"--batch_size={cfg.batch_size}")
    return ds


def make_plan(cfg: TrainConfig, ds, *, replicas: int, steps_per_epoch: int, budget=None):
    """The run's :class:`keras_hpnet.runs.RunPlan`, resolved once from the
    config, the loaded dataset and the model's spec (written as config.json;
    `budget`, a training.budget.BudgetPlan, as its ``time_budget_plan``)."""
    from keras_hpnet.runs import OBJECTIVE_KEYS, SCHEDULE_KEYS, RunPlan

    model_spec = spec(cfg.model)
    train = ds.splits["train"]
    num_classes = ds.num_train_pids if ds.kind in ("reid", "video") else 0
    labelled = bool(ds.attribute_names) and train[0].attributes is not None
    if model_spec.attributes == "required" and not labelled:
        raise ConfigError(f"--model={cfg.model}: {model_spec.title or cfg.model} needs attribute labels; "
                          f"{ds.root or cfg.dataset} has none")
    names = list(ds.attribute_names) if labelled and model_spec.attributes != "none" else []
    if not num_classes and not names:
        raise ConfigError(f"{ds.root}: nothing to train (no identities and no attributes)")
    if cfg.pk and not num_classes:
        raise ConfigError(f"--pk={cfg.pk}: {cfg.dataset} has no identities for P x K sampling")
    if cfg.pk and any(r.pid < 0 for r in train):
        raise ConfigError(f"--pk={cfg.pk}: {cfg.dataset} has training images without an identity "
                          f"(an attribute-only dataset) for P x K sampling")
    values = dict(dataclasses.asdict(cfg), steps_per_epoch=steps_per_epoch, strategy_replicas=replicas)
    if ds.kind != "video":  # the temporal head exists only for tracklets
        values = {k: v for k, v in values.items() if k not in VIDEO_KEYS}
    own = {"model", "dataset", "data_dir", "precision", "seed", "input_height", "input_width",
           "test_dataset"}  # test_dataset: in dataset_options
    flagged = {k: values[k] for k in model_spec.option_names if k in flag_options()}
    settings = {k: v for k, v in values.items() if k not in own and k not in SCHEDULE_KEYS + OBJECTIVE_KEYS}
    if budget is not None:
        settings["time_budget_plan"] = budget.to_dict()
    return RunPlan.make(
        model=cfg.model, model_options=model_spec.options_with_defaults(**flagged),
        input_size=model_spec.input_size((cfg.input_height, cfg.input_width) if cfg.input_height else None),
        num_classes=num_classes, attribute_names=names,
        dataset=cfg.dataset, data_dir=ds.root or cfg.data_dir,  # generated data: its folder (runs reloads it)
        dataset_options=dataset_options(cfg), precision=cfg.precision, seed=cfg.seed,
        schedule={k: values[k] for k in SCHEDULE_KEYS},
        objective={k: values[k] for k in OBJECTIVE_KEYS if k in values},
        settings=settings)


def build_model(plan):
    """The plan's model (`keras_hpnet.build_model`), attribute names included; a
    video run's is that image model in a `VideoModel` (keras_hpnet.models.video)."""
    import keras_hpnet

    kwargs = dict(num_classes=plan.num_classes, num_attributes=plan.num_attributes, input_shape=(*plan.input_size, 3),
                  attribute_names=plan.attribute_names or None, **plan.options("model_options"))
    objective = plan.options("objective")
    if "seq_len" in objective:
        from keras_hpnet.models import build_video_model

        return build_video_model(plan.model, seq_len=objective["seq_len"], pooling=objective["temporal_pooling"],
                                 **kwargs)
    return keras_hpnet.build_model(plan.model, **kwargs)


def make_stages(cfg: TrainConfig):
    """The training stages of a --stagewise or --attribute_warmup run (the
    model spec's, training.stages), else None (end to end)."""
    stages, _ = stage_plan(cfg)
    if not stages:
        return None
    from training.stages import model_stages

    return model_stages(stages, cfg.stage_epochs, spec(cfg.model).stage_parts)


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int, stages=None):
    """The optimizer with the run's LR schedule; with `stages` the schedule
    restarts at every stage (each one trains new parts: its own warm-up and decay).
    Keras' AdamW / SGD maths with a fused per-variable update (training.optimizers)."""
    from training import optimizers
    from training.schedule import make_schedule

    def schedule_of(epochs):
        return make_schedule(cfg.lr_schedule, cfg.lr, epochs * steps_per_epoch, milestones=cfg.lr_milestones,
                             decay=cfg.lr_decay, warmup_steps=min(cfg.warmup_epochs, epochs) * steps_per_epoch)

    if stages:
        from training.schedule import StageRestarts

        schedule = StageRestarts([schedule_of(s.epochs) for s in stages],
                                 [s.first_epoch * steps_per_epoch for s in stages])
    else:
        schedule = schedule_of(cfg.epochs)
    if cfg.optimizer == "sgd":
        return optimizers.SGD(schedule, momentum=cfg.momentum, weight_decay=float(cfg.weight_decay))
    return optimizers.AdamW(schedule, weight_decay=float(cfg.weight_decay))  # 0: no decay op (training.optimizers)


def make_loss_fn(cfg: TrainConfig, num_classes: int, num_attributes: int, positive_ratio=None,
                 scheme: str = "deepmar"):
    """``loss_fn(outputs, labels) -> {name: per-example loss}`` for the loop.

    ``positive_ratio``/``scheme``: the attribute weighting
    (:func:`keras_hpnet.losses.weighted_attribute_bce`; None = plain BCE)."""
    from keras import ops

    from keras_hpnet import losses

    def loss_fn(outputs, labels):
        terms = {}
        if num_classes and "identity_logits" not in outputs:  # a stage without the identity network
            zero = ops.zeros_like(outputs["attribute_logits"][:, 0])
            terms["id"] = zero
            if cfg.triplet_weight:
                terms["triplet"] = zero
        elif num_classes:
            heads = outputs["identity_logits"]
            terms["id"] = sum(losses.identity_cross_entropy(labels["pid"], z, cfg.label_smoothing)
                              for z in heads) / len(heads)
            if cfg.triplet_weight:
                feats = outputs["features"]
                tri = sum(losses.batch_hard_triplet_loss(labels["pid"], f, cfg.triplet_margin) for f in feats)
                terms["triplet"] = cfg.triplet_weight * tri / len(feats)
        if num_attributes:
            terms["attr"] = cfg.attribute_weight * losses.weighted_attribute_bce(
                labels["attributes"], outputs["attribute_logits"], positive_ratio, scheme=scheme)
        return {k: ops.reshape(v, (-1,)) for k, v in terms.items()}

    return loss_fn


def check_resumable(plan, out_dir: str):
    """Refuse to resume a run directory whose recorded plan differs in any
    field that changes the trained weights (RunPlan.resume_fields)."""
    from keras_hpnet.runs import CONFIG_FILE, RunError, read_run_plan

    if not (os.path.exists(os.path.join(out_dir, "checkpoints", "latest.json"))
            and os.path.exists(os.path.join(out_dir, CONFIG_FILE))):
        return
    try:
        recorded = read_run_plan(out_dir, need_model=False)
    except RunError as e:
        raise ConfigError(f"--out_dir={out_dir} holds checkpoints but its {CONFIG_FILE} is unusable ({e}): "
                          f"use another --out_dir (or delete it) to start afresh") from None
    diffs = plan.differences(recorded)
    if diffs:
        listed = "; ".join(f"{k}: recorded {old!r}, this run {new!r}" for k, old, new in diffs)
        raise ConfigError(f"--out_dir={out_dir} holds a run with a different plan ({listed}): "
                          f"use another --out_dir (or delete it) to start afresh")


# -- the run ----------------------------------------------------------------------------

def run(cfg: TrainConfig, strategy=None, verbose=1) -> dict:
    """Train (resuming if possible), save, evaluate. Returns the metrics dict
    (empty on non-chief workers or with ``cfg.evaluate`` False)."""
    t_start = time.time()
    from training import loop, rundir

    if strategy is None:
        strategy = loop.make_strategy(cfg.strategy)  # before any other TensorFlow use (MWMS)
    with rundir.claim(cfg.out_dir, lock=loop.is_chief(strategy)):  # one run per directory; storage errors
        trainer, ds = train(cfg, strategy, verbose, started=t_start)
        return finish(cfg, trainer, ds, t_start, verbose)


def train(cfg: TrainConfig, strategy=None, verbose=1, started=None):
    """Build everything and run the training loop; returns (trainer, dataset).

    With ``cfg.time_budget`` the epochs and steps are planned first
    (:func:`plan_time_budget`); `started` (time.time()) is when the budget's
    clock started (default: now)."""
    started = time.time() if started is None else started
    validate_config(cfg)
    from training import loop

    if strategy is None:
        strategy = loop.make_strategy(cfg.strategy)  # before any other TensorFlow use (MWMS)
    chief = loop.is_chief(strategy)
    ds = load_dataset(cfg)
    if verbose and chief:
        print(ds.summary(), flush=True)
    train = ds.splits["train"]
    replicas = strategy.num_replicas_in_sync
    if cfg.batch_size % replicas:
        raise ConfigError(f"--batch_size={cfg.batch_size} must be divisible by the {replicas} replicas")
    per_replica = cfg.batch_size // replicas
    if cfg.pk and per_replica % cfg.pk:
        raise ConfigError(f"--pk={cfg.pk} must divide the per-replica batch {per_replica}")
    from keras_hpnet.data import steps_per_epoch as count_steps

    steps_per_epoch = cfg.steps_per_epoch or count_steps(train, cfg.batch_size)
    plan = make_plan(cfg, ds, replicas=replicas, steps_per_epoch=steps_per_epoch)
    num_classes, num_attributes = plan.num_classes, plan.num_attributes

    positive_ratio = None
    weighting = cfg.attribute_weighting
    if weighting == "auto":
        weighting = "ratio" if ds.kind == "attribute" else "none"
    scheme = {"ratio": "deepmar", "balanced": "balanced"}.get(weighting)  # None: plain BCE
    if num_attributes and scheme:
        import numpy as np

        from keras_hpnet.losses import attribute_positive_ratio

        positive_ratio = attribute_positive_ratio(np.stack([r.attributes for r in train]))
    loss_fn = make_loss_fn(cfg, num_classes, num_attributes, positive_ratio, scheme or "deepmar")

    def make_trainer(cfg, plan, steps_per_epoch, out_dir, verbose):
        import keras

        from keras_hpnet.data import make_dataset, tracklet_dataset

        stages = make_stages(cfg)
        keras.utils.set_random_seed(cfg.seed)
        with loop.dtype_policy(cfg.precision), strategy.scope():
            model = build_model(plan)
            optimizer = make_optimizer(cfg, steps_per_epoch, stages)

        def dataset_fn(ctx, epoch):
            # Every input pipeline (worker) takes its share of the epoch's batches.
            common = dict(input_size=plan.input_size, batch_size=per_replica, training=True, seed=cfg.seed,
                          epoch=epoch, pk=cfg.pk or None, cache=cfg.cache_images,
                          num_shards=ctx.num_input_pipelines, shard_index=ctx.input_pipeline_id)
            if ds.kind == "video":  # [N, seq_len, H, W, 3] tracklet batches
                return tracklet_dataset(train, seq_len=cfg.seq_len, sampling="random", **common)
            return make_dataset(train, **common)

        return loop.Trainer(
            strategy=strategy, model=model, optimizer=optimizer, loss_fn=loss_fn, dataset_fn=dataset_fn,
            per_replica_batch_size=per_replica, steps_per_epoch=steps_per_epoch, epochs=cfg.epochs,
            out_dir=out_dir, checkpoint_every=cfg.checkpoint_every, keep_checkpoints=cfg.keep_checkpoints,
            max_steps=cfg.max_steps, verbose=verbose, stages=stages)

    budget = None
    if cfg.time_budget:
        cfg, budget = plan_time_budget(cfg, lambda: make_trainer(cfg, plan, steps_per_epoch, None, 0), strategy,
                                       started, steps_per_epoch, verbose=verbose and chief)
        steps_per_epoch = cfg.steps_per_epoch
        plan = make_plan(cfg, ds, replicas=replicas, steps_per_epoch=steps_per_epoch, budget=budget)
    trainer = make_trainer(cfg, plan, steps_per_epoch, cfg.out_dir, verbose)
    plan = dataclasses.replace(plan, embedding_dim=int(trainer.model.embedding_dim))  # the built model's
    check_resumable(plan, cfg.out_dir)
    if chief:
        from keras_hpnet.fileio import write_text_atomic
        from keras_hpnet.runs import CONFIG_FILE

        os.makedirs(cfg.out_dir, exist_ok=True)
        write_text_atomic(os.path.join(cfg.out_dir, CONFIG_FILE), plan.to_json())
    with loop.dtype_policy(cfg.precision):  # the step is traced under the training policy
        trainer.fit()
    if chief:  # what the readers and the image check skipped (docs/datasets.md)
        ds.write_report(os.path.join(cfg.out_dir, "data_report.json"))
    return trainer, ds


def plan_time_budget(cfg: TrainConfig, make_probe, strategy, started, data_steps_per_epoch, verbose=True):
    """(cfg with the planned epochs, steps_per_epoch and stage_epochs, its
    training.budget.BudgetPlan): the plan recorded in ``cfg.out_dir`` when
    resuming, else one measured now with the throw-away trainer `make_probe()`."""
    import gc

    from training import budget as budget_lib
    from training import loop

    if getattr(strategy.extended, "_num_workers", 1) > 1:
        raise ConfigError("--time_budget: not with multi-worker training (every worker would measure its own "
                          "plan); give --epochs")
    try:
        plan = budget_lib.recorded_plan(cfg.out_dir, cfg.time_budget)
        if plan is not None:
            how = "recorded in config.json, kept for the resume"
        else:
            t0 = time.time()
            probe = make_probe()
            built = time.time() - t0
            with loop.dtype_policy(cfg.precision):
                speed = budget_lib.measure_speed(probe, probe.stages or None, build_seconds=built)
            del probe
            gc.collect()
            shares = stage_plan(cfg)[1] or (1.0,)
            plan = budget_lib.plan_budget(
                cfg.time_budget, spent=time.time() - started, speed=speed, data_steps_per_epoch=data_steps_per_epoch,
                checkpoint_every=cfg.checkpoint_every, shares=shares)
            how = (f"measured: trace {'+'.join(f'{t:.1f}' for t in speed.trace_seconds)} s, step "
                   f"{'/'.join(f'{t * 1000:.0f}' for t in speed.step_seconds)} ms, checkpoint "
                   f"{speed.checkpoint_seconds:.2f} s, {plan.spent_seconds:.0f} s spent")
    except budget_lib.BudgetError as e:
        raise ConfigError(str(e)) from None
    if verbose:
        print(f"Time budget {cfg.time_budget:g} s: {plan.epochs} epochs x {plan.steps_per_epoch} steps"
              + (f" (stages {','.join(map(str, plan.stage_epochs))})" if plan.stage_epochs else "")
              + f", predicted {plan.predicted_seconds:.0f} s ({how})", flush=True)
    cfg = dataclasses.replace(cfg, epochs=plan.epochs, steps_per_epoch=plan.steps_per_epoch,
                              stage_epochs=list(plan.stage_epochs))
    validate_config(cfg)
    return cfg, plan


def finish(cfg: TrainConfig, trainer, ds, t_start, verbose=1) -> dict:
    """Save model.keras atomically (chief), evaluate it, write metrics.json."""
    import keras

    from keras_hpnet.cpu import describe
    from keras_hpnet.models import build_like
    from training import loop

    model = trainer.model
    chief = loop.is_chief(trainer.strategy)
    train_seconds = time.time() - t_start
    model_path = os.path.join(cfg.out_dir, "model.keras")
    if not chief:
        return {}
    from keras_hpnet.fileio import atomic_path

    # model.keras is float32 whatever --precision (evaluate, export and edge read it).
    model = loop.float32_copy(model, lambda: build_like(model))
    with atomic_path(model_path) as tmp:
        model.save(tmp)
    if not cfg.evaluate:
        return {}
    # Evaluate the saved artifact itself, outside the strategy.
    final = keras.saving.load_model(model_path)
    metrics = evaluate(final, ds, cfg)
    metrics["train_seconds"] = round(train_seconds, 1)
    metrics["total_seconds"] = round(time.time() - t_start, 1)
    metrics["steps"] = int(trainer.step.numpy())
    metrics["cpu"] = describe()  # ISA and the kernels (oneDNN / Eigen) the figures came from
    if trainer.resumed_from is not None:
        metrics["resumed_from_step"] = trainer.resumed_from
    from keras_hpnet.fileio import write_text_atomic

    write_text_atomic(os.path.join(cfg.out_dir, "metrics.json"), json.dumps(metrics, indent=2, sort_keys=True))
    if verbose:
        shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        print("metrics: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in sorted(shown.items())), flush=True)
    return metrics


def evaluate(model, ds, cfg: TrainConfig) -> dict:
    """Final metrics (keras_hpnet.evaluation.evaluate_model) plus the raw-pixel
    nearest-neighbour rank-1 for re-id datasets."""
    from keras_hpnet.evaluation import evaluate_model

    metrics = dict(evaluate_model(model, ds, batch_size=cfg.eval_batch_size).metrics)
    if ds.kind == "reid" and ds.splits.get("query") and ds.splits.get("gallery"):  # image re-id only
        from keras_hpnet.datasets import raw_pixel_baseline

        metrics["raw_pixel_rank1"] = float(raw_pixel_baseline(ds)["rank1"])
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (int, float, str, bool)) or (hasattr(v, "ndim") and v.ndim == 0):
            out[k] = v.item() if hasattr(v, "item") else v
    return out


def main(argv):
    from absl import logging

    from keras_hpnet.cpu import prefer_onednn

    prefer_onednn()  # before TensorFlow loads: oneDNN kernels on AVX2 too, unless the user chose (docs/models.md)

    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # TF's INFO lines would break the progress bar
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:  # flags and paths first: no TensorFlow yet
        cfg = config_from_flags()
        validate_config(cfg)
    except ConfigError as e:
        _fail(e, 2)
    from keras_hpnet.datasets.base import DatasetError
    from training.loop import NonFiniteLossError
    from training.rundir import RunDirError

    try:
        run(cfg)
    except (ConfigError, DatasetError, RunDirError) as e:
        _fail(e, 2)
    except NonFiniteLossError as e:
        _fail(e, 3)


def _fail(error, code):
    print(f"training.fit: error: {error}", file=sys.stderr, flush=True)
    sys.exit(code)


if __name__ == "__main__":
    app.run(main)

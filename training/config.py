"""The resolved configuration of one training run.

`training.fit` turns absl flags into a :class:`TrainConfig` with
:func:`resolve_config` (per-dataset presets fill what the user left unset) and
checks it with :func:`validate_config` BEFORE TensorFlow builds anything, so a
bad flag or data directory fails in a second with a message naming it.
The training library (`training.loop`) takes the config object, never flags.
What a model allows (input size, options, stages) is read from its spec
(`keras_hpnet.model_spec`); no model is named here.
"""

from __future__ import annotations

import dataclasses
import json
import os

from keras_hpnet.cpu import has_native_bfloat16
from keras_hpnet.datasets import VIDEO_DATASETS, available_datasets, reader_options
from keras_hpnet.datasets.combine import dataset_names, route_options, split_roots
from keras_hpnet.model_spec import available_models, flag_options, spec

MODELS = tuple(available_models())  # the registered networks (the --model choices)
DATASETS = tuple(available_datasets())  # the keras_hpnet.datasets registry (TensorFlow-free)
GENERATED = ("synthetic", "synthetic_pa100k", "synthetic_mars")  # made on first use, no --data_dir needed
TEMPORAL_POOLINGS = ("avg", "attention")  # keras_hpnet.temporal.MODES (video datasets)
STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")
OPTIMIZERS = ("sgd", "adam")
PRECISIONS = ("float32", "mixed_bfloat16")  # Keras dtype policies training may use
PRECISION_CHOICES = ("auto",) + PRECISIONS  # auto: bf16 where the CPU computes it natively
ATTRIBUTE_WEIGHTINGS = ("auto", "none", "ratio", "balanced")
LR_SCHEDULES = ("multistep", "cosine", "onecycle")  # training.schedule.make_schedule


def cpu_has_native_bfloat16(cpuinfo="/proc/cpuinfo") -> bool:
    """True when the CPU has AMX-BF16 or AVX512-BF16 (keras_hpnet.cpu)."""
    return has_native_bfloat16(cpuinfo)


class ConfigError(ValueError):
    """A flag or a path is wrong; the message names it."""


# Paper recipe (HA-CNN / HAT-CNN on Market-1501; Li et al. 2018, Sec. 4; docs/training.md): SGD
# momentum 0.9, lr 0.03, weight decay 5e-4, batch 32, 300 epochs, lr x0.1 at
# 150 and 225, label smoothing 0.1, flip + crop. The synthetic preset is that
# recipe scaled to the embedded dataset and the 10-minute CPU budget.
PAPER = dict(
    epochs=300, batch_size=32, lr=0.03, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
    lr_milestones=(0.5, 0.75), lr_decay=0.1, warmup_epochs=0, label_smoothing=0.1,
    triplet_weight=0.0, pk=0,
)
REAL_ATTRIBUTES = dict(PAPER, epochs=60, optimizer="adam", lr=0.001, lr_schedule="cosine", warmup_epochs=2,
                       attribute_weighting="balanced")
PRESETS = {
    "market1501": dict(PAPER),
    "dukemtmc": dict(PAPER),
    "custom": dict(PAPER, epochs=120),
    # Attribute-only real data (PA-100K, PETA, RAP; the metric is mA), trained from
    # scratch: measured on 1,600 real PA-100K crops (docs/training.md "Training on
    # real attribute data"), SGD at lr 0.01 is far from converged in a CPU run
    # while Adam lr 1e-3 with the balanced weighting (its 0.5 threshold optimises
    # mA) beats the raw-pixel probe by 10 points in 30 epochs; the cosine
    # schedule spans whatever --epochs or --time_budget gives.
    "pa100k": REAL_ATTRIBUTES,
    "peta": REAL_ATTRIBUTES,
    "rap": REAL_ATTRIBUTES,
    # MSMT17 (re-id, 32,621 training images of 1,041 ids with val): the paper recipe.
    "msmt17": dict(PAPER),
    # CUHK03 new protocol (re-id, 7,368 labeled / 7,365 detected training images of 767 ids):
    # the paper recipe, as for Market-1501 (HA-CNN reports CUHK03 767/700 results, Li et al. 2018 Sec. 4).
    "cuhk03": dict(PAPER),
    "synthetic_pa100k": dict(PAPER, epochs=8, lr=0.06, warmup_epochs=1, lr_milestones=(0.75,)),
    # Video re-id (tracklets of seq_len frames, P x K over tracklets with a
    # batch-hard triplet as the video re-id baselines; unmeasured on MARS here).
    # MARS has over a million frames: the training ones do not fit in memory decoded (30 KB each at 160x64).
    "mars": dict(PAPER, epochs=150, batch_size=32, pk=4, triplet_weight=1.0, cache_images=False),
    # The synthetic video set: the synthetic image recipe, 8 tracklets of 4 frames a step.
    "synthetic_mars": dict(PAPER, epochs=6, batch_size=8, optimizer="adam", lr=0.003, warmup_epochs=1,
                           lr_milestones=(0.75,), precision="auto"),
    "synthetic": dict(
        # Measured (docs/training.md): Adam converges in the few epochs the
        # 10-minute budget allows where SGD from scratch does not; attributes
        # use the balanced weighting (mA 0.708 -> 0.752 at 4 epochs over
        # DeepMAR's) and global max pooling in HAT-CNN's attribute network
        # (+6 points at 7 epochs over GAP); bf16 where the CPU runs it
        # natively (HAT-CNN step 0.55x the float32 CPU time) buys the epochs.
        PAPER, epochs=7, batch_size=32, optimizer="adam", lr=0.003, warmup_epochs=1, lr_milestones=(0.75,),
        attribute_weighting="balanced", attribute_pooling="max", precision="auto", attribute_warmup=0.57,
    ),
}


@dataclasses.dataclass
class TrainConfig:
    model: str = "hatcnn"
    dataset: str = "synthetic"
    data_dir: str | None = None
    out_dir: str | None = None
    epochs: int = 8
    batch_size: int = 32
    lr: float = 0.03
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "multistep"  # multistep (warm-up, x lr_decay at lr_milestones), cosine, onecycle
    lr_milestones: tuple = (0.5, 0.75)  # fractions of the run (multistep)
    lr_decay: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.1
    triplet_weight: float = 0.0
    triplet_margin: float = 0.3
    pk: int = 0  # K images per identity in a batch (P x K sampling); 0 = random batches
    attribute_weight: float = 1.0
    attribute_weighting: str = "auto"  # auto: DeepMAR ratio weighting for attribute-only datasets; balanced: 1/(2r)
    attribute_pooling: str = "avg"  # a model option flag (hatcnn: avg, the released GAP; max; avgmax)
    stagewise: bool = False  # models with stages (hpnet: M-net, then AF-net, then fusion; training.stages)
    attribute_warmup: float = 0.0  # share of the epochs for the spec's attribute warm-up (hatcnn; training.stages)
    stage_epochs: list = dataclasses.field(default_factory=list)  # epochs per stage; [] = split --epochs
    strategy: str = "auto"
    precision: str = "float32"  # Keras dtype policy of the model during training
    seed: int = 0
    checkpoint_every: int = 200  # steps; also at each epoch end
    keep_checkpoints: int = 2
    max_steps: int = 0  # stop after this many global steps (0 = no limit)
    time_budget: float = 0.0  # seconds of training: epochs and steps planned from measured speed (training.budget)
    steps_per_epoch: int = 0  # 0 = len(train) // batch_size
    input_height: int = 0  # 0 = the model's default
    input_width: int = 0
    cache_images: bool = True  # decoded, resized training images kept in memory
    eval_batch_size: int = 64
    evaluate: bool = True
    synthetic_ids: int = 0  # train and test identities each (synthetic_pa100k: train images); 0 = default
    synthetic_cameras: int = 0  # 0 = the generator's default
    synthetic_max_images: int = 0  # images per identity and camera, at most (0 = default)
    dataset_option: tuple = ()  # "key=value" reader options (--dataset_option, repeatable)
    test_dataset: str = ""  # multi-dataset runs (--dataset a+b): the part evaluated on ("" = the first)
    seq_len: int = 4  # video datasets: frames per training tracklet
    temporal_pooling: str = "avg"  # video datasets: the video model's pooling (TEMPORAL_POOLINGS)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["lr_milestones"] = list(self.lr_milestones)
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in names})
        cfg.lr_milestones = tuple(cfg.lr_milestones)
        cfg.dataset_option = tuple(cfg.dataset_option or ())
        return cfg

    @property
    def reader_options(self) -> dict:
        """--dataset_option key=value pairs as reader keyword options: a value is
        read as JSON where it parses (2, 0.5, true, ["a","b"]), else as a string."""
        out = {}
        for item in self.dataset_option or ():
            key, sep, text = str(item).partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--dataset_option={item!r}: expected key=value, e.g. split=identity")
            try:
                value = json.loads(text)
            except ValueError:
                value = text
            out[key.strip()] = value
        return out

    @property
    def dataset_parts(self) -> list:
        """(name, data dir or None) of each dataset: one, or the parts of
        --dataset a+b with --data_dir A,B (keras_hpnet.datasets.combine)."""
        try:
            return split_roots(self.dataset, self.data_dir)
        except ValueError as e:
            raise ConfigError(f"--dataset={self.dataset} --data_dir={self.data_dir}: {e}") from None

    def part_reader_options(self) -> dict:
        """{dataset: reader options} of a multi-dataset run: --dataset_option
        NAME.key=value for one dataset, key=value for every dataset whose reader has it."""
        try:
            return route_options(self.dataset, self.reader_options, reader_options)
        except ValueError as e:
            raise ConfigError(f"--dataset_option {e}") from None

    @property
    def synthetic_sizes(self) -> dict:
        """Size options of keras_hpnet.datasets.load("synthetic"/"synthetic_pa100k"/"synthetic_mars")
        (synthetic_mars: --synthetic_max_images is tracklets per identity and camera)."""
        sizes = {}
        if self.dataset == "synthetic_pa100k":
            if self.synthetic_ids:
                sizes.update(num_train=self.synthetic_ids, num_val=max(1, self.synthetic_ids // 8),
                             num_test=max(1, self.synthetic_ids // 8))
        else:
            if self.synthetic_ids:
                sizes.update(num_train_ids=self.synthetic_ids, num_test_ids=self.synthetic_ids)
            if self.synthetic_max_images and self.dataset == "synthetic_mars":
                sizes.update(max_tracklets=self.synthetic_max_images, min_tracklets=1)
            elif self.synthetic_max_images:
                sizes.update(max_images=self.synthetic_max_images, min_images=min(2, self.synthetic_max_images))
        if self.synthetic_cameras:
            sizes["num_cameras"] = self.synthetic_cameras
            most = {"synthetic": 5, "synthetic_mars": 4}.get(self.dataset)
            if most:
                sizes.update(max_cameras=min(most, self.synthetic_cameras), min_cameras=min(2, self.synthetic_cameras))
        return sizes


def resolve_config(overrides: dict) -> TrainConfig:
    """Defaults < dataset preset < explicitly given values (None = not given)."""
    dataset = overrides.get("dataset") or "synthetic"
    try:
        parts = dataset_names(dataset)
    except ValueError as e:
        raise ConfigError(f"--dataset: {e}") from None
    for part in parts:
        _choice("dataset", part, DATASETS)
    # a reader without a preset trains with the paper recipe; several datasets: the first one's preset
    values = dict(PRESETS.get(parts[0], PAPER))
    model = overrides.get("model") or TrainConfig.model
    if model in available_models():  # a preset's model options apply to the models that have them
        for name in set(flag_options()) - set(spec(model).option_names):
            values.pop(name, None)
        if not spec(model).attribute_warmup:
            values.pop("attribute_warmup", None)
    if overrides.get("time_budget"):
        planned = [f"--{k}" for k in ("epochs", "steps_per_epoch", "stage_epochs") if overrides.get(k)]
        if planned:
            raise ConfigError(f"--time_budget plans {', '.join(planned)} from the measured speed: "
                              f"give one or the other")
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["dataset"] = dataset
    if values.get("stage_epochs"):
        try:
            values["stage_epochs"] = [int(e) for e in values["stage_epochs"]]
        except ValueError as e:
            raise ConfigError(f"--stage_epochs={','.join(map(str, values['stage_epochs']))}: "
                              f"epochs must be integers ({e})") from None
        if overrides.get("epochs") is None:
            values["epochs"] = sum(values["stage_epochs"])  # the stages say how long the run is
    if "lr_milestones" in values:
        values["lr_milestones"] = tuple(float(m) for m in values["lr_milestones"])
    cfg = TrainConfig.from_dict(values)
    if cfg.attribute_warmup and cfg.epochs < 2 and overrides.get("attribute_warmup") is None:
        cfg.attribute_warmup = 0.0  # the preset's warm-up needs a joint epoch after it
    stages, shares = stage_plan(cfg)
    if stages and not cfg.stage_epochs and cfg.epochs >= len(stages):
        from training.stages import split_epochs

        cfg.stage_epochs = split_epochs(cfg.epochs, shares)
    if cfg.precision == "auto":
        cfg.precision = "mixed_bfloat16" if cpu_has_native_bfloat16() else "float32"
    if not cfg.out_dir:
        cfg.out_dir = os.path.join("runs", f"{cfg.model}-{cfg.dataset}")
    return cfg


def stage_plan(cfg: TrainConfig) -> tuple:
    """(stage specs, their epoch shares) of the run: the model's stages with
    --stagewise, its attribute warm-up with --attribute_warmup (the flag is the
    first stage's share), else ((), ()) for end-to-end training."""
    if cfg.model not in available_models():
        return (), ()
    model_spec = spec(cfg.model)
    if cfg.stagewise and model_spec.stages:
        return model_spec.stages, [s.share for s in model_spec.stages]
    if cfg.attribute_warmup and model_spec.attribute_warmup and not cfg.stagewise:
        return model_spec.attribute_warmup, [cfg.attribute_warmup, 1.0 - cfg.attribute_warmup]
    return (), ()


def _choice(name, value, allowed):
    if value not in allowed:
        raise ConfigError(f"--{name}={value!r}: must be one of {', '.join(allowed)}")


def validate_config(cfg: TrainConfig) -> None:
    """Cheap checks of every flag and of the data directory (no TensorFlow)."""
    _choice("model", cfg.model, available_models())
    parts = cfg.dataset_parts
    for name, _ in parts:
        _choice("dataset", name, DATASETS)
    _choice("strategy", cfg.strategy, STRATEGIES)
    _choice("optimizer", cfg.optimizer, OPTIMIZERS)
    _choice("precision", cfg.precision, PRECISIONS)
    _choice("attribute_weighting", cfg.attribute_weighting, ATTRIBUTE_WEIGHTINGS)
    _choice("lr_schedule", cfg.lr_schedule, LR_SCHEDULES)
    _check_video_flags(cfg)
    if len(parts) > 1:
        cfg.part_reader_options()  # every option goes to some dataset
        if cfg.test_dataset and cfg.test_dataset not in [n for n, _ in parts]:
            raise ConfigError(f"--test_dataset={cfg.test_dataset}: not one of --dataset={cfg.dataset}")
    else:
        if cfg.test_dataset and cfg.test_dataset != cfg.dataset:
            raise ConfigError(f"--test_dataset={cfg.test_dataset}: needs several datasets (--dataset a+b)")
        known = reader_options(cfg.dataset)
        for key in cfg.reader_options:
            if key not in known:
                raise ConfigError(f"--dataset_option {key}=...: the {cfg.dataset} reader has no option {key!r} "
                                  f"(options: {', '.join(sorted(known)) or 'none'})")
    model_spec = spec(cfg.model)
    _check_model_flags(cfg, model_spec)
    _check_stages(cfg, model_spec)
    positive = ("epochs", "batch_size", "eval_batch_size", "checkpoint_every", "keep_checkpoints")
    for name in positive:
        if int(getattr(cfg, name)) < 1:
            raise ConfigError(f"--{name}={getattr(cfg, name)}: must be >= 1")
    non_negative = ("max_steps", "steps_per_epoch", "input_height", "input_width", "pk",
                    "warmup_epochs", "synthetic_ids", "synthetic_cameras", "synthetic_max_images",
                    "triplet_weight", "attribute_weight", "weight_decay", "momentum", "triplet_margin",
                    "time_budget")
    for name in non_negative:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"--{name}={getattr(cfg, name)}: must be >= 0")
    if not cfg.lr > 0:
        raise ConfigError(f"--lr={cfg.lr}: must be > 0")
    if not 0 <= cfg.label_smoothing < 1:
        raise ConfigError(f"--label_smoothing={cfg.label_smoothing}: must be in [0, 1)")
    if not 0 < cfg.lr_decay <= 1:
        raise ConfigError(f"--lr_decay={cfg.lr_decay}: must be in (0, 1]")
    if any(not 0 < m < 1 for m in cfg.lr_milestones) or list(cfg.lr_milestones) != sorted(cfg.lr_milestones):
        raise ConfigError(f"--lr_milestones={list(cfg.lr_milestones)}: increasing fractions of the run in (0, 1)")
    if bool(cfg.input_height) != bool(cfg.input_width):
        raise ConfigError("--input_height and --input_width must be given together")
    try:
        model_spec.input_size((cfg.input_height, cfg.input_width) if cfg.input_height else None)
    except ValueError as e:
        raise ConfigError(f"--input_height/--input_width: {e}") from None
    if cfg.pk:
        if cfg.pk < 2:
            raise ConfigError(f"--pk={cfg.pk}: K images per identity must be >= 2 (or 0 for random batches)")
        if cfg.batch_size % cfg.pk:
            raise ConfigError(f"--pk={cfg.pk}: must divide --batch_size={cfg.batch_size}")
    if cfg.triplet_weight > 0 and not cfg.pk:
        raise ConfigError("--triplet_weight > 0 needs P x K batches: set --pk (e.g. 4)")
    if cfg.dataset in ("pa100k", "synthetic_pa100k") and (cfg.triplet_weight > 0 or cfg.pk):
        raise ConfigError(f"--triplet_weight/--pk: {cfg.dataset} has no identities")
    if cfg.strategy == "multi_worker" and not os.environ.get("TF_CONFIG"):
        raise ConfigError("--strategy=multi_worker needs the TF_CONFIG environment variable (cluster and task)")
    if cfg.synthetic_cameras and not 2 <= cfg.synthetic_cameras <= 9:
        raise ConfigError(f"--synthetic_cameras={cfg.synthetic_cameras}: must be in 2..9")
    for name, data_dir in parts:
        flag = f"--data_dir={data_dir}" + (f" (for {name})" if len(parts) > 1 else "")
        if name in GENERATED:
            if data_dir and os.path.exists(data_dir) and not os.path.isdir(data_dir):
                raise ConfigError(f"{flag}: exists and is not a directory")
        else:
            if not data_dir:
                raise ConfigError(f"--data_dir is required for --dataset={name}"
                                  + (" (--data_dir A,B: one per dataset)" if len(parts) > 1 else ""))
            if not os.path.isdir(data_dir):
                raise ConfigError(f"{flag}: no such directory")
    if os.path.exists(cfg.out_dir) and not os.path.isdir(cfg.out_dir):
        raise ConfigError(f"--out_dir={cfg.out_dir}: exists and is not a directory")


def _check_video_flags(cfg: TrainConfig) -> None:
    """--seq_len / --temporal_pooling: valid, and set only for a video dataset."""
    _choice("temporal_pooling", cfg.temporal_pooling, TEMPORAL_POOLINGS)
    if int(cfg.seq_len) < 1:
        raise ConfigError(f"--seq_len={cfg.seq_len}: must be >= 1")
    defaults = TrainConfig()
    if cfg.dataset in VIDEO_DATASETS and (cfg.stagewise or cfg.attribute_warmup):
        # VideoModel does not forward the stage switches
        flag = "--stagewise" if cfg.stagewise else f"--attribute_warmup={cfg.attribute_warmup:g}"
        raise ConfigError(f"{flag}: training in stages is not offered for video datasets "
                          f"(--dataset={cfg.dataset}); train the video model end to end")
    if cfg.dataset not in VIDEO_DATASETS:
        for name in ("seq_len", "temporal_pooling"):
            if getattr(cfg, name) != getattr(defaults, name):
                raise ConfigError(f"--{name}={getattr(cfg, name)}: only for video datasets "
                                  f"({', '.join(VIDEO_DATASETS)}); --dataset={cfg.dataset} is an image dataset")


def _check_model_flags(cfg: TrainConfig, model_spec) -> None:
    """The model option flags (the specs' options with a `feature`): allowed
    values, and set only for a model that has the option."""
    for name, option in flag_options().items():
        value = getattr(cfg, name)
        if option.choices is not None:
            _choice(name, value, option.choices)
        if name not in model_spec.option_names and value != option.default:
            having = [m for m in available_models() if name in spec(m).option_names]
            raise ConfigError(f"--{name}={value}: only {', '.join(having)} {'has' if len(having) == 1 else 'have'} "
                              f"{option.feature} (--model={cfg.model})")


def _check_stages(cfg: TrainConfig, model_spec) -> None:
    """--stagewise needs a model with stages (its spec's); --stage_epochs one value per stage."""
    if cfg.stagewise and not model_spec.stages:
        staged = [spec(m) for m in available_models() if spec(m).stages]
        described = "; ".join(f"{s.title or s.name}'s ({', '.join(st.name for st in s.stages)})" for s in staged)
        raise ConfigError(f"--stagewise: stage-wise training is {described or 'not offered by any model'}; "
                          f"--model={cfg.model} trains end to end")
    if not 0 <= cfg.attribute_warmup < 1:
        raise ConfigError(f"--attribute_warmup={cfg.attribute_warmup:g}: a share of the epochs, in [0, 1)")
    if cfg.attribute_warmup and not model_spec.attribute_warmup:
        having = [spec(m).title or m for m in available_models() if spec(m).attribute_warmup]
        raise ConfigError(f"--attribute_warmup={cfg.attribute_warmup:g}: only {', '.join(having) or 'no model'} "
                          f"{'has' if len(having) == 1 else 'have'} a separate attribute network to warm up "
                          f"(--model={cfg.model})")
    if cfg.attribute_warmup and cfg.stagewise:
        raise ConfigError(f"--attribute_warmup={cfg.attribute_warmup:g} and --stagewise: one staged recipe or "
                          f"the other")
    stages, _ = stage_plan(cfg)
    if cfg.stage_epochs and not stages:
        raise ConfigError("--stage_epochs needs --stagewise or --attribute_warmup")
    if stages:
        names = [st.name for st in stages]
        if len(cfg.stage_epochs) != len(names) or min(cfg.stage_epochs) < 1:
            raise ConfigError(f"--stage_epochs={','.join(map(str, cfg.stage_epochs)) or '(from --epochs)'}: "
                              f"{len(names)} stages ({', '.join(names)}) of at least one epoch each"
                              + ("" if cfg.stage_epochs else f"; --epochs={cfg.epochs} is too short"))
        if sum(cfg.stage_epochs) != cfg.epochs:
            raise ConfigError(f"--stage_epochs={','.join(map(str, cfg.stage_epochs))} sum to "
                              f"{sum(cfg.stage_epochs)} epochs, --epochs={cfg.epochs}")

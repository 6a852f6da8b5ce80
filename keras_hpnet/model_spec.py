"""What a model tells the rest of the code about itself (docs/models.md "Adding a model").

A :class:`ModelSpec` is a small frozen record: the default input shape and
whether it is fixed, the keyword options with their defaults and allowed
values, whether attributes are needed, whether the ranking feature ends with
the attribute part, and the training stages, if any. Config validation
(`training.config`) and training (`training.fit`) read the spec; they never
compare model names. This module imports neither TensorFlow nor Keras (it
sits outside `keras_hpnet.models`, whose import loads them): the spec of a
model is known before its class is imported (the class is named by
``builder``, "module:Class", and imported by :meth:`ModelSpec.model_class`).
The built-in networks register in `keras_hpnet.model_catalog`.

    spec("hatcnn").options_with_defaults()    # {"attribute_pooling": "avg", ...}
    register(ModelSpec(name="mynet", builder="my_pkg.mynet:MyNet", ...))
"""

from __future__ import annotations

import dataclasses
import importlib

# How a model uses attribute labels.
ATTRIBUTES = ("none", "optional", "required")


@dataclasses.dataclass(frozen=True)
class Option:
    """One keyword option of a model's constructor.

    `choices`: the allowed values (None = any value the constructor accepts).
    `feature`: set for options that `training.fit` exposes as a flag of the
    same name (a `training.config.TrainConfig` field): what the option
    configures ("an attribute network"), named in the error for a model
    without it; `help` the flag's help.
    """

    name: str
    default: object
    choices: tuple | None = None
    feature: str = ""
    help: str = ""

    def check(self, value, source: str) -> None:
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{source}={value!r}: must be one of {', '.join(map(str, self.choices))}")


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One training stage (training.stages): the model parts it trains (the
    model's ``<part>_layers``; the others are fixed), the model switches it
    sets (``(attribute, value)`` pairs of the model's ``STAGE_SWITCHES``, the
    others keep their defaults), its default share of the run's epochs and a
    note for the log ("AF-net off")."""

    name: str
    trains: tuple
    switches: tuple = ()
    share: float = 0.0
    note: str = ""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Self-description of one registered network.

    name: the registry name (`build_model(name)`, `--model`).
    builder: the model class, or "module:Class" (imported on first use).
    default_input_shape: (H, W, 3) used when no input shape is given.
    fixed_input_size: True when the network takes only its default size.
    options: the constructor's keyword options (`Option`).
    attributes: "none" (no attribute head: attribute labels are not used),
        "optional" or "required" (needs a dataset with attribute labels).
    embedding_ends_with_attributes: the ranking feature's last
        `num_attributes` dims are the attribute part (HAT-CNN), so evaluation
        reports ranking without it too.
    stages: the stage-wise training recipe (empty = end to end only).
    stage_parts: the parts that stages train or fix (the model's
        ``<part>_layers``), for `stages` and `attribute_warmup`.
    attribute_warmup: the two stages of ``--attribute_warmup`` (HAT-CNN: the
        separate attribute network alone at half resolution, then everything;
        docs/training.md), empty when the model has no such warm-up.
    title: the paper's name of the network, for messages ("HP-Net").
    summary: one line for `--help` and docs.
    """

    name: str
    builder: object
    default_input_shape: tuple
    fixed_input_size: bool = False
    options: tuple = ()
    attributes: str = "optional"
    embedding_ends_with_attributes: bool = False
    stages: tuple = ()
    stage_parts: tuple = ()
    attribute_warmup: tuple = ()
    title: str = ""
    summary: str = ""

    def __post_init__(self):
        if self.attributes not in ATTRIBUTES:
            raise ValueError(f"ModelSpec {self.name!r}: attributes must be one of {ATTRIBUTES}, "
                             f"got {self.attributes!r}")
        shape = tuple(self.default_input_shape)
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"ModelSpec {self.name!r}: default_input_shape must be (H, W, 3), got {shape!r}")

    @property
    def default_input_size(self) -> tuple:
        """(H, W) of the default input."""
        return tuple(self.default_input_shape[:2])

    @property
    def option_names(self) -> tuple:
        return tuple(o.name for o in self.options)

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

    def options_with_defaults(self, **given) -> dict:
        """Every option with its value (`given` over the defaults), checked:
        ValueError naming an unknown option or a value not allowed."""
        unknown = sorted(set(given) - set(self.option_names))
        if unknown:
            raise ValueError(f"{self.name}: unknown option(s) {', '.join(unknown)}; "
                             f"accepted: {', '.join(sorted(self.option_names)) or 'none'}")
        values = {}
        for o in self.options:
            value = given.get(o.name, o.default)
            o.check(value, f"{self.name}: {o.name}")
            values[o.name] = value
        return values

    def input_size(self, requested=None) -> tuple:
        """(H, W) for a requested (H, W) or None (the default); ValueError when
        the size is fixed and another one is asked for."""
        if not requested:
            return self.default_input_size
        size = tuple(int(v) for v in requested)
        if self.fixed_input_size and size != self.default_input_size:
            h, w = self.default_input_size
            raise ValueError(f"{self.name} has a fixed {h}x{w} input")
        return size

    def model_class(self):
        """The Keras model class (imports it: TensorFlow)."""
        if not isinstance(self.builder, str):
            return self.builder
        module, _, cls = self.builder.partition(":")
        return getattr(importlib.import_module(module), cls)


_SPECS: dict = {}


def register(model_spec: ModelSpec) -> ModelSpec:
    """Add a network to the registry (`build_model`, `--model`); returns it."""
    if not isinstance(model_spec, ModelSpec):
        raise TypeError(f"register() takes a ModelSpec, got {type(model_spec).__name__}")
    _SPECS[model_spec.name] = model_spec
    return model_spec


def unregister(name: str) -> None:
    """Remove a registered network (tests that register a throwaway model)."""
    _SPECS.pop(name, None)


def _registry() -> dict:
    from keras_hpnet import model_catalog  # noqa: F401  (registers the built-in networks)

    return _SPECS


def available_models() -> list:
    """Names accepted by `build_model`, sorted."""
    return sorted(_registry())


def flag_options() -> dict:
    """{name: Option} of the options `training.fit` exposes as flags (those with a
    `feature`), over all registered networks; the first spec declaring a name wins."""
    found = {}
    for model_spec in (_registry()[n] for n in available_models()):
        for o in model_spec.options:
            if o.feature:
                found.setdefault(o.name, o)
    return found


def spec(name) -> ModelSpec:
    """The spec of a registered network; ValueError listing the names for an unknown one."""
    specs = _registry()
    key = str(name).lower()
    if key not in specs:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    return specs[key]

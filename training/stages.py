"""Training in stages: HydraPlus-Net's stage-wise recipe and HAT-CNN's attribute warm-up.

The paper trains HP-Net in stages rather than end to end: first the main net
(M-net) alone, then the attentive feature net (AF-net, the MDA modules) on
the fixed M-net, then the fusion of both. ``python -m training.fit --model
hpnet --stagewise`` runs the three stages in one run directory:

====== ================================ ==================================
stage  trains                           AF-net
====== ================================ ==================================
mnet   M-net + fusion FC + heads        off (its part of the feature is 0)
afnet  AF-net + fusion FC + heads       on, M-net fixed
fusion fusion FC + heads                on, M-net and AF-net fixed
====== ================================ ==================================

HAT-CNN's attribute warm-up (``--attribute_warmup SHARE``, its spec's
``attribute_warmup``) is two stages of the same kind: ``attributes`` trains
the separate attribute network alone on half-resolution images (HA-CNN is
fixed and not run), ``joint`` trains both at full resolution
(docs/training.md "HAT-CNN: the attribute warm-up").

A fixed part also keeps its BatchNorm statistics (Keras runs a non-trainable
BatchNormalization in inference mode). The stage of a step follows from its
epoch, so a resumed run continues in the right stage; the learning-rate
schedule restarts at each stage (``training.schedule.StageRestarts``).
"""

from __future__ import annotations

import dataclasses

# The stages are the model's (its spec's `stages` / `attribute_warmup`,
# keras_hpnet.model_catalog) and so are the switches (the model class's
# STAGE_SWITCHES): this module only turns them and their epochs into per-epoch stages.


@dataclasses.dataclass(frozen=True)
class TrainingStage:
    """One stage: the model parts it trains (of ``parts``, the model's
    ``<part>_layers``; the others are fixed), the model switches it sets
    (``(attribute, value)`` pairs of the model's ``STAGE_SWITCHES``; the
    others keep their defaults) and its epochs ``[first_epoch, first_epoch +
    epochs)`` (0-based)."""

    name: str
    first_epoch: int
    epochs: int
    trains: tuple
    parts: tuple
    switches: tuple = ()
    note: str = ""

    def apply(self, model) -> None:
        """Freeze every part this stage does not train; set its switches."""
        _set_parts(model, self.parts, self.trains, dict(self.switches))

    def release(self, model) -> None:
        """Back to the plain model: every part trainable, every switch at its default."""
        _set_parts(model, self.parts, self.parts, {})

    def describe(self) -> str:
        fixed = [p for p in self.parts if p not in self.trains]
        text = f"{self.name}: trains {' + '.join(self.trains)}"
        if fixed:
            text += f", {' + '.join(fixed)} fixed"
        if self.note:
            text += f", {self.note}"
        return text


def _set_parts(model, parts, trains, switches):
    defaults = getattr(model, "STAGE_SWITCHES", {})
    unknown = sorted(set(switches) - set(defaults))
    if unknown:
        raise ValueError(f"{model.name}: no stage switch {', '.join(unknown)} (has: {', '.join(defaults) or 'none'})")
    for part in parts:
        for layer in getattr(model, f"{part}_layers"):
            layer.trainable = part in trains
    for name, default in defaults.items():
        setattr(model, name, switches.get(name, default))


def split_epochs(epochs: int, shares) -> list[int]:
    """The default epochs per stage for a run of ``epochs`` (>= the number of
    stages), split by the stages' ``shares`` (rounded; every stage >= 1 epoch)."""
    if epochs < len(shares):
        raise ValueError(f"stage-wise training needs at least {len(shares)} epochs, got {epochs}")
    first = [max(1, round(f * epochs)) for f in shares[:-1]]
    while sum(first) > epochs - 1:  # the last stage keeps one epoch at least
        first[first.index(max(first))] -= 1
    return first + [epochs - sum(first)]


def model_stages(stage_specs, stage_epochs, parts) -> list[TrainingStage]:
    """The training stages ``stage_specs`` (a spec's ``stages`` or
    ``attribute_warmup``) of a model with ``parts``, with the given epochs each."""
    stage_epochs = [int(e) for e in stage_epochs]
    names = [s.name for s in stage_specs]
    if len(stage_epochs) != len(names) or min(stage_epochs) < 1:
        raise ValueError(f"stage epochs must be {len(names)} integers >= 1 "
                         f"({', '.join(names)}), got {stage_epochs}")
    stages, first = [], 0
    for s, epochs in zip(stage_specs, stage_epochs):
        stages.append(TrainingStage(s.name, first, epochs, tuple(s.trains), tuple(parts), tuple(s.switches), s.note))
        first += epochs
    return stages


def stage_at(stages, epoch: int) -> TrainingStage:
    """The stage that trains ``epoch`` (0-based; past the end: the last one)."""
    current = stages[0]
    for stage in stages:
        if epoch >= stage.first_epoch:
            current = stage
    return current

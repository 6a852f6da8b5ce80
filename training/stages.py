"""Stage-wise training of HydraPlus-Net (Liu et al. 2017).

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

A fixed part also keeps its BatchNorm statistics (Keras runs a non-trainable
BatchNormalization in inference mode). The stage of a step follows from its
epoch, so a resumed run continues in the right stage; the learning-rate
schedule restarts at each stage (``training.schedule.StageRestarts``).
"""

from __future__ import annotations

import dataclasses

# The stages are the model's (its spec's `stages`, keras_hpnet.model_catalog):
# this module only turns them and their epoch shares into per-epoch stages.


@dataclasses.dataclass(frozen=True)
class TrainingStage:
    """One stage: the model parts it trains (``main_net``, ``af_net``,
    ``fusion``: the model's ``<part>_layers``), whether the AF-net runs, and
    its epochs ``[first_epoch, first_epoch + epochs)`` (0-based)."""

    name: str
    first_epoch: int
    epochs: int
    trains: tuple
    af_net: bool = True

    PARTS = ("main_net", "af_net", "fusion")

    def apply(self, model) -> None:
        """Freeze every part this stage does not train; switch the AF-net."""
        _set_parts(model, self.trains, self.af_net)

    @staticmethod
    def release(model) -> None:
        """Back to the plain model: every part trainable, the AF-net on."""
        _set_parts(model, TrainingStage.PARTS, True)

    def describe(self) -> str:
        fixed = [p for p in self.PARTS if p not in self.trains and (p != "af_net" or self.af_net)]
        text = f"{self.name}: trains {' + '.join(self.trains)}"
        if fixed:
            text += f", {' + '.join(fixed)} fixed"
        if not self.af_net:
            text += ", AF-net off"
        return text


def _set_parts(model, trains, af_net):
    for part in TrainingStage.PARTS:
        for layer in getattr(model, f"{part}_layers"):
            layer.trainable = part in trains
    model.af_net_enabled = af_net


def split_epochs(epochs: int, shares) -> list[int]:
    """The default epochs per stage for a run of ``epochs`` (>= the number of
    stages), split by the stages' ``shares`` (rounded; every stage >= 1 epoch)."""
    if epochs < len(shares):
        raise ValueError(f"stage-wise training needs at least {len(shares)} epochs, got {epochs}")
    first = [max(1, round(f * epochs)) for f in shares[:-1]]
    while sum(first) > epochs - 1:  # the last stage keeps one epoch at least
        first[first.index(max(first))] -= 1
    return first + [epochs - sum(first)]


def model_stages(stage_specs, stage_epochs) -> list[TrainingStage]:
    """The training stages of a model (its spec's ``stages``) with the given epochs each."""
    stage_epochs = [int(e) for e in stage_epochs]
    names = [s.name for s in stage_specs]
    if len(stage_epochs) != len(names) or min(stage_epochs) < 1:
        raise ValueError(f"stage epochs must be {len(names)} integers >= 1 "
                         f"({', '.join(names)}), got {stage_epochs}")
    stages, first = [], 0
    for s, epochs in zip(stage_specs, stage_epochs):
        stages.append(TrainingStage(s.name, first, epochs, tuple(s.trains), af_net=s.af_net))
        first += epochs
    return stages


def stage_at(stages, epoch: int) -> TrainingStage:
    """The stage that trains ``epoch`` (0-based; past the end: the last one)."""
    current = stages[0]
    for stage in stages:
        if epoch >= stage.first_epoch:
            current = stage
    return current

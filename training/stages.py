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

STAGE_NAMES = ("mnet", "afnet", "fusion")
# Default split of --epochs over the stages (rounded; every stage >= 1 epoch).
DEFAULT_SPLIT = (0.4, 0.4, 0.2)


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


def split_epochs(epochs: int) -> list[int]:
    """The default epochs per stage for a run of ``epochs`` (>= 3)."""
    if epochs < len(STAGE_NAMES):
        raise ValueError(f"stage-wise training needs at least {len(STAGE_NAMES)} epochs, got {epochs}")
    first = [max(1, round(f * epochs)) for f in DEFAULT_SPLIT[:-1]]
    while sum(first) > epochs - 1:  # the fusion stage keeps one epoch at least
        first[first.index(max(first))] -= 1
    return first + [epochs - sum(first)]


def hpnet_stages(stage_epochs) -> list[TrainingStage]:
    """The three HP-Net stages with the given epochs each (M-net, AF-net, fusion)."""
    stage_epochs = [int(e) for e in stage_epochs]
    if len(stage_epochs) != len(STAGE_NAMES) or min(stage_epochs) < 1:
        raise ValueError(f"stage epochs must be {len(STAGE_NAMES)} integers >= 1 "
                         f"({', '.join(STAGE_NAMES)}), got {stage_epochs}")
    trains = {"mnet": ("main_net", "fusion"), "afnet": ("af_net", "fusion"), "fusion": ("fusion",)}
    stages, first = [], 0
    for name, epochs in zip(STAGE_NAMES, stage_epochs):
        stages.append(TrainingStage(name, first, epochs, trains[name], af_net=name != "mnet"))
        first += epochs
    return stages


def stage_at(stages, epoch: int) -> TrainingStage:
    """The stage that trains ``epoch`` (0-based; past the end: the last one)."""
    current = stages[0]
    for stage in stages:
        if epoch >= stage.first_epoch:
            current = stage
    return current

"""Learning-rate schedules (``--lr_schedule``, docs/training.md).

- ``multistep`` (:class:`WarmupMultiStep`): linear warm-up, then multi-step
  decay. The HA-CNN recipe (Li et al. 2018, Sec. 4) multiplies the learning
  rate by 0.1 at epochs 150 and 225 of 300; here the milestones are fractions
  of the run so the same recipe scales to shorter runs.
- ``cosine`` (:class:`WarmupCosine`): linear warm-up, then half a cosine from
  the base rate to ``final_fraction`` of it at the last step (Loshchilov &
  Hutter, SGDR, ICLR 2017, without restarts).
- ``onecycle``: the same class with a long warm-up (30% of the run) that
  starts at base/25 and a cosine down to base/10^4 (Smith & Topin,
  "Super-convergence", 2019, in its cosine form).

Every schedule is a function of the global step only, so a resumed run
continues on the same curve (the optimizer's iteration count is checkpointed).
"""

import math

import keras
from keras import ops

from training.config import LR_SCHEDULES

ONECYCLE = dict(warmup_fraction=0.3, initial_fraction=1 / 25, final_fraction=1e-4)


@keras.saving.register_keras_serializable(package="keras_hpnet")
class WarmupMultiStep(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = base * min(1, (step+1)/warmup_steps) * decay ** #(boundaries <= step)."""

    def __init__(self, base_lr, boundaries=(), decay=0.1, warmup_steps=0):
        self.base_lr = float(base_lr)
        self.boundaries = [int(b) for b in boundaries]
        self.decay = float(decay)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr = ops.convert_to_tensor(self.base_lr, "float32")
        for b in self.boundaries:
            lr = ops.where(step >= b, lr * self.decay, lr)
        if self.warmup_steps > 0:
            lr = lr * ops.minimum(1.0, (step + 1.0) / float(self.warmup_steps))
        return lr

    def get_config(self):
        return {"base_lr": self.base_lr, "boundaries": self.boundaries, "decay": self.decay,
                "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="keras_hpnet")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ``initial_fraction`` x base, then cosine to ``final_fraction`` x base.

    With w = warmup_steps, T = total_steps, f0 = initial_fraction, f1 = final_fraction:
    lr(s) = base * (f0 + (1 - f0) * (s + 1) / w)                          for s < w,
    lr(s) = base * (f1 + (1 - f1) * (1 + cos(pi * p)) / 2), p = min(1, (s - w) / max(1, T - 1 - w))  after,
    so the last step (s = T - 1) runs at f1 x base.
    """

    def __init__(self, base_lr, total_steps, warmup_steps=0, initial_fraction=0.0, final_fraction=0.0):
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.initial_fraction = float(initial_fraction)
        self.final_fraction = float(final_fraction)
        if self.total_steps < 1 or not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(f"WarmupCosine: total_steps >= 1 and 0 <= warmup_steps <= total_steps; got "
                             f"total_steps={self.total_steps}, warmup_steps={self.warmup_steps}")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        w, f0, f1 = float(self.warmup_steps), self.initial_fraction, self.final_fraction
        progress = ops.clip((step - w) / float(max(1, self.total_steps - 1 - self.warmup_steps)), 0.0, 1.0)
        decay = f1 + (1.0 - f1) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        if self.warmup_steps > 0:
            warm = f0 + (1.0 - f0) * ops.minimum(1.0, (step + 1.0) / w)
            decay = ops.where(step < w, warm, decay)
        return self.base_lr * decay

    def get_config(self):
        return {"base_lr": self.base_lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "initial_fraction": self.initial_fraction, "final_fraction": self.final_fraction}


def make_schedule(name, base_lr, total_steps, *, warmup_steps=0, milestones=(), decay=0.1):
    """The ``--lr_schedule`` `name` over `total_steps` steps: ``milestones``
    (fractions of the run) and ``decay`` are multistep's, ``warmup_steps`` the
    linear warm-up of multistep and cosine (onecycle warms up over 30%)."""
    if name == "multistep":
        return WarmupMultiStep(base_lr, [round(m * total_steps) for m in milestones], decay, warmup_steps)
    if name == "cosine":
        return WarmupCosine(base_lr, total_steps, min(warmup_steps, total_steps))
    if name == "onecycle":
        return WarmupCosine(base_lr, total_steps, round(ONECYCLE["warmup_fraction"] * total_steps),
                            ONECYCLE["initial_fraction"], ONECYCLE["final_fraction"])
    raise ValueError(f"lr schedule {name!r}: must be one of {', '.join(LR_SCHEDULES)}")


@keras.saving.register_keras_serializable(package="keras_hpnet")
class StageRestarts(keras.optimizers.schedules.LearningRateSchedule):
    """One schedule per training stage, each restarted at its stage's first step.

    lr(step) = schedules[i](step - starts[i]) for the last i with starts[i] <= step
    (stage-wise training, training.stages: every stage warms up and decays anew).
    """

    def __init__(self, schedules, starts):
        self.schedules = [keras.optimizers.schedules.deserialize(s) if isinstance(s, dict) else s
                          for s in schedules]
        self.starts = [int(s) for s in starts]
        if len(self.schedules) != len(self.starts) or not self.starts or self.starts[0] != 0 \
                or self.starts != sorted(self.starts):
            raise ValueError(f"StageRestarts: one schedule per stage start, starts increasing from 0; "
                             f"got {len(self.schedules)} schedules, starts {self.starts}")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        lr = self.schedules[0](step)
        for schedule, start in zip(self.schedules[1:], self.starts[1:]):
            lr = ops.where(step >= start, schedule(step - start), lr)
        return lr

    def get_config(self):
        return {"schedules": [keras.optimizers.schedules.serialize(s) for s in self.schedules],
                "starts": self.starts}

"""Learning-rate schedule: linear warm-up, then multi-step decay.

The HA-CNN recipe (Li et al. 2018, Sec. 4; docs/training.md) multiplies the learning rate by 0.1 at
epochs 150 and 225 of 300; here the milestones are fractions of the run so the
same recipe scales to shorter runs.
"""

import keras
from keras import ops


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

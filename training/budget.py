"""Training in a time budget: ``python -m training.fit --time_budget 1200``.

The run's length (epochs, steps per epoch and, stage-wise, the epochs of each
stage) is planned from the speed measured on this machine, so "train for 20
minutes" gives the longest schedule of the recipe that fits (docs/training.md
"Training in a time budget"):

1. :func:`measure_speed`: a throw-away copy of the run's model and optimizer
   traces its step function and times ``warm_steps`` more steps (per stage for
   stage-wise models, whose stages differ in speed), and one checkpoint write.
   The run itself then starts from the same initial weights as a run without
   a budget: a budgeted run IS the run of its resolved plan.
2. :func:`plan_budget` (pure): what is left of the budget after what was
   spent (data loading, the probe) and the real run's traces, divided by the
   step time (stages weighted by their epoch shares) and the checkpoint cost.
   An epoch is one pass over the training data, or ``1/min_epochs`` of the
   run when the budget allows fewer passes, so warm-up, milestones and stage
   shares (all counted in epochs) keep their meaning.
3. The plan is recorded in config.json (``time_budget_plan``); a resumed run
   reads it back and does not measure again (:func:`recorded_plan`).

The final evaluation is not counted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time

MIN_EPOCHS = 10  # epochs of a run whose budget allows fewer passes over the data
WARM_STEPS = 5  # steps timed after the trace


@dataclasses.dataclass(frozen=True)
class Speed:
    """Measured costs, seconds: per stage (one entry end to end) the trace
    (first step) and a step after it; one checkpoint write; starting an
    epoch (its input pipeline up to the first batch); building the model."""

    trace_seconds: tuple
    step_seconds: tuple
    checkpoint_seconds: float = 0.0
    epoch_seconds: float = 0.0
    build_seconds: float = 0.0


@dataclasses.dataclass(frozen=True)
class BudgetPlan:
    """The resolved schedule of a budgeted run and the figures it came from."""

    seconds: float
    epochs: int
    steps_per_epoch: int
    stage_epochs: tuple
    total_steps: int
    predicted_seconds: float  # spent + traces + steps + checkpoints
    spent_seconds: float  # before planning (data, probe)
    speed: Speed

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["stage_epochs"] = list(self.stage_epochs)
        d["speed"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["speed"].items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BudgetPlan":
        speed = d["speed"]
        return cls(**{**d, "stage_epochs": tuple(d["stage_epochs"]),
                      "speed": Speed(**{**speed, "trace_seconds": tuple(speed["trace_seconds"]),
                                        "step_seconds": tuple(speed["step_seconds"])})})


class BudgetError(ValueError):
    """The budget cannot hold a run (the message gives the measured costs)."""


def _run_seconds(stage_epochs, steps_per_epoch, speed, checkpoint_every):
    """Seconds of the steps, epoch starts and checkpoints of a run (stages in order, one entry end to end)."""
    steps = [e * steps_per_epoch for e in stage_epochs]
    total = sum(steps)
    checkpoints = sum(stage_epochs) + total // max(1, checkpoint_every)  # epoch ends + periodic
    return (sum(n * t for n, t in zip(steps, speed.step_seconds)) + checkpoints * speed.checkpoint_seconds
            + sum(stage_epochs) * speed.epoch_seconds)


def plan_budget(seconds, *, spent, speed: Speed, data_steps_per_epoch, checkpoint_every, shares=(1.0,),
                min_epochs=MIN_EPOCHS) -> BudgetPlan:
    """The longest run that fits in `seconds`, of which `spent` are gone.

    The real run still pays its traces (one per stage, as measured) and the
    model build; the rest goes to steps (stage ``i`` taking ``shares[i]`` of
    the epochs at ``speed.step_seconds[i]``) and checkpoints (every
    `checkpoint_every` steps and at each epoch end). Epochs are
    ``max(min_epochs, stages, passes that fit)`` long ``steps_per_epoch`` <=
    `data_steps_per_epoch` steps. Raises BudgetError when not even one step
    per stage fits.
    """
    from training.stages import split_epochs

    shares = [float(s) for s in shares]
    if len(shares) != len(speed.step_seconds) or len(shares) != len(speed.trace_seconds):
        raise ValueError(f"plan_budget: {len(shares)} stage shares, {len(speed.step_seconds)} step times, "
                         f"{len(speed.trace_seconds)} trace times")
    fixed = float(spent) + sum(speed.trace_seconds) + speed.build_seconds
    available = float(seconds) - fixed
    share_sum = sum(shares)
    mean_step = sum(s * t for s, t in zip(shares, speed.step_seconds)) / share_sum
    per_step = mean_step + speed.checkpoint_seconds / max(1, checkpoint_every)

    def split(epochs):
        return split_epochs(epochs, [s / share_sum for s in shares]) if len(shares) > 1 else [epochs]

    def fits(epochs, spe):
        return fixed + _run_seconds(split(epochs), spe, speed, checkpoint_every) <= seconds + 1e-9

    steps = int(max(0.0, available) / per_step + 1e-9) if per_step > 0 else 0
    floor = max(min_epochs, len(shares))
    epochs = max(floor, round(steps / data_steps_per_epoch)) if steps >= floor else len(shares)
    spe = max(1, min(data_steps_per_epoch, steps // max(epochs, 1)))
    while not fits(epochs, spe) and spe > 1:  # epoch-end checkpoints and stage rounding
        spe -= 1
    while not fits(epochs, spe) and epochs > len(shares):
        epochs -= 1
    if not fits(epochs, spe):
        raise BudgetError(
            f"--time_budget={seconds:g}: too short for one step per stage; {fixed:.1f} s go to setup and "
            f"the measurement ({spent:.1f} s), the trace of the step ({sum(speed.trace_seconds):.1f} s) and "
            f"the model build ({speed.build_seconds:.1f} s), a step takes "
            f"{', '.join(f'{t:.3f}' for t in speed.step_seconds)} s")
    stage_epochs = split(epochs)
    return BudgetPlan(seconds=float(seconds), epochs=epochs, steps_per_epoch=spe,
                      stage_epochs=tuple(stage_epochs) if len(shares) > 1 else (), total_steps=epochs * spe,
                      predicted_seconds=round(fixed + _run_seconds(stage_epochs, spe, speed, checkpoint_every), 2),
                      spent_seconds=round(float(spent), 2), speed=speed)


def time_steps(step, warm_steps=WARM_STEPS, clock=time.perf_counter):
    """(seconds of the first call, mean seconds of `warm_steps` more) of ``step()``
    (which must block until its step is done)."""
    t0 = clock()
    step()
    t1 = clock()
    for _ in range(warm_steps):
        step()
    t2 = clock()
    return t1 - t0, (t2 - t1) / max(1, warm_steps)


def measure_speed(trainer, stages=None, warm_steps=WARM_STEPS, clock=time.perf_counter, build_seconds=0.0) -> Speed:
    """Trace and time the step of a throw-away `trainer` (training.loop.Trainer,
    no out_dir) under each stage (training.stages) or end to end, and one
    checkpoint write and the start of an epoch (after the first batch, which
    starts the input pipeline and is not timed). Its model is changed: discard it."""
    iterator = trainer.epoch_iterator(0)
    # The first batch starts the input pipeline (and fills the image cache, which
    # the run then reuses): not part of the trace.
    pending = [next(iterator)]

    def step():
        images, labels = pending.pop() if pending else next(iterator)
        float(trainer.step_on_batch(images, labels))  # blocks on the step

    traces, steps = [], []
    for stage in stages or [None]:
        if stage is not None:
            stage.apply(trainer.model)
            trainer.retrace()
        trace, per_step = time_steps(step, warm_steps, clock)
        traces.append(round(trace, 3))
        steps.append(round(per_step, 5))
    t0 = clock()
    next(trainer.epoch_iterator(1))
    epoch = clock() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = clock()
        trainer.checkpoint.write(os.path.join(tmp, "probe"))
        checkpoint = clock() - t0
    return Speed(tuple(traces), tuple(steps), round(checkpoint, 3), round(epoch, 3), round(float(build_seconds), 3))


def recorded_plan(out_dir: str, seconds: float):
    """The BudgetPlan of the run to resume in `out_dir` (checkpoints and
    config.json present), else None. A different budget than the recorded one
    is a BudgetError: the resolved plan is what the checkpoints were made with."""
    from keras_hpnet.runs import CONFIG_FILE

    config_path = os.path.join(out_dir, CONFIG_FILE)
    if not (os.path.exists(os.path.join(out_dir, "checkpoints", "latest.json")) and os.path.exists(config_path)):
        return None
    try:
        with open(config_path, encoding="utf-8") as f:
            recorded = json.load(f).get("time_budget_plan")
    except (OSError, ValueError, AttributeError):
        return None  # fit.check_resumable reports an unusable config.json
    if not recorded:
        return None
    if float(recorded.get("seconds", -1)) != float(seconds):
        raise BudgetError(f"--time_budget={seconds:g}: the run in {out_dir} was planned for "
                          f"--time_budget={recorded.get('seconds')}; resume with that budget (the plan is kept) "
                          f"or use another --out_dir")
    try:
        return BudgetPlan.from_dict(recorded)
    except (KeyError, TypeError) as e:
        raise BudgetError(f"{config_path}: field 'time_budget_plan' is unusable ({e})") from None

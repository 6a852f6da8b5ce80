"""training.schedule: each schedule equals its formula, serializes, and is selected by --lr_schedule."""

import math

import keras
import numpy as np
import pytest

from training.config import ConfigError, resolve_config, validate_config
from training.schedule import ONECYCLE, StageRestarts, WarmupCosine, WarmupMultiStep, make_schedule


def _values(schedule, steps):
    return np.array([float(schedule(s)) for s in steps])


def test_warmup_cosine_is_its_formula():
    base, total, warm = 0.2, 50, 5
    s = WarmupCosine(base, total, warm)
    steps = np.arange(total + 3)
    expected = [base * (k + 1) / warm if k < warm else
                base * 0.5 * (1 + math.cos(math.pi * min(1.0, (k - warm) / (total - 1 - warm)))) for k in steps]
    np.testing.assert_allclose(_values(s, steps), expected, rtol=1e-5, atol=1e-7)
    assert float(s(warm)) == pytest.approx(base) and float(s(total - 1)) == pytest.approx(0.0, abs=1e-7)
    assert float(s(total + 10)) == pytest.approx(0.0, abs=1e-7)  # past the end: the final rate


def test_onecycle_warms_up_from_a_fraction_and_ends_low():
    base, total = 0.1, 100
    s = make_schedule("onecycle", base, total)
    w = round(ONECYCLE["warmup_fraction"] * total)
    f0, f1 = ONECYCLE["initial_fraction"], ONECYCLE["final_fraction"]
    assert isinstance(s, WarmupCosine) and s.warmup_steps == w == 30
    assert float(s(0)) == pytest.approx(base * (f0 + (1 - f0) / w), rel=1e-5)
    assert float(s(w - 1)) == pytest.approx(base, rel=1e-5) and float(s(w)) == pytest.approx(base, rel=1e-5)
    assert float(s(total - 1)) == pytest.approx(base * f1, rel=1e-4)
    v = _values(s, range(total))
    assert (np.diff(v[:w]) > 0).all() and (np.diff(v[w:]) < 0).all()


def test_make_schedule_multistep_and_cosine():
    m = make_schedule("multistep", 0.1, 40, warmup_steps=4, milestones=(0.5, 0.75), decay=0.1)
    assert isinstance(m, WarmupMultiStep) and m.boundaries == [20, 30] and m.warmup_steps == 4
    c = make_schedule("cosine", 0.1, 40, warmup_steps=4)
    assert isinstance(c, WarmupCosine) and (c.total_steps, c.warmup_steps) == (40, 4)
    assert make_schedule("cosine", 0.1, 3, warmup_steps=10).warmup_steps == 3  # never longer than the run
    with pytest.raises(ValueError, match="lr schedule 'step'"):
        make_schedule("step", 0.1, 40)
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosine(0.1, 10, 11)


@pytest.mark.parametrize("schedule", [WarmupCosine(0.05, 30, 3, 0.1, 0.01),
                                      StageRestarts([WarmupCosine(0.05, 10, 2), WarmupMultiStep(0.01, [5])], [0, 10])])
def test_schedules_serialize(schedule):
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert type(again) is type(schedule)
    np.testing.assert_allclose(_values(again, range(25)), _values(schedule, range(25)), rtol=1e-6)


def test_lr_schedule_flag_is_checked_and_reaches_the_optimizer():
    from training import fit

    cfg = resolve_config({"model": "tiny", "lr_schedule": "cosine", "warmup_epochs": 1, "epochs": 4})
    validate_config(cfg)
    opt = fit.make_optimizer(cfg, steps_per_epoch=10)
    s = opt._learning_rate
    assert isinstance(s, WarmupCosine) and (s.total_steps, s.warmup_steps, s.base_lr) == (40, 10, cfg.lr)
    with pytest.raises(ConfigError, match="--lr_schedule='linear'"):
        validate_config(resolve_config({"model": "tiny", "lr_schedule": "linear"}))


def test_lr_schedule_is_recorded_in_the_plan(tmp_path):
    from types import SimpleNamespace

    from keras_hpnet.runs import RunPlan
    from training import fit

    record = SimpleNamespace(attributes=np.zeros(2, np.uint8))
    ds = SimpleNamespace(splits={"train": [record] * 4}, kind="attribute", num_train_pids=0,
                         attribute_names=["hat", "bag"], root=str(tmp_path))
    plan = fit.make_plan(resolve_config({"model": "tiny", "lr_schedule": "onecycle"}), ds, replicas=1,
                         steps_per_epoch=5)
    assert plan.options("schedule")["lr_schedule"] == "onecycle"
    again = RunPlan.from_dict(plan.to_dict())
    assert again.options("schedule")["lr_schedule"] == "onecycle" and not again.differences(plan)
    other = fit.make_plan(resolve_config({"model": "tiny", "lr_schedule": "cosine"}), ds, replicas=1,
                          steps_per_epoch=5)
    assert ("lr_schedule", "onecycle", "cosine") in other.differences(plan)  # resume refuses another schedule

"""training.budget (--time_budget): the plan from measured speed, recorded and kept on resume."""

import json
import os
import subprocess
import sys

import pytest

from training.budget import BudgetError, BudgetPlan, Speed, measure_speed, plan_budget, time_steps
from training.config import ConfigError, resolve_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_plan_fills_the_budget_in_passes_over_the_data():
    speed = Speed(trace_seconds=(5.0,), step_seconds=(0.1,), checkpoint_seconds=0.0, build_seconds=1.0)
    plan = plan_budget(100, spent=10, speed=speed, data_steps_per_epoch=20, checkpoint_every=1000)
    # 100 - 10 spent - 5 trace - 1 build = 84 s = 840 steps of 0.1 s = 42 passes of 20 steps
    assert (plan.epochs, plan.steps_per_epoch, plan.total_steps) == (42, 20, 840)
    assert plan.predicted_seconds == pytest.approx(100.0) and plan.stage_epochs == ()
    # fewer than MIN_EPOCHS passes fit: 10 shorter epochs (warm-up, milestones keep their meaning)
    plan = plan_budget(100, spent=10, speed=speed, data_steps_per_epoch=500, checkpoint_every=1000)
    assert (plan.epochs, plan.steps_per_epoch, plan.total_steps) == (10, 84, 840)


def test_plan_pays_checkpoints_and_epoch_starts():
    speed = Speed(trace_seconds=(5.0,), step_seconds=(0.1,), checkpoint_seconds=0.5, epoch_seconds=0.25)
    plan = plan_budget(100, spent=10, speed=speed, data_steps_per_epoch=20, checkpoint_every=100)
    assert plan.predicted_seconds <= 100
    steps, epochs = plan.total_steps, plan.epochs
    cost = 15 + steps * 0.1 + (epochs + steps // 100) * 0.5 + epochs * 0.25
    assert plan.predicted_seconds == pytest.approx(cost)
    longer = 15 + epochs * (plan.steps_per_epoch + 1) * 0.1 + (epochs + epochs * (plan.steps_per_epoch + 1) // 100) \
        * 0.5 + epochs * 0.25
    assert longer > 100  # one more step per epoch would not fit


def test_stagewise_plan_weights_each_stage_by_its_speed_and_share():
    speed = Speed(trace_seconds=(2.0, 6.0, 1.0), step_seconds=(0.1, 0.3, 0.05))
    plan = plan_budget(600, spent=20, speed=speed, data_steps_per_epoch=50, checkpoint_every=10 ** 6,
                       shares=(0.4, 0.4, 0.2))
    assert sum(plan.stage_epochs) == plan.epochs and len(plan.stage_epochs) == 3
    a, b, c = (e * plan.steps_per_epoch for e in plan.stage_epochs)
    assert plan.predicted_seconds == pytest.approx(29 + a * 0.1 + b * 0.3 + c * 0.05)
    assert plan.predicted_seconds <= 600
    # the mean step (0.4*0.1 + 0.4*0.3 + 0.2*0.05 = 0.17 s) decides: 571 s / 0.17 = 3358 steps, 67 passes
    assert plan.epochs == 67 and plan.total_steps <= 3358


def test_plan_too_short_names_the_costs():
    speed = Speed(trace_seconds=(30.0,), step_seconds=(0.5,))
    with pytest.raises(BudgetError, match=r"--time_budget=20: too short.*trace of the step \(30.0 s\)"):
        plan_budget(20, spent=5, speed=speed, data_steps_per_epoch=10, checkpoint_every=100)


def test_plan_round_trips_through_its_record():
    speed = Speed((1.5, 2.0), (0.01, 0.02), 0.1, 0.2, 0.3)
    plan = plan_budget(60, spent=3, speed=speed, data_steps_per_epoch=7, checkpoint_every=50, shares=(0.5, 0.5))
    again = BudgetPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan


class _Clock:
    """A fake clock: the "steps" advance it."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_time_steps_with_a_fake_clock():
    clock = _Clock()
    costs = iter([7.0, 0.5, 0.5, 0.75, 0.25])

    def step():
        clock.now += next(costs)

    assert time_steps(step, warm_steps=4, clock=clock) == (7.0, 0.5)


def test_measure_speed_times_every_stage():
    clock = _Clock()

    class Stage:
        def __init__(self, trace, step):
            self.trace, self.step = trace, step

        def apply(self, model):
            model["stage"] = self

    class Checkpoint:
        def write(self, path):
            clock.now += 0.4

    class Trainer:
        model = {}
        checkpoint = Checkpoint()
        traced = False

        def epoch_iterator(self, epoch):
            clock.now += 0.2 if epoch else 0.0
            if not epoch:  # the first batch fills the image cache: not in any measured cost
                clock.now += 50.0
            while True:
                yield "images", "labels"

        def retrace(self):
            self.traced = False

        def step_on_batch(self, images, labels):
            stage = self.model["stage"]
            clock.now += stage.step if self.traced else stage.trace
            self.traced = True
            return 0.0

    speed = measure_speed(Trainer(), [Stage(3.0, 0.1), Stage(9.0, 0.25)], warm_steps=4, clock=clock,
                          build_seconds=1.25)
    assert speed == Speed((3.0, 9.0), (0.1, 0.25), 0.4, 0.2, 1.25)


def test_budget_flag_excludes_the_planned_flags():
    with pytest.raises(ConfigError, match="--time_budget plans --epochs"):
        resolve_config({"model": "tiny", "time_budget": 60, "epochs": 3})
    assert resolve_config({"model": "tiny", "time_budget": 60}).time_budget == 60


# -- the CLI ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from test_training_cli import write_csv_dataset

    return write_csv_dataset(tmp_path_factory.mktemp("csvdata"))


def _fit(data_dir, out_dir, *extra):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    env.pop("TF_CONFIG", None)
    args = [sys.executable, "-m", "training.fit", "--model=tiny", "--dataset=custom", f"--data_dir={data_dir}",
            f"--out_dir={out_dir}", "--batch_size=16", "--lr=0.05", "--input_height=64", "--input_width=32",
            "--seed=3", "--lr_schedule=cosine", *extra]
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# 90 s, not 20: on the shared 2-core machine under load 12, TensorFlow's start, the data, the probe and the
# trace of the tiny net took 54 s (a budget that cannot hold them is exit 2, test_plan_too_short_names_the_costs).
BUDGET = 90


def test_cli_budget_plans_records_and_resumes_the_plan(data_dir, tmp_path):
    out = tmp_path / "run"
    first = _fit(data_dir, out, f"--time_budget={BUDGET}", "--max_steps=3")  # cut: the resume finishes the plan
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"Time budget {BUDGET} s:" in first.stdout and "measured: trace" in first.stdout
    config = _read(out / "config.json")
    plan = config["time_budget_plan"]
    assert config["time_budget"] == BUDGET and plan["seconds"] == BUDGET
    assert (config["epochs"], config["steps_per_epoch"]) == (plan["epochs"], plan["steps_per_epoch"])
    assert plan["total_steps"] == plan["epochs"] * plan["steps_per_epoch"] > 3
    assert plan["predicted_seconds"] <= BUDGET and plan["speed"]["step_seconds"][0] > 0
    assert _read(out / "metrics.json")["steps"] == 3

    second = _fit(data_dir, out, f"--time_budget={BUDGET}")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "kept for the resume" in second.stdout and "measured: trace" not in second.stdout
    assert _read(out / "config.json")["time_budget_plan"] == plan  # not measured again
    metrics = _read(out / "metrics.json")
    assert metrics["steps"] == plan["total_steps"] and metrics["resumed_from_step"] == 3  # stops at the plan

    other = _fit(data_dir, out, "--time_budget=30")
    assert other.returncode == 2 and f"planned for --time_budget={BUDGET}" in other.stderr

    clash = _fit(data_dir, tmp_path / "clash", "--time_budget=20", "--epochs=3")
    assert clash.returncode == 2 and "--time_budget plans --epochs" in clash.stderr

"""Learning-rate schedules: the factors against their formulas, the rates a run logs (also across a resume), and
LLb-SGD's ceiling following the schedule."""

from __future__ import annotations

import csv
import math

import pytest
from omegaconf import OmegaConf

from llbbench import run as one_run
from llbbench.commands.preflight import problem
from llbbench.optim.schedules import ScheduleFactor
from llbbench.records.run import run_id
from llbbench.run import loop


def test_the_factors_follow_their_formulas():
    k, per_epoch, total = 0.9, 10, 41
    for step in (0, 1, 7, 10, 25, 40):
        t = step / per_epoch
        assert ScheduleFactor("constant", k, per_epoch, total)(step) == 1.0
        assert ScheduleFactor("inverse_time", k, per_epoch, total)(step) == pytest.approx(1 / (1 + k * t))
        assert ScheduleFactor("exponential", k, per_epoch, total)(step) == pytest.approx(math.exp(-k * t))
    cosine = ScheduleFactor("cosine", k, per_epoch, total)
    assert cosine(0) == 1.0 and cosine(20) == pytest.approx(0.5) and cosine(40) == pytest.approx(0.0, abs=1e-15)
    assert all(cosine(s) > cosine(s + 1) for s in range(40))
    assert ScheduleFactor("cosine", k, 1, 1)(0) == 1.0  # a one-step budget: nothing to anneal


def _logged(run) -> list[tuple[int, float, float, float]]:
    with (run / "steps.csv").open() as f:
        return [(int(r["step"]), float(r["lr"]), float(r["lr_min"]), float(r["lr_max"])) for r in csv.DictReader(f)]


def test_a_resumed_run_logs_the_scheduled_rate_of_every_step_as_an_uninterrupted_one(
    make_config, tmp_path, monkeypatch
):
    overrides = ("optimizer=sgd", "optimizer.lr=0.05", "train.schedule=inverse_time", "train.schedule_k=2.0",
                 "train.log_every=1", "checkpoint_minutes=0.000001")  # fmt: skip
    straight = one_run.run(make_config(*overrides), tmp_path / "a")

    def interrupted(*args, **kwargs):  # the process dies at the end of epoch 1, after a mid-epoch checkpoint
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(loop, "evaluate", interrupted)
        one_run.run(make_config(*overrides), tmp_path / "b")
    resumed = one_run.run(make_config(*overrides), tmp_path / "b")
    assert resumed["resumed_at_steps"] and resumed["model_sha256"] == straight["model_sha256"]

    per_epoch = 15  # 480 training images (4 of 5 folds of 600) in batches of 32
    rows = _logged(tmp_path / "b")
    assert [step for step, *_ in rows] == list(range(1, 2 * per_epoch + 1))
    for step, lr, *_ in rows:  # the rate step `step` used: α0 / (1 + k·t), t = (step − 1) / steps per epoch
        assert lr == pytest.approx(0.05 / (1 + 2.0 * (step - 1) / per_epoch), rel=1e-12)
    assert rows == _logged(tmp_path / "a")


def test_llb_rates_stay_under_a_cosine_ceiling(make_config, tmp_path):
    run = tmp_path / "run"
    one_run.run(make_config("optimizer.lr=0.1", "train.schedule=cosine", "train.log_every=1"), run)
    rows = _logged(run)
    total = rows[-1][0]
    for step, _, _, lr_max in rows:
        ceiling = 0.1 * 0.5 * (1 + math.cos(math.pi * (step - 1) / (total - 1)))
        assert lr_max <= ceiling * (1 + 1e-12) + 1e-18
    assert rows[-1][3] == pytest.approx(0.0, abs=1e-12)  # the last step of the budget: the ceiling reached 0


def test_the_schedule_is_part_of_the_identity_and_checked(make_config):
    def rid(*overrides):
        return run_id(OmegaConf.to_container(make_config(*overrides), resolve=True))

    assert rid() != rid("train.schedule=cosine") != rid("train.schedule=inverse_time")
    assert rid("train.schedule=inverse_time") != rid("train.schedule=inverse_time", "train.schedule_k=0.5")
    assert "train.schedule='linear' is not one of constant | inverse_time | exponential | cosine" in problem(
        make_config("train.schedule=linear")
    )
    assert "train.schedule_k=-1.0 must be a finite number of at least 0.0" in problem(
        make_config("train.schedule_k=-1")
    )

"""`llbbench saddle` (Fig. 8 on a network): what it records, that it is not redone for the same configs, and that
the report draws it and judges claim 7 on it."""

from __future__ import annotations

import json
import math

import pytest

from llbbench.commands import saddle
from llbbench.records.saddle import ANALYTIC_FILE
from llbbench.report import build_report


@pytest.fixture(scope="module")
def measured(cifar_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("saddle")
    overrides = [
        "experiment=fig8_saddle",
        f"dataset.root={cifar_root}",
        f"results_dir={root}",
        "device=cpu",
        "model.width=0.0625",
        "saddle.seeds=2",
        "saddle.steps=6",
        "saddle.probe=64",
        "saddle.snapshot_every=2",
    ]
    return root, overrides, saddle.measure(overrides)


def test_every_optimizer_from_the_same_start_for_every_seed(measured):
    root, _, path = measured
    assert path == root / "fig8_saddle" / "saddle.json"
    record = json.loads(path.read_text())
    assert set(record["escapes"]) == set(saddle.OPTIMIZERS) and record["budget"] == 6 and record["seeds"] == 2
    for name in saddle.OPTIMIZERS:
        losses = record["probe_losses"][name]
        assert len(losses) == 2 and all(len(run) <= 7 for run in losses)
        assert [run[0] for run in losses] == [record["probe_losses"]["sgd"][s][0] for s in range(2)]  # one start
        for run, escape in zip(losses, record["escapes"][name], strict=True):
            bar = 0.9 * run[0]
            first = next((i for i, v in enumerate(run) if v is not None and v <= bar), None)
            assert escape == first
    # next to the zero weights the loss is that of uniform predictions, ln 10
    assert record["probe_losses"]["sgd"][0][0] == pytest.approx(math.log(10), abs=0.01)
    drawn = record["plane"]
    assert len(drawn["axis"]) == saddle.GRID and len(drawn["loss"]) == saddle.GRID
    assert 0 < sum(drawn["explained"]) <= 1 + 1e-6
    for name, points in drawn["paths"].items():
        assert points[0] == [0.0, 0.0] and name not in drawn["left_out"]  # every path starts at the common start
    assert record["rates"]["sgd"] == 0.1 and record["rates"]["adam"] == 0.001  # the configured rates


def test_the_tuned_rates_are_chosen_on_a_seed_of_their_own_by_the_earliest_escape(measured):
    _, _, path = measured
    tuned = json.loads(path.read_text())["tuned"]
    assert tuned["seed"] == 2  # saddle.seeds=2: seeds 0 and 1 are compared, seed 2 tunes
    for name in saddle.OPTIMIZERS:
        grid, steps = tuned["grid"][name], tuned["tuning_steps"][name]
        configured = json.loads(path.read_text())["rates"][name] or 1.0  # Adadelta's null: its preset's 1.0
        assert len(grid) == 5 and grid[2] == pytest.approx(configured)
        assert all(1 <= s <= 7 for s in steps)  # an escape step, or the budget (6) plus one
        assert tuned["rates"][name] == grid[steps.index(min(steps))]  # the earliest escape, ties: the smaller
        assert len(tuned["escapes"][name]) == len(tuned["statuses"][name]) == 2


def test_the_same_configs_are_not_measured_again_and_others_are(measured):
    _, overrides, path = measured
    before = path.stat().st_mtime_ns
    assert saddle.measure(overrides) == path and path.stat().st_mtime_ns == before
    assert saddle.identity([*overrides, "saddle.escape_drop=0.2"]) != saddle.identity(overrides)


def test_the_report_draws_it_and_judges_claim_7_on_it(measured, tmp_path):
    from tests.report.test_report import write_run

    root, _, _ = measured
    write_run(root, "table2_cifar10", "resnet34", "sgd", 0, [2.0, 1.0], 1.5)
    report = build_report([root], out=tmp_path / "report")
    claim = json.loads((report / "claims.json").read_text())[6]
    assert claim["id"] == 7 and claim["verdict"] != "not measured"
    pairs = {"llb<sgd", "llb<nag", "llb<adagrad", "llb<adam", "adam<sgd", "adam<nag", "adam<adagrad"}
    assert set(claim["rows"]) == pairs | {f"tuned:{p}" for p in pairs}  # at configured and at tuned rates
    assert claim["holm_tests"] == 14
    assert (report / "fig8_saddles.png").stat().st_size > 10_000


def test_measure_writes_the_analytic_saddles_beside_it(measured):
    root, _, _ = measured
    record = json.loads((root / "fig8_saddle" / ANALYTIC_FILE).read_text())
    assert record == json.loads(json.dumps(saddle.analytic()))  # the same trajectories, exactly, as JSON


def test_the_analytic_saddles_every_optimizer_without_a_network_from_one_start():
    record = saddle.analytic()
    assert record["left_out"] == ["pathsgd"]  # the one that needs a network
    for problem in ("plain", "badly_scaled"):
        paths = record["paths"][problem]
        assert list(paths) == [n for n in saddle.OPTIMIZERS if n != "pathsgd"]
        for trace in paths.values():
            assert trace[0] == [1.0, 0.01] and 2 <= len(trace) <= record["steps"] + 1
    # SGD on 10 + x² − y² at rate 0.05: x ← 0.9x, y ← 1.1y (the gradient is (2x, −2y))
    sgd = record["paths"]["plain"]["sgd"]
    assert sgd[1] == pytest.approx([0.9, 0.011]) and sgd[2] == pytest.approx([0.81, 0.0121])


def test_saddle_analytic_from_the_command_line_and_the_report_draws_it_alone(tmp_path):
    from tests.conftest import llbbench
    from tests.report.test_report import write_run

    done = llbbench("saddle", "--analytic", "experiment=quickstart", f"results_dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "quickstart" / ANALYTIC_FILE).exists()
    assert not (tmp_path / "quickstart" / "saddle.json").exists()  # the network's measurement is not made
    write_run(tmp_path, "quickstart", "smallcnn", "sgd", 0, [2.0, 1.0], 1.5)
    report = build_report([tmp_path], out=tmp_path / "report")
    assert (report / "fig8_saddles.png").stat().st_size > 10_000
    assert "![Fig. 8](fig8_saddles.png)" in (report / "report.md").read_text()


def test_without_either_file_fig_8_is_not_drawn(tmp_path):
    from tests.report.test_report import write_run

    write_run(tmp_path, "quickstart", "smallcnn", "sgd", 0, [2.0, 1.0], 1.5)
    report = build_report([tmp_path], out=tmp_path / "report")
    assert not (report / "fig8_saddles.png").exists()
    assert "*Fig. 8: no runs to draw it from.*" in (report / "report.md").read_text()

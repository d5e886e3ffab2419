"""The tuning stage: the grid and its winner, edge extension, tuning.json, a second `tune` that trains nothing,
`tuned=true` at the winners on every fold reusing the tuning runs, and the report's tuned tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from llbbench.commands import tune as tuning
from llbbench.config import compose
from llbbench.records.run import SUMMARY_KEYS, RunDir
from llbbench.report import build_report
from tests.conftest import llbbench

TINY = ["experiment=quickstart", "optimizer=sgd", "dataset.subset=100", "dataset.test_subset=50", "cv.folds=2",
        "train.epochs=1", "device=cpu", "model.width=0.25"]  # fmt: skip


def test_the_grid_is_five_rates_spaced_by_sqrt10_around_the_configured_one():
    assert tuning.grid_around(0.1) == pytest.approx([0.01, 0.1 / math.sqrt(10), 0.1, 0.1 * math.sqrt(10), 1.0])
    assert tuning.grid_around(0.1)[2] == 0.1 and tuning.grid_around(0.1)[0] == 0.01  # exact where it can be
    assert tuning.grid_around(0.1, -3, 2)[0] == pytest.approx(0.01 / math.sqrt(10))


def test_the_lowest_loss_wins_diverged_counts_as_infinite_and_ties_go_to_the_smaller_rate():
    grid = [0.01, 0.03, 0.1, 0.3, 1.0]
    assert tuning.best(grid, [2.0, 1.5, 1.7, None, 3.0]) == 1
    assert tuning.best(grid, [2.0, 1.5, 1.5, 1.5, None]) == 1
    assert tuning.best(grid, [None] * 5) == 0


def _fake_launch(loss_of_rate, calls):
    """Stands in for `llbbench run -m`: writes each run's summary with a validation loss that depends on its rate."""

    def launch(work, hydra_overrides, written_is_configured):
        for entry, rates in work:
            calls.append((entry.optimizer, list(rates)))
            for rate in rates:
                path = tuning.run_dir(entry.rate_overrides(rate))
                path.mkdir(parents=True, exist_ok=True)
                loss = loss_of_rate(rate) if callable(loss_of_rate) else loss_of_rate[entry.optimizer](rate)
                status = "diverged" if loss is None else "completed"
                summary = {**dict.fromkeys(SUMMARY_KEYS), "status": status, "final": {"val_loss": loss}}
                RunDir(path).write_summary(summary)

    return launch


def test_a_winner_on_the_edge_extends_the_grid_and_a_second_tune_trains_nothing(cifar_root, tmp_path, monkeypatch):
    calls = []
    # the loss keeps falling towards small rates, and the largest rates diverge
    monkeypatch.setattr(tuning, "launch", _fake_launch(lambda r: None if r > 0.5 else 1 + r, calls))
    overrides = [*TINY, f"dataset.root={cifar_root}", f"results_dir={tmp_path}"]
    path = tuning.tune(overrides)
    assert path == tmp_path / "quickstart" / "tuning.json"
    (entry,) = json.loads(path.read_text())
    assert entry["network"] == "smallcnn" and entry["optimizer"] == "sgd" and entry["fold"] == 0
    assert entry["configured"] == 0.1
    # two extensions to the left (tune.max_extend = 2): seven rates, the winner still on the edge
    assert entry["grid"] == pytest.approx([0.1 * 10 ** (i / 2) for i in range(-4, 3)])
    assert entry["grid"] == sorted(entry["grid"])
    assert entry["val_loss"][:6] == pytest.approx([1 + r for r in entry["grid"][:6]])
    assert entry["val_loss"][6:] == [None]  # rate 1.0 diverged: null in the JSON
    assert entry["winner"] == entry["grid"][0] and entry["edge"] is True
    assert [len(rates) for _, rates in calls] == [5, 1, 1]

    def must_not_train(*args):
        raise AssertionError("a second tune trained something")

    monkeypatch.setattr(tuning, "launch", must_not_train)
    assert json.loads(tuning.tune(overrides).read_text()) == [entry]


def test_a_winner_inside_the_grid_is_not_on_the_edge(cifar_root, tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "launch", _fake_launch(lambda r: abs(math.log10(r) + 1.5), []))
    (entry,) = json.loads(tuning.tune([*TINY, f"dataset.root={cifar_root}", f"results_dir={tmp_path}"]).read_text())
    assert entry["winner"] == pytest.approx(0.1 / math.sqrt(10)) and entry["edge"] is False
    assert len(entry["grid"]) == 5


def test_sweep_overrides_on_the_command_line_choose_what_is_tuned(cifar_root, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(tuning, "launch", _fake_launch(lambda r: abs(math.log10(r) + 2), calls))
    overrides = [*TINY, "optimizer=sgd,adam,sgd_cosine", f"dataset.root={cifar_root}", f"results_dir={tmp_path}"]
    entries = json.loads(tuning.tune(overrides).read_text())
    assert [(e["optimizer"], e["configured"]) for e in entries] == [("sgd", 0.1), ("adam", 1e-3), ("sgd+cosine", 0.1)]
    assert [e["winner"] for e in entries] == pytest.approx([0.01, 0.01, 0.01])
    assert entries[1]["grid"][-1] == pytest.approx(0.01 * 10**0.5) and entries[1]["edge"] is False  # adam: extended


def test_llb_sgds_grid_reaches_above_sgds_best_rate(cifar_root, tmp_path, monkeypatch):
    """SGD is best at 1.0, the top of both grids (0.01-1), and extends on its edge; LLb-SGD is best at 0.1, inside
    its grid, which grows anyway until it holds a rate above SGD's best (its rates only fall from α0)."""
    best_at = {"sgd": 1.0, "llb": 0.1}
    losses = {name: (lambda r, b=b: abs(math.log10(r / b))) for name, b in best_at.items()}
    monkeypatch.setattr(tuning, "launch", _fake_launch(losses, []))
    overrides = [*TINY, "optimizer=sgd,llb", f"dataset.root={cifar_root}", f"results_dir={tmp_path}"]
    sgd, llb = json.loads(tuning.tune(overrides).read_text())
    assert sgd["winner"] == pytest.approx(1.0) and sgd["grid"][-1] > 1.0
    assert llb["optimizer"] == "llb" and llb["grid"][-1] == pytest.approx(10**0.5)  # one rate above 1.0
    assert llb["winner"] == pytest.approx(0.1) and llb["edge"] is False


def test_the_configured_rate_is_the_one_shot_run_also_when_the_preset_sets_it(cifar_root, tmp_path):
    """Adadelta's YAML leaves lr to its preset (1.0): the tuning grid centres on 1.0, and its run at 1.0 is the
    one-shot run (no lr override), not a second run that differs only by writing the rate out."""
    overrides = [*TINY, "optimizer=adadelta", f"dataset.root={cifar_root}", f"results_dir={tmp_path}"]
    (entry,), _ = tuning.candidates(overrides)
    assert entry.configured == 1.0 and entry.grid[2] == 1.0
    one_shot = tuning.run_dir(entry.overrides)
    assert tuning.run_dir(entry.rate_overrides(1.0)) == one_shot
    assert tuning.run_dir([*entry.overrides, "optimizer.lr=1.0"]) != one_shot
    assert tuning.run_dir(entry.rate_overrides(entry.grid[1])) != one_shot


@pytest.mark.parametrize("won", [1.0, 10**0.5])
def test_a_tuned_run_at_a_preset_rate_that_won_is_the_one_shot_run(cifar_root, tmp_path, won):
    """tuned=true where the preset's rate (Adadelta's 1.0) won: the run is the one-shot run itself (lr null, the
    same directory; its folds are not trained twice); another winner is written out."""
    overrides = [*TINY, "optimizer=adadelta", f"dataset.root={cifar_root}", f"results_dir={tmp_path}"]
    (entry,), _ = tuning.candidates(overrides)
    overrides.append("fold=1")
    path = tmp_path / "quickstart" / "tuning.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps([{**entry.record(), "val_loss": [1.0] * len(entry.grid), "winner": won}]))
    tuned = [*overrides, "tuned=true"]
    assert compose(tuned).optimizer.lr == (None if won == 1.0 else pytest.approx(won))
    assert (tuning.run_dir(tuned) == tuning.run_dir(overrides)) is (won == 1.0)


def test_the_tuning_runs_go_in_few_sweeps_that_make_exactly_the_grids_runs(cifar_root, tmp_path):
    """`plan`: the entries that differ only in their optimizer and share a grid train in one sweep, the configured
    rate written out (the same run as without it); Adadelta's configured run (its preset's rate) without an lr
    override. The sweeps' runs, expanded as `llbbench run -m` expands them, are the grids' runs, each once."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from llbbench import config
    from llbbench.commands.sweeps import sweep_points

    overrides = [*TINY, "optimizer=sgd,nag,adam,adadelta", f"dataset.root={cifar_root}", f"results_dir={tmp_path}"]
    entries, _ = tuning.candidates(overrides)
    work = [(entry, entry.grid) for entry in entries]

    sweeps = tuning.plan(work, tuning.writes_configured)
    assert [what for _, what in sweeps] == ["smallcnn × sgd, nag", "smallcnn × adam", "smallcnn × adadelta",
                                            "smallcnn × adadelta"]  # fmt: skip
    made = []
    for sweep, _ in sweeps:
        parsed = OverridesParser.create().parse_overrides(sweep)
        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        swept = [o.input_line for o in parsed if o.is_sweep_override()]
        points = sweep_points(config.compose(fixed, hydra=True), swept)
        made += [tuning.run_dir(point) for point in points]
    wanted = [tuning.run_dir(entry.rate_overrides(rate)) for entry, rates in work for rate in rates]
    assert len(made) == len(set(made)) == len(wanted) == 20 and set(made) == set(wanted)


def test_a_failed_tuning_run_stops_the_tuning_with_its_error(cifar_root, tmp_path, monkeypatch):
    def launch(work, *_):
        for entry, rates in work:
            for rate in rates:
                path = tuning.run_dir(entry.rate_overrides(rate))
                path.mkdir(parents=True, exist_ok=True)
                summary = {**dict.fromkeys(SUMMARY_KEYS), "status": "failed", "error": {"message": "out of memory"}}
                RunDir(path).write_summary(summary)

    monkeypatch.setattr(tuning, "launch", launch)
    with pytest.raises(ValueError, match=r"tuning run .* failed \(out of memory\); fix the cause"):
        tuning.tune([*TINY, f"dataset.root={cifar_root}", f"results_dir={tmp_path}"])


def test_tune_then_tuned_runs_reuse_the_tuning_run_and_the_report_shows_both(cifar_root, tmp_path):
    args = [*TINY, f"results_dir={tmp_path}"]
    tuned = llbbench("tune", *args, data=cifar_root, timeout=600)
    assert tuned.returncode == 0, tuned.stderr
    assert "tuning written:" in tuned.stdout
    (entry,) = json.loads((tmp_path / "quickstart" / "tuning.json").read_text())
    base = [*TINY, f"dataset.root={cifar_root}", f"results_dir={tmp_path}", "fold=0"]
    winner_dir = tuning.run_dir(
        base if entry["winner"] == entry["configured"] else [*base, f"optimizer.lr={entry['winner']!r}"]
    )
    trained_at = (winner_dir / "summary.json").stat().st_mtime_ns

    run = llbbench("run", "-m", *args, "tuned=true", data=cifar_root, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "sweep done: 2 of 2 runs: 1 completed, 1 skipped" in run.stdout + run.stderr
    assert (winner_dir / "summary.json").stat().st_mtime_ns == trained_at  # fold 0: the tuning run itself
    rates = {}
    for config in (tmp_path / "quickstart").glob("*/config.yaml"):
        values = yaml.safe_load(config.read_text())
        rates.setdefault(values["fold"], set()).add(values["optimizer"]["lr"])
    assert entry["winner"] in rates[1] and len(rates[1]) == 1  # fold 1 ran at the winner only

    missing = llbbench("run", "-m", *args, "optimizer=adam", "tuned=true", data=cifar_root)
    assert missing.returncode == 2
    assert "tuning.json has no tuned rate for smallcnn × adam" in missing.stderr

    report = build_report([tmp_path / "quickstart"], tmp_path / "report")
    assert "Table 1 (tuned)" in (report / "table1_tuning.md").read_text()
    both = pd.read_csv(report / "table2_tuned.csv")
    assert set(both["runs"]) == {2}  # the tuned cell holds both folds
    one_shot = pd.read_csv(report / "table2.csv")
    assert set(one_shot["runs"]) == {1}  # fold 0 at the configured rate only: the other grid rates are left out
    assert "Rates: tuned — chosen by fold 0's validation loss" in (report / "table2_tuned.md").read_text()


def test_tune_without_an_experiment_says_what_it_needs(cifar_root, tmp_path):
    out = llbbench("tune", "optimizer=sgd", f"results_dir={tmp_path}", data=cifar_root)
    assert out.returncode == 2 and "llbbench tune needs an experiment with a sweep" in out.stderr
    assert Path(tmp_path).exists() and not list(Path(tmp_path).iterdir())


def test_a_tuning_run_launched_as_a_distributed_slurm_job_is_found_where_that_job_writes_it(cifar_root, tmp_path):
    """With a Slurm launcher of several tasks per run, each run is one distributed job (another identity): tune
    looks for it under the id the job computes (world_size = nodes × tasks_per_node)."""
    overrides = [*TINY, "optimizer=sgd", f"dataset.root={cifar_root}", f"results_dir={tmp_path}"]
    (entry,), _ = tuning.candidates(overrides)
    single = tuning.run_dir(entry.overrides)
    assert tuning.run_dir(entry.overrides, ["hydra/launcher=slurm"]) == single  # one task a run
    launcher = ["hydra/launcher=slurm", "hydra.launcher.tasks_per_node=2"]
    shared = tuning.run_dir(entry.overrides, launcher)
    assert shared != single and shared.parent == single.parent
    assert tuning.run_dir(entry.overrides, [*launcher, "hydra.launcher.nodes=2"]) not in (single, shared)

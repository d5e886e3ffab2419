"""scale=medium cannot rot without a GPU: every experiment of `make reproduce-medium` composes at medium scale for
every point of its sweep, and a covering set of its run kinds (every value of every swept key at least once,
per experiment) trains one step on the CPU at tiny sizes; the Makefile's recipe is the plan the tests and the
GPU-hour estimate read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from llbbench import run as one_run
from llbbench.commands.sweeps import MEDIUM_PLAN, sweep_points
from llbbench.config import CONFIG_PACKAGE, check

ROOT = Path(__file__).resolve().parent.parent
FREE = ("fold=", "experiment=", "scale=")  # not a run kind: every fold trains the same way


def points(experiment: str) -> list[list[str]]:
    with initialize_config_module(config_module=CONFIG_PACKAGE, version_base="1.3"):
        sweep = compose("config", overrides=[f"experiment={experiment}", "scale=medium", *MEDIUM_PLAN[experiment]],
                        return_hydra_config=True)  # fmt: skip
    found = sweep_points(sweep)
    assert found, f"{experiment}: no sweep points"
    return found


def covering(found: list[list[str]]) -> list[list[str]]:
    """Points, in sweep order, until every swept `key=value` but the free ones has been chosen at least once."""
    wanted = {o for point in found for o in point if not o.startswith(FREE)}
    chosen = []
    for point in found:
        new = wanted.intersection(point)
        if new:
            chosen.append(point)
            wanted -= new
    return chosen


def test_the_makefile_runs_the_plan():
    recipe = re.search(r"^reproduce-medium:.*?\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    ran = []
    for line in recipe.splitlines():
        loop = re.search(r"for e in ([\w ]+); do", line)
        if loop:
            ran += [(e, ()) for e in loop.group(1).split()]
        step = re.search(r"llbbench (?:run -m|tune) experiment=(\w+)(.*?)\$\(MEDIUM\)", line)
        if step:
            ran.append((step.group(1), tuple(w for w in step.group(2).split() if w != "tuned=true")))
    assert list(dict(ran).items()) == list(MEDIUM_PLAN.items())


@pytest.mark.parametrize("experiment", list(MEDIUM_PLAN))
def test_every_medium_run_composes_and_one_of_each_kind_trains_a_step(experiment, cifar_root, image_root, tmp_path):
    found = points(experiment)
    folder = "dataset=imagenette" in MEDIUM_PLAN[experiment]
    tiny = ["device=cpu", "model.width=0.0625", "train.epochs=1", f"results_dir={tmp_path}"]
    tiny += (
        [f"dataset.root={image_root}", "dataset.num_workers=0"]  # 18 training images: 1 step of 256
        if folder
        else [f"dataset.root={cifar_root}", "dataset.subset=60", "dataset.test_subset=20"]
    )
    folds = {o for point in found for o in point if o.startswith("fold=")}
    assert folds in (set(), {f"fold={i}" for i in range(5)}), folds  # the paper's five folds, or the one it sets
    distinct = {tuple(o for o in point if not o.startswith("fold=")) for point in found}
    with initialize_config_module(config_module=CONFIG_PACKAGE, version_base="1.3"):
        for point in sorted(distinct):  # every run but its fold composes at medium scale, at full size
            cfg = compose("config", overrides=[*point, "fold=4", "scale=medium", *MEDIUM_PLAN[experiment]])
            assert cfg.scale == "medium" and cfg.train.epochs == 30 and cfg.cv.folds == 5
            assert cfg.model.get("width", 1.0) == 1.0 and cfg.dataset.get("subset") is None
            assert cfg.dataset.name == ("imagenette" if folder else "cifar10")
        kinds = covering(found)
        for point in kinds:
            cfg = compose("config", overrides=[*point, "scale=medium", *MEDIUM_PLAN[experiment], *tiny])
            check(cfg)
            summary = one_run.run(cfg, tmp_path / "_".join(p.replace("/", "-") for p in point))
            assert summary["status"] == "completed", (point, summary)
            assert summary["steps"] >= 1 and summary["final"]["test_loss"] > 0
            if folder:
                assert OmegaConf.select(cfg, "dataset.crop") == 160 and summary["num_classes"] == 3
    assert len(kinds) >= 2

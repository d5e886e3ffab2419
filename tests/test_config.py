"""Every entry of every config group composes and builds."""

from __future__ import annotations

import pytest

from llbbench import train
from llbbench.cli import CONF_DIR

GROUPS = ("dataset", "model", "optimizer", "init")
ENTRIES = [(g, p.stem) for g in GROUPS for p in sorted((CONF_DIR / g).glob("*.yaml"))]
EXPERIMENTS = [p.stem for p in sorted((CONF_DIR / "experiment").glob("*.yaml"))]


@pytest.mark.parametrize(("group", "entry"), ENTRIES)
def test_every_group_entry_composes_and_builds(make_config, image_root, group, entry):
    folder = group == "dataset" and entry != "cifar10"
    extra = [f"dataset.root={image_root}", "dataset.num_workers=0"] if folder else []
    cfg = make_config(f"{group}={entry}", *extra)
    assert cfg[group].name == entry
    setup = train.prepare(cfg)
    assert setup.spec.name == cfg.optimizer.name
    assert len(setup.data.train) + len(setup.data.val) == (18 if folder else 600)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(make_config, experiment):
    cfg = make_config(f"experiment={experiment}")
    assert cfg.train.epochs >= 1


def test_every_optimizer_yaml_names_a_registered_optimizer():
    from llbbench import optim

    assert sorted(p.stem for p in (CONF_DIR / "optimizer").glob("*.yaml")) == optim.names()


def test_fold_none_trains_on_everything(make_config):
    setup = train.prepare(make_config("fold=none"))
    assert setup.data.val is None and len(setup.data.train) == 600

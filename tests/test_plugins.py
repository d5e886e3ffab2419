"""Your optimizer in the paper's grid: by config (`_target_`), from a config folder of your own, or as an installed
plug-in; its code in the run's identity; tuned, run and reported like the paper's."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from llbbench import config, optim
from llbbench.records.run import run_id
from tests.conftest import llbbench

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TINY = ["model=smallcnn", "device=cpu", "train.epochs=1", "dataset.subset=200", "dataset.test_subset=100",
        "cv.folds=2"]  # fmt: skip


@pytest.fixture
def user_path(monkeypatch):
    """Set LLBBENCH_CONFIG_PATH (and the module path, as the command line does) to the given folders."""

    def use(*folders: Path) -> None:
        monkeypatch.setenv(config.CONFIG_PATH_ENV, os.pathsep.join(map(str, folders)))
        for folder in folders:
            monkeypatch.syspath_prepend(str(folder))

    return use


def test_a_target_config_takes_every_keyword_of_its_class_and_refuses_others(user_path, cifar_root):
    user_path(EXAMPLES / "adamw")
    base = ["optimizer=adamw", f"dataset.root={cifar_root}"]
    typed = config.check(config.compose(base))
    assert typed.optimizer._target_ == "torch.optim.AdamW" and typed.optimizer.weight_decay == 0.05
    assert typed.optimizer.amsgrad is False and list(typed.optimizer.betas) == [0.9, 0.999]  # the class's defaults
    assert config.check(config.compose([*base, "+optimizer.amsgrad=true"])).optimizer.amsgrad is True
    with pytest.raises(config.ConfigError, match=r"optimizer\.amsgard.*did you mean optimizer\.amsgrad"):
        config.check(config.compose([*base, "+optimizer.amsgard=true"]))
    with pytest.raises(config.ConfigError, match=r"optimizer\.eps=-1.0 is out of range"):
        config.check(config.compose([*base, "optimizer.lr=1e-3", "+optimizer.eps=-1.0"]))
    spec = optim.get("adamw")
    assert spec.external and spec.source == "config" and not spec.needs_loss
    built = optim.build("adamw", torch.nn.Linear(2, 1), weight_decay=0.05, amsgrad=True)
    assert isinstance(built, torch.optim.AdamW) and built.defaults["amsgrad"] is True


def test_the_paper_optimizers_take_their_classes_other_keywords_too(cifar_root):
    typed = config.check(config.compose(["optimizer=adam", f"dataset.root={cifar_root}", "+optimizer.amsgrad=true"]))
    assert typed.optimizer.amsgrad is True
    assert optim.build("adam", torch.nn.Linear(2, 1), amsgrad=True).defaults["amsgrad"] is True
    assert optim.get("sgd").extras["dampening"] == 0.0  # SGD's `dampening: float = 0` typed as a float
    assert optim.get("sgd").keywords()["momentum"] == 0.0 and isinstance(optim.get("sgd").keywords()["momentum"], float)
    with pytest.raises(ValueError, match=r"no hyper-parameter 'amsgard'.*'amsgrad'"):
        optim.get("adam").hparams(amsgard=True)


def test_a_target_is_an_importable_optimizer_class_with_a_name():
    with pytest.raises(ValueError, match=r"not a torch.optim.Optimizer class"):
        optim.from_config({"name": "linear", "_target_": "torch.nn.Linear"})
    with pytest.raises(ValueError, match=r"cannot import nosuchpackage.*PYTHONPATH, or in LLBBENCH_CONFIG_PATH"):
        optim.from_config({"name": "x", "_target_": "nosuchpackage.Opt"})
    with pytest.raises(ValueError, match=r"torch.optim has nothing of that name"):
        optim.from_config({"name": "x", "_target_": "torch.optim.NoSuch"})
    with pytest.raises(ValueError, match="needs a name: add `name: radam`"):
        optim.from_config({"_target_": "torch.optim.RAdam"})
    with pytest.raises(ValueError, match="'adam' is llbbench's own"):
        optim.from_config({"name": "adam", "_target_": "torch.optim.AdamW"})
    with pytest.raises(ValueError, match="capability flags belong to an optimizer a config names by _target_"):
        optim.from_config({"name": "sgd", "needs_loss": True})


def test_a_target_config_sets_the_capability_flags():
    spec, preset, hparams = optim.from_config({"name": "rprop_loss", "_target_": "torch.optim.Rprop",
                                               "needs_loss": True, "lr": 0.01, "label": "Rprop"})  # fmt: skip
    assert spec.needs_loss and not spec.layerwise and preset == "torch" and hparams == {"lr": 0.01}
    with pytest.raises(ValueError, match="registered with other needs_loss"):
        optim.from_config({"name": "rprop_loss", "_target_": "torch.optim.Rprop", "needs_loss": False})


def test_lion_follows_its_update_rule_by_hand(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES / "lion"))
    monkeypatch.delitem(sys.modules, "lion_optimizer", raising=False)
    from lion_optimizer import Lion

    monkeypatch.delitem(sys.modules, "lion_optimizer")  # other tests import their own copy
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = Lion([p], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    for g in ([0.3, -0.1], [-1.0, 0.2]):
        p.grad = torch.tensor(g)
        opt.step()
    # step 1: m=0, c = 0.1g = (+, -): p = (1, -2) - 0.1((1, -1) + 0.5(1, -2)) = (0.85, -1.8); m = 0.01g = (.003, -.001)
    # step 2: c = 0.9m + 0.1g = (0.0027 - 0.1, -0.0009 + 0.02) = (-, +): p = (0.85, -1.8) - 0.1((-1, 1) + 0.5p)
    assert torch.allclose(p.detach(), torch.tensor([0.85 + 0.1 - 0.0425, -1.8 - 0.1 + 0.09]))


def _lion_folder(tmp_path: Path) -> Path:
    """examples/lion copied, with an experiment of its own: a two-fold Table 2 of LLb-SGD, SGD, Lion and AdamW."""
    folder = tmp_path / "mine"
    shutil.copytree(EXAMPLES / "lion", folder)
    shutil.copy(EXAMPLES / "adamw" / "optimizer" / "adamw.yaml", folder / "optimizer")
    (folder / "experiment").mkdir()
    (folder / "experiment" / "mine.yaml").write_text(
        "# @package _global_\nexperiment_name: table2_cifar10\ntrain:\n  epochs: 1\n"
        "hydra:\n  sweeper:\n    params:\n      optimizer: llb,sgd,lion,adamw\n      fold: range(0,2)\n"
    )
    return folder


def test_the_optimizer_code_is_part_of_the_run_identity(tmp_path, user_path, cifar_root, monkeypatch):
    folder = _lion_folder(tmp_path)
    user_path(folder)
    monkeypatch.delitem(sys.modules, "lion_optimizer", raising=False)  # this folder's copy

    def ident(*overrides: str) -> str:
        from omegaconf import OmegaConf

        return run_id(OmegaConf.to_container(config.compose([f"dataset.root={cifar_root}", *overrides]), resolve=True))

    before = ident("optimizer=lion")
    code = optim.code_fingerprint({"_target_": "lion_optimizer.Lion"})
    source = (folder / "lion_optimizer.py").read_bytes()
    assert code == {"class": "lion_optimizer.Lion", "package": "lion_optimizer", "version": None,
                    "source_sha256": hashlib.sha256(source).hexdigest()}  # fmt: skip
    (folder / "lion_optimizer.py").write_bytes(source + b"\n# a fix\n")
    assert ident("optimizer=lion") != before  # a fixed optimizer gets new run directories
    assert ident("optimizer=lion", "optimizer.label=LION") == ident("optimizer=lion")  # its name in the report is not
    assert optim.code_fingerprint({"name": "sgd"}) is None  # llbbench's own: none


def test_the_paper_optimizers_keep_their_run_ids():
    """Every committed run's directory is still the id of its recorded config."""
    from tests.test_committed_results import committed

    configs = [p for p in committed("results/small") if p.name == "config.yaml"]
    if not configs:
        pytest.skip("no committed runs")
    wrong = [p.parent.name for p in configs if run_id(yaml.safe_load(p.read_text())) != p.parent.name]
    assert not wrong, wrong[:5]


def test_your_optimizers_are_tuned_run_in_a_sweeps_workers_and_reported(tmp_path, cifar_root):
    """--config-dir: tune's sweeps and the joblib workers import lion_optimizer from the folder; the report
    labels Lion and AdamW, draws them apart, and compares them with LLb-SGD and the best baseline."""
    folder = _lion_folder(tmp_path)
    results = tmp_path / "results"
    common = ["experiment=mine", *TINY, f"results_dir={results}", "--config-dir", str(folder)]
    tuned = llbbench("tune", *common, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                     "hydra.sweeper.params.optimizer=lion", data=cifar_root, timeout=600)  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    entries = json.loads((results / "table2_cifar10" / "tuning.json").read_text())
    assert [(e["network"], e["optimizer"]) for e in entries] == [("smallcnn", "lion")]
    done = llbbench("run", "-m", *common, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", data=cifar_root,
                    timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 skipped" in done.stderr + done.stdout  # Lion's fold-0 run at its configured rate was a tuning run
    again = llbbench("run", "-m", *common, "tuned=true", "hydra.sweeper.params.optimizer=lion", data=cifar_root)
    assert again.returncode == 0, again.stderr[-3000:]
    lion_env = [json.loads(p.read_text()) for p in results.glob("table2_cifar10/smallcnn-lion-*/env.json")]
    assert lion_env and all(e["optimizer_code"]["class"] == "lion_optimizer.Lion" for e in lion_env)
    report = llbbench("report", str(results))
    assert report.returncode == 0, report.stderr
    claims = (results / "report" / "claims.md").read_text()
    section = claims[claims.index("## Your optimizers against the paper's") :]
    assert "- smallcnn: AdamW − LLb-SGD: train " in section and "- smallcnn: Lion − LLb-SGD: train " in section
    assert "(best baseline)" in section
    yours = json.loads((results / "report" / "yours.json").read_text())
    assert set(yours["smallcnn"]) == {"adamw", "lion"} and yours["smallcnn"]["lion"]["llb"]["train_loss"]["difference"]
    assert "| Lion |" in (results / "report" / "table2.md").read_text()


def test_added_optimizers_get_colours_none_of_the_paper_has():
    from llbbench.report import figures
    from llbbench.report.runs import ADDED_LABELS

    ADDED_LABELS.clear()
    ADDED_LABELS.update({"adamw": "AdamW", "lion": "Lion"})
    try:
        paper = {figures.optimizer_style(name)["color"] for name in figures.OPTIMIZERS}
        mine = [figures.optimizer_style(name) for name in ("adamw", "lion")]
        assert len({s["color"] for s in mine}) == 2 and not paper & {s["color"] for s in mine}
        assert all(s["ls"] == figures.ADDED_LINE for s in mine)
    finally:
        ADDED_LABELS.clear()


def test_a_results_folder_that_names_a_class_is_read_without_importing_it(tmp_path):
    """A config.yaml someone sent, whose optimizer `_target_` is a module that would run code on import: the
    report reads the run and never imports it."""
    trap = tmp_path / "code"
    trap.mkdir()
    (trap / "trap_module.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('ran')\n")
    from tests.report.test_report import write_run

    run = write_run(tmp_path / "results", "table2_cifar10", "smallcnn", "adam", 0, [2.0, 1.5], 1.6)
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    recorded["optimizer"].update(name="trap", _target_="trap_module.Trap")
    (run / "config.yaml").write_text(yaml.safe_dump(recorded))
    env = {"PYTHONPATH": os.pathsep.join([str(trap), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "llbbench.cli", "report", str(tmp_path / "results")],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "ran").exists()


def test_an_installed_plugin_is_available_to_every_command(tmp_path, cifar_root):
    """`pip install examples/plugin` (into a folder on PYTHONPATH): optimizer=signum runs with no config folder,
    its code fingerprint names the package and its version."""
    target, source = tmp_path / "site", tmp_path / "plugin"
    shutil.copytree(EXAMPLES / "plugin", source)  # pip builds in the source folder: not in the checkout
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(source)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    env = {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    done = llbbench("run", "optimizer=signum", *TINY, f"results_dir={tmp_path / 'r'}", data=cifar_root, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (tmp_path / "r" / "runs").glob("smallcnn-signum-f0-*")
    code = json.loads((run / "env.json").read_text())["optimizer_code"]
    assert code["package"] == "llbbench-signum" and code["version"] == "0.1.0"
    assert yaml.safe_load((run / "config.yaml").read_text())["optimizer"]["label"] == "Signum"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and math.isfinite(summary["final"]["train_loss"])
    tuned = llbbench("tune", "experiment=table2_cifar10", "hydra.sweeper.params.optimizer=signum", "model=smallcnn",
                     "hydra.sweeper.params.model=smallcnn", "hydra.sweeper.params.fold=0", *TINY[1:],
                     f"results_dir={tmp_path / 'r'}", data=cifar_root, env=env, timeout=600)  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr[-3000:]  # its sweeps (child processes) find it too
    assert "smallcnn × signum:" in tuned.stdout


def test_a_config_folder_that_is_not_there_gets_one_line(tmp_path):
    done = llbbench("run", "--config-dir", str(tmp_path / "nosuch"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"LLBBENCH_CONFIG_PATH: {tmp_path / 'nosuch'} is not a folder" in done.stderr
    assert llbbench("tune", "--config-dir").stderr.strip().endswith("--config-dir needs a folder: --config-dir DIR")


def test_run_help_lists_the_options_a_config_folder_adds(tmp_path):
    """Hydra's --help lists the groups of llbbench's own configs; what --config-dir adds follows it, and options
    it only repeats (a folder's own copy of a built-in name) are not listed twice."""
    (tmp_path / "optimizer").mkdir()
    (tmp_path / "optimizer" / "mine.yaml").write_text("name: sgd\n")
    (tmp_path / "optimizer" / "adam.yaml").write_text("name: adam\n")
    (tmp_path / "hydra" / "launcher").mkdir(parents=True)
    (tmp_path / "hydra" / "launcher" / "big.yaml").write_text("n_jobs: 8\n")
    done = llbbench("run", "--help", "--config-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    added = done.stdout.split("== Options that your config folders and plug-ins add ==\n")[1].splitlines()
    assert added == ["hydra/launcher: big", "optimizer: mine"]
    assert "Options that your config folders" not in llbbench("run", "--help").stdout


def test_fig8_analytic_saddles_run_the_paper_optimizers_only():
    from llbbench.commands.saddle import analytic

    optim.from_config({"name": "adamw_extra", "_target_": "torch.optim.AdamW"})  # registered in this process
    drawn = analytic()
    assert sorted(drawn["paths"]["plain"]) == sorted(n for n in optim.names() if not optim.get(n).external and
                                                     n != "pathsgd")  # fmt: skip
    assert drawn["left_out"] == ["pathsgd"]


def test_fig8_on_a_network_takes_the_optimizers_to_run(tmp_path, cifar_root, user_path):
    from llbbench.commands import saddle

    user_path(EXAMPLES / "adamw")
    overrides = ["experiment=fig8_saddle", f"dataset.root={cifar_root}", f"results_dir={tmp_path}", "device=cpu",
                 "model.width=0.0625", "saddle.seeds=2", "saddle.steps=6", "saddle.probe=32", "saddle.snapshot_every=2",
                 "saddle.tune=false",
                 "+saddle.optimizers=[llb,sgd,adamw]"]  # fmt: skip
    record = json.loads(saddle.measure(overrides).read_text())
    assert list(record["escapes"]) == ["llb", "sgd", "adamw"] and len(record["probe_losses"]["adamw"]) == 2
    assert record["rates"]["adamw"] == 1e-3
    from llbbench.report.claims import saddles

    lines = saddles(record).lines  # claim 7 compares the paper's optimizers and lists the others' escapes
    assert any(line.startswith("at configured rates: adamw at rate 0.001: escape step per seed") for line in lines)
    assert any(line.startswith("at configured rates: SGD − LLb-SGD escape steps") for line in lines)


def test_the_command_line_names_the_config_path_variable_as_the_config_does():
    from llbbench import cli

    assert cli.CONFIG_PATH_ENV == config.CONFIG_PATH_ENV


def test_tune_honours_hydra_searchpath_too(tmp_path, cifar_root):
    folder = tmp_path / "mine"
    shutil.copytree(EXAMPLES / "adamw", folder)
    (folder / "experiment").mkdir()
    (folder / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ntrain:\n  epochs: 1\nhydra:\n  sweeper:\n    params:\n      optimizer: adamw\n"
        "      fold: 0\n"
    )
    done = llbbench("tune", "experiment=mine", *TINY, f"results_dir={tmp_path / 'r'}",
                    f"hydra.searchpath=[file://{folder}]", data=cifar_root, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "smallcnn × adamw:" in done.stdout

"""The `llbbench` command as a user types it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import llbbench

SHRINK = ["device=cpu", "model.width=0.25", "train.epochs=1", "train.batch_size=64"]


def test_help_names_the_commands():
    out = llbbench("--help")
    assert out.returncode == 0 and "run" in out.stdout and "usage: llbbench" in out.stdout


def test_the_version_is_the_installed_packages_and_env_json_records_it(cifar_root, tmp_path):
    import importlib.metadata

    from llbbench.cli import main

    version = importlib.metadata.version("llbbench")
    for argv in (["--version"], ["-V"], ["run", "--version"], ["tune", "--version"]):
        out = llbbench(*argv)
        assert out.returncode == 0 and out.stdout == f"llbbench {version}\n", (argv, out.stderr)
    assert main(["--version"]) == 0
    done = llbbench("run", "device=cpu", "model.width=0.25", "train.epochs=1", "dataset.subset=200", "cv.folds=2",
                    f"results_dir={tmp_path}", data=cifar_root)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(next(tmp_path.glob("runs/*/env.json")).read_text())["llbbench"] == version


def test_run_help_shows_the_config_groups():
    out = llbbench("run", "--help")
    assert out.returncode == 0
    assert "train one network with one optimizer" in out.stdout
    assert (
        "optimizer: adadelta, adagrad, adam, esgd, llb, llb_global, nag, pathsgd, rmsprop, sgd, sgd_cosine, "
        "sgd_inverse_time" in out.stdout
    )
    assert "dataset: cifar10" in out.stdout and "init: default, msra" in out.stdout


def test_unknown_command_lists_the_valid_ones():
    out = llbbench("train")
    assert out.returncode == 2 and "unknown command 'train'; valid commands: run" in out.stderr


def test_run_trains_and_says_where_the_results_are(cifar_root, tmp_path):
    out = llbbench("run", *SHRINK, f"results_dir={tmp_path}", data=cifar_root)
    assert out.returncode == 0, out.stderr
    run_dir = Path(out.stdout.strip().splitlines()[-1].split("results in ")[1])
    assert run_dir.parent == tmp_path / "runs"
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_multirun_sweeps_the_optimizers(cifar_root, tmp_path):
    out = llbbench("run", "--multirun", "optimizer=sgd,adam", *SHRINK, f"results_dir={tmp_path}", data=cifar_root)
    assert out.returncode == 0, out.stderr
    summaries = sorted(tmp_path.glob("runs/*/summary.json"))
    assert len(summaries) == 2
    names = {yaml.safe_load((p.parent / "config.yaml").read_text())["optimizer"]["name"] for p in summaries}
    assert names == {"sgd", "adam"}
    assert {json.loads(p.read_text())["status"] for p in summaries} == {"completed"}


def test_diverged_run_exits_zero(cifar_root, tmp_path):
    out = llbbench("run", *SHRINK, "optimizer.lr=1e12", "train.log_every=1", f"results_dir={tmp_path}", data=cifar_root)
    assert out.returncode == 0, out.stderr
    assert "run diverged" in out.stdout


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optimizer=nosuch", ["optimizer=nosuch: there is no such optimizer config; valid: adadelta,", "rmsprop"]),
        ("model=nosuch", ["model=nosuch: there is no such model config; valid: alexnet,", "smallcnn"]),
        ("dataset=nosuch", ["dataset=nosuch: there is no such dataset config; valid: cifar10,"]),
        ("optimizer.name=nosuch", ["unknown optimizer 'nosuch'; valid names: adadelta"]),
        ("train.epochz=3", ["unknown key train.epochz; did you mean train.epochs? (valid keys of train: epochs,"]),
    ],
)
def test_bad_names_and_overrides_get_one_clear_message(cifar_root, tmp_path, override, expected):
    out = llbbench("run", *SHRINK, override, f"results_dir={tmp_path}", data=cifar_root)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    for text in expected:
        assert text in out.stderr
    assert not tmp_path.joinpath("runs").exists()


def test_missing_data_root_gets_one_clear_message(tmp_path):
    out = llbbench("run", *SHRINK, "dataset.download=false", f"results_dir={tmp_path}", data=tmp_path / "nowhere")
    assert out.returncode == 2
    assert f"expected the official python-pickle files in {tmp_path / 'nowhere' / 'cifar-10-batches-py'}" in out.stderr
    assert "Traceback" not in out.stderr


def test_shell_completion_installs_for_llbbench_and_completes_run_and_tune(tmp_path):
    """What bash does: install the function, `complete -p` it, then ask it as the function does (COMP_LINE)."""
    import os
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    script = (f'export PATH="{bin_dir}:$PATH"; eval "$(llbbench run -sc install=bash)"; complete -p llbbench; '
              'COMP_LINE="llbbench run optimizer=ad" llbbench -sc query=bash; echo "|"; '
              'COMP_LINE="llbbench tune experiment=table2_c" llbbench -sc query=bash; echo "|"; '
              'COMP_LINE="llbbench re" llbbench -sc query=bash')  # fmt: skip
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("|")
    assert lines[0].splitlines()[0].endswith("-F hydra_bash_completion llbbench")
    assert "optimizer=adam" in lines[0].split() and "optimizer=sgd" not in lines[0].split()
    assert lines[1].split() == ["experiment=table2_cifar10"]
    assert lines[2].split() == ["report"]


def test_the_run_log_holds_what_the_run_printed(cifar_root, tmp_path):
    out = llbbench("run", *SHRINK, f"results_dir={tmp_path}", data=cifar_root)
    assert out.returncode == 0, out.stderr
    (log,) = tmp_path.glob("runs/*/run.log")
    text = log.read_text()
    assert "epoch 1/1: train loss " in text and f"run completed: results in {log.parent}" in text
    assert "NotOfficialWarning" in text  # its warnings (the tests' CIFAR-10 is never the official release)
